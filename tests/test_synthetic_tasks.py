"""benchmarks/listops.py and benchmarks/mqar.py: the generators are deterministic from a seed, follow their rules and
agree with the independent evaluators; the ListOps split is fixed and disjoint; the uniform-pooling ablation
(benchmarks/ablations.py) makes alpha and beta uniform over the real tokens and a causal prefix pool a running mean;
a seconds-long `--smoke` run of each script prints one table row per run and arm."""

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ablations  # noqa: E402
import listops  # noqa: E402
import mqar  # noqa: E402

from fastformer import FastformerConfig, FastformerForCausalLM, FastformerModel  # noqa: E402


# ----------------------------------------------------------------------------------------------------------------
# ListOps


def split(seed: int, sizes=(60, 20, 20), min_length: int = 20, max_length: int = 120):
    return listops.generate_split(seed, sizes, min_length, max_length, max_depth=10, max_args=10)


def test_listops_evaluators_on_hand_made_expressions():
    cases = {
        "[MAX 2 9 [MIN 4 7 ] 0 ]": 9,
        "[MED 1 2 3 4 ]": 2,  # (2 + 3) // 2, LRA's int(np.median)
        "[MED 3 9 1 ]": 3,
        "[SM 5 6 7 ]": 8,
        "[MIN [SM 9 9 ] [MAX 1 2 ] ]": 2,
    }
    for text, value in cases.items():
        assert listops.evaluate_tokens(text.split()) == value
    tree = ("[MAX", (2, 9, ("[MIN", (4, 7)), 0))
    assert listops.tree_tokens(tree) == "[MAX 2 9 [MIN 4 7 ] 0 ]".split()
    assert listops.tree_value(tree) == 9
    for bad in ("[MAX 1 2", "1 2", "[MAX ]", "[MAX 1 2 ] ]", "[POW 1 2 ]"):
        with pytest.raises(ValueError):
            listops.evaluate_tokens(bad.split())


def test_listops_deterministic_from_the_seed():
    first, again, other = split(0), split(0), split(1)
    assert first == again
    assert first["train"] != other["train"]


def test_listops_labels_equal_the_stack_evaluator():
    data = listops.generate_split(3, (1000, 0, 0), 2, 300, max_depth=10, max_args=10)
    labels = [label for _, label in data["train"]]
    assert all(listops.evaluate_tokens(tokens) == label for tokens, label in data["train"])
    assert len(set(labels)) == 10  # every class occurs, so the comparison covers all of them


def test_listops_lengths_rules_and_disjoint_split():
    data = split(0)
    assert [len(data[name]) for name in ("train", "val", "test")] == [60, 20, 20]
    texts = {name: {" ".join(tokens) for tokens, _ in rows} for name, rows in data.items()}
    assert sum(len(t) for t in texts.values()) == 100  # distinct within and across the sets
    for rows in data.values():
        for tokens, _ in rows:
            assert 20 < len(tokens) < 120
            depth, arities = 0, [0]
            for token in tokens:  # nesting depth <= max_depth, 2..max_args arguments per operator
                if token in listops.OPERATORS:
                    arities[-1] += 1
                    depth += 1
                    arities.append(0)
                    assert depth <= 9  # operators only above the maximum depth 10, whose nodes are digits
                elif token == listops.END:
                    assert 2 <= arities.pop() <= 10
                    depth -= 1
                else:
                    arities[-1] += 1
    # the encoding: <cls> + ids, right-padded, mask over real tokens
    ids, mask, labels = listops.encode(data["val"][:3])
    assert (ids[:, 0] == listops.CLS).all() and mask.sum(1).tolist() == [1 + len(t) for t, _ in data["val"][:3]]
    assert labels.tolist() == [label for _, label in data["val"][:3]]


def test_listops_sampling_matches_the_rule_frequencies():
    """Operators appear with probability 0.25 above the maximum depth, uniformly among the four."""
    rng = random.Random(0)
    roots = [listops.sample_tree(rng, max_depth=10, max_args=10, max_length=10_000) for _ in range(2000)]
    trees = [tree for tree in roots if not isinstance(tree, int)]
    assert abs(len(trees) / len(roots) - 0.25) < 0.03
    counts = {operator: sum(tree[0] == operator for tree in trees) for operator in listops.OPERATORS}
    assert min(counts.values()) > 0.18 * len(trees)


def test_listops_bad_settings_are_refused():
    with pytest.raises(ValueError, match="min_length"):
        listops.generate_split(0, (1, 1, 1), 100, 50, 10, 10)
    with pytest.raises(ValueError, match="only"):
        listops.generate_split(0, (5, 0, 0), 20, 30, max_depth=1, max_args=10)  # depth 1: single digits only


# ----------------------------------------------------------------------------------------------------------------
# MQAR


def test_mqar_deterministic_and_checked():
    make = lambda seed: mqar.generate(np.random.default_rng(seed), 200, 64, 8, 16)  # noqa: E731
    ids, targets = make(0)
    again, other = make(0), make(1)
    assert np.array_equal(ids, again[0]) and np.array_equal(targets, again[1])
    assert not np.array_equal(ids, other[0])
    assert ids.shape == targets.shape == (200, 64)
    for row in range(200):
        mqar.check_example(ids[row], targets[row], 8, 16)
    assert ((targets != mqar.IGNORE).sum(1) == 8).all()


def test_mqar_checker_catches_wrong_labels():
    ids, targets = mqar.generate(np.random.default_rng(0), 1, 32, 4, 8)
    query = int(np.flatnonzero(targets[0] != mqar.IGNORE)[0])
    wrong = targets[0].copy()
    wrong[query] = 9 + (wrong[query] - 9 + 1) % 8  # another value
    with pytest.raises(AssertionError):
        mqar.check_example(ids[0], wrong, 4, 8)
    shifted = targets[0].copy()
    shifted[query], shifted[query + 1] = mqar.IGNORE, targets[0][query]
    with pytest.raises(AssertionError):
        mqar.check_example(ids[0], shifted, 4, 8)


def test_mqar_bad_settings_are_refused():
    with pytest.raises(ValueError, match="no room"):
        mqar.generate(np.random.default_rng(0), 1, 15, 4, 8)
    with pytest.raises(ValueError, match="num_keys"):
        mqar.generate(np.random.default_rng(0), 1, 64, 9, 8)


# ----------------------------------------------------------------------------------------------------------------
# the uniform ablation


def config(**overrides) -> FastformerConfig:
    settings = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                    hidden_dropout_prob=0.0, max_position_embeddings=16, initializer_range=0.5)  # fmt: skip
    return FastformerConfig(**{**settings, **overrides})


def test_uniform_pooling_encoder_alpha_beta_uniform_over_real_tokens():
    ids = torch.randint(1, 50, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    uniform = mask[:, None, None, :].float() / mask.sum(1)[:, None, None, None]  # (batch, 1, 1, seq)
    model = FastformerModel(config()).eval()
    plain = model(ids, attention_mask=mask, output_attentions=True).attentions
    ablations.uniform_pooling(model)
    ablated = model(ids, attention_mask=mask, output_attentions=True).attentions
    for layer in range(2):
        assert (plain[layer] - uniform).abs().max() > 0.05  # the check can fail: trained-size logits are not flat
        torch.testing.assert_close(ablated[layer], uniform.expand_as(ablated[layer]))


def test_uniform_pooling_causal_prefix_pool_is_the_running_mean():
    ids = torch.randint(1, 50, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    model = FastformerForCausalLM(config(is_decoder=True, pad_token_id=None)).eval()
    records = []
    for layer in model.fastformer.encoder.layer:
        attention = layer.attention.self
        original = attention.prefix_pool

        def recording(logits, values, *args, original=original, **kwargs):
            pooled = original(logits, values, *args, **kwargs)
            records.append((values, pooled))
            return pooled

        attention.prefix_pool = recording

    def running_mean(values):
        keep = mask[:, :, None].to(values.dtype)
        return torch.cumsum(values * keep, 1) / torch.cumsum(keep, 1).clamp(min=1)

    with torch.no_grad():
        model(ids, attention_mask=mask, use_cache=False)
        plain = [(pooled - running_mean(values)).abs().max() for values, pooled in records]
        records.clear()
        ablations.uniform_pooling(model)
        model(ids, attention_mask=mask, use_cache=False)
    assert len(records) == 4  # two layers x (query pool, key pool)
    assert min(plain) > 0.05  # without the ablation the pools are not running means
    for values, pooled in records:
        torch.testing.assert_close(pooled, running_mean(values))
        assert pooled[1, :3].abs().max() == 0  # a prefix without a real token pools to 0


def test_uniform_pooling_refuses_a_model_without_additive_attention():
    with pytest.raises(ValueError, match="no Fastformer additive attention"):
        ablations.uniform_pooling(torch.nn.Linear(2, 2))


# ----------------------------------------------------------------------------------------------------------------
# smoke runs of the scripts


def test_listops_smoke_run(tmp_path, capsys):
    results = listops.main(["--smoke", "--output_dir", str(tmp_path), "--seeds", "0", "1"])
    out = capsys.readouterr().out
    assert [(run["arm"], run["seed"]) for run in results] == [
        (arm, seed) for arm in ("fastformer", "bert", "uniform") for seed in (0, 1)
    ]
    for arm in ("fastformer", "bert", "uniform"):
        assert sum(line.startswith(f"| {listops.NAMES[arm]} | ") for line in out.splitlines()) == 3  # 2 runs + mean
    assert "| majority class |" in out and all(0 <= run["test_accuracy"] <= 1 for run in results)
    assert (tmp_path / "uniform-seed1.json").exists()


def test_mqar_smoke_run(tmp_path, capsys):
    results = mqar.main(["--smoke", "--output_dir", str(tmp_path), "--seeds", "0"])
    out = capsys.readouterr().out
    assert len(results) == 3  # 3 arms x 1 seed, each tested on 2 settings
    for arm in ("fastformer", "gpt2", "uniform"):
        rows = [line for line in out.splitlines() if line.startswith(f"| {mqar.NAMES[arm]} | ")]
        assert len(rows) == 2 and rows[-1].count("±") == 2  # the run, then the means per setting
    assert all(0 <= value <= 1 for run in results for value in run["accuracy"].values())


def test_arms_layouts_and_ablation():
    """Each Fastformer arm has the layout and the ablation its name says (hooks on every pooling-logit layer)."""
    for script in (listops, mqar):
        args = script.parse_args(["--smoke", "--output_dir", "unused"])
        for arm in ("fastformer", "uniform", "fastformer_pre", "uniform_pre"):
            model = script.build_model(arm, args)
            assert model.config.layer_norm_position == ("pre" if arm.endswith("_pre") else "post")
            logit_layers = [m for name, m in model.named_modules() if name.endswith(("query_att", "key_att"))]
            assert len(logit_layers) == 2 * args.layers
            assert all(bool(m._forward_hooks) == arm.startswith("uniform") for m in logit_layers)
