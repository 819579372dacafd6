# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Convert a classifier trained with the authors' official PyTorch code into `FastformerForSequenceClassification`.

The official notebook (`wuch15/Fastformer`, `Fastformer.ipynb`) trains

    Model(
      word_embedding:   Embedding(vocab, hidden, padding_idx=0)
      fastformer_model: FastformerEncoder(
        encoders.N:          FastformerLayer (attention.self.{query,query_att,key,key_att,transform},
                             attention.output.{dense,LayerNorm}, intermediate.dense, output.{dense,LayerNorm})
        position_embeddings: Embedding(max_position_embeddings, hidden)
        LayerNorm
        poolers.0:           AttentionPooling (att_fc1, att_fc2))
      dense_linear:     Linear(hidden, num_labels))

from a `BertConfig` read from `fastformer.json`, and marks padding by token id 0 (`mask = input_ids.bool()`).
This module maps such a state dict (saved with `torch.save(model.state_dict(), path)`) and that JSON onto a
`FastformerForSequenceClassification` with the official defaults (query-value sharing, dense logit layout,
learned absolute positions, attention pooler, `pad_token_id=0`). A key it does not know, a missing key, a shape
that does not fit the config, or a config entry it cannot honour raises a `ValueError` that names it: nothing is
dropped or guessed. The converted model gives the official logits when called with
`attention_mask = (input_ids != 0)`.

    fastformer-convert-official --checkpoint model.pt --config fastformer.json --output_dir converted \
        [--push_to_hub user/name [--private]]

The official code has no tokenizer object (its `word_dict` is built in the notebook): ship the vocabulary with
the converted checkpoint yourself (for example a `FastformerTokenizer` over the same ids).
"""

import argparse
import json
import re
from pathlib import Path

import torch

from .configuration_fastformer import FastformerConfig
from .modeling_fastformer import FastformerForSequenceClassification


# fastformer.json entries copied as they are
_CONFIG_COPIED = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "max_position_embeddings",
    "layer_norm_eps",
    "initializer_range",
)
# fastformer.json / BertConfig entries the official Model never reads (it sizes its word embedding from its own
# word_dict, has no token types, and enable_fp16 is a training switch): accepted and not used
_CONFIG_UNUSED = ("vocab_size", "type_vocab_size", "enable_fp16", "attention_probs_dropout_prob")

# official name -> ours; N is the layer index
_TOP_LEVEL = {
    "word_embedding.weight": "fastformer.embeddings.word_embeddings.weight",
    "fastformer_model.position_embeddings.weight": "fastformer.embeddings.position_embeddings.weight",
    "fastformer_model.LayerNorm.weight": "fastformer.embeddings.LayerNorm.weight",
    "fastformer_model.LayerNorm.bias": "fastformer.embeddings.LayerNorm.bias",
    "fastformer_model.poolers.0.att_fc1.weight": "pooler.att_fc1.weight",
    "fastformer_model.poolers.0.att_fc1.bias": "pooler.att_fc1.bias",
    "fastformer_model.poolers.0.att_fc2.weight": "pooler.att_fc2.weight",
    "fastformer_model.poolers.0.att_fc2.bias": "pooler.att_fc2.bias",
    "dense_linear.weight": "classifier.weight",
    "dense_linear.bias": "classifier.bias",
}
_LAYER_MODULES = (
    "attention.self.query",
    "attention.self.query_att",
    "attention.self.key",
    "attention.self.key_att",
    "attention.self.transform",
    "attention.output.dense",
    "attention.output.LayerNorm",
    "intermediate.dense",
    "output.dense",
    "output.LayerNorm",
)
_LAYER_KEY = re.compile(r"fastformer_model\.encoders\.(\d+)\.(.+)\.(weight|bias)")


def official_config_to_fastformer(official: dict, state_dict: dict[str, torch.Tensor]) -> FastformerConfig:
    """Builds the `FastformerConfig` of an official checkpoint from its `fastformer.json` and its state dict.

    `vocab_size` and `num_labels` come from the shapes of `word_embedding.weight` (vocab, hidden) and
    `dense_linear.weight` (labels, hidden); `pooler_type="weightpooler"` becomes the additive-attention pooler.
    """
    unknown = sorted(set(official) - set(_CONFIG_COPIED) - set(_CONFIG_UNUSED) - {"pooler_type"})
    if unknown:
        raise ValueError(
            f"fastformer.json has entries the converter does not understand: {unknown}. Known entries: "
            f"{sorted(_CONFIG_COPIED + _CONFIG_UNUSED + ('pooler_type',))}."
        )
    missing = [name for name in ("hidden_size", "num_hidden_layers", "num_attention_heads") if name not in official]
    if missing:
        raise ValueError(f"fastformer.json lacks {missing}: the architecture cannot be rebuilt without them.")
    if official.get("pooler_type", "weightpooler") != "weightpooler":
        raise ValueError(
            f"pooler_type={official['pooler_type']!r}: the official FastformerEncoder builds a pooler only for "
            "'weightpooler' (its AttentionPooling), so a classifier with this config cannot have been trained."
        )
    for name in ("word_embedding.weight", "dense_linear.weight"):
        if name not in state_dict:
            raise ValueError(f"The state dict has no {name!r}: it is not a state dict of the official `Model`.")
    vocab_size, embedding_width = state_dict["word_embedding.weight"].shape
    num_labels = state_dict["dense_linear.weight"].shape[0]
    if embedding_width != official["hidden_size"]:
        raise ValueError(
            f"word_embedding.weight has width {embedding_width} but fastformer.json says hidden_size="
            f"{official['hidden_size']}: the official encoder adds them, so they must match."
        )
    return FastformerConfig(
        **{name: official[name] for name in _CONFIG_COPIED if name in official},
        vocab_size=vocab_size,
        num_labels=num_labels,
        pad_token_id=0,  # the official Model: Embedding(padding_idx=0) and mask = input_ids.bool()
        pooler_type="attention",
        share_query_value=True,
        attention_logit_layout="dense",
        position_embedding_type="absolute",
        share_layer_parameters=False,
    )


def rename_official_key(name: str, num_layers: int) -> str:
    """Our parameter name for one official parameter name; `ValueError` for a name the official Model lacks."""
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name]
    match = _LAYER_KEY.fullmatch(name)
    if match and match.group(2) in _LAYER_MODULES:
        layer = int(match.group(1))
        if layer >= num_layers:
            raise ValueError(
                f"{name!r} is for layer {layer}, but fastformer.json says num_hidden_layers={num_layers}."
            )
        return f"fastformer.encoder.layer.{layer}.{match.group(2)}.{match.group(3)}"
    if name.startswith("fastformer_model.poolers.") and not name.startswith("fastformer_model.poolers.0."):
        raise ValueError(
            f"{name!r}: the checkpoint has more than one pooler (FastformerEncoder(pooler_count>1)); "
            "FastformerForSequenceClassification has one."
        )
    raise ValueError(f"{name!r} is not a parameter of the official Fastformer `Model`; refusing to guess its role.")


def convert_official_state_dict(
    state_dict: dict[str, torch.Tensor], official_config: dict
) -> FastformerForSequenceClassification:
    """Returns a `FastformerForSequenceClassification` (eval mode) holding exactly the official weights.

    Every official tensor is used once, every parameter of ours is filled, and shapes must match; otherwise a
    `ValueError` names the offending keys.
    """
    if len(state_dict) and all(name.startswith("module.") for name in state_dict):
        state_dict = {name[len("module.") :]: tensor for name, tensor in state_dict.items()}  # saved from DataParallel
    not_tensors = [name for name, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"Not a state dict: {not_tensors[:5]} are not tensors (save `model.state_dict()`).")
    config = official_config_to_fastformer(official_config, state_dict)
    model = FastformerForSequenceClassification(config)
    expected = model.state_dict()
    renamed = {rename_official_key(name, config.num_hidden_layers): tensor for name, tensor in state_dict.items()}
    missing = sorted(set(expected) - set(renamed))
    if missing:
        official_names = {ours: theirs for theirs, ours in _TOP_LEVEL.items()}
        raise ValueError(
            "The official state dict lacks parameters the model needs: "
            f"{[official_names.get(name, name) for name in missing]}."
        )
    for (official_name, tensor), name in zip(state_dict.items(), renamed):
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"{official_name!r} has shape {tuple(tensor.shape)}, but the config (from fastformer.json and the "
                f"embedding/classifier shapes) needs {tuple(expected[name].shape)} for {name!r}."
            )
    model.load_state_dict({name: tensor.to(expected[name].dtype) for name, tensor in renamed.items()}, strict=True)
    return model.eval()


def load_official_checkpoint(checkpoint: str | Path, config: str | Path) -> FastformerForSequenceClassification:
    """Reads `torch.save(model.state_dict())` output (tensors only, loaded with `weights_only=True`) and
    `fastformer.json`, and converts them."""
    state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict):
        raise ValueError(f"{checkpoint} holds a {type(state_dict).__name__}, not a state dict.")
    return convert_official_state_dict(state_dict, json.loads(Path(config).read_text()))


def main(argv=None) -> FastformerForSequenceClassification:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="torch.save(model.state_dict()) of the official Model")
    parser.add_argument("--config", required=True, help="the fastformer.json the official model was built from")
    parser.add_argument("--output_dir", required=True, help="where to write the converted checkpoint")
    parser.add_argument("--push_to_hub", metavar="REPO_ID", help="also push the converted checkpoint to this repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    args = parser.parse_args(argv)
    model = load_official_checkpoint(args.checkpoint, args.config)
    model.save_pretrained(args.output_dir)  # weights, config with auto_map, and the code files
    if args.push_to_hub:
        model.push_to_hub(
            args.push_to_hub, private=args.private, commit_message="Convert official Fastformer checkpoint"
        )
    print(f"converted {sum(p.numel() for p in model.parameters()):,} parameters into {args.output_dir}")
    return model


def cli() -> None:
    """Console entry point: `fastformer-convert-official`; a bad input ends it with one line saying why."""
    try:
        main()
    except (ValueError, OSError) as error:
        raise SystemExit(f"fastformer-convert-official: error: {error}") from None


if __name__ == "__main__":
    cli()
