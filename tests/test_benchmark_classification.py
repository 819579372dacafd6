"""`benchmarks/benchmark_classification.py` reads finished runs back instead of re-running them, and its summary
row (mean ± std over seeds, accuracy difference and time ratio against BERT at the same length) is arithmetic on
those runs."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

from helpers import load_script


SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark_classification.py"


def load():
    return load_script(SCRIPT, "benchmark_classification")


def test_finished_runs_are_read_back_and_summarized(tmp_path, monkeypatch, capsys):
    runs = {
        ("fastformer", 0): (0.80, 100.0),
        ("fastformer", 1): (0.84, 140.0),
        ("bert", 0): (0.81, 1000.0),
        ("bert", 1): (0.83, 1400.0),
        ("fastformer-packed", 0): (0.80, 50.0),
        ("fastformer-packed", 1): (0.82, 70.0),
    }
    speeds = {"fastformer": [1000.0, 1000.0], "fastformer-packed": [1500.0, 2500.0]}
    for (arm, seed), (accuracy, seconds) in runs.items():
        model_type = "bert" if arm == "bert" else "fastformer"
        run_dir = tmp_path / f"{arm}-2048-seed{seed}"
        run_dir.mkdir()
        (run_dir / "all_results.json").write_text(
            json.dumps(
                {
                    "model_type": model_type,
                    "max_seq_length": 2048,
                    "seed": seed,
                    "accuracy": accuracy,
                    "macro_f1": accuracy,
                    "train_seconds": seconds,
                    "eval_seconds": 1.0,
                    "torch_threads": 1 + seed,
                    **({"peak_memory_mib": 512.4} if seed else {}),
                    **({"real_tokens_per_second": speeds[arm][seed]} if arm in speeds else {}),
                }
            )
        )
    module = load()

    def no_new_run(*args, **kwargs):
        raise AssertionError(f"re-ran a finished run: {args}")

    monkeypatch.setattr(module, "subprocess", SimpleNamespace(run=no_new_run))
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "benchmark_classification.py",
            "--output_dir",
            str(tmp_path),
            "--models",
            "fastformer",
            "fastformer-packed",
            "bert",
            "--lengths",
            "2048",
            "--seeds",
            "0",
            "1",
            "--json",
            str(tmp_path / "rows.json"),
        ],
    )
    module.main()
    out = capsys.readouterr().out
    assert "| fastformer | 2048 | 1 | 0.8400 | 0.8400 | 140 | 1.0 | 2 | 512 | 1,000 |" in out  # own threads
    assert "| bert | 2048 | 0 | 0.8100 | 0.8100 | 1000 | 1.0 | 1 | — | — |" in out  # no memory reading, no speed
    # means 0.820 vs 0.820 (difference +0.000), std 0.028; time 120 s vs 1,200 s: 0.10x; 1,000 real tokens/s
    assert "| fastformer | 2048 | 0,1 | 0.820 ± 0.028 | 0.820 ± 0.028 | 120 | +0.000 | 0.10x | 1,000 | — |" in out
    assert "| bert | 2048 | 0,1 | 0.820 ± 0.014 | 0.820 ± 0.014 | 1200 | — | — | — | — |" in out
    # packed: 1,500 and 2,500 real tokens/s, mean 2,000 against padded's 1,000: 2.00x
    assert (
        "| fastformer-packed | 2048 | 0,1 | 0.810 ± 0.014 | 0.810 ± 0.014 | 60 | -0.010 | 0.05x | 2,000 | 2.00x |"
        in out
    )
    assert len(json.loads((tmp_path / "rows.json").read_text())) == 6
