# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""What the model checks in, and derives from, its inputs before it computes anything.

Each check raises a `ValueError` that names the input and the problem: shapes and token ids (`validate_inputs`,
`check_mask_shape`, `check_multiple_choice_inputs`), positions and the position table (`resolve_position_ids`), where
packed documents begin (`document_starts`, `head_document_starts`), and the heads' labels (`check_class_ids`,
`sequence_classification_labels`, `question_answering_positions`, with `token_loss_kwargs` for their loss). Checks
that read tensor values are skipped while `torch.compile` traces. `sequence_parallel.shard_sequence` runs the same
checks on the whole batch.

This file imports only torch: it is copied beside `modeling_fastformer.py` into checkpoints (Hub custom code).
"""

import torch


def check_mask_shape(mask: torch.Tensor | None, name: str, shape: tuple[int, int], past_length: int = 0):
    """Raise unless `mask` is None or `(batch, past_length + seq)` for inputs of `shape` `(batch, seq)`."""
    if mask is not None and tuple(mask.shape) != (shape[0], past_length + shape[1]):
        expected = "(batch, seq)" if not past_length else f"(batch, {past_length} cached + {shape[1]} new tokens)"
        raise ValueError(
            f"`{name}` has shape {tuple(mask.shape)} but the input needs {expected} = "
            f"{(shape[0], past_length + shape[1])}."
        )


def validate_inputs(config, input_ids, attention_mask, inputs_embeds, past_length: int = 0) -> tuple[int, int]:
    """Check that exactly one of `input_ids` `(batch, seq)` (ids in `config`'s vocabulary; `config` may be None for
    `input_ids`, then only negative ids are refused) and `inputs_embeds` `(batch, seq, hidden)` is given, non-empty,
    with an `attention_mask` that fits; return `(batch, seq)`."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Specify exactly one of `input_ids` or `inputs_embeds`.")
    if input_ids is not None:
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (batch, seq), got {tuple(input_ids.shape)}.")
        shape = tuple(input_ids.shape)
    else:
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.hidden_size:
            raise ValueError(
                f"`inputs_embeds` must have shape (batch, seq, {config.hidden_size}), got {tuple(inputs_embeds.shape)}."
            )
        shape = tuple(inputs_embeds.shape[:2])
    if shape[1] == 0:
        raise ValueError("The input sequence is empty (seq length 0).")
    check_mask_shape(attention_mask, "attention_mask", shape, past_length)
    vocab_size = getattr(config, "vocab_size", None)  # None: only negative ids are refused
    if input_ids is not None and not torch.compiler.is_compiling():
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or (vocab_size is not None and high >= vocab_size):
            raise ValueError(
                f"`input_ids` contains ids outside the vocabulary [0, {vocab_size or 'vocab_size'}): min {low}, "
                f"max {high}."
            )
    return shape


# The keywords with which transformers' `DataCollatorWithFlattening` (and flash-attention packing) describe documents
# packed into one row.
PACKED_DOCUMENT_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")


def document_starts(position_ids, attention_mask, kwargs: dict, shape) -> torch.Tensor | None:
    """Where packed documents begin: `(batch, seq)` bool, True at the first position of every document but a row's
    first, or None when every row holds one document (the common case costs one comparison of `position_ids` with
    0). Read from, in this order: `seq_idx` `(batch, seq)` (the document index of each position), `cu_seq_lens_q`
    (flash-attention's cumulative document lengths over the `batch * seq` positions; `cu_seq_lens_k` must be the
    same), or `position_ids` that restart at 0 after a real token of the row (`DataCollatorWithFlattening`'s
    convention; a left-padded row, whose first real token may follow padding at any position, is not packed).
    `max_length_q` / `max_length_k` are accepted and not needed. Restarting `position_ids` are not looked for while
    `torch.compile` traces."""
    batch, seq = shape
    if kwargs.get("seq_idx") is not None:
        seq_idx = kwargs["seq_idx"]
        if tuple(seq_idx.shape) != (batch, seq):
            raise ValueError(f"`seq_idx` must have shape (batch, seq) = {(batch, seq)}, got {tuple(seq_idx.shape)}.")
        starts = seq_idx[:, 1:] != seq_idx[:, :-1]
    elif kwargs.get("cu_seq_lens_q") is not None:
        lengths = kwargs["cu_seq_lens_q"].flatten().long()
        other = kwargs.get("cu_seq_lens_k")
        if other is not None and not torch.equal(other.flatten().long().to(lengths.device), lengths):
            raise ValueError("`cu_seq_lens_k` must equal `cu_seq_lens_q`: Fastformer's attention is self-attention.")
        ends = lengths[1:]
        if (
            lengths.numel() < 2
            or int(lengths[0]) != 0
            or int(ends[-1]) != batch * seq
            or bool((ends < lengths[:-1]).any())
        ):
            raise ValueError(
                f"`cu_seq_lens_q` must rise from 0 to the number of positions, {batch * seq} = batch x seq; got "
                f"{lengths.tolist()}."
            )
        flat = torch.zeros(batch * seq + 1, dtype=torch.bool, device=lengths.device)
        flat[ends] = True  # position `end` begins the next document
        starts = flat[:-1].view(batch, seq)[:, 1:]
    elif position_ids is not None and position_ids.dim() == 2 and not torch.compiler.is_compiling():
        starts = position_ids[..., 1:] == 0  # (batch or 1, seq - 1)
        if bool(starts.any()) and attention_mask is not None:  # only a real token after a real token restarts
            real = attention_mask[:, -position_ids.shape[-1] :].bool()  # (batch, seq)
            starts = starts & real[:, 1:] & (real.cumsum(dim=-1)[:, :-1] > 0)
        starts = starts.expand(batch, seq - 1)
    else:
        return None
    if not bool(starts.any()):
        return None
    return torch.nn.functional.pad(starts, (1, 0), value=False)


def refuse_packed_documents(model_name: str, starts: torch.Tensor | None, reason: str):
    """Raise a `ValueError` when `starts` (`document_starts`) holds packed documents that `model_name` cannot keep
    apart, for `reason`."""
    if starts is not None:
        raise ValueError(
            f"This batch packs several documents into one row (as `DataCollatorWithFlattening` makes), which "
            f"{model_name} does not support: {reason}. Pad the batch instead (e.g. `DataCollatorWithPadding`), one "
            "document per row."
        )


def head_document_starts(input_ids, inputs_embeds, attention_mask, kwargs: dict) -> torch.Tensor | None:
    """`document_starts` read by a head from its own inputs (`position_ids` and the boundary keywords in `kwargs`),
    before its encoder runs; None when the inputs are missing (the encoder then names the problem)."""
    inputs = input_ids if input_ids is not None else inputs_embeds
    if inputs is None or inputs.dim() < 2:
        return None
    return document_starts(kwargs.get("position_ids"), attention_mask, kwargs, tuple(inputs.shape[:2]))


def document_position_ids(starts: torch.Tensor) -> torch.Tensor:
    """Positions that restart at 0 at every document start `(batch, seq)`: each document numbered as if alone."""
    index = torch.arange(starts.shape[1], device=starts.device).expand_as(starts)
    return index - torch.where(starts, index, 0).cummax(dim=1).values


def check_multiple_choice_inputs(input_ids, attention_mask, inputs_embeds) -> torch.Tensor:
    """Check a multiple-choice head's inputs: exactly one of `input_ids` `(batch, num_choices, seq)` and
    `inputs_embeds` `(batch, num_choices, seq, hidden)`, with an `attention_mask` `(batch, num_choices, seq)` or
    None; return the one given."""
    inputs = input_ids if input_ids is not None else inputs_embeds
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Specify exactly one of `input_ids` or `inputs_embeds`.")
    if inputs.dim() != (3 if input_ids is not None else 4):
        name = "input_ids" if input_ids is not None else "inputs_embeds"
        expected = "(batch, num_choices, seq)" if input_ids is not None else "(batch, num_choices, seq, hidden)"
        raise ValueError(f"`{name}` must have shape {expected}, got {tuple(inputs.shape)}.")
    if attention_mask is not None and attention_mask.shape != inputs.shape[:3]:
        raise ValueError(
            f"`attention_mask` has shape {tuple(attention_mask.shape)} but the input needs (batch, num_choices, "
            f"seq) = {tuple(inputs.shape[:3])}."
        )
    return inputs


def default_position_ids(causal: bool, seq: int, attention_mask=None, past_length: int = 0, device=None):
    """`(batch or 1, seq)` positions of the new tokens when none are given: `past_length + arange(seq)`, or, for a
    causal model given a mask, the number of real tokens before each one (so left padding does not shift positions,
    as in `generate()`)."""
    if causal and attention_mask is not None:
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -seq:]
    return torch.arange(past_length, past_length + seq, device=device).unsqueeze(0)


def check_position_limit(config, position_ids: torch.Tensor, causal: bool):
    """Raise when a position is past the position table (`max_position_embeddings`). The limit is on the positions
    themselves: padding never counts against it."""
    limit = config.max_position_embeddings
    if config.position_embedding_type != "absolute" or torch.compiler.is_compiling():
        return
    if int(position_ids.max()) >= limit:
        advice = "truncate the input or use a config with a larger position table"
        if causal:
            advice += f" (in generation: prompt and generated text together may hold at most {limit} real tokens)"
        raise ValueError(
            f"The input reaches position {int(position_ids.max())} but the position table holds {limit} positions "
            f"(`max_position_embeddings`): {advice}."
        )


def resolve_position_ids(config, causal: bool, shape, attention_mask, given, past_length: int = 0, device=None):
    """The positions of the new tokens `(batch or 1, seq)`: `given` (the caller's `position_ids`, shape-checked) or
    `default_position_ids`, checked against the position table; None when the config has no position table."""
    if config.position_embedding_type == "none":
        return None
    batch, seq = shape
    if given is None:
        given = default_position_ids(causal, seq, attention_mask, past_length, device)
    elif given.dim() != 2 or given.shape[-1] != seq or given.shape[0] not in (1, batch):
        raise ValueError(f"`position_ids` must have shape (batch, {seq}), got {tuple(given.shape)}.")
    check_position_limit(config, given, causal)
    return given


def check_class_ids(labels: torch.Tensor, num_classes: int | None, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Raise unless `labels` has `shape` and holds class ids in `[0, num_classes)` or -100 (`num_classes` None: any
    integers); return them as int64, the dtype cross-entropy needs (int32, int16 or uint8 ids are accepted)."""
    if tuple(labels.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape}, got {tuple(labels.shape)}.")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"`{name}` must hold integer class ids, got dtype {labels.dtype}.")
    if num_classes is not None and not torch.compiler.is_compiling():
        valid = (labels == -100) | ((labels >= 0) & (labels < num_classes))
        if not bool(valid.all()):
            raise ValueError(
                f"`{name}` must be class ids in [0, {num_classes}) (or -100 to ignore); got "
                f"{labels[~valid].unique().tolist()}."
            )
    return labels.long()


def token_loss_kwargs(counted_labels: torch.Tensor, kwargs: dict, ignore_index: int = -100) -> dict:
    """`kwargs` for the library's summed token losses (`self.loss_function`, `fixed_cross_entropy`), with
    `num_items_in_batch` defaulting to the number of labels that are not `ignore_index` (at least 1): the loss is
    then their mean, and 0 (not NaN) when every label is ignored, e.g. a batch in which the masking collator masked
    nothing. The `Trainer` passes the count of the whole optimizer step instead (all accumulation micro-batches and
    processes): the exact global token mean."""
    if kwargs.get("num_items_in_batch") is None:
        kwargs = {**kwargs, "num_items_in_batch": (counted_labels != ignore_index).sum().clamp(min=1)}
    return kwargs


def sequence_classification_labels(config, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Set `config.problem_type` from the labels when unset (the library's rule, for every integer dtype: class ids;
    floats: multi-hot targets), check the labels' shape and values against it, and give class ids int64 and
    regression and multi-label targets the logits' `(batch, num_labels)` dtype."""
    batch, num_labels = logits.shape
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif not (labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "single_label_classification":
        return check_class_ids(labels.view(-1), num_labels, "labels", (batch,))
    expected = [(batch, num_labels)]  # multi-label, or regression of `num_labels` targets
    if config.problem_type == "regression" and num_labels == 1:
        expected.append((batch,))
    if tuple(labels.shape) not in expected:
        kind = "Regression" if config.problem_type == "regression" else "Multi-label"
        raise ValueError(
            f"{kind} `labels` for {num_labels} label(s) must have shape {' or '.join(map(str, expected))}, "
            f"got {tuple(labels.shape)}."
        )
    return labels.to(logits.dtype)


def question_answering_positions(start_positions, end_positions, batch: int, seq: int):
    """Check the span targets (integer `(batch,)` or `(batch, 1)`, both or neither given) and return them `(batch,)`
    int64 with every example whose start or end lies outside `[0, seq)` (an answer cut off by truncation, or a
    negative index such as -1 or -100) set to `seq` in both, the index the loss ignores, as a span without its start
    or its end is no target. (transformers' own QA heads clamp a negative index to 0 and train it as the first
    token.)"""
    if (start_positions is None) != (end_positions is None):
        raise ValueError("Pass both `start_positions` and `end_positions` (or neither).")
    checked = []
    for name, positions in (("start_positions", start_positions), ("end_positions", end_positions)):
        positions = positions.squeeze(-1) if positions.dim() == 2 else positions
        if tuple(positions.shape) != (batch,) or positions.is_floating_point():
            raise ValueError(
                f"`{name}` must be integer token indices of shape ({batch},), got {positions.dtype} of shape "
                f"{tuple(positions.shape)}."
            )
        checked.append(positions.long())
    start, end = checked
    outside = (start < 0) | (start >= seq) | (end < 0) | (end >= seq)
    return start.masked_fill(outside, seq), end.masked_fill(outside, seq)


def check_encoder_inputs(cross_attention: bool, encoder_hidden_states, encoder_attention_mask):
    """Raise unless a decoder with cross-attention gets an encoder output (with a mask that fits it) and any other
    model none."""
    if not cross_attention:
        if encoder_hidden_states is not None:
            raise ValueError("`encoder_hidden_states` needs a decoder with cross-attention (`add_cross_attention`).")
        return
    if encoder_hidden_states is None:
        raise ValueError("This decoder has cross-attention: pass `encoder_hidden_states`.")
    if encoder_attention_mask is not None and encoder_attention_mask.shape != encoder_hidden_states.shape[:2]:
        raise ValueError(
            f"`encoder_attention_mask` has shape {tuple(encoder_attention_mask.shape)} but the encoder output "
            f"has {tuple(encoder_hidden_states.shape[:2])} tokens (batch, enc_seq)."
        )


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None):
    """Decoder inputs from labels: `[start, y_1, ..., y_{n-1}]`, with the `-100` of ignored labels made padding."""
    if decoder_start_token_id is None:
        raise ValueError("`config.decoder_start_token_id` must be set to build decoder inputs from `labels`.")
    if pad_token_id is None:
        raise ValueError("`config.pad_token_id` must be set to build decoder inputs from `labels`.")
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)
