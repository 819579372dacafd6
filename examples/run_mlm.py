#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Pretrain a Fastformer masked language model (`FastformerForMaskedLM`), in the style of transformers' `run_mlm.py`.

Texts are tokenized, concatenated and cut into blocks of `--max_seq_length` tokens (`group_texts`); 15% of the
tokens of every training block are masked anew each epoch (BERT's 80/10/10 rule, by `DataCollatorForLanguageModeling`)
and the `Trainer` reports the held-out loss and perplexity. Each block's masks come from its own seed (seed, epoch,
block index), so a run resumed from a checkpoint (`--resume_from_checkpoint`) or spread over several processes
trains on exactly the masks of the uninterrupted single-process run; the held-out blocks are masked once, so every
run is measured on the same masked tokens.

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
import math
import os
import sys
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from transformers import (
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from fastformer import FastformerConfig, FastformerForMaskedLM, FastformerTokenizer
from fastformer.classify import corpora
from fastformer.classify.arguments import ModelSizeArguments, ScriptArgumentParser, parse_command_line
from fastformer.classify.corpora import FETCHERS, CorpusError, default_cache_dir


logger = logging.getLogger(__name__)

CORPORA = (*FETCHERS, "pang-lee-train")  # the fetched corpora, then the one derived from the main job's data


@dataclass
class ModelArguments(ModelSizeArguments):
    """The model: a new Fastformer of the given size (by default the shape of the main job's classifier, so that
    `examples/pretraining_helps.py` can start it from the checkpoint), or `--model_name_or_path` to continue."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A masked-LM checkpoint to continue from; default: a new model."}
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "A saved tokenizer (directory or Hub id); default: the checkpoint's, else the shipped one."},
    )
    max_position_embeddings: int | None = field(
        default=None,
        metadata={
            "help": "Size of the position table (new model only); default: --max_seq_length. Make it the "
            "longest input the fine-tuned model will read."
        },
    )


@dataclass
class DataTrainingArguments:
    """The text. Without `--train_file`: the openly licensed corpora named by `--dataset_name`."""

    dataset_name: str = field(
        default="python-docs,enwiki-sample",
        metadata={"help": f"Comma-separated corpora out of {CORPORA}; ignored with --train_file."},
    )
    train_file: str | None = field(default=None, metadata={"help": "A plain-text training file (one example a line)."})
    validation_file: str | None = field(
        default=None, metadata={"help": "A plain-text held-out file; default: a split of the training examples."}
    )
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Percentage of the examples held out when there is no --validation_file."}
    )
    max_seq_length: int = field(default=2048, metadata={"help": "Block size: tokens per training example."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Fraction of the tokens to mask."})
    eval_mask_seed: int = field(default=1234, metadata={"help": "Seed of the fixed masking of the held-out blocks."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only this many training blocks."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only this many held-out blocks."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where fetched corpora are cached (default $FASTFORMER_CACHE or ~/.cache/fastformer)."},
    )


# Defaults for a small CPU run; every one can be overridden on the command line.
TRAINING_DEFAULTS = dict(
    per_device_train_batch_size=4,  # 8,192 tokens a step with the default 2,048-token blocks
    per_device_eval_batch_size=4,
    learning_rate=1e-3,
    weight_decay=0.01,
    warmup_steps=0.05,
    num_train_epochs=1,
    logging_steps=20,
    eval_strategy="no",
    save_strategy="steps",
    save_steps=200,
    save_total_limit=2,
    report_to="none",
    seed=0,
)


def parse_args(argv=None):
    """The options from `argv` (default: the command line, or the one JSON file named there); a bad option ends the
    process with one line `run_mlm.py: error: ...` (exit status 2)."""
    parser = ScriptArgumentParser(
        (ModelArguments, DataTrainingArguments, TrainingArguments), prog="run_mlm.py", description=__doc__
    )
    parser.set_defaults(hidden_dropout_prob=0.1, **TRAINING_DEFAULTS)
    return parse_command_line(parser, argv)


# ----------------------------------------------------------------------------------------------------------------
# openly licensed corpora, fetched from package registries and cached (`fastformer.classify.corpora`)


def pang_lee_train_documents(cache_dir: Path | None = None) -> list[str]:
    """The training reviews of the main job's Pang & Lee split, by the job's own `load_data` (same fixed stratified
    split, same seed), so that no test review can reach the masked-LM pretraining."""
    from fastformer.classify import run_classification as job

    try:
        data = job.load_data(job.DataArguments(cache_dir=str(cache_dir) if cache_dir else None))
    except job.InputError as error:
        sys.exit(f"run_mlm.py: error: pang-lee-train: {error}")
    return list(data["train"][0])


DERIVED = {"pang-lee-train": pang_lee_train_documents}  # built from the main job's own cached copy, never cached


def load_corpus(name: str, cache_dir: Path) -> list[str]:
    """The documents of one corpus: one of `fastformer.classify.corpora` (fetched once and cached) or derived."""
    if name in DERIVED:
        return DERIVED[name](cache_dir)
    if name not in FETCHERS:
        sys.exit(f"run_mlm.py: error: unknown corpus {name!r} in --dataset_name; choose from {CORPORA}")
    try:
        return corpora.load_corpus(name, cache_dir)
    except CorpusError as error:
        sys.exit(f"run_mlm.py: error: {error}")


# ----------------------------------------------------------------------------------------------------------------
# data


def raw_datasets(args: DataTrainingArguments, training_args: TrainingArguments) -> datasets.DatasetDict:
    """`{"train", "validation"}` datasets of one `text` column."""
    if args.train_file:
        files = {"train": args.train_file}
        if args.validation_file:
            files["validation"] = args.validation_file
        for path in files.values():
            if not os.path.isfile(path):
                sys.exit(f"run_mlm.py: error: data file {path} does not exist")
        raw = datasets.load_dataset("text", data_files=files)
        raw = raw.filter(lambda row: bool(row["text"].strip()))  # blank lines carry nothing
    else:
        cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
        names = [name.strip() for name in args.dataset_name.split(",") if name.strip()]
        with training_args.main_process_first(desc="fetching the corpora"):
            documents = [doc for name in names for doc in load_corpus(name, cache_dir)]
        raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": documents})})
    if "validation" not in raw:
        if not 0 < args.validation_split_percentage < 100:
            sys.exit("run_mlm.py: error: --validation_split_percentage must lie in (0, 100)")
        split = raw["train"].train_test_split(test_size=args.validation_split_percentage / 100, seed=42)
        raw = datasets.DatasetDict({"train": split["train"], "validation": split["test"]})
    return raw


def group_texts(examples: dict, block_size: int) -> dict:
    """Concatenates the tokenized examples and cuts them into blocks of `block_size` tokens (the remainder, shorter
    than a block, is dropped)."""
    concatenated = {key: list(chain(*examples[key])) for key in examples}
    total = (len(concatenated["input_ids"]) // block_size) * block_size
    return {
        key: [values[i : i + block_size] for i in range(0, total, block_size)] for key, values in concatenated.items()
    }


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

    def __call__(self, features: list[dict]) -> dict:
        if "labels" not in features[0]:
            masked = []
            for feature in features:
                ids, labels = self.mask(
                    feature["input_ids"],
                    feature["special_tokens_mask"],
                    block_seed(self.seed, self.epoch, feature["block"]),
                )
                masked.append({"input_ids": ids, "attention_mask": feature["attention_mask"], "labels": labels})
            features = masked
        return default_data_collator(features)


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


def resolve_checkpoint(training_args: TrainingArguments) -> str | None:
    """`--resume_from_checkpoint last` (or `true`): the newest `checkpoint-*` in `--output_dir`."""
    resume = training_args.resume_from_checkpoint
    if resume is None or resume.lower() in ("", "false", "none"):
        return None
    if resume.lower() in ("last", "true"):
        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            sys.exit(
                f"run_mlm.py: error: --resume_from_checkpoint {resume}: no checkpoint-* in {training_args.output_dir}"
            )
        return last
    if not os.path.isdir(resume):
        sys.exit(f"run_mlm.py: error: checkpoint {resume} does not exist")
    return resume


def build_model(model_args: ModelArguments, data_args: DataTrainingArguments, tokenizer):
    if model_args.model_name_or_path:
        model = AutoModelForMaskedLM.from_pretrained(model_args.model_name_or_path)
        if model.config.max_position_embeddings < data_args.max_seq_length:
            sys.exit(
                f"run_mlm.py: error: --max_seq_length {data_args.max_seq_length} exceeds the checkpoint's "
                f"position table ({model.config.max_position_embeddings})"
            )
        if model.config.vocab_size < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
        return model
    try:
        config = FastformerConfig(
            vocab_size=len(tokenizer),
            **model_args.size(),
            max_position_embeddings=model_args.max_position_embeddings or data_args.max_seq_length,
            pad_token_id=tokenizer.pad_token_id,
            tokenizer_class=type(tokenizer).__name__,
        )
    except ValueError as error:
        sys.exit(f"run_mlm.py: error: invalid model settings: {error}")
    if config.max_position_embeddings < data_args.max_seq_length:
        sys.exit("run_mlm.py: error: --max_position_embeddings must be at least --max_seq_length")
    return FastformerForMaskedLM(config)


def load_tokenizer(model_args: ModelArguments, data_args: DataTrainingArguments):
    source = model_args.tokenizer_name or model_args.model_name_or_path
    tokenizer = FastformerTokenizer.from_pretrained(source) if source else FastformerTokenizer()
    if tokenizer.mask_token is None:
        sys.exit("run_mlm.py: error: the tokenizer has no mask token")
    tokenizer.model_max_length = data_args.max_seq_length
    return tokenizer


def prepare_data(data_args: DataTrainingArguments, training_args: TrainingArguments, tokenizer):
    """Returns `(train_blocks, held_out_blocks, collator)`: training blocks (`input_ids`, `attention_mask`,
    `special_tokens_mask`, `block` index), held-out blocks masked once (`input_ids`, `attention_mask`, `labels`)."""
    raw = raw_datasets(data_args, training_args)
    with training_args.main_process_first(desc="tokenizing"):
        # Whole documents are tokenized (the blocks cut them), so the tokenizer's length limit does not apply here.
        tokenized = raw.map(
            lambda batch: tokenizer(batch["text"], return_special_tokens_mask=True, verbose=False),
            batched=True,
            remove_columns=["text"],
            num_proc=data_args.preprocessing_num_workers,
            desc="tokenizing",
        )
        blocks = tokenized.map(
            group_texts,
            batched=True,
            fn_kwargs={"block_size": data_args.max_seq_length},
            num_proc=data_args.preprocessing_num_workers,
            desc=f"grouping into blocks of {data_args.max_seq_length}",
        )
    train_set, eval_set = blocks["train"], blocks["validation"]
    if data_args.max_train_samples is not None:
        train_set = train_set.select(range(min(data_args.max_train_samples, len(train_set))))
    if data_args.max_eval_samples is not None:
        eval_set = eval_set.select(range(min(data_args.max_eval_samples, len(eval_set))))
    if len(train_set) == 0 or len(eval_set) == 0:
        sys.exit(
            f"run_mlm.py: error: fewer than {data_args.max_seq_length} tokens of training or held-out text: "
            "no full block (lower --max_seq_length or give more text)"
        )
    logger.info(f"{len(train_set)} training and {len(eval_set)} held-out blocks of {data_args.max_seq_length} tokens")
    train_set = train_set.add_column("block", list(range(len(train_set))))
    eval_set = eval_set.add_column("block", list(range(len(eval_set))))
    collator = BlockMaskingCollator(tokenizer, data_args.mlm_probability, seed=training_args.seed)
    return train_set, mask_held_out(eval_set, collator, data_args.eval_mask_seed), collator


def run(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: TrainingArguments,
    callbacks: list[TrainerCallback] | None = None,
) -> dict:
    """Pretrains, saves the model and tokenizer into `--output_dir` and returns the metrics (also written to
    `all_results.json`). `callbacks`: extra `TrainerCallback`s (for programmatic use)."""
    if data_args.max_seq_length < 8:
        sys.exit(f"run_mlm.py: error: --max_seq_length must be at least 8, got {data_args.max_seq_length}")
    if not 0 < data_args.mlm_probability < 1:
        sys.exit(f"run_mlm.py: error: --mlm_probability must lie in (0, 1), got {data_args.mlm_probability}")
    resume = resolve_checkpoint(training_args)
    set_seed(training_args.seed)
    tokenizer = load_tokenizer(model_args, data_args)
    train_set, eval_set, collator = prepare_data(data_args, training_args, tokenizer)
    training_args.remove_unused_columns = False  # the collator reads `block` and `special_tokens_mask`

    model = build_model(model_args, data_args, tokenizer)
    logger.info(f"{sum(p.numel() for p in model.parameters()):,} parameters")
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=[MaskingEpoch(collator), *(callbacks or [])],
    )
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()  # model, config, tokenizer and their code files
    metrics = dict(train_result.metrics, train_samples=len(train_set))
    metrics.update(trainer.evaluate())
    metrics["eval_samples"] = len(eval_set)
    metrics["perplexity"] = math.exp(metrics["eval_loss"]) if metrics["eval_loss"] < 700 else float("inf")
    metrics["num_processes"] = training_args.world_size
    trainer.log_metrics("all", metrics)
    trainer.save_metrics("all", metrics)
    trainer.save_state()
    return metrics


def check_launch():
    """`accelerate launch --cpu --num_processes N` starts N processes only through MPI (`--mpirun_hostfile`); without
    it, it starts one process (and says nothing). Refuse that case instead of silently training on one process."""
    launched_by_accelerate_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    distributed = any(name in os.environ for name in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"))
    if launched_by_accelerate_cpu and "MASTER_ADDR" in os.environ and not distributed:
        sys.exit(
            "run_mlm.py: error: `accelerate launch --cpu --num_processes N` started a single process (it needs MPI "
            "and --mpirun_hostfile for more). On one machine use `accelerate launch --multi_gpu --num_processes N "
            "examples/run_mlm.py ... --use_cpu` or `torchrun --nproc_per_node N examples/run_mlm.py ... --use_cpu`."
        )


def main(argv=None, callbacks: list[TrainerCallback] | None = None) -> dict:
    check_launch()
    model_args, data_args, training_args = parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    return run(model_args, data_args, training_args, callbacks)


if __name__ == "__main__":
    main()
