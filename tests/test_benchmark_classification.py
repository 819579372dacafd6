"""`benchmarks/benchmark_classification.py` reads finished runs back instead of re-running them, and its summary
row (mean ± std over seeds, accuracy difference and time ratio against BERT at the same length) is arithmetic on
those runs; the uniform-pooling arm runs the fastformer arm's job through the ablation and says so in its
results."""

import csv
import json
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from helpers import load_script
from safetensors.torch import load_file


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
    assert "| fastformer | 2048 | 0,1 | 0.820 ± 0.028 | 0.820 ± 0.028 | 120 | +0.000 | 0.10x | — | 1,000 | — |" in out
    assert "| bert | 2048 | 0,1 | 0.820 ± 0.014 | 0.820 ± 0.014 | 1200 | — | — | — | — | — |" in out
    # packed: 1,500 and 2,500 real tokens/s, mean 2,000 against padded's 1,000: 2.00x
    assert (
        "| fastformer-packed | 2048 | 0,1 | 0.810 ± 0.014 | 0.810 ± 0.014 | 60 | -0.010 | 0.05x | -0.010 | 2,000 | 2.00x |"
        in out
    )
    assert len(json.loads((tmp_path / "rows.json").read_text())) == 6


def test_uniform_arm_runs_the_fastformer_job_through_the_ablation(tmp_path, monkeypatch):
    """`fastformer-uniform`: the fastformer arm's command line, started through `ablations.py uniform --`; its
    pooling-logit layers never train (two uniform runs at different learning rates keep the same initial ones, where
    the plain run's logit layers and the other weights moved), and its results say it was ablated."""
    rng = random.Random(0)
    rows = []
    for i in range(32):
        words = rng.choices("the film story actor scene plot music end".split(), k=rng.randint(10, 40))
        words.insert(rng.randrange(len(words)), ["dull", "superb"][i % 2])
        rows.append((" ".join(words), ["neg", "pos"][i % 2]))
    train_file = tmp_path / "reviews.csv"
    with open(train_file, "w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    tiny = ["--train_file", str(train_file), "--test_size", "0.25", "--hidden_size", "16", "--num_attention_heads"]
    tiny += ["2", "--intermediate_size", "32", "--num_hidden_layers", "1", "--num_train_epochs", "2"]
    tiny += ["--per_device_train_batch_size", "8", "--hidden_dropout_prob", "0", "--learning_rate"]
    module = load()
    ablations = load_script(SCRIPT.parent / "ablations.py", "ablations")
    from fastformer.classify import run_classification as job

    commands = {}

    def in_process(command, check):  # the subprocess, run here (sys.argv restored by monkeypatch)
        if command[1] == str(SCRIPT.parent / "ablations.py"):
            commands["fastformer-uniform"] = command
            ablations.main(command[2:])
        else:
            commands["fastformer"] = command
            job.main(command[3:])

    monkeypatch.setattr(module, "subprocess", SimpleNamespace(run=in_process))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    plain = module.run_one(tmp_path / "runs", "fastformer", 48, 0, [*tiny, "5e-3"])
    uniform = module.run_one(tmp_path / "runs", "fastformer-uniform", 48, 0, [*tiny, "5e-3"])
    assert commands["fastformer-uniform"][1:4] == [str(SCRIPT.parent / "ablations.py"), "uniform", "--"]
    assert commands["fastformer"][1:3] == ["-m", "fastformer.classify.run_classification"]
    options = {arm: command[command.index("--output_dir") + 2 :] for arm, command in commands.items()}
    assert options["fastformer"] == options["fastformer-uniform"]  # the same job, only the ablation differs
    assert uniform["ablation"] == "uniform_pooling" and "ablation" not in plain
    assert (tmp_path / "runs" / "fastformer-uniform-48-seed0" / "ABLATION.md").is_file()
    module.run_one(tmp_path / "faster", "fastformer-uniform", 48, 0, [*tiny, "2e-2"])
    weights = {
        name: load_file(tmp_path / directory / f"{arm}-48-seed0" / "model.safetensors")
        for name, directory, arm in (
            ("plain", "runs", "fastformer"),
            ("uniform", "runs", "fastformer-uniform"),
            ("uniform, lr 2e-2", "faster", "fastformer-uniform"),
        )
    }
    layer = "fastformer.encoder.layer.0.attention.self"
    for name in (f"{layer}.query_att.weight", f"{layer}.key_att.weight"):  # the logit layers: initial weights
        assert torch.equal(weights["uniform"][name], weights["uniform, lr 2e-2"][name]), name
        assert (weights["plain"][name] - weights["uniform"][name]).abs().max() > 1e-5, name  # trained in plain
    # the rest trains (here, at the 0.02 initialisation, the context barely moves the plain run's other weights)
    query = f"{layer}.query.weight"
    assert (weights["uniform, lr 2e-2"][query] - weights["uniform"][query]).abs().max() > 1e-4
    # read back after an interruption between the job's end and the marking: marked all the same
    results = tmp_path / "runs" / "fastformer-uniform-48-seed0" / "all_results.json"
    results.write_text(json.dumps({k: v for k, v in json.loads(results.read_text()).items() if k != "ablation"}))
    assert module.run_one(tmp_path / "runs", "fastformer-uniform", 48, 0, tiny)["ablation"] == "uniform_pooling"
