#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Fastformer vs a same-size BERT on the main job: accuracy, macro-F1 and wall time per (model, length, seed).

Runs `fastformer-classify` once per combination, each in a fresh process with identical settings (same data, fixed
split, tokenizer, epochs, batch size and learning rate; only `--model_type`, `--max_seq_length` and `--seed`
change), then prints one row per run and a summary (mean ± std over seeds) with Fastformer's accuracy difference
and wall-time ratio against BERT at the same length, and each variant's (packed, uniform) accuracy difference against
the plain fastformer arm. The arm `fastformer-packed` is Fastformer with `--packing true`
(each batch packed into one row without padding); its summary row also gives its real (non-padding) tokens per second
against padded Fastformer's at the same length. The arm `fastformer-uniform` is the fastformer arm's job run through
`benchmarks/ablations.py uniform --` (every additive attention's pooling weights alpha and beta uniform over the
unmasked tokens: the global query and key are plain means; the logit layers keep their initial weights); its
results carry `"ablation": "uniform_pooling"` and its run directory an `ABLATION.md`, because the saved checkpoint
does not hold the ablation (loaded as is, it would pool with those untrained logit layers). A run whose
`all_results.json` already exists under `--output_dir` is read back instead of re-run, so an interrupted comparison
can be resumed or extended.

    python benchmarks/benchmark_classification.py --output_dir outputs/compare --seeds 0 1 2
    python benchmarks/benchmark_classification.py --output_dir outputs/compare --models fastformer --lengths 2048 \
        -- --num_train_epochs 4          # everything after `--` goes to every run
    python benchmarks/benchmark_classification.py --output_dir outputs/packing --models fastformer fastformer-packed \
        --lengths 2048 --seeds 0 1 2     # padded vs packed batches
    python benchmarks/benchmark_classification.py --output_dir outputs/uniform --models fastformer fastformer-uniform \
        --lengths 2048 --seeds 0 1 2     # learned vs uniform pooling weights
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from common import mean_std

from fastformer.classify.reporting import markdown_table


# the job's options of each arm
ARMS = {
    "fastformer": ["--model_type", "fastformer"],
    "fastformer-packed": ["--model_type", "fastformer", "--packing", "true"],
    "fastformer-uniform": ["--model_type", "fastformer"],
    "bert": ["--model_type", "bert"],
}
# the arms run under an ablation of `benchmarks/ablations.py`: arm -> (its command, the name recorded in the results)
ABLATED = {"fastformer-uniform": ("uniform", "uniform_pooling")}
ABLATIONS_SCRIPT = Path(__file__).resolve().parent / "ablations.py"


def job_command(arm: str) -> list[str]:
    """How the arm's job starts: `fastformer-classify` (as a module of this interpreter), or for an ablated arm the
    same job through `ablations.py <ablation> --`."""
    if arm in ABLATED:
        return [sys.executable, str(ABLATIONS_SCRIPT), ABLATED[arm][0], "--"]
    return [sys.executable, "-m", "fastformer.classify.run_classification"]


def mark_ablated(run_dir: Path, arm: str):
    """Records an ablated arm's ablation where its checkpoint is: `"ablation"` in `all_results.json` and a note
    `ABLATION.md` (idempotent, so a run read back after an interruption gets it too)."""
    ablation = ABLATED[arm][1]
    results = run_dir / "all_results.json"
    row = json.loads(results.read_text())
    if row.get("ablation") != ablation:
        results.write_text(json.dumps({**row, "ablation": ablation}, indent=2) + "\n")
    (run_dir / "ABLATION.md").write_text(
        f"# Ablated run: {ablation}\n\n"
        f"Trained by `benchmarks/benchmark_classification.py` (arm `{arm}`) through `benchmarks/ablations.py "
        f"{ABLATED[arm][0]}`: every additive attention's pooling logits were replaced by zeros (uniform weights "
        "alpha and beta over the unmasked tokens) by forward hooks that the checkpoint does not hold. Its "
        "`query_att` / `key_att` layers are untrained initial weights: loaded as is, this is not the model that "
        "was evaluated; apply `ablations.uniform_pooling` to the loaded model to get it back.\n"
    )


def run_one(output_dir: Path, arm: str, length: int, seed: int, extra: list[str]) -> dict:
    run_dir = output_dir / f"{arm}-{length}-seed{seed}"
    results = run_dir / "all_results.json"
    if not results.is_file():
        command = [
            *job_command(arm),
            "--output_dir",
            str(run_dir),
            *ARMS[arm],
            "--max_seq_length",
            str(length),
            "--seed",
            str(seed),
            "--disable_tqdm",
            "true",
            *extra,
        ]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, check=True)
    if arm in ABLATED:
        mark_ablated(run_dir, arm)
    return {**json.loads(results.read_text()), "arm": arm}


def mean_and_spread(values: list[float]) -> str:
    """`mean ± std` over seeds (std 0 for one seed)."""
    return "{:.3f} ± {:.3f}".format(*mean_std(values))


def tokens_per_second(group: list[dict]) -> float | None:
    """Mean real tokens per second of training over the runs (None if a run predates the measure)."""
    values = [r.get("real_tokens_per_second") for r in group]
    return None if None in values else statistics.mean(values)


def summarize(rows: list[dict]) -> str:
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["arm"], row["max_seq_length"]), []).append(row)
    table = []
    for (model_type, length), group in sorted(groups.items()):
        accuracy = [r["accuracy"] for r in group]
        seconds = statistics.mean(r["train_seconds"] for r in group)
        peer = groups.get(("bert", length))
        if model_type != "bert" and peer:
            delta = f"{statistics.mean(accuracy) - statistics.mean(r['accuracy'] for r in peer):+.3f}"
            ratio = f"{seconds / statistics.mean(r['train_seconds'] for r in peer):.2f}x"
        else:
            delta = ratio = "—"
        seeds = ",".join(str(r["seed"]) for r in group)
        speed, padded = tokens_per_second(group), groups.get(("fastformer", length))
        versus_fastformer = "—"
        if model_type not in ("fastformer", "bert") and padded:  # a variant of the fastformer arm against it
            versus_fastformer = f"{statistics.mean(accuracy) - statistics.mean(r['accuracy'] for r in padded):+.3f}"
        versus_padded = "—"
        if model_type == "fastformer-packed" and padded and speed and tokens_per_second(padded):
            versus_padded = f"{speed / tokens_per_second(padded):.2f}x"
        table.append(
            [
                model_type,
                length,
                seeds,
                mean_and_spread(accuracy),
                mean_and_spread([r["macro_f1"] for r in group]),
                f"{seconds:.0f}",
                delta,
                ratio,
                versus_fastformer,
                "—" if speed is None else f"{speed:,.0f}",
                versus_padded,
            ]
        )
    return markdown_table(
        [
            "model",
            "max tokens",
            "seeds",
            "accuracy",
            "macro-F1",
            "train s (mean)",
            "Δ accuracy vs BERT",
            "time / BERT",
            "Δ accuracy vs fastformer",
            "real tokens/s",
            "tokens/s vs padded",
        ],
        table,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default="outputs/compare")
    parser.add_argument("--models", nargs="+", default=["fastformer", "bert"], choices=list(ARMS))
    parser.add_argument("--lengths", nargs="+", type=int, default=[512, 2048])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--json", help="also write the rows here")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    output_dir = Path(args.output_dir)
    rows = []
    for seed in args.seeds:  # seeds outermost: a cut-short run still has every model and length for the first seeds
        for length in args.lengths:
            for arm in args.models:
                rows.append(run_one(output_dir, arm, length, seed, extra))
    print(
        f"\n{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}\n"
    )
    table = []
    for r in rows:  # a run read back may have had other threads than this process: each row says its own
        peak = f"{r['peak_memory_mib']:.0f}" if r.get("peak_memory_mib") is not None else "—"  # older runs lack it
        speed = r.get("real_tokens_per_second")
        table.append(
            [
                r["arm"],
                r["max_seq_length"],
                r["seed"],
                f"{r['accuracy']:.4f}",
                f"{r['macro_f1']:.4f}",
                f"{r['train_seconds']:.0f}",
                f"{r['eval_seconds']:.1f}",
                r["torch_threads"],
                peak,
                "—" if speed is None else f"{speed:,.0f}",
            ]
        )
    print(
        markdown_table(
            [
                "model",
                "max tokens",
                "seed",
                "accuracy",
                "macro-F1",
                "train s",
                "eval s",
                "torch threads",
                "peak memory (MiB)",
                "real tokens/s",
            ],
            table,
        )
    )
    print()
    print(summarize(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
