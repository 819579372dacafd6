# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""What the two language-modelling examples, `examples/run_mlm.py` (masked LM) and `examples/run_clm.py` (causal
LM), share: everything but the model's objective.

- options: `LanguageModelArguments` (a new model's size, or a checkpoint to continue; the tokenizer),
  `LanguageModelingDataArguments` (the text, the block size, `--packing`; a script subclasses it for its own data
  options), `TRAINING_DEFAULTS` and `parse_script_args`;
- the text: `raw_datasets` (plain-text files, or the corpora of `CORPORA`: those of `fastformer.classify.corpora`
  and `pang-lee-train`, the main job's training reviews); `tokenize_documents` (each document whole, with
  `document_start`), `group_texts` (concatenated and cut into blocks), `split_documents` (each document cut into
  pieces, for `--packing`), `document_positions`, and `training_and_held_out_sets`, which chains them;
- the run: `resolve_checkpoint`, `load_tokenizer`, `load_checkpoint`, `new_config`, `train_and_evaluate`, and
  `script_main` (`check_launch`, parsing, logging) for the command line.

Every failure (a bad corpus name, a missing file or checkpoint, too little text, a refused launch) raises
`LanguageModelingError` with one line that names no script; `exit_on_error(prog)` turns it into the script's own
ending, the one line `PROG: error: MESSAGE` (exit status 1).
"""

import logging
import math
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import datasets
import transformers
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from fastformer import FastformerConfig, FastformerTokenizer
from fastformer.classify import corpora
from fastformer.classify.arguments import ModelSizeArguments, ScriptArgumentParser, parse_command_line


logger = logging.getLogger(__name__)

CORPORA = (*corpora.FETCHERS, "pang-lee-train")  # the fetched corpora, then the one derived from the main job's data


class LanguageModelingError(ValueError):
    """A corpus, data file, checkpoint, model setting or launch a language-modelling script cannot use; the message
    is one line and names no script (`exit_on_error` adds the script's name)."""


@contextmanager
def exit_on_error(prog: str):
    """Inside it (or around a function it decorates), a `LanguageModelingError` ends the process with the one line
    `PROG: error: MESSAGE` on stderr and exit status 1 (`sys.exit(line)`); other exceptions pass unchanged."""
    try:
        yield
    except LanguageModelingError as error:
        sys.exit(f"{prog}: error: {error}")


# ----------------------------------------------------------------------------------------------------------------
# options


@dataclass
class LanguageModelArguments(ModelSizeArguments):
    """The model: a new Fastformer of the size options, or `--model_name_or_path` to continue a checkpoint; and the
    tokenizer."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A checkpoint of the script's model to continue from; default: a new model."},
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "A saved tokenizer (directory or Hub id); default: the checkpoint's, else the shipped one."},
    )


@dataclass
class LanguageModelingDataArguments:
    """The text. Without `--train_file`: the corpora named by `--dataset_name`."""

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
    max_seq_length: int = field(
        default=2048,
        metadata={"help": "Block size: tokens per training example; with --packing, the longest document piece."},
    )
    packing: bool = field(
        default=False,
        metadata={
            "help": "Train on documents as units: each document alone (cut into pieces of at most --max_seq_length "
            "tokens when longer), the pieces of a batch flattened into one row by DataCollatorWithFlattening, "
            "no attention across documents. Default: concatenated texts cut into blocks."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only this many training blocks (document pieces with --packing)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only this many held-out blocks."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where fetched corpora are cached (default $FASTFORMER_CACHE or ~/.cache/fastformer)."},
    )


# The `TrainingArguments` defaults of both scripts, for a small CPU run; each script adds its batch sizes, and every
# one can be overridden on the command line.
TRAINING_DEFAULTS = dict(
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


def parse_script_args(
    prog: str, model_arguments: type, data_arguments: type, description: str, argv=None, **defaults
) -> tuple:
    """`(model_args, data_args, training_args)` of the dataclasses `model_arguments`, `data_arguments` and
    `TrainingArguments`, from `argv` (default: the command line, or the one JSON file named there), with
    `TRAINING_DEFAULTS` and then `defaults` as the command line's defaults (a JSON file gets the dataclasses' own
    defaults instead: `HfArgumentParser.parse_dict` does not read the parser's). A bad option ends the process with
    one line `PROG: error: ...` (exit status 2; `fastformer.classify.arguments.parse_command_line`)."""
    parser = ScriptArgumentParser(
        (model_arguments, data_arguments, TrainingArguments), prog=prog, description=description
    )
    parser.set_defaults(**{**TRAINING_DEFAULTS, **defaults})
    return parse_command_line(parser, argv)


# ----------------------------------------------------------------------------------------------------------------
# the text


def pang_lee_train_documents(cache_dir: Path | None = None) -> list[str]:
    """The training reviews of the main job's Pang & Lee split, by the job's own `load_data` (same fixed stratified
    split, same seed), so that no test review can reach the language-model pretraining. Derived from the job's
    cached copy (fetched once, like the job's) on every call; nothing of its own is cached."""
    from fastformer.classify import run_classification as job

    try:
        data = job.load_data(job.DataArguments(cache_dir=str(cache_dir) if cache_dir else None))
    except job.InputError as error:
        raise LanguageModelingError(f"pang-lee-train: {error}") from None
    return list(data["train"][0])


DERIVED = {"pang-lee-train": pang_lee_train_documents}  # built from the main job's own cached copy, never cached


def load_corpus(name: str, cache_dir: Path) -> list[str]:
    """The documents of the corpus `name` of `CORPORA`: one of `fastformer.classify.corpora` (fetched once and cached
    in `cache_dir`) or a derived one (`DERIVED`). An unknown name or a failed fetch raises `LanguageModelingError`."""
    if name in DERIVED:
        return DERIVED[name](cache_dir)
    if name not in corpora.FETCHERS:
        raise LanguageModelingError(f"unknown corpus {name!r} in --dataset_name; choose from {CORPORA}")
    try:
        return corpora.load_corpus(name, cache_dir)
    except corpora.CorpusError as error:
        raise LanguageModelingError(str(error)) from None


def raw_datasets(args: LanguageModelingDataArguments, training_args: TrainingArguments) -> datasets.DatasetDict:
    """`{"train", "validation"}` datasets of one `text` column: the non-blank lines of `--train_file` (and
    `--validation_file`), else the documents of the `--dataset_name` corpora in the order named (fetched by the main
    process first); without a held-out file, `--validation_split_percentage` of the examples, split with seed 42.
    A missing file or a percentage outside (0, 100) raises `LanguageModelingError`."""
    if args.train_file:
        files = {"train": args.train_file}
        if args.validation_file:
            files["validation"] = args.validation_file
        for path in files.values():
            if not os.path.isfile(path):
                raise LanguageModelingError(f"data file {path} does not exist")
        raw = datasets.load_dataset("text", data_files=files)
        raw = raw.filter(lambda row: bool(row["text"].strip()))  # blank lines carry nothing
    else:
        cache_dir = Path(args.cache_dir) if args.cache_dir else corpora.default_cache_dir()
        names = [name.strip() for name in args.dataset_name.split(",") if name.strip()]
        with training_args.main_process_first(desc="fetching the corpora"):
            documents = [doc for name in names for doc in load_corpus(name, cache_dir)]
        raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": documents})})
    if "validation" not in raw:
        if not 0 < args.validation_split_percentage < 100:
            raise LanguageModelingError("--validation_split_percentage must lie in (0, 100)")
        split = raw["train"].train_test_split(test_size=args.validation_split_percentage / 100, seed=42)
        raw = datasets.DatasetDict({"train": split["train"], "validation": split["test"]})
    return raw


def tokenize_documents(batch: dict, tokenizer, packing: bool, special_tokens_mask: bool = False) -> dict:
    """Each text of `batch["text"]` tokenized whole, with its special tokens (`input_ids`, `attention_mask`, and
    `special_tokens_mask` when asked); with `packing` also a `document_start` column (1 at a document's first token,
    else 0), so that blocks still know where documents start."""
    encoded = tokenizer(batch["text"], return_special_tokens_mask=special_tokens_mask, verbose=False)
    if packing:
        encoded["document_start"] = [[int(i == 0) for i in range(len(ids))] for ids in encoded["input_ids"]]
    return encoded


def group_texts(examples: dict, block_size: int) -> dict:
    """Concatenates the tokenized examples and cuts them into blocks of `block_size` tokens (the remainder, shorter
    than a block, is dropped)."""
    concatenated = {key: list(chain(*examples[key])) for key in examples}
    total = (len(concatenated["input_ids"]) // block_size) * block_size
    return {
        key: [values[i : i + block_size] for i in range(0, total, block_size)] for key, values in concatenated.items()
    }


def split_documents(examples: dict, max_length: int) -> dict:
    """Cuts every tokenized document into consecutive pieces of at most `max_length` tokens (every piece full but a
    document's last; no token is dropped); a document of at most `max_length` tokens stays one piece. Every column is
    cut at the same positions."""
    return {
        key: [tokens[i : i + max_length] for tokens in documents for i in range(0, len(tokens), max_length)]
        for key, documents in examples.items()
    }


def document_positions(document_start: list[int]) -> list[int]:
    """Position ids that count from 0 at the first token and again at every token flagged as a document's first."""
    positions = []
    for index, start in enumerate(document_start):
        positions.append(0 if index == 0 or start else positions[-1] + 1)
    return positions


def training_and_held_out_sets(
    data_args: LanguageModelingDataArguments,
    training_args: TrainingArguments,
    tokenizer,
    special_tokens_mask: bool = False,
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """`(train_set, eval_set)` from `raw_datasets`, tokenized by `tokenize_documents` (with `special_tokens_mask`
    when asked), by the main process first.

    `eval_set`: the held-out texts concatenated and cut into blocks of `--max_seq_length` tokens (`group_texts`),
    the first `--max_eval_samples`. `train_set`: the training texts cut the same way; with `--packing` instead every
    training document cut into pieces of at most `--max_seq_length` tokens (`split_documents`), and the held-out
    blocks keep their `document_start` column. Both keep the first `--max_train_samples` / `--max_eval_samples`
    examples. No training example or no held-out block raises `LanguageModelingError`."""
    raw = raw_datasets(data_args, training_args)
    packing, length = data_args.packing, data_args.max_seq_length
    with training_args.main_process_first(desc="tokenizing"):
        # Whole documents are tokenized (blocks or pieces cut them), so the tokenizer's length limit does not apply.
        tokenized = raw.map(
            tokenize_documents,
            batched=True,
            fn_kwargs={"tokenizer": tokenizer, "packing": packing, "special_tokens_mask": special_tokens_mask},
            remove_columns=["text"],
            num_proc=data_args.preprocessing_num_workers,
            desc="tokenizing",
        )
        blocks = tokenized.map(
            group_texts,
            batched=True,
            fn_kwargs={"block_size": length},
            num_proc=data_args.preprocessing_num_workers,
            desc=f"grouping into blocks of {length}",
        )
        if packing:
            train_set = (
                tokenized["train"]
                .remove_columns(["document_start"])
                .map(
                    split_documents,
                    batched=True,
                    fn_kwargs={"max_length": length},
                    num_proc=data_args.preprocessing_num_workers,
                    desc=f"cutting documents into pieces of at most {length}",
                )
            )
        else:
            train_set = blocks["train"]
    eval_set = blocks["validation"]
    if data_args.max_train_samples is not None:
        train_set = train_set.select(range(min(data_args.max_train_samples, len(train_set))))
    if data_args.max_eval_samples is not None:
        eval_set = eval_set.select(range(min(data_args.max_eval_samples, len(eval_set))))
    if len(train_set) == 0 or len(eval_set) == 0:
        if packing:
            raise LanguageModelingError(
                f"no training text, or fewer than {length} tokens of held-out text "
                "(no full block: lower --max_seq_length or give more text)"
            )
        raise LanguageModelingError(
            f"fewer than {length} tokens of training or held-out text: "
            "no full block (lower --max_seq_length or give more text)"
        )
    if packing:
        tokens = sum(len(ids) for ids in train_set["input_ids"])
        logger.info(
            f"{len(train_set)} training document pieces of at most {length} tokens ({tokens:,} tokens) and "
            f"{len(eval_set)} held-out blocks"
        )
    else:
        logger.info(f"{len(train_set)} training and {len(eval_set)} held-out blocks of {length} tokens")
    return train_set, eval_set


# ----------------------------------------------------------------------------------------------------------------
# the run


def resolve_checkpoint(training_args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: `--resume_from_checkpoint last` (or `true`) is the newest `checkpoint-*` in
    `--output_dir`, a path is itself; `None` when not resuming. No such checkpoint raises `LanguageModelingError`."""
    resume = training_args.resume_from_checkpoint
    if resume is None or resume.lower() in ("", "false", "none"):
        return None
    if resume.lower() in ("last", "true"):
        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            raise LanguageModelingError(
                f"--resume_from_checkpoint {resume}: no checkpoint-* in {training_args.output_dir}"
            )
        return last
    if not os.path.isdir(resume):
        raise LanguageModelingError(f"checkpoint {resume} does not exist")
    return resume


def load_tokenizer(model_args: LanguageModelArguments, data_args: LanguageModelingDataArguments):
    """`--tokenizer_name`, else the checkpoint's (`--model_name_or_path`), else the shipped `FastformerTokenizer`;
    its `model_max_length` set to `--max_seq_length` (saved with the model)."""
    source = model_args.tokenizer_name or model_args.model_name_or_path
    tokenizer = FastformerTokenizer.from_pretrained(source) if source else FastformerTokenizer()
    tokenizer.model_max_length = data_args.max_seq_length
    return tokenizer


def load_checkpoint(
    auto_class, model_args: LanguageModelArguments, data_args: LanguageModelingDataArguments, tokenizer
) -> PreTrainedModel:
    """The checkpoint of `--model_name_or_path`, loaded with `auto_class` (e.g. `AutoModelForMaskedLM`), its word
    embeddings grown to the tokenizer's size when smaller. A position table shorter than `--max_seq_length` raises
    `LanguageModelingError`."""
    model = auto_class.from_pretrained(model_args.model_name_or_path)
    if model.config.max_position_embeddings < data_args.max_seq_length:
        raise LanguageModelingError(
            f"--max_seq_length {data_args.max_seq_length} exceeds the checkpoint's "
            f"position table ({model.config.max_position_embeddings})"
        )
    if model.config.vocab_size < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    return model


def new_config(model_args: LanguageModelArguments, tokenizer, **settings) -> FastformerConfig:
    """The `FastformerConfig` of a new model: the tokenizer's vocabulary size, padding id and class, the size options
    (`ModelSizeArguments.size`), then `settings`. Settings the config refuses raise `LanguageModelingError`."""
    try:
        return FastformerConfig(
            vocab_size=len(tokenizer),
            **model_args.size(),
            pad_token_id=tokenizer.pad_token_id,
            tokenizer_class=type(tokenizer).__name__,
            **settings,
        )
    except ValueError as error:
        raise LanguageModelingError(f"invalid model settings: {error}") from None


def train_and_evaluate(
    model: PreTrainedModel,
    tokenizer,
    training_args: TrainingArguments,
    train_set: datasets.Dataset,
    eval_set: datasets.Dataset,
    collator: Callable,
    callbacks: list[TrainerCallback] | None,
    resume: str | None,
) -> dict:
    """Trains `model` with a `Trainer` (from the checkpoint `resume` when given), saves the model, tokenizer and
    their code files into `--output_dir`, evaluates once on `eval_set` and returns the metrics, also written to
    `all_results.json` (with the `Trainer`'s state): the training and held-out metrics, `train_samples`,
    `eval_samples`, `perplexity` = exp(`eval_loss`) (inf for a loss of 700 or more) and `num_processes`."""
    logger.info(f"{sum(p.numel() for p in model.parameters()):,} parameters")
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=callbacks,
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


# ----------------------------------------------------------------------------------------------------------------
# the command line


def check_launch(prog: str):
    """Refuses the launch that would silently train on one process: `accelerate launch --cpu --num_processes N`
    starts N processes only through MPI (`--mpirun_hostfile`) and otherwise starts one, saying nothing. Raises
    `LanguageModelingError` naming the launches of `examples/PROG` that do start N processes on one machine."""
    launched_by_accelerate_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    distributed = any(name in os.environ for name in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"))
    if launched_by_accelerate_cpu and "MASTER_ADDR" in os.environ and not distributed:
        raise LanguageModelingError(
            "`accelerate launch --cpu --num_processes N` started a single process (it needs MPI and "
            "--mpirun_hostfile for more). On one machine use `accelerate launch --multi_gpu --num_processes N "
            f"examples/{prog} ... --use_cpu` or `torchrun --nproc_per_node N examples/{prog} ... --use_cpu`."
        )


def configure_logging(training_args: TrainingArguments, script_logger: logging.Logger):
    """Log lines as `time - level - name - message`, at this process's level (`get_process_log_level`: replicas
    log less) for `script_logger`, this module, `datasets` and `transformers`."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    log_level = training_args.get_process_log_level()
    script_logger.setLevel(log_level)
    logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)


def script_main(
    prog: str,
    parse_args: Callable,
    run: Callable,
    script_logger: logging.Logger,
    argv: list[str] | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> dict:
    """A script's command line: `check_launch(prog)`, `parse_args(argv)` into `(model_args, data_args,
    training_args)`, `configure_logging`, then `run(model_args, data_args, training_args, callbacks)`, whose metrics
    it returns. A `LanguageModelingError` ends the process with one line `PROG: error: ...` (`exit_on_error`)."""
    with exit_on_error(prog):
        check_launch(prog)
        model_args, data_args, training_args = parse_args(argv)
        configure_logging(training_args, script_logger)
        return run(model_args, data_args, training_args, callbacks)
