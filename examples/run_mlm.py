#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Pretrain a Fastformer masked language model (`FastformerForMaskedLM`), in the style of transformers' `run_mlm.py`.

Texts are tokenized, concatenated and cut into blocks of `--max_seq_length` tokens (`group_texts`); 15% of the
tokens of every training block are masked anew each epoch (BERT's 80/10/10 rule, by `DataCollatorForLanguageModeling`)
and the `Trainer` reports the held-out loss and perplexity. Each block's masks come from its own seed (seed, epoch,
block index), so a run resumed from a checkpoint (`--resume_from_checkpoint`) or spread over several processes
trains on exactly the masks of the uninterrupted single-process run; the held-out blocks are masked once, so every
run is measured on the same masked tokens.

`--packing` keeps documents as units instead of concatenating them: every document is tokenized on its own (with its
[CLS] and [SEP]) and, when longer than `--max_seq_length`, cut into consecutive pieces of `--max_seq_length` tokens
(the last one shorter; no token is dropped). Each piece is masked like a block, from the seed (seed, epoch, piece
index), and `DataCollatorWithFlattening` then lays the `--per_device_train_batch_size` pieces of a batch one after
another in a single row, with `position_ids` restarting at 0 at each piece: the model keeps the pieces apart exactly
(every token attends only to its own piece, as if the piece ran alone), so no token attends across a document
boundary and no step computes padding. The guarantees above hold unchanged: a piece's masks depend only on (seed,
epoch, piece), a resumed run trains on exactly the uninterrupted run's batches and masks, and several processes
(each flattening its own share of the global batch) compute the single process's gradient up to the float summation
order. Without `--packing` nothing pads either (every block is full), but a block joins the end of one document to
the start of the next and its tokens attend across that boundary.

The held-out measure is the same with and without `--packing`: the same held-out blocks, masked once with the same
seeds, so both runs predict exactly the same masked tokens. With `--packing` each block is given `position_ids` that
restart at 0 where a document starts inside it, so that a token attends only to its own document's part of the
block, as in packed training; without it the whole block is one sequence.

Openly licensed corpora, fetched from package registries at run time and cached (never shipped):
  - `python-docs`: the reST sources of the Python 3.11 documentation (Debian `python3.11-doc`, PSF licence;
    `apt-get download` + `dpkg-deb -x`), 497 documents, 1.4 M words;
  - `enwiki-sample`: 106 English Wikipedia articles (CC BY-SA) from the test data of the `gensim==4.4.0` wheel
    (`pip download`), wiki markup stripped, 0.45 M words;
  - `jargon`: the Jargon File 4.4.7 (public domain, Debian `jargon-text`), 117 pieces of ~2,000 words, 0.24 M words;
  - `botchan`: Soseki's Botchan in English (Project Gutenberg, public domain), from the test data of the
    `sentencepiece==0.2.3` sdist: one document (its file has no blank line to cut at), 51 k words;
  - `pang-lee-train`: the 1,200 *training* reviews of the main job's fixed stratified split of Pang & Lee
    (`fastformer-classify`'s own loader and split, never a test review; labels dropped), 0.89 M words. Not openly
    licensed (a research-use copy, fetched from PyPI and cached like the main job's); derived anew on every run.
or your own plain-text files (`--train_file`, `--validation_file`: one example per line, as `load_dataset("text")`).

    python examples/run_mlm.py --output_dir outputs/mlm --max_steps 200                 # both corpora
    python examples/run_mlm.py --output_dir outputs/mlm --dataset_name python-docs --max_seq_length 512
    python examples/run_mlm.py --output_dir outputs/mlm --train_file my.txt --max_seq_length 512 --hidden_size 256
    python examples/run_mlm.py --output_dir outputs/mlm --dataset_name python-docs --max_seq_length 512 --packing
    python examples/run_mlm.py --output_dir outputs/mlm --save_steps 500 --resume_from_checkpoint last
    accelerate launch --multi_gpu --num_processes 2 examples/run_mlm.py --output_dir outputs/mlm --use_cpu  # 2 CPU
    torchrun --nproc_per_node 2 examples/run_mlm.py --output_dir outputs/mlm --use_cpu        # processes (gloo)
    python examples/run_mlm.py --help                     # every option, including all of `TrainingArguments`

The tokenizer is the package's `FastformerTokenizer` (the shipped uncased WordPiece vocabulary, the one the
classification job uses) unless `--tokenizer_name` names another; the checkpoint in `--output_dir` (model,
tokenizer, custom code) loads with `AutoModelForMaskedLM` / `pipeline("fill-mask")` and, as the encoder of a
classifier, with `FastformerForSequenceClassification.from_pretrained(output_dir, num_labels=...)`.
"""

import logging
from dataclasses import dataclass, field
from itertools import chain

import datasets
import numpy as np
import torch
from transformers import (
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    DataCollatorWithFlattening,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from fastformer import FastformerForMaskedLM
from fastformer.classify import language_modeling
from fastformer.classify.language_modeling import (
    LanguageModelArguments,
    LanguageModelingDataArguments,
    LanguageModelingError,
)


logger = logging.getLogger(__name__)

PROG = "run_mlm.py"


@dataclass
class ModelArguments(LanguageModelArguments):
    """The model: a new Fastformer of the given size (by default the shape of the main job's classifier, so that
    `examples/pretraining_helps.py` can start it from the checkpoint), or `--model_name_or_path` to continue."""

    max_position_embeddings: int | None = field(
        default=None,
        metadata={
            "help": "Size of the position table (new model only); default: --max_seq_length. Make it the "
            "longest input the fine-tuned model will read."
        },
    )


@dataclass
class DataTrainingArguments(LanguageModelingDataArguments):
    """The text (`LanguageModelingDataArguments`) and how it is masked."""

    mlm_probability: float = field(default=0.15, metadata={"help": "Fraction of the tokens to mask."})
    eval_mask_seed: int = field(default=1234, metadata={"help": "Seed of the fixed masking of the held-out blocks."})


def parse_args(argv=None):
    """The options from `argv` (default: the command line, or the one JSON file named there); a bad option ends the
    process with one line `run_mlm.py: error: ...` (exit status 2). Defaults: `language_modeling.TRAINING_DEFAULTS`,
    dropout 0.1, batches of 4 blocks (8,192 tokens a step with the default 2,048-token blocks)."""
    return language_modeling.parse_script_args(
        PROG,
        ModelArguments,
        DataTrainingArguments,
        __doc__,
        argv,
        hidden_dropout_prob=0.1,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
    )


# ----------------------------------------------------------------------------------------------------------------
# masking


def block_seed(*keys: int) -> int:
    """A 64-bit seed derived from integers (`numpy.random.SeedSequence`: distinct keys give independent streams)."""
    return int(np.random.SeedSequence([int(key) for key in keys]).generate_state(1, dtype=np.uint64)[0])


class BlockMaskingCollator:
    """Masks training blocks as `DataCollatorForLanguageModeling` does (`mlm_probability` of the non-special tokens:
    80% become `[MASK]`, 10% a random token, 10% stay; the others get label -100), but draws the masks of block `i`
    in epoch `e` from a generator seeded with `(seed, e, i)` instead of one running generator.

    A block's masks then depend on nothing else: not on the batch order, the number of processes, nor on where a
    run was interrupted. A run resumed from a checkpoint, or spread over several processes, masks every block exactly
    as the uninterrupted single-process run does; each epoch still masks anew (dynamic masking). `MaskingEpoch`
    tells the collator the epoch. Held-out batches arrive already masked (`mask_held_out`) and are only stacked.
    """

    def __init__(self, tokenizer, mlm_probability: float, seed: int):
        self.masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability)
        self.seed = seed
        self.epoch = 0

    def mask(self, input_ids: list[int], special_tokens_mask: list[int], seed: int) -> tuple[list[int], list[int]]:
        self.masker.generator = torch.Generator().manual_seed(seed)  # read by `torch_mask_tokens`
        try:
            inputs, labels = self.masker.torch_mask_tokens(
                torch.tensor([input_ids]), torch.tensor([special_tokens_mask], dtype=torch.bool)
            )
        finally:
            self.masker.generator = None
        return inputs[0].tolist(), labels[0].tolist()

    def mask_features(self, features: list[dict]) -> list[dict]:
        """Each training feature masked from its own seed `(seed, epoch, block)`: `input_ids`, `attention_mask`,
        `labels`."""
        masked = []
        for feature in features:
            ids, labels = self.mask(
                feature["input_ids"],
                feature["special_tokens_mask"],
                block_seed(self.seed, self.epoch, feature["block"]),
            )
            masked.append({"input_ids": ids, "attention_mask": feature["attention_mask"], "labels": labels})
        return masked

    def __call__(self, features: list[dict]) -> dict:
        if "labels" not in features[0]:
            features = self.mask_features(features)
        return default_data_collator(features)


class PackedMaskingCollator(BlockMaskingCollator):
    """`--packing`: masks every document piece exactly as `BlockMaskingCollator` masks a block (from the seed
    `(seed, epoch, piece index)`), then `DataCollatorWithFlattening` lays the masked pieces of the batch one after
    another in one row of shape `(1, total tokens)` with `position_ids` restarting at 0 at each piece (no padding, no
    `attention_mask`). The row's `labels` are the pieces' masking labels, concatenated: the flattening collator's
    -100 at each piece's first token is not kept, since a piece cut out of a long document may start with a masked
    token. Held-out batches (already masked, with `labels` and `position_ids`) are only stacked."""

    def __init__(self, tokenizer, mlm_probability: float, seed: int):
        super().__init__(tokenizer, mlm_probability, seed)
        self.flatten = DataCollatorWithFlattening()

    def __call__(self, features: list[dict]) -> dict:
        if "labels" in features[0]:
            return default_data_collator(features)
        masked = self.mask_features(features)
        batch = self.flatten([{"input_ids": feature["input_ids"]} for feature in masked])
        batch["labels"] = torch.tensor([list(chain.from_iterable(feature["labels"] for feature in masked))])
        return batch


class MaskingEpoch(TrainerCallback):
    """Keeps `BlockMaskingCollator.epoch` equal to the `Trainer`'s epoch (also after resuming)."""

    def __init__(self, collator: BlockMaskingCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(state.epoch or 0)  # `state.epoch` is exactly e when epoch e begins


def mask_held_out(dataset: datasets.Dataset, collator: BlockMaskingCollator, seed: int) -> datasets.Dataset:
    """The held-out blocks masked once, block `i` with seed `(seed, i)`: every run is evaluated on the same masked
    tokens, whatever its seed, number of processes or interruptions."""

    def mask(row):
        ids, labels = collator.mask(row["input_ids"], row["special_tokens_mask"], block_seed(seed, row["block"]))
        return {"input_ids": ids, "labels": labels}

    return dataset.map(mask, remove_columns=["special_tokens_mask", "block"], desc="masking the held-out blocks")


# ----------------------------------------------------------------------------------------------------------------
# the job


def load_tokenizer(model_args: ModelArguments, data_args: DataTrainingArguments):
    """`language_modeling.load_tokenizer`; a tokenizer without a mask token raises `LanguageModelingError`."""
    tokenizer = language_modeling.load_tokenizer(model_args, data_args)
    if tokenizer.mask_token is None:
        raise LanguageModelingError("the tokenizer has no mask token")
    return tokenizer


def prepare_data(data_args: DataTrainingArguments, training_args: TrainingArguments, tokenizer):
    """Returns `(train_set, held_out_blocks, collator)`: training blocks (`input_ids`, `attention_mask`,
    `special_tokens_mask`, `block` index), held-out blocks masked once (`input_ids`, `attention_mask`, `labels`).

    With `--packing` the training set holds document pieces instead of blocks (same columns, `block` being the piece
    index), the held-out blocks (the same ones, masked the same way) also carry `position_ids` restarting at every
    document start, and the collator is a `PackedMaskingCollator`."""
    train_set, eval_set = language_modeling.training_and_held_out_sets(
        data_args, training_args, tokenizer, special_tokens_mask=True
    )
    train_set = train_set.add_column("block", list(range(len(train_set))))
    eval_set = eval_set.add_column("block", list(range(len(eval_set))))
    collator_class = PackedMaskingCollator if data_args.packing else BlockMaskingCollator
    collator = collator_class(tokenizer, data_args.mlm_probability, seed=training_args.seed)
    held_out = mask_held_out(eval_set, collator, data_args.eval_mask_seed)
    if data_args.packing:
        held_out = held_out.map(
            lambda row: {"position_ids": language_modeling.document_positions(row["document_start"])},
            remove_columns=["document_start"],
            desc="position ids restarting at every document",
        )
    return train_set, held_out, collator


def build_model(model_args: ModelArguments, data_args: DataTrainingArguments, tokenizer):
    """The checkpoint of `--model_name_or_path` (`language_modeling.load_checkpoint`), else a new
    `FastformerForMaskedLM` of the size options with `--max_position_embeddings` positions (default
    `--max_seq_length`; fewer raises `LanguageModelingError`)."""
    if model_args.model_name_or_path:
        return language_modeling.load_checkpoint(AutoModelForMaskedLM, model_args, data_args, tokenizer)
    config = language_modeling.new_config(
        model_args, tokenizer, max_position_embeddings=model_args.max_position_embeddings or data_args.max_seq_length
    )
    if config.max_position_embeddings < data_args.max_seq_length:
        raise LanguageModelingError("--max_position_embeddings must be at least --max_seq_length")
    return FastformerForMaskedLM(config)


@language_modeling.exit_on_error(PROG)
def run(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: TrainingArguments,
    callbacks: list[TrainerCallback] | None = None,
) -> dict:
    """Pretrains, saves the model and tokenizer into `--output_dir` and returns the metrics (also written to
    `all_results.json`; `language_modeling.train_and_evaluate`). `callbacks`: extra `TrainerCallback`s (for
    programmatic use). Bad data ends the process with one line `run_mlm.py: error: ...`."""
    if data_args.max_seq_length < 8:
        raise LanguageModelingError(f"--max_seq_length must be at least 8, got {data_args.max_seq_length}")
    if not 0 < data_args.mlm_probability < 1:
        raise LanguageModelingError(f"--mlm_probability must lie in (0, 1), got {data_args.mlm_probability}")
    resume = language_modeling.resolve_checkpoint(training_args)
    set_seed(training_args.seed)
    tokenizer = load_tokenizer(model_args, data_args)
    train_set, eval_set, collator = prepare_data(data_args, training_args, tokenizer)
    training_args.remove_unused_columns = False  # the collator reads `block` and `special_tokens_mask`
    model = build_model(model_args, data_args, tokenizer)
    callbacks = [MaskingEpoch(collator), *(callbacks or [])]
    return language_modeling.train_and_evaluate(
        model, tokenizer, training_args, train_set, eval_set, collator, callbacks, resume
    )


def main(argv=None, callbacks: list[TrainerCallback] | None = None) -> dict:
    """Pretrains a masked LM as the command line (`argv`, default `sys.argv[1:]`) asks, by
    `language_modeling.script_main`; returns the metrics."""
    return language_modeling.script_main(PROG, parse_args, run, logger, argv, callbacks)


if __name__ == "__main__":
    main()
