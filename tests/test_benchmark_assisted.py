"""benchmarks/benchmark_assisted.py --smoke (a toy corpus, tiny models, seconds): the assisted and prompt-lookup
outputs equal greedy's, the acceptance counts add up to the generated tokens, the ratios are arithmetic on the
speeds, the recording cache holds `1 + k` states per slot, and a rerun reads the trained models back."""

import json
import sys
from pathlib import Path

import pytest


pytest.importorskip("tokenizers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import benchmark_assisted  # noqa: E402


PROMPTS, NEW_TOKENS, ROUNDS = 2, 8, 1  # the smoke run's


def test_smoke_run(tmp_path, capsys, monkeypatch):
    summary = benchmark_assisted.main(["--output_dir", str(tmp_path), "--smoke"])
    printed = capsys.readouterr().out
    assert "| assisted, k=2 |" in printed and "| prompt lookup, n=2 |" in printed and "| target | k=2 |" in printed

    assert set(summary["decoding"]) == {"held_out", "held_out_penalty", "repetitive"}
    assert 0 <= summary["top1_agreement"] <= 1
    for case, rows in summary["decoding"].items():
        greedy = rows["greedy"]["tokens_per_second"]
        assert set(rows) == {"greedy", "assisted, k=2", "prompt lookup, n=2"}
        for name, row in rows.items():
            assert all(speed > 0 for speed in row["tokens_per_second"])
            assert row["ratio_to_greedy"] == [mine / base for mine, base in zip(row["tokens_per_second"], greedy)]
            if name == "greedy":
                continue
            assert row["same_as_greedy"]
            # each verification forward keeps the accepted draft tokens and adds one token of the target's own
            assert row["accepted"] + row["target_forwards"] == PROMPTS * NEW_TOKENS * ROUNDS
            assert 0 <= row["accepted"] <= row["drafted"]
    for role in ("target", "draft"):
        memory = summary["cache_bytes"][role]
        assert memory[2] == 3 * memory["off"]  # the state and the 2 recorded before it, per slot
    assert json.loads((tmp_path / "results.json").read_text())["decoding"].keys() == summary["decoding"].keys()

    # a rerun reads both trained models back: nothing is trained
    def no_training(*args, **kwargs):
        raise AssertionError("a trained model was trained again")

    monkeypatch.setattr(benchmark_assisted, "next_token_loss", no_training)
    again = benchmark_assisted.main(["--output_dir", str(tmp_path), "--smoke"])
    assert again["training"] == summary["training"]
    for case, rows in summary["decoding"].items():  # the same models: the same drafts accepted
        assert again["decoding"][case]["assisted, k=2"]["accepted"] == rows["assisted, k=2"]["accepted"]
