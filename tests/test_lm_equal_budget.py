"""benchmarks/lm_equal_budget.py on a tiny local corpus: both arms' curves, a summary that is arithmetic on them,
finished runs read back, an interrupted run resumed to the uninterrupted curve, other settings refused; the masked-LM
objective (one held-out masking for both arms and every call, BERT's masking rates, training masks by seed and step);
the diagnostic ablations (no_attention: no position sees another token; pre_ln: the library's pre-LN layout, same
initial weights; uniform: running-mean pools, untrained logit layers)."""

import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


pytest.importorskip("tokenizers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_equal_budget  # noqa: E402
from helpers import assert_far, randomize_  # noqa: E402
from reference import causal_lm_logits  # noqa: E402

from fastformer.modeling_fastformer import FastformerAdditiveProjections  # noqa: E402


NOUNS = "cat dog bird fish horse cow duck goat".split()
VERBS = "sees likes chases feeds follows".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """40 documents (blank-line separated) of a toy grammar."""
    rng = random.Random(0)
    docs = [
        " ".join(f"the {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} ." for _ in range(30))
        for _ in range(40)
    ]
    path = tmp_path_factory.mktemp("corpus") / "train.txt"
    path.write_text("\n\n".join(docs) + "\n")
    return path


def tiny_args(corpus: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--output_dir",
        str(output_dir),
        "--train_file",
        str(corpus),
        "--vocab_size",
        "300",
        "--context",
        "64",
        "--gen_tokens",
        "8",
        "--hidden_size",
        "32",
        "--layers",
        "1",
        "--heads",
        "2",
        "--ffn",
        "64",
        "--batch_size",
        "4",
        "--steps",
        "4",
        "--eval_every",
        "2",
        "--eval_tokens",
        "256",
        "--seeds",
        "0",
        "1",
        *extra,
    ]


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
        lm_equal_budget.main(
            tiny_args(corpus, tmp_path, "--arms", "gpt2", "--seeds", "0", "--no_plot", "--lr", "0.002")
        )
    with pytest.raises(SystemExit, match="data built with"):
        lm_equal_budget.main(
            tiny_args(corpus, tmp_path, "--arms", "gpt2", "--seeds", "0", "--no_plot", "--vocab_size", "280")
        )


def test_masked_lm_objective_scores_both_arms_on_one_held_out_masking(corpus, tmp_path, monkeypatch):
    seen = []
    evaluate = lm_equal_budget.evaluate

    def recording_evaluate(model, eval_data, batch_size):
        seen.append((type(model).__name__, eval_data))
        return evaluate(model, eval_data, batch_size)

    monkeypatch.setattr(lm_equal_budget, "evaluate", recording_evaluate)
    summary = lm_equal_budget.main(tiny_args(corpus, tmp_path, "--objective", "mlm", "--seeds", "0"))
    assert {name for name, _ in seen} == {"FastformerForMaskedLM", "BertForMaskedLM"} and len(seen) == 6
    inputs, labels = seen[0][1]
    for _, (other_inputs, other_labels) in seen[1:]:  # every evaluation of both arms: the same masked tokens
        assert torch.equal(other_inputs, inputs) and torch.equal(other_labels, labels)
    # the masking is a function of --data_seed only: a second invocation (another seed) makes the same one
    seen.clear()
    lm_equal_budget.main(tiny_args(corpus, tmp_path / "again", "--objective", "mlm", "--seeds", "1", "--no_plot"))
    assert torch.equal(seen[0][1][0], inputs) and torch.equal(seen[0][1][1], labels)
    chosen = labels != -100
    blocks = lm_equal_budget.held_out_blocks(np.load(tmp_path / "held_out_ids.npy"), 64, 256)
    assert 0 < chosen.sum() < labels.numel() and torch.equal(inputs[~chosen], blocks[~chosen])
    assert torch.equal(labels[chosen], blocks[chosen])

    records = {
        arm: json.loads((tmp_path / f"mlm-{arm}-ctx64-seed0.json").read_text()) for arm in ("fastformer", "bert")
    }
    assert {**records["fastformer"]["settings"], "arm": None} == {**records["bert"]["settings"], "arm": None}
    assert records["fastformer"]["settings"]["objective"] == "mlm"
    assert records["fastformer"]["curve"][-1]["loss"] != records["bert"]["curve"][-1]["loss"]
    assert all(r["finished"] and "generation_tokens_per_s" not in r for r in records.values())
    # same size: the arms differ only by BERT's token-type row (one type) and their layers
    sizes = records["fastformer"]["parameters"], records["bert"]["parameters"]
    assert abs(sizes[0] - sizes[1]) < 0.05 * sizes[1]
    assert math.isclose(
        summary["ratios"]["perplexity_mean"],
        summary["arms"]["fastformer"]["perplexity_mean"] / summary["arms"]["bert"]["perplexity_mean"],
    )
    assert (tmp_path / "mlm-ctx64.png").stat().st_size > 0 and (tmp_path / "summary-mlm-ctx64.json").is_file()


def test_bert_masking_rates_and_training_masks_depend_only_on_seed_and_step(corpus, tmp_path):
    args = lm_equal_budget.parse_args(tiny_args(corpus, tmp_path, "--objective", "mlm"))
    ids = torch.randint(100, (64, 512), generator=torch.Generator().manual_seed(0))
    inputs, labels = lm_equal_budget.mask_tokens(ids, torch.Generator().manual_seed(1), 100, 100, 0.15)
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(inputs[~chosen], ids[~chosen])
    assert chosen.float().mean().item() == pytest.approx(0.15, abs=0.005)
    assert (inputs[chosen] == 100).float().mean().item() == pytest.approx(0.8, abs=0.01)
    assert (inputs[chosen] == ids[chosen]).float().mean().item() == pytest.approx(0.1 + 0.1 / 100, abs=0.01)
    a = lm_equal_budget.training_masking(ids, 3, 0, args, 100)
    assert all(torch.equal(x, y) for x, y in zip(a, lm_equal_budget.training_masking(ids, 3, 0, args, 100)))
    for other in (
        lm_equal_budget.training_masking(ids, 4, 0, args, 100),
        lm_equal_budget.training_masking(ids, 3, 1, args, 100),
    ):
        assert not torch.equal(a[1], other[1])


def _pair(corpus, tmp_path, arm: str, *ablation: str, scale: float = 1.0):
    """(plain model, ablated model) of one initialisation, tiny, in eval mode; matrices times `scale`."""
    args = lm_equal_budget.parse_args(tiny_args(corpus, tmp_path))
    ablated_args = lm_equal_budget.parse_args(tiny_args(corpus, tmp_path, "--arms", arm, "--ablation", *ablation))
    torch.manual_seed(0)
    plain = lm_equal_budget.build_model(arm, args, 300, 0).eval()
    torch.manual_seed(0)
    ablated = lm_equal_budget.build_model(arm, ablated_args, 300, 0).eval()
    with torch.no_grad():
        for model in (plain, ablated):
            for parameter in model.parameters():
                if parameter.ndim >= 2:
                    parameter.mul_(scale)
    return plain, ablated


@pytest.mark.parametrize("arm", ["fastformer", "gpt2", "bert"])
def test_no_attention_ablation_removes_every_token_token_interaction(corpus, tmp_path, arm):
    # weights 10x the 0.02 initialisation: at init Fastformer's context term is cubic in them (W_T (G^k * v)),
    # ~1e-7 in the logits, too close to rounding to show
    plain, ablated = _pair(corpus, tmp_path, arm, "no_attention", scale=10.0)
    ids = torch.randint(300, (2, 64), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 0] = (ids[:, 0] + 1) % 300  # another first token
    with torch.no_grad():
        p, p_changed = plain(input_ids=ids).logits, plain(input_ids=changed).logits
        a, a_changed = ablated(input_ids=ids).logits, ablated(input_ids=changed).logits
    assert (a - p).abs().max() > 0.1  # the attention's contribution is gone
    # with attention the first token reaches every later position; without, no position sees another token
    assert (p_changed[:, 1:] - p[:, 1:]).abs().amax(dim=-1).min() > 1e-4
    torch.testing.assert_close(a_changed[:, 1:], a[:, 1:], rtol=0, atol=0)
    assert (a_changed[:, 0] - a[:, 0]).abs().max() > 0.1


@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_pre_ln_ablation_is_the_librarys_pre_ln_layout_with_the_same_initial_weights(corpus, tmp_path, objective):
    # the layout itself is tested against an independent computation in tests/test_pre_layer_norm.py
    extra = ("--objective", "mlm") if objective == "mlm" else ()
    args = lm_equal_budget.parse_args(tiny_args(corpus, tmp_path, *extra))
    ablated_args = lm_equal_budget.parse_args(
        tiny_args(corpus, tmp_path, *extra, "--arms", "fastformer", "--ablation", "pre_ln")
    )
    torch.manual_seed(0)
    plain = lm_equal_budget.build_model("fastformer", args, 300, 0)
    torch.manual_seed(0)
    ablated = lm_equal_budget.build_model("fastformer", ablated_args, 300, 0)
    assert (plain.config.layer_norm_position, ablated.config.layer_norm_position) == ("post", "pre")
    # the same parameters, the embedding LayerNorm's now after the last layer, drawn identically
    moved = {
        "fastformer.embeddings.LayerNorm.weight": "fastformer.final_layer_norm.weight",
        "fastformer.embeddings.LayerNorm.bias": "fastformer.final_layer_norm.bias",
    }
    plain_state, ablated_state = plain.state_dict(), ablated.state_dict()
    assert {moved.get(name, name) for name in plain_state} == set(ablated_state)
    for name, value in plain_state.items():
        assert torch.equal(value, ablated_state[moved.get(name, name)]), name


def test_a_fastformer_only_ablation_leaves_the_other_arm_as_its_plain_run(corpus, tmp_path, capsys):
    """`--arms fastformer gpt2 --ablation pre_ln`: pre-LN Fastformer against the plain GPT-2, side by side; GPT-2's
    run is the plain one (same file name and settings: a plain run of it is read back, not trained again)."""
    plain = tmp_path / "plain"
    lm_equal_budget.main(tiny_args(corpus, plain, "--arms", "gpt2", "--seeds", "0", "--no_plot"))
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in ("gpt2-ctx64-seed0.json", "data.json", "tokenizer.json", "train_ids.npy", "held_out_ids.npy"):
        (shared / name).write_bytes((plain / name).read_bytes())
    capsys.readouterr()
    summary = lm_equal_budget.main(
        tiny_args(corpus, shared, "--arms", "fastformer", "gpt2", "--ablation", "pre_ln", "--seeds", "0", "--no_plot")
    )
    out = capsys.readouterr().out
    assert "gpt2-ctx64-seed0: finished earlier, read back" in out
    fastformer = json.loads((shared / "fastformer-pre_ln-ctx64-seed0.json").read_text())
    assert fastformer["settings"]["ablation"] == ["pre_ln"] and fastformer["finished"]
    assert "ablation" not in json.loads((shared / "gpt2-ctx64-seed0.json").read_text())["settings"]
    assert set(summary["arms"]) == {"fastformer", "gpt2"} and "ratios" in summary
    assert "| Fastformer (causal), pre_ln |" in out and "| GPT-2 |" in out
    with pytest.raises(SystemExit):  # nothing for it to change
        lm_equal_budget.parse_args(tiny_args(corpus, tmp_path, "--arms", "gpt2", "--ablation", "pre_ln"))


def test_head_bias_ablation_adds_a_zero_vocabulary_bias_that_trains(corpus, tmp_path):
    plain, ablated = _pair(corpus, tmp_path, "fastformer", "head_bias")
    assert torch.equal(ablated.lm_head.bias, torch.zeros(300))
    assert sum(p.numel() for p in ablated.parameters()) == sum(p.numel() for p in plain.parameters()) + 300
    ids = torch.randint(300, (2, 64), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ablated(input_ids=ids).logits, plain(input_ids=ids).logits, rtol=0, atol=0)
    lm_equal_budget.next_token_loss(ablated.train(), ids).backward()
    assert ablated.lm_head.bias.grad.abs().sum() > 0
    assert ablated.lm_head.weight is ablated.fastformer.embeddings.word_embeddings.weight  # still tied


def test_uniform_ablation_pools_running_means_and_leaves_the_logit_layers_untrained(corpus, tmp_path):
    """`--ablation uniform`: the causal model with every pool a running mean over the prefix, i.e. the independent
    reference (tests/reference.py, explicit softmax per prefix) with the pooling-logit layers' weights and biases
    zeroed, while the same weights unablated give another function; no gradient reaches the logit layers."""
    plain, ablated = _pair(corpus, tmp_path, "fastformer", "uniform")
    randomize_(plain), randomize_(ablated)  # the same draw: tokens mix, logits far from 0
    state = {name: value.detach().clone() for name, value in plain.state_dict().items()}
    assert torch.equal(
        state["fastformer.encoder.layer.0.attention.self.query_att.weight"],
        ablated.state_dict()["fastformer.encoder.layer.0.attention.self.query_att.weight"],
    )
    uniform_state = {
        name: torch.zeros_like(value) if ".query_att." in name or ".key_att." in name else value
        for name, value in state.items()
    }
    ids = torch.randint(300, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = ablated(input_ids=ids).logits
    expected = causal_lm_logits(uniform_state, ablated.config, ids)
    assert_far(causal_lm_logits(state, plain.config, ids), expected, atol=1e-4)  # the learned weights matter
    assert_far(plain(input_ids=ids).logits.detach(), expected, atol=1e-4)
    torch.testing.assert_close(logits.double(), expected, rtol=0, atol=1e-4)
    lm_equal_budget.next_token_loss(ablated.train(), ids).backward()
    logit_layers = [m for m in ablated.modules() if isinstance(m, FastformerAdditiveProjections)]
    assert logit_layers and all(
        p.grad is None for m in logit_layers for p in (*m.query_att.parameters(), *m.key_att.parameters())
    )
    assert all(m.query.weight.grad.abs().sum() > 0 for m in logit_layers)  # the rest trains
    with pytest.raises(ValueError, match="--ablation uniform is for the fastformer arm"):
        lm_equal_budget.apply_ablation(plain_gpt2(corpus, tmp_path), "gpt2", ["uniform"])
    with pytest.raises(SystemExit):  # nothing for it to change
        lm_equal_budget.parse_args(tiny_args(corpus, tmp_path, "--arms", "gpt2", "--ablation", "uniform"))


def plain_gpt2(corpus, tmp_path):
    return lm_equal_budget.build_model("gpt2", lm_equal_budget.parse_args(tiny_args(corpus, tmp_path)), 300, 0)
