# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Fastformer as graphs for serving: `torch.export` programs and ONNX models with a dynamic batch and length.

Every part that a serving runtime runs is an `nn.Module` of tensors in and tensors out, which calls the model's own
forward and decoding cache (nothing is re-implemented), with the decoding state as an explicit input and output:

    module                        inputs -> outputs (shapes: docs/deploy.md)
    EncoderHead(model)            input_ids, attention_mask -> the head's outputs (`logits`, or `last_hidden_state`,
                                  or `start_logits`, `end_logits`); every encoder head, multiple choice included
    CausalLMPrefill(model)        input_ids, attention_mask -> logits, new_state
    CausalLMDecodeStep(model)     input_ids (batch, 1), position_ids (batch, 1), state -> logits, new_state
    Seq2SeqEncoder(model)         input_ids, attention_mask -> last_hidden_state, cross (the decoder layers'
                                  projections of the encoder output, computed once)
    Seq2SeqDecoderStep(model)     decoder_input_ids (batch, 1), position_ids (batch, 1), encoder_attention_mask,
                                  state, cross -> logits, new_state

    deployment_modules(model) -> dict[str, DeploymentModule]   the parts of `model` by name ("model"; "prefill" and
                                  "decode_step"; "encoder" and "decoder_step")
    module.input_names, module.output_names                      the ONNX graph's names (tuples flattened)
    module.axes() -> dict                                        the dynamic axes' names of each argument
    module.example_inputs(batch=2, length=9) -> tuple            inputs to trace with (any values)
    module.dynamic_shapes(max_length=None) -> tuple              `torch.export` dims of every argument
    module.initial_state(batch) -> Tensor                        the empty decoding state (decoding modules)
    module.read_state(cache) -> Tensor                           an eager `FastformerCache`'s state, stacked
    export_program(module, inputs=None, dynamic=True, max_length=None) -> torch.export.ExportedProgram
    export_onnx(module, path, program=None, max_length=None, optimize=True) -> torch.onnx.ONNXProgram (at `path`)

The state `(layers, slots, batch, heads, head_dim + 2)` holds, per layer and prefix pool (`state_slots`: "query"
and "key", and "cross_query" for additive cross-attention), the `FastformerCacheLayer.pack`ed pool `[S, m, Z]`: its
size does not depend on the length. Dynamic: `batch` and `length` (`source_length` for the encoder side of a decoder
step, `choices` for multiple choice) on every input that has them, from 1 to `max_length` (the position table's
size with absolute positions, unbounded otherwise). The causal scan is traced with a fixed number of levels
(`pooling_fastformer.EXPORTED_SCAN_LEVELS`), so one graph serves every length, exactly (its work linear in the
length up to millions of tokens).

This module is not imported by the model files: it travels with the package, not with checkpoints.
"""

import os
import warnings

import torch
from torch import nn
from torch.export import Dim

from .cache_fastformer import FastformerCacheLayer, cached_encoder_projections, split_cache
from .modeling_fastformer import (
    FastformerForCausalLM,
    FastformerForConditionalGeneration,
    FastformerForMultipleChoice,
    FastformerForQuestionAnswering,
    FastformerLayer,
    FastformerModel,
    FastformerPreTrainedModel,
)
from .pooling_fastformer import compute_dtype


class DeploymentModule(nn.Module):
    """A part of a Fastformer model with tensors in and out, for `export_program` / `export_onnx`. `input_names` /
    `output_names` name its inputs and outputs as ONNX flattens them (a tuple argument or output, element by
    element); `axes()` names the dynamic axes of each of `forward`'s arguments, `{argument: {axis: name}}` (a tuple
    of those for a tuple argument). Refuses a model in training mode (dropout would be traced into the graph) and a
    model of another class than `model_class`."""

    model_class: type = FastformerPreTrainedModel
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()

    def __init__(self, model: FastformerPreTrainedModel):
        super().__init__()
        if not isinstance(model, self.model_class):
            expected = self.model_class.__name__
            raise ValueError(f"`{type(self).__name__}` needs a {expected}, got {type(model).__name__}.")
        if model.training:
            raise ValueError("Export a model in eval mode (`model.eval()`): dropout would be traced into the graph.")
        chunked = {
            name
            for layer in model.modules()
            for name in ("sequence_chunk_size", "chunk_size_feed_forward")
            if isinstance(layer, FastformerLayer) and getattr(layer, name)
        }
        if chunked:
            options = ", ".join(f"{name}=0" for name in sorted(chunked))
            raise ValueError(
                f"The model runs its layers in chunks ({', '.join(sorted(chunked))}), which compares the length with "
                f"the chunk size in Python: a graph with a dynamic length cannot. These memory options compute the "
                f"same function: load the model for export with `from_pretrained(..., {options})`."
            )
        self.model = model
        self.config = model.config

    def axes(self) -> dict:
        raise NotImplementedError

    def example_inputs(self, batch: int = 2, length: int = 9) -> tuple:
        """Inputs of `batch` rows and `length` tokens (source tokens for a decoder step) to trace with."""
        raise NotImplementedError

    def dynamic_shapes(self, max_length: int | None = None) -> tuple:
        """`torch.export`'s `dynamic_shapes` for `forward`'s arguments: one `Dim` per axis name of `axes()`, shared
        by every input that has the axis, each from 1 up (`length` and `source_length` up to `max_length`, by default
        the position table's size with absolute positions, unbounded otherwise)."""
        if max_length is None and self.config.position_embedding_type == "absolute":
            max_length = self.config.max_position_embeddings
        dims = {name: Dim(name, min=1, max=max_length) for name in ("length", "source_length")}
        dims.update({name: Dim(name, min=1) for name in ("batch", "choices")})

        def spec(axes):
            if isinstance(axes, tuple):
                return tuple(spec(element) for element in axes)
            return {axis: dims[name] for axis, name in axes.items()}

        return tuple(spec(axes) for axes in self.axes().values())


def _token_inputs(config, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random ids in the vocabulary and an all-ones attention mask, both of `shape` (int64)."""
    input_ids = torch.randint(0, config.vocab_size, shape, generator=torch.Generator().manual_seed(0))
    return input_ids, torch.ones(shape, dtype=torch.long)


class EncoderHead(DeploymentModule):
    """Any encoder model (`FastformerModel` or a head): `(input_ids, attention_mask)`, `(batch, length)` int64
    (`(batch, choices, length)` for multiple choice), to the head's output tensors: `last_hidden_state` `(batch,
    length, hidden)`, `logits` (`(batch, num_labels)`, `(batch, length, num_labels or vocab)`, `(batch, choices)`),
    or `start_logits`, `end_logits` `(batch, length)`."""

    input_names = ("input_ids", "attention_mask")

    def __init__(self, model: FastformerPreTrainedModel):
        super().__init__(model)
        if isinstance(model, (FastformerForCausalLM, FastformerForConditionalGeneration)):
            raise ValueError(
                f"`EncoderHead` exports an encoder; for {type(model).__name__} use `deployment_modules(model)`."
            )
        self.choices = isinstance(model, FastformerForMultipleChoice)
        if isinstance(model, FastformerModel):
            self.output_names = ("last_hidden_state",)
        elif isinstance(model, FastformerForQuestionAnswering):
            self.output_names = ("start_logits", "end_logits")
        else:
            self.output_names = ("logits",)

    def axes(self):
        axes = {0: "batch", 1: "choices", 2: "length"} if self.choices else {0: "batch", 1: "length"}
        return {"input_ids": axes, "attention_mask": axes}

    def example_inputs(self, batch: int = 2, length: int = 9):
        return _token_inputs(self.config, (batch, 3, length) if self.choices else (batch, length))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, return_dict=True)
        return tuple(outputs[name] for name in self.output_names)


def state_slots(config) -> tuple[str, ...]:
    """The prefix pools a causal layer keeps (`FastformerCacheLayer.SLOTS`): the self-attention's `"query"` and
    `"key"`, and the additive cross-attention's `"cross_query"` in an encoder-decoder with
    `cross_attention_type="additive"`."""
    additive = config.is_encoder_decoder and config.cross_attention_type == "additive"
    return FastformerCacheLayer.SLOTS if additive else FastformerCacheLayer.SLOTS[:2]


class StatefulModule(DeploymentModule):
    """A causal part whose decoding state goes in and/or out as one tensor `(layers, slots, batch, heads, head_dim +
    2)` (`state_slots`; each entry a packed pool `[S, m, Z]`), built into and read from the model's own cache."""

    decoder_name = "fastformer"  # the causal `FastformerModel` of `model` that keeps the state

    def __init__(self, model: FastformerPreTrainedModel):
        super().__init__(model)
        self.decoder = getattr(model, self.decoder_name)
        self.slots = state_slots(model.config)
        self.slot_indices = [FastformerCacheLayer.SLOTS.index(slot) for slot in self.slots]

    def initial_state(self, batch: int) -> torch.Tensor:
        """The state before any token: every pool empty (`S = Z = 0`, `m` the lowest float), from which a decoding
        step computes exactly what a forward without a cache does."""
        dtype = compute_dtype(next(self.model.parameters()))
        shape = (self.decoder.num_layers, len(self.slots), batch, self.config.num_attention_heads)
        state = torch.zeros(*shape, self.config.head_dim + 2, dtype=dtype, device=self.model.device)
        state[..., -2] = torch.finfo(dtype).min
        return state

    def new_cache(self, state: torch.Tensor | None = None):
        """The model's own empty cache (`FastformerModel._decoding_cache`), holding `state` if given."""
        cache = self.decoder._decoding_cache(None, use_cache=True)
        if state is not None:
            pools = split_cache(cache)[0]
            for layer in range(self.decoder.num_layers):
                for slot, index in enumerate(self.slot_indices):
                    pools.update_recurrent_state(state[layer, slot], layer, index)
        return cache

    def read_state(self, cache) -> torch.Tensor:
        """The state the model left in `cache`, stacked as `(layers, slots, batch, heads, head_dim + 2)`."""
        pools, layers = split_cache(cache)[0], range(self.decoder.num_layers)
        return torch.stack([torch.stack([pools.get_recurrent_state(i, j) for j in self.slot_indices]) for i in layers])


class CausalLMPrefill(StatefulModule):
    """A `FastformerForCausalLM`'s prompt: `(input_ids, attention_mask)` `(batch, length)` int64 (left padding
    allowed) to `logits` `(batch, length, vocab)` and the `state` after the prompt. The next token's position (the
    `position_ids` of `CausalLMDecodeStep`) is the number of real tokens, `attention_mask.sum(-1, keepdim=True)`."""

    input_names = ("input_ids", "attention_mask")
    output_names = ("logits", "new_state")

    model_class = FastformerForCausalLM

    def axes(self):
        return {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}}

    def example_inputs(self, batch: int = 2, length: int = 9):
        return _token_inputs(self.config, (batch, length))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        cache = self.new_cache()
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, cache=cache, use_cache=True)
        return outputs.logits, self.read_state(cache)


class CausalLMDecodeStep(StatefulModule):
    """One decoding step of a `FastformerForCausalLM`: `input_ids` `(batch, 1)` (the new token), `position_ids`
    `(batch, 1)` int64 (its position: the number of real tokens before it) and the `state` before it, to `logits`
    `(batch, 1, vocab)` and the `state` after it. From `initial_state(batch)` it computes what the prefill of one
    token computes."""

    input_names = ("input_ids", "position_ids", "state")
    output_names = ("logits", "new_state")

    model_class = FastformerForCausalLM

    def axes(self):
        return {"input_ids": {0: "batch"}, "position_ids": {0: "batch"}, "state": {2: "batch"}}

    def example_inputs(self, batch: int = 2, length: int = 9):
        input_ids, _ = _token_inputs(self.config, (batch, 1))
        return input_ids, torch.full((batch, 1), length, dtype=torch.long), self.initial_state(batch)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, state: torch.Tensor):
        cache = self.new_cache(state)
        outputs = self.model(input_ids=input_ids, position_ids=position_ids, cache=cache, use_cache=True)
        return outputs.logits, self.read_state(cache)


def _cross_layers(model: FastformerForConditionalGeneration) -> list[nn.Module]:
    """The cross-attention of each decoder depth (one module at every depth with `share_layer_parameters`)."""
    layers = model.decoder.encoder.layer
    return [layers[depth % len(layers)].crossattention.self for depth in range(model.decoder.num_layers)]


class Seq2SeqEncoder(DeploymentModule):
    """A `FastformerForConditionalGeneration`'s encoder: `(input_ids, attention_mask)` `(batch, source_length)` int64
    to its `last_hidden_state` `(batch, source_length, hidden)` and `cross`, per decoder layer the cross-attention's
    projections of it (`project`: keys and values `(batch, heads, source_length, head_dim)`; additive
    cross-attention: keys `(batch, 1, source_length, hidden)` and per head `(batch, heads, source_length,
    head_dim)`), which every decoding step reads (the decoding cache's cross-attention part)."""

    input_names = ("input_ids", "attention_mask")

    model_class = FastformerForConditionalGeneration

    def __init__(self, model: FastformerForConditionalGeneration):
        super().__init__(model)
        depths = range(model.decoder.num_layers)
        self.output_names = ("last_hidden_state",) + tuple(f"cross.{i}.{part}" for i in depths for part in "kv")

    def axes(self):
        return {"input_ids": {0: "batch", 1: "source_length"}, "attention_mask": {0: "batch", 1: "source_length"}}

    def example_inputs(self, batch: int = 2, length: int = 9):
        return _token_inputs(self.config, (batch, length))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        encoder = self.model.get_encoder()
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        cross = tuple(tensor for layer in _cross_layers(self.model) for tensor in layer.project(hidden))
        return hidden, cross


class Seq2SeqDecoderStep(StatefulModule):
    """One decoding step of a `FastformerForConditionalGeneration`: `decoder_input_ids` `(batch, 1)`, `position_ids`
    `(batch, 1)` int64 (the number of decoder tokens before it), `encoder_attention_mask` `(batch, source_length)`,
    the decoder's `state` before it and `cross` (`Seq2SeqEncoder`'s, a tuple), to `logits` `(batch, 1, vocab)` and the
    `state` after it. The first step starts from `initial_state(batch)` with the decoder start token."""

    output_names = ("logits", "new_state")

    model_class = FastformerForConditionalGeneration
    decoder_name = "decoder"

    def __init__(self, model: FastformerForConditionalGeneration):
        super().__init__(model)
        depths = range(model.decoder.num_layers)
        self.cross_names = tuple(f"cross.{i}.{part}" for i in depths for part in "kv")
        self.input_names = ("decoder_input_ids", "position_ids", "encoder_attention_mask", "state") + self.cross_names

    def axes(self):
        return {
            "decoder_input_ids": {0: "batch"},
            "position_ids": {0: "batch"},
            "encoder_attention_mask": {0: "batch", 1: "source_length"},
            "state": {2: "batch"},
            "cross": tuple({0: "batch", 2: "source_length"} for _ in self.cross_names),
        }

    def example_inputs(self, batch: int = 2, length: int = 9):
        input_ids, mask = _token_inputs(self.config, (batch, length))
        cross = Seq2SeqEncoder(self.model)(input_ids, mask)[1]
        position_ids = torch.full((batch, 1), 3, dtype=torch.long)
        return input_ids[:, :1], position_ids, mask, self.initial_state(batch), cross

    def forward(self, decoder_input_ids, position_ids, encoder_attention_mask, state, cross: tuple):
        cache = self.new_cache(state)
        for depth in range(self.decoder.num_layers):  # stored where the decoder's first step would store them
            keys_values = cross[2 * depth : 2 * depth + 2]
            cached_encoder_projections(cache, depth, lambda _, given=keys_values: given, None)
        # The decoder reads the encoder output only through the projections in the cache; of the output itself it
        # checks the shape `(batch, source_length)` only, which this view of the mask has.
        encoder_output = encoder_attention_mask.unsqueeze(-1)
        outputs = self.model(
            attention_mask=encoder_attention_mask,
            decoder_input_ids=decoder_input_ids,
            encoder_outputs=(encoder_output,),
            cache=cache,
            use_cache=True,
            position_ids=position_ids,
        )
        return outputs.logits, self.read_state(cache)


def deployment_modules(model: FastformerPreTrainedModel) -> dict[str, DeploymentModule]:
    """The parts a runtime serves `model` with: `{"model": EncoderHead}` for an encoder model or head, `{"prefill",
    "decode_step"}` for a causal LM, `{"encoder", "decoder_step"}` for an encoder-decoder."""
    if isinstance(model, FastformerForCausalLM):
        return {"prefill": CausalLMPrefill(model), "decode_step": CausalLMDecodeStep(model)}
    if isinstance(model, FastformerForConditionalGeneration):
        return {"encoder": Seq2SeqEncoder(model), "decoder_step": Seq2SeqDecoderStep(model)}
    return {"model": EncoderHead(model)}


def export_program(
    module: DeploymentModule, inputs: tuple | None = None, dynamic: bool = True, max_length: int | None = None
) -> torch.export.ExportedProgram:
    """`torch.export.export` of `module`, traced on `inputs` (default `module.example_inputs()`: batch 2, length 9),
    with every axis of `module.dynamic_shapes(max_length)` dynamic, or (`dynamic=False`) every shape fixed to the
    inputs' (a program that then refuses any other shape)."""
    inputs = module.example_inputs() if inputs is None else inputs
    shapes = module.dynamic_shapes(max_length) if dynamic else None
    with torch.no_grad():
        return torch.export.export(module, inputs, dynamic_shapes=shapes)


def export_onnx(
    module: DeploymentModule,
    path: str | os.PathLike,
    program: torch.export.ExportedProgram | None = None,
    max_length: int | None = None,
    optimize: bool = True,
) -> "torch.onnx.ONNXProgram":
    """`module` as an ONNX model at `path` (`torch.onnx.export(..., dynamo=True)`, the weights inside the file),
    converted from `program` (default `export_program(module, max_length=max_length)`), with `module.input_names` /
    `output_names` and the dynamic axes named as in `module.axes()` (`batch`, `length`, ...); `optimize`: run
    onnxscript's graph optimizer (`torch.onnx.export`'s default; about a third of the conversion's time, while ONNX
    Runtime optimizes the graph again when it loads it). Needs the `deploy` extra (`onnx`, `onnxscript`). Returns the
    `ONNXProgram`."""
    program = export_program(module, max_length=max_length) if program is None else program
    with warnings.catch_warnings():  # each axis name is shared by several inputs on purpose
        warnings.filterwarnings("ignore", message="# The axis name")
        return torch.onnx.export(
            program,
            f=os.fspath(path),
            input_names=list(module.input_names),
            output_names=list(module.output_names),
            dynamic_shapes=module.dynamic_shapes(max_length),
            dynamo=True,
            external_data=False,
            optimize=optimize,
        )
