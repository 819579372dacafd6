#!/usr/bin/env python
"""Summarization quality on XSum: Fastformer (both cross-attention types) vs a BART of the same size, same budget.

Every model is trained from scratch by `examples/run_summarization.py` on the built-in XSum split (849 training
pairs, 100 held-out test pairs; 50 validation pairs are not used) with the same arguments: one WordPiece tokenizer
trained once on the training split (by the example too, `--tokenizer_only`) and shared by all, the same
width/depth/heads/FFN, the same epochs, batch size, learning-rate schedule and seed, and the same decoding (beam
search, no-repeat n-gram size, maximum length).
Documents are truncated only at `--max_source_length` (4,096 tokens by default, the position table of every model:
BART's is extended to 4,096); summaries at 64 tokens. Each run is a separate process; the script prints ROUGE-1/2/L
(stemmed F-measures x 100, `fastformer.classify.metrics.load("rouge")`) on the test split for each model and for the lead-1
baseline (the document's first sentence), the teacher-forced cross-entropy of the test summaries (nats per token,
a smoother measure than ROUGE on 100 pairs) and the training time.

Run: `python benchmarks/summarization_quality.py --output_dir outputs/xsum-quality [--epochs 8]`.

Cross-validation (`--folds K [--fold_seed S] [--fold_list 0 1 ...]`): instead of the fixed split, all 999 kept pairs
(the one pair with an empty document dropped) are shuffled once with seed S and cut into K folds (5 folds: 200, 200,
200, 200, 199 pairs); for each fold, every model trains on the other K-1 folds (about 800 pairs; no validation split)
and is scored on the fold, with a tokenizer trained on that fold's training pairs only (no test document reaches it),
shared by the models of the fold. Folds run one after the other, all models of a fold before the next fold, so that
a stopped run leaves whole folds; finished runs are read back (the script resumes). Printed and saved to
`summary.json`: per fold and model ROUGE-1/2/L, teacher-forced test loss, mean length, train and scoring time and
the number of distinct summaries generated (1: the same text for every document); per model the mean ± standard
deviation (n-1) over the complete folds, lead-1 on the same folds, and the per-fold paired differences of each
Fastformer minus BART with their mean ± standard deviation.

With `--rescore_beams B` the trained models of the listed folds then decode their test fold again with B beams
(prediction only, into RUN_DIR/beamsB; the teacher-forced loss does not depend on it), and the same tables are
printed for that decoding. Summaries go to `summary.json` and `summary-beamsB.json` (with a `-folds-...` suffix
when `--fold_list` names only some folds).

    python benchmarks/summarization_quality.py --output_dir outputs/xsum-cv --folds 5 --epochs 2 --beams 1
    python benchmarks/summarization_quality.py --output_dir outputs/xsum-cv --folds 5 --epochs 2 --beams 1 \
        --rescore_beams 4
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import mean_std

from fastformer.classify import corpora


ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "run_summarization.py"
ONE_FOLD = float("nan")  # the spread of a single fold is unknown, not 0
MODELS = {
    "fastformer-sdpa": ["--model_type", "fastformer", "--cross_attention_type", "scaled_dot_product"],
    "fastformer-additive": ["--model_type", "fastformer", "--cross_attention_type", "additive"],
    "bart": ["--model_type", "bart"],
}


def fold_tokenizer(data_args: list[str], vocab_size: int, path: Path) -> Path:
    """The shared tokenizer of a split, trained on that split's training pairs only (all of them, whatever
    `--max_train_samples`) by the example script (`--tokenizer_only`, a separate process) and saved to `path`; once:
    a saved one is read back."""
    if not (path / "tokenizer.json").is_file():
        command = [
            sys.executable,
            str(SCRIPT),
            *data_args,
            "--vocab_size",
            str(vocab_size),
            "--tokenizer_only",
            "--output_dir",
            str(path),
        ]
        print(f"== tokenizer: {' '.join(command)}", flush=True)
        subprocess.run(command, check=True)
    return path


def fold_test_pairs(data_cache_dir: str, folds: int, fold: int, fold_seed: int) -> list[dict]:
    """The test pairs of a fold, the same as the example's (`--xsum_folds`): `corpora.xsum_split`."""
    return corpora.xsum_split(corpora.xsum_pairs(data_cache_dir), folds, fold, fold_seed)["test"]


def distinct_predictions(run_dir: Path) -> int:
    """How many different summaries a run generated for its test pairs (1: the same text for every document)."""
    return len(set((run_dir / "generated_predictions.txt").read_text(encoding="utf-8").splitlines()))


METRICS = [
    ("ROUGE-1", "predict_rouge1", 2),
    ("ROUGE-2", "predict_rouge2", 2),
    ("ROUGE-L", "predict_rougeL", 2),
    ("test loss", "predict_loss", 3),
    ("mean length", "predict_gen_len", 1),
    ("train time (s)", "train_runtime", 0),
    ("distinct summaries", "distinct_predictions", 0),
]
LEAD = [
    ("ROUGE-1", "predict_lead1_rouge1", 2),
    ("ROUGE-2", "predict_lead1_rouge2", 2),
    ("ROUGE-L", "predict_lead1_rougeL", 2),
]


def cross_validation_tables(folds: dict[int, dict[str, dict]], models: list[str]) -> tuple[str, dict]:
    """Markdown tables (per fold, mean ± std over folds, paired differences vs BART) and their numbers."""
    lines = [
        "| fold | model | test pairs | ROUGE-1 | ROUGE-2 | ROUGE-L | test loss | mean length | train time (s) "
        "| scoring time (s) | distinct summaries |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fold, runs in folds.items():
        for name, r in runs.items():
            lines.append(
                f"| {fold} | {name} | {r['predict_samples']} | {r['predict_rouge1']:.2f} | "
                f"{r['predict_rouge2']:.2f} | {r['predict_rougeL']:.2f} | {r['predict_loss']:.3f} | "
                f"{r['predict_gen_len']:.1f} | {r['train_runtime']:.0f} | {r['predict_runtime']:.0f} | "
                f"{r['distinct_predictions']} |"
            )
        r = next(iter(runs.values()))
        lines.append(
            f"| {fold} | lead-1 | {r['predict_samples']} | {r['predict_lead1_rouge1']:.2f} | "
            f"{r['predict_lead1_rouge2']:.2f} | {r['predict_lead1_rougeL']:.2f} | | | | | |"
        )
    complete = [fold for fold, runs in folds.items() if all(name in runs for name in models)]
    numbers = {"complete_folds": complete, "mean_std": {}, "paired_differences": {}}
    lines += [
        "",
        f"Mean ± std over the {len(complete)} complete fold(s) {complete}:",
        "",
        "| model | " + " | ".join(label for label, _, _ in METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for name in models:
        cells, numbers["mean_std"][name] = [], {}
        for label, key, digits in METRICS:
            values = [folds[f][name][key] for f in complete]
            m, sd = mean_std(values, single=ONE_FOLD) if complete else (float("nan"),) * 2
            numbers["mean_std"][name][key] = [m, sd]
            cells.append(f"{m:.{digits}f} ± {sd:.{digits}f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells, numbers["mean_std"]["lead-1"] = [], {}
    for label, key, digits in LEAD:
        values = [next(iter(folds[f].values()))[key] for f in complete]
        m, sd = mean_std(values, single=ONE_FOLD) if complete else (float("nan"),) * 2
        numbers["mean_std"]["lead-1"][key] = [m, sd]
        cells.append(f"{m:.{digits}f} ± {sd:.{digits}f}")
    lines.append("| lead-1 | " + " | ".join(cells) + " |" + " |" * (len(METRICS) - len(LEAD)))
    if "bart" in models and complete:
        diff_metrics = METRICS[:5]
        lines += [
            "",
            "Paired differences, model minus BART on the same fold (per fold; mean ± std):",
            "",
            "| model | " + " | ".join(f"Δ {label}" for label, _, _ in diff_metrics) + " |",
            "|---|" + "---:|" * len(diff_metrics),
        ]
        for name in models:
            if name == "bart":
                continue
            cells, numbers["paired_differences"][name] = [], {}
            for label, key, digits in diff_metrics:
                d = [folds[f][name][key] - folds[f]["bart"][key] for f in complete]
                m, sd = mean_std(d, single=ONE_FOLD)
                numbers["paired_differences"][name][key] = {"per_fold": d, "mean": m, "std": sd}
                per_fold = ", ".join(f"{x:+.{digits}f}" for x in d)
                cells.append(f"{m:+.{digits}f} ± {sd:.{digits}f} ({per_fold})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines), numbers


def rescore(args, results: dict, output_dir: Path, cache: dict) -> dict:
    """Decodes each trained run's test fold again with `--rescore_beams` beams (no training): RUN_DIR/beamsB."""
    rescored = {}
    for fold, runs in results.items():
        for name, trained in runs.items():
            run_dir = output_dir / f"fold{fold}" / name
            beam_dir = run_dir / f"beams{args.rescore_beams}"
            if not (beam_dir / "predict_results.json").is_file():
                command = [
                    sys.executable,
                    str(SCRIPT),
                    "--dataset_name",
                    "xsum",
                    *[f"--{k}={v}" for k, v in cache.items()],
                    f"--xsum_folds={args.folds}",
                    f"--xsum_fold={fold}",
                    f"--xsum_fold_seed={args.fold_seed}",
                    "--model_name_or_path",
                    str(run_dir),
                    "--max_source_length",
                    str(args.max_source_length),
                    "--max_target_length",
                    "64",
                    "--do_predict",
                    "--predict_with_generate",
                    "--per_device_eval_batch_size",
                    "10",
                    "--generation_num_beams",
                    str(args.rescore_beams),
                    "--generation_max_length",
                    str(args.generation_max_length),
                    "--no_repeat_ngram_size",
                    str(args.no_repeat_ngram_size),
                    "--seed",
                    str(args.seed),
                    "--report_to",
                    "none",
                    "--use_cpu",
                    "--disable_tqdm",
                    "true",
                    "--output_dir",
                    str(beam_dir),
                ]
                if args.max_predict_samples is not None:
                    command += ["--max_predict_samples", str(args.max_predict_samples)]
                print(f"== fold {fold}, {name}, beam {args.rescore_beams}: {' '.join(command)}", flush=True)
                subprocess.run(command, check=True)
            # the training numbers stay those of the run; ROUGE, length and scoring time are the new decoding's
            rescored.setdefault(fold, {})[name] = {
                **trained,
                **json.loads((beam_dir / "predict_results.json").read_text()),
                "distinct_predictions": distinct_predictions(beam_dir),
            }
    return rescored


def source_losses(test: list[dict], run_dir: Path, max_source_length: int, batch_size: int = 10) -> dict:
    """Teacher-forced test loss (nats per summary token, token-weighted) of a trained run with each summary's own
    document, and with the next test pair's document (rolled by one) in its place: their difference is how much the
    model's predictions of the summary use the source (0: it writes summaries without reading the document)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    torch.set_num_threads(1)
    documents, summaries = [pair["document"] for pair in test], [pair["summary"] for pair in test]
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(run_dir).eval()
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    labels = [
        ids + [end]
        for ids in tokenizer(summaries, add_special_tokens=False, max_length=63, truncation=True)["input_ids"]
    ]

    def loss(docs: list[str]) -> float:
        total, count = 0.0, 0
        for i in range(0, len(docs), batch_size):
            inputs = tokenizer(
                docs[i : i + batch_size],
                max_length=max_source_length,
                truncation=True,
                padding=True,
                return_tensors="pt",
            )
            batch = labels[i : i + batch_size]
            width = max(map(len, batch))
            target = torch.tensor([ids + [-100] * (width - len(ids)) for ids in batch])
            with torch.no_grad():
                logits = model(**inputs, decoder_input_ids=model.prepare_decoder_input_ids_from_labels(target)).logits
            total += torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), target.flatten(), ignore_index=-100, reduction="sum"
            ).item()
            count += int((target != -100).sum())
        return total / count

    own = loss(documents)
    other = loss(documents[1:] + documents[:1])
    return {"own_source_loss": own, "other_source_loss": other, "source_gain": other - own}


SOURCE = [
    ("loss, own document", "own_source_loss", 3),
    ("loss, another document", "other_source_loss", 3),
    ("source gain", "source_gain", 3),
]


def source_tables(folds: dict[int, dict[str, dict]], models: list[str]) -> tuple[str, dict]:
    """Mean ± std over folds of the own/other-document losses and their gap, and the gap's paired differences."""
    complete = [fold for fold, runs in folds.items() if all(name in runs for name in models)]
    lines = [
        "| model | " + " | ".join(label for label, _, _ in SOURCE) + " | Δ source gain vs BART (per fold) |",
        "|---|" + "---:|" * (len(SOURCE) + 1),
    ]
    numbers = {}
    for name in models:
        cells, numbers[name] = [], {}
        for label, key, digits in SOURCE:
            m, sd = mean_std([folds[f][name][key] for f in complete], single=ONE_FOLD)
            numbers[name][key] = [m, sd]
            cells.append(f"{m:.{digits}f} ± {sd:.{digits}f}")
        if "bart" in models and name != "bart":
            d = [folds[f][name]["source_gain"] - folds[f]["bart"]["source_gain"] for f in complete]
            m, sd = mean_std(d, single=ONE_FOLD)
            numbers[name]["source_gain_minus_bart"] = {"per_fold": d, "mean": m, "std": sd}
            cells.append(f"{m:+.3f} ± {sd:.3f} ({', '.join(f'{x:+.3f}' for x in d)})")
        else:
            cells.append("")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines), numbers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--data_cache_dir",
        default=str(corpora.default_cache_dir() / "datasets"),
        help="the example script's --data_cache_dir (the same default), where XSum is cached",
    )
    parser.add_argument("--folds", type=int, default=None, help="K-fold cross-validation instead of the fixed split")
    parser.add_argument("--fold_seed", type=int, default=0, help="seed of the one shuffle before the folds are cut")
    parser.add_argument("--fold_list", type=int, nargs="+", default=None, help="run only these folds (default all)")
    parser.add_argument("--epochs", type=float, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--warmup_steps", type=int, default=50)
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--num_attention_heads", type=int, default=8)
    parser.add_argument("--layers", type=int, default=2, help="encoder layers = decoder layers")
    parser.add_argument("--intermediate_size", type=int, default=1024)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--max_source_length", type=int, default=4096)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--no_repeat_ngram_size", type=int, default=3)
    parser.add_argument("--generation_max_length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max_train_samples", type=int, default=None, help="train on fewer pairs (dry runs)")
    parser.add_argument("--max_predict_samples", type=int, default=None, help="score fewer test pairs (dry runs)")
    parser.add_argument(
        "--source_loss",
        action="store_true",
        help="with --folds: also the teacher-forced test loss with another test pair's document in "
        "place of each summary's own (how much the models read the source)",
    )
    parser.add_argument(
        "--rescore_beams",
        type=int,
        default=None,
        help="with --folds: afterwards decode the test fold again with the trained models and this "
        "beam size (prediction only; into RUN_DIR/beamsB), and print the same tables for it",
    )
    args = parser.parse_args()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if args.folds is None and (args.fold_list is not None or args.rescore_beams is not None or args.source_loss):
        parser.error("--fold_list, --rescore_beams and --source_loss need --folds")
    if args.folds is not None and (args.folds < 2 or any(not 0 <= f < args.folds for f in args.fold_list or [])):
        parser.error("--folds must be at least 2 and every --fold_list entry in 0..K-1")

    cache = {"data_cache_dir": args.data_cache_dir}
    common = [
        "--hidden_size",
        str(args.hidden_size),
        "--num_attention_heads",
        str(args.num_attention_heads),
        "--num_hidden_layers",
        str(args.layers),
        "--num_decoder_layers",
        str(args.layers),
        "--intermediate_size",
        str(args.intermediate_size),
        "--hidden_dropout_prob",
        str(args.dropout),
        "--max_position_embeddings",
        str(args.max_source_length),
        "--max_source_length",
        str(args.max_source_length),
        "--max_target_length",
        "64",
        "--do_train",
        "--do_predict",
        "--predict_with_generate",
        "--num_train_epochs",
        str(args.epochs),
        "--per_device_train_batch_size",
        str(args.batch_size),
        "--per_device_eval_batch_size",
        "10",
        "--learning_rate",
        str(args.learning_rate),
        "--warmup_steps",
        str(args.warmup_steps),
        "--lr_scheduler_type",
        "linear",
        "--weight_decay",
        "0.01",
        "--train_sampling_strategy",
        "group_by_length",
        "--generation_num_beams",
        str(args.beams),
        "--generation_max_length",
        str(args.generation_max_length),
        "--no_repeat_ngram_size",
        str(args.no_repeat_ngram_size),
        "--seed",
        str(args.seed),
        "--logging_steps",
        "50",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--use_cpu",
        "--disable_tqdm",
        "true",
    ]
    for option in ("max_train_samples", "max_predict_samples"):
        if getattr(args, option) is not None:
            common += [f"--{option}", str(getattr(args, option))]
    fold_list = [None] if args.folds is None else (args.fold_list or list(range(args.folds)))
    results: dict = {}
    for fold in fold_list:
        fold_args = (
            {} if fold is None else {"xsum_folds": args.folds, "xsum_fold": fold, "xsum_fold_seed": args.fold_seed}
        )
        split_dir = output_dir if fold is None else output_dir / f"fold{fold}"
        data_args = ["--dataset_name", "xsum"] + [f"--{k}={v}" for k, v in {**cache, **fold_args}.items()]
        tokenizer_dir = fold_tokenizer(data_args, args.vocab_size, split_dir / "tokenizer")
        runs = results.setdefault(fold, {})
        for name in args.models:
            run_dir = split_dir / name
            if not (run_dir / "predict_results.json").is_file():
                start = time.perf_counter()
                command = [
                    sys.executable,
                    str(SCRIPT),
                    *data_args,
                    "--tokenizer_name",
                    str(tokenizer_dir),
                    *common,
                    *MODELS[name],
                    "--output_dir",
                    str(run_dir),
                ]
                print(f"== {'' if fold is None else f'fold {fold}, '}{name}: {' '.join(command)}", flush=True)
                subprocess.run(command, check=True)
                (run_dir / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
            runs[name] = {
                **json.loads((run_dir / "predict_results.json").read_text()),
                **json.loads((run_dir / "train_results.json").read_text()),
                "distinct_predictions": distinct_predictions(run_dir),
            }

    settings = (
        f"{args.epochs} epochs, batch {args.batch_size}, lr {args.learning_rate}, hidden {args.hidden_size}, "
        f"{args.num_attention_heads} heads, {args.layers}+{args.layers} layers, FFN {args.intermediate_size}, "
        f"vocab {args.vocab_size}; beam {args.beams}, no-repeat {args.no_repeat_ngram_size}-grams, "
        f"max {args.generation_max_length} tokens"
    )
    if args.folds is not None:
        table, numbers = cross_validation_tables(results, args.models)
        print(f"\nXSum, {args.folds}-fold cross-validation (fold seed {args.fold_seed}); {settings}\n")
        print(table)
        suffix = "" if fold_list == list(range(args.folds)) else "-folds-" + "-".join(map(str, fold_list))
        (output_dir / f"summary{suffix}.json").write_text(
            json.dumps(
                {"settings": vars(args), "per_fold": {str(f): runs for f, runs in results.items()}, **numbers},
                indent=2,
            )
        )
        if args.source_loss:
            for fold, runs in results.items():
                test = fold_test_pairs(args.data_cache_dir, args.folds, fold, args.fold_seed)
                for name, run in runs.items():
                    path = output_dir / f"fold{fold}" / name / "source_loss.json"
                    if not path.is_file():
                        path.write_text(json.dumps(source_losses(test, path.parent, args.max_source_length)))
                    run.update(json.loads(path.read_text()))
            table, source_numbers = source_tables(results, args.models)
            print(
                "\nTeacher-forced test loss with each summary's own document and with the next test pair's "
                "document (nats/token; source gain = the second minus the first), mean ± std over folds:\n"
            )
            print(table)
            (output_dir / f"summary-source{suffix}.json").write_text(json.dumps(source_numbers, indent=2))
        if args.rescore_beams is not None:
            rescored = rescore(args, results, output_dir, cache)
            table, numbers = cross_validation_tables(rescored, args.models)
            print(
                f"\nThe same trained models decoded again with beam {args.rescore_beams} (no-repeat "
                f"{args.no_repeat_ngram_size}-grams, max {args.generation_max_length} tokens):\n"
            )
            print(table)
            (output_dir / f"summary-beams{args.rescore_beams}{suffix}.json").write_text(
                json.dumps(
                    {"settings": vars(args), "per_fold": {str(f): runs for f, runs in rescored.items()}, **numbers},
                    indent=2,
                )
            )
        return
    results = results[None]
    print(f"\nXSum (built-in split): trained on 849 pairs, scored on 100 held-out pairs; {settings}\n")
    print(
        "| model | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum | mean length | test loss | mean train loss "
        "| train time (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['predict_rouge1']:.2f} | {r['predict_rouge2']:.2f} | {r['predict_rougeL']:.2f} | "
            f"{r['predict_rougeLsum']:.2f} | {r['predict_gen_len']:.1f} | {r['predict_loss']:.3f} | "
            f"{r['train_loss']:.3f} | {r['train_runtime']:.0f} |"
        )
    lead = next(iter(results.values()))
    print(
        f"| lead-1 | {lead['predict_lead1_rouge1']:.2f} | {lead['predict_lead1_rouge2']:.2f} | "
        f"{lead['predict_lead1_rougeL']:.2f} | {lead['predict_lead1_rougeLsum']:.2f} | | | | |"
    )
    (output_dir / "summary.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
