"""benchmarks/lm_equal_budget.py on a tiny local corpus: both arms' curves, a summary that is arithmetic on them,
finished runs read back, an interrupted run resumed to the uninterrupted curve, other settings refused."""

import json
import math
import random
import sys
from pathlib import Path

import pytest


pytest.importorskip("tokenizers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_equal_budget  # noqa: E402


NOUNS = "cat dog bird fish horse cow duck goat".split()
VERBS = "sees likes chases feeds follows".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """40 documents (blank-line separated) of a toy grammar."""
    rng = random.Random(0)
    docs = [" ".join(f"the {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} ." for _ in range(30))
            for _ in range(40)]
    path = tmp_path_factory.mktemp("corpus") / "train.txt"
    path.write_text("\n\n".join(docs) + "\n")
    return path


def tiny_args(corpus: Path, output_dir: Path, *extra: str) -> list[str]:
    return ["--output_dir", str(output_dir), "--train_file", str(corpus), "--vocab_size", "300", "--context", "64",
            "--gen_tokens", "8", "--hidden_size", "32", "--layers", "1", "--heads", "2", "--ffn", "64",
            "--batch_size", "4", "--steps", "4", "--eval_every", "2", "--eval_tokens", "256", "--seeds", "0", "1",
            *extra]


def test_curves_summary_and_read_back(corpus, tmp_path, capsys):
    summary = lm_equal_budget.main(tiny_args(corpus, tmp_path))
    records = {}
    for arm in ("fastformer", "gpt2"):
        for seed in (0, 1):
            path = tmp_path / f"{arm}-ctx64-seed{seed}.json"
            record = json.loads(path.read_text())
            assert record["finished"] and not path.with_suffix(".pt").exists()
            assert [p["step"] for p in record["curve"]] == [0, 2, 4]
            assert all(math.isclose(p["perplexity"], math.exp(p["loss"])) for p in record["curve"])
            assert record["train_tokens"] == 4 * 4 * 64 and record["generation_prompt_tokens"] == 64 - 8
            records[(arm, seed)] = record
    # the two arms differ (different models) but share the data: same settings apart from the arm
    assert records[("fastformer", 0)]["curve"][-1]["loss"] != records[("gpt2", 0)]["curve"][-1]["loss"]
    assert {**records[("fastformer", 0)]["settings"], "arm": None} == {**records[("gpt2", 0)]["settings"], "arm": None}

    for arm in ("fastformer", "gpt2"):
        final = [records[(arm, seed)]["curve"][-1]["perplexity"] for seed in (0, 1)]
        row = summary["arms"][arm]
        assert row["final_perplexity"] == final
        assert math.isclose(row["perplexity_mean"], sum(final) / 2)
        assert math.isclose(row["perplexity_std"], abs(final[0] - final[1]) / math.sqrt(2))
        speeds = [records[(arm, seed)]["train_tokens_per_s"] for seed in (0, 1)]
        assert math.isclose(row["train_tokens_per_s"], sum(speeds) / 2)
        generation = [records[(arm, seed)]["generation_tokens_per_s"] for seed in (0, 1)]
        assert math.isclose(row["generation_tokens_per_s"], sum(generation) / 2)
    f, g = summary["arms"]["fastformer"], summary["arms"]["gpt2"]
    assert math.isclose(summary["ratios"]["perplexity_mean"], f["perplexity_mean"] / g["perplexity_mean"])
    assert math.isclose(summary["ratios"]["train_tokens_per_s"], f["train_tokens_per_s"] / g["train_tokens_per_s"])
    assert json.loads((tmp_path / "summary-ctx64.json").read_text())["ratios"] == summary["ratios"]
    assert (tmp_path / "lm-ctx64.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert "| **Fastformer / GPT-2** |" in table and f"{f['perplexity_mean']:.2f}" in table

    # a second invocation reads the finished runs back: nothing is trained, the files are untouched
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*-ctx64-seed*.json")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    original = lm_equal_budget.next_token_loss
    lm_equal_budget.next_token_loss = no_training
    try:
        again = lm_equal_budget.main(tiny_args(corpus, tmp_path, "--no_plot"))
    finally:
        lm_equal_budget.next_token_loss = original
    assert again["arms"] == summary["arms"]
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*-ctx64-seed*.json")} == before
    assert capsys.readouterr().out.count("finished earlier, read back") == 4


def test_interrupted_run_resumes_to_the_uninterrupted_curve(corpus, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    lm_equal_budget.main(tiny_args(corpus, whole, "--arms", "fastformer", "--seeds", "0", "--no_plot"))
    expected = json.loads((whole / "fastformer-ctx64-seed0.json").read_text())["curve"]

    broken = tmp_path / "broken"
    calls = []
    evaluate = lm_equal_budget.evaluate

    def evaluate_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # evaluations at steps 0, 2, then the one at step 4: the process "dies"
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(lm_equal_budget, "evaluate", evaluate_then_stop)
    with pytest.raises(KeyboardInterrupt):
        lm_equal_budget.main(tiny_args(corpus, broken, "--arms", "fastformer", "--seeds", "0", "--no_plot"))
    record = json.loads((broken / "fastformer-ctx64-seed0.json").read_text())
    assert not record["finished"] and [p["step"] for p in record["curve"]] == [0, 2]
    assert (broken / "fastformer-ctx64-seed0.pt").exists()

    monkeypatch.setattr(lm_equal_budget, "evaluate", evaluate)
    lm_equal_budget.main(tiny_args(corpus, broken, "--arms", "fastformer", "--seeds", "0", "--no_plot"))
    resumed = json.loads((broken / "fastformer-ctx64-seed0.json").read_text())
    assert resumed["finished"] and [p["step"] for p in resumed["curve"]] == [0, 2, 4]
    for got, want in zip(resumed["curve"], expected):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)


def test_other_settings_in_the_same_directory_are_refused(corpus, tmp_path):
    lm_equal_budget.main(tiny_args(corpus, tmp_path, "--arms", "gpt2", "--seeds", "0", "--no_plot"))
    with pytest.raises(SystemExit, match="other settings"):
        lm_equal_budget.main(tiny_args(corpus, tmp_path, "--arms", "gpt2", "--seeds", "0", "--no_plot",
                                       "--lr", "0.002"))
    with pytest.raises(SystemExit, match="data built with"):
        lm_equal_budget.main(tiny_args(corpus, tmp_path, "--arms", "gpt2", "--seeds", "0", "--no_plot",
                                       "--vocab_size", "280"))
