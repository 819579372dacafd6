#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Does masked-LM pretraining (`run_mlm.py`) help the main job's classifier? Trains it twice, same run, same split:

  - `scratch`: exactly the main job (`fastformer-classify`): its data, fixed stratified split, model settings,
    training arguments and tokenizer;
  - `pretrained`: the same, but the encoder (embeddings and Fastformer layers) starts from a `run_mlm.py`
    checkpoint; only the pooler and the classifier are new.

and prints their test accuracy and macro-F1 side by side. Every option of `fastformer-classify` applies to both arms:

    python examples/run_mlm.py --output_dir outputs/mlm --max_steps 200    # defaults: the classifier's shape
    python examples/pretraining_helps.py --pretrained outputs/mlm --output_dir outputs/pretraining-helps

The checkpoint must have the classifier's shape (width, depth, heads, feed-forward size, vocabulary) and a position
table of at least `--max_seq_length` positions; anything else is refused with the mismatch named.

`--arms pretrained` trains only the pretrained arm: the scratch arm is exactly `fastformer-classify` with the same
options and seed (same data, split, tokenization, seeding order), so a main-job run can stand in for it.
"""

import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import DataCollatorWithPadding, Trainer, set_seed

from fastformer import FastformerConfig, FastformerForSequenceClassification
from fastformer.classify import run_classification as job
from fastformer.classify.reporting import markdown_table


ARMS = ("scratch", "pretrained")
SHAPE = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "share_query_value",
    "attention_logit_layout",
    "share_layer_parameters",
    "position_embedding_type",
)


def pretrained_classifier(pretrained: str, scratch: FastformerForSequenceClassification):
    """The main job's classifier (config of `scratch`) with the encoder weights of a masked-LM checkpoint."""
    source = FastformerConfig.from_pretrained(pretrained)
    wanted = scratch.config
    mismatched = [
        f"{name}: checkpoint {getattr(source, name)}, classifier {getattr(wanted, name)}"
        for name in SHAPE
        if getattr(source, name) != getattr(wanted, name)
    ]
    if source.max_position_embeddings < wanted.max_position_embeddings:
        mismatched.append(
            f"max_position_embeddings: checkpoint {source.max_position_embeddings} < --max_seq_length "
            f"{wanted.max_position_embeddings}"
        )
    if mismatched:
        sys.exit("pretraining_helps.py: error: the checkpoint does not fit the classifier: " + "; ".join(mismatched))
    wanted.max_position_embeddings = source.max_position_embeddings  # a longer table is kept (inputs stay cut)
    model = FastformerForSequenceClassification.from_pretrained(pretrained, config=wanted)
    checkpoint = load_file(Path(pretrained) / "model.safetensors")
    for name, tensor in model.fastformer.state_dict().items():  # every encoder weight comes from the checkpoint
        if not torch.equal(tensor, checkpoint.get(f"fastformer.{name}", torch.empty(0))):
            sys.exit(f"pretraining_helps.py: error: {pretrained} does not hold the encoder weight fastformer.{name}")
    return model


def train_and_test(name, model, tokenizer, train_set, test_set, training_args) -> dict:
    training_args.output_dir = str(Path(training_args.output_dir).parent / name)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=test_set,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=job.compute_metrics_fn(),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    metrics = trainer.evaluate()
    return {
        "init": name,
        "accuracy": metrics["eval_accuracy"],
        "macro_f1": metrics["eval_macro_f1"],
        "train_seconds": seconds,
    }


def pop_option(argv: list[str], name: str) -> str | None:
    """Removes `name VALUE` from `argv` and returns VALUE; None when `name` is absent, an error when VALUE is."""
    if name not in argv:
        return None
    at = argv.index(name)
    if at + 1 >= len(argv) or argv[at + 1].startswith("--"):
        sys.exit(f"pretraining_helps.py: error: {name} needs a value")
    value = argv[at + 1]
    del argv[at : at + 2]
    return value


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    pretrained = pop_option(argv, "--pretrained")
    if pretrained is None:
        sys.exit("pretraining_helps.py: error: pass --pretrained DIR (a run_mlm.py checkpoint)")
    arms_option = pop_option(argv, "--arms")
    arms = ARMS if arms_option is None else tuple(arms_option.split(","))
    if any(arm not in ARMS for arm in arms):
        sys.exit(f"pretraining_helps.py: error: --arms takes a comma-separated subset of {','.join(ARMS)}")
    model_args, data_args, training_args = job.parse_args(argv, prog="pretraining_helps.py")
    if model_args.model_type != "fastformer":
        sys.exit("pretraining_helps.py: error: the masked-LM checkpoint is a Fastformer: --model_type fastformer")
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    training_args.output_dir = str(output_dir / "trainer")

    data = job.load_data(data_args)
    (train_texts, train_labels), (test_texts, test_labels) = data["train"], data["test"]
    tokenizer = job.load_tokenizer(model_args, data_args.max_seq_length)
    train_set, _ = job.tokenize(tokenizer, train_texts, train_labels, data_args.max_seq_length, "train")
    test_set, _ = job.tokenize(tokenizer, test_texts, test_labels, data_args.max_seq_length, "test")

    rows = []
    for name in arms:
        set_seed(training_args.seed)
        model = job.build_model(model_args, tokenizer, data_args.max_seq_length, data["label_names"])
        if name == "pretrained":
            model = pretrained_classifier(pretrained, model)
        rows.append(train_and_test(name, model, tokenizer, train_set, test_set, training_args))

    lines = [
        markdown_table(
            ["encoder init", "test accuracy", "test macro-F1", "train s"],
            [[r["init"], f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}", f"{r['train_seconds']:.0f}"] for r in rows],
        )
    ]
    if len(rows) == 2:
        gain = rows[1]["accuracy"] - rows[0]["accuracy"]
        lines.append(
            f"\npretrained - scratch: accuracy {gain:+.4f} on {len(test_set)} test documents "
            f"(one seed; a binomial standard error here is about {(0.25 / len(test_set)) ** 0.5:.3f})"
        )
    print("\n".join(lines))
    result = {
        "pretrained": pretrained,
        "rows": rows,
        "test_docs": len(test_set),
        "seed": training_args.seed,
        "max_seq_length": data_args.max_seq_length,
    }
    (output_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
