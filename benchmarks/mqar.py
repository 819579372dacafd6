#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Multi-query associative recall (MQAR, Arora et al. 2023, "Zoology"): causal Fastformer against the same-size
GPT-2 and against causal Fastformer with uniform pooling weights, trained on the same data with the same budget.

**The task.** A vocabulary of `num_keys` key ids and as many value ids (and one filler id). A sequence of length
`seq_len` starts with `num_pairs` key-value pairs `k_1 v_1 ... k_P v_P` (distinct keys, distinct values, uniform);
the remaining `seq_len - 2P` positions are filler except `P` query slots, chosen uniformly among the aligned
two-token slots there, each holding a key of the context (every key queried once, in random order) followed by its
value. The model is trained and scored only at the query keys' positions: there, the next token (the value bound to
that key earlier in the sequence) is the target; loss and accuracy are over those positions only (arg-max over the
whole vocabulary). Zoology's differences: a larger vocabulary (8,192), power-law gaps between queries, filler 0.

**Data.** Training batches are drawn fresh for every step from `numpy.random.default_rng((data_seed, seed, step))`
(the same for every arm of a seed, different between seeds; the setting of step `s` is
`settings[s % len(settings)]`); the test set (`--test` sequences per setting) from
`default_rng((data_seed, seq_len, num_pairs))`, the same for every arm and seed. Every example's targets are checked
by an independent scan (`check_example`).

**Arms** (same hidden size, depth, heads, FFN, learned absolute positions, GELU, dropout 0, tied embeddings, data,
steps, optimizer and schedule per seed): `fastformer` (`FastformerForCausalLM`, post-LN), `uniform` (the same, with
`ablations.uniform_pooling`: each position's prefix pools are running means), `fastformer_pre` (the same as
`fastformer` with `layer_norm_position="pre"`), `uniform_pre` (both) and `gpt2` (`GPT2LMHeadModel`, softmax
attention, pre-LN). AdamW (weight decay 0.01), linear warm-up over `--warmup` of the steps then linear decay to
0; the model after the last step is scored on each setting's test set. As in Zoology, one model per (arm, seed) is
trained on the mixture of the settings (`SEQ_LEN:NUM_PAIRS` pairs; step `s` draws a batch of setting
`s % len(settings)`) and tested on each.

Each run writes `<arm>-L<len>P<pairs>[-...]-seed<seed>.json` in `--output_dir`; a finished run is read back
(the file name does not encode the sizes or steps: use one output directory per setting).

    python benchmarks/mqar.py --output_dir outputs/mqar --settings 64:4 64:8 128:8 128:16 --seeds 0 1 2
    python benchmarks/mqar.py --smoke --output_dir outputs/mqar-smoke
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import machine, mean_std
from listops import learning_rate


FILLER = 0
IGNORE = -100
ARMS = ("fastformer", "gpt2", "uniform", "fastformer_pre", "uniform_pre")
NAMES = {
    "fastformer": "Fastformer (causal, post-LN)",
    "gpt2": "GPT-2 (softmax attention)",
    "uniform": "Fastformer, uniform alpha/beta",
    "fastformer_pre": "Fastformer (causal, pre-LN)",
    "uniform_pre": "Fastformer (causal, pre-LN), uniform alpha/beta",
}


def vocab_size(num_keys: int) -> int:
    """Filler (0), keys `1..num_keys`, values `num_keys + 1..2 num_keys`."""
    return 1 + 2 * num_keys


def generate(rng: np.random.Generator, count: int, seq_len: int, num_pairs: int, num_keys: int):
    """`count` MQAR sequences (module docstring): `ids` and `targets` `(count, seq_len)` int64 arrays, `targets`
    the value at each query key's position and `IGNORE` elsewhere."""
    if not 1 <= num_pairs <= num_keys:
        raise ValueError(f"mqar: need 1 <= num_pairs <= num_keys, got num_pairs={num_pairs}, num_keys={num_keys}")
    slots = (seq_len - 2 * num_pairs) // 2
    if slots < num_pairs:
        raise ValueError(f"mqar: seq_len={seq_len} has no room for {num_pairs} pairs and {num_pairs} queries")
    ids = np.full((count, seq_len), FILLER, dtype=np.int64)
    targets = np.full((count, seq_len), IGNORE, dtype=np.int64)
    rows = np.arange(count)[:, None]
    keys = 1 + rng.random((count, num_keys)).argsort(axis=1)[:, :num_pairs]  # distinct keys per row
    values = 1 + num_keys + rng.random((count, num_keys)).argsort(axis=1)[:, :num_pairs]
    ids[:, 0 : 2 * num_pairs : 2], ids[:, 1 : 2 * num_pairs : 2] = keys, values
    order = rng.random((count, num_pairs)).argsort(axis=1)  # which pair each query asks for
    chosen = np.sort(rng.random((count, slots)).argsort(axis=1)[:, :num_pairs], axis=1)
    starts = 2 * num_pairs + 2 * chosen  # (count, num_pairs) query key positions
    ids[rows, starts] = keys[rows, order]
    ids[rows, starts + 1] = values[rows, order]
    targets[rows, starts] = values[rows, order]
    return ids, targets


def check_example(ids, targets, num_pairs: int, num_keys: int):
    """Independent check of one sequence by a left-to-right scan: the first `2 num_pairs` tokens bind distinct keys
    to values; afterwards every key token is a query, followed by its bound value, and is the only kind of position
    with a target (that value); everything else is filler. Raises AssertionError naming the first violation."""
    ids, targets = [int(token) for token in ids], [int(target) for target in targets]
    bound = {}
    for position in range(0, 2 * num_pairs, 2):
        key, value = ids[position], ids[position + 1]
        assert 1 <= key <= num_keys and key not in bound, f"position {position}: {key} is not a new key"
        assert num_keys < value <= 2 * num_keys, f"position {position + 1}: {value} is not a value"
        bound[key] = value
        assert targets[position] == IGNORE and targets[position + 1] == IGNORE, "a target inside the context"
    asked = []
    position = 2 * num_pairs
    while position < len(ids):
        token = ids[position]
        if 1 <= token <= num_keys:
            assert token in bound, f"position {position}: query of an unbound key {token}"
            assert ids[position + 1] == bound[token], f"position {position + 1}: not the value bound to {token}"
            assert targets[position] == bound[token], f"position {position}: target {targets[position]}"
            assert targets[position + 1] == IGNORE, f"position {position + 1}: a target on a value"
            asked.append(token)
            position += 2
            continue
        assert token == FILLER, f"position {position}: {token} outside a query slot"
        assert targets[position] == IGNORE, f"position {position}: a target on filler"
        position += 1
    assert sorted(asked) == sorted(bound), "not every key queried exactly once"


def build_model(arm: str, args) -> torch.nn.Module:
    """The arm's causal LM (module docstring) with `args`' sizes and `args.seq_len_max` positions."""
    common = dict(vocab_size=vocab_size(args.num_keys), tie_word_embeddings=True)
    if arm == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            n_embd=args.hidden_size,
            n_layer=args.layers,
            n_head=args.heads,
            n_inner=args.ffn,
            activation_function="gelu",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            n_positions=args.positions,
            layer_norm_epsilon=1e-5,
            initializer_range=0.02,
            bos_token_id=FILLER,
            eos_token_id=FILLER,
            **common,
        )
        config._attn_implementation = "sdpa"
        return GPT2LMHeadModel(config)
    from ablations import uniform_pooling

    from fastformer import FastformerConfig, FastformerForCausalLM

    config = FastformerConfig(
        is_decoder=True,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.ffn,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        max_position_embeddings=args.positions,
        layer_norm_eps=1e-5,
        initializer_range=0.02,
        pad_token_id=None,
        layer_norm_position="pre" if arm in ("fastformer_pre", "uniform_pre") else "post",
        **common,
    )
    model = FastformerForCausalLM(config)
    return uniform_pooling(model) if arm in ("uniform", "uniform_pre") else model


def answer_loss_and_hits(model, ids: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Cross-entropy at the query positions only (mean over them), correct arg-max answers, answers."""
    logits = model(input_ids=ids, use_cache=False).logits  # (batch, seq, vocab)
    where = targets != IGNORE
    chosen, answers = logits[where], targets[where]
    loss = F.cross_entropy(chosen.float(), answers)
    return loss, (chosen.argmax(-1) == answers).sum().item(), answers.numel()


def train_run(arm: str, seed: int, args, tests: dict) -> dict:
    """One model of `arm` trained on the mixture of `args.settings` (step `s` draws a batch of setting
    `s % len(settings)`), then scored on each setting's test set (`tests`: setting -> `(ids, targets)`)."""
    torch.manual_seed(seed)
    model = build_model(arm, args)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    losses = []
    start = time.perf_counter()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup)
        seq_len, num_pairs = args.settings[step % len(args.settings)]
        rng = np.random.default_rng((args.data_seed, seed, step))
        ids, targets = (torch.from_numpy(a) for a in generate(rng, args.batch_size, seq_len, num_pairs, args.num_keys))
        loss = answer_loss_and_hits(model, ids, targets)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if args.log_every and (step + 1) % args.log_every == 0:
            recent = statistics.fmean(losses[-args.log_every :])
            print(f"  {arm} seed {seed} step {step + 1}: loss {recent:.3f}", flush=True)
    train_seconds = time.perf_counter() - start
    model.eval()
    accuracies = {}
    with torch.no_grad():
        for (seq_len, num_pairs), test in tests.items():
            hits = total = 0
            for first in range(0, len(test[0]), args.eval_batch_size):
                batch = (torch.from_numpy(a[first : first + args.eval_batch_size]) for a in test)
                _, correct, count = answer_loss_and_hits(model, *batch)
                hits, total = hits + correct, total + count
            accuracies[f"{seq_len}:{num_pairs}"] = hits / total
    return {
        "arm": arm,
        "seed": seed,
        "parameters": parameters,
        "accuracy": accuracies,
        "final_train_loss": statistics.fmean(losses[-max(1, args.steps // 10) :]),
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - start,
    }


def test_set(args, seq_len: int, num_pairs: int):
    """The fixed test sequences of a setting, every one checked by `check_example`."""
    ids, targets = generate(np.random.default_rng((args.data_seed, seq_len, num_pairs)), args.test, seq_len, num_pairs,
                            args.num_keys)  # fmt: skip
    for row in range(len(ids)):
        check_example(ids[row], targets[row], num_pairs, args.num_keys)
    return ids, targets


def tables(results: list[dict], args) -> str:
    """Markdown: per-run rows (accuracy per test setting) and mean ± std per arm (sample std over the seeds)."""
    names = [f"{length}:{pairs}" for length, pairs in args.settings]
    header = " | ".join(f"L={name.replace(':', ', P=')}" for name in names)
    lines = [
        f"{args.num_keys} keys and {args.num_keys} values, trained on the mixture of the settings, {args.test} test "
        f"sequences per setting; chance {100 / args.num_keys:.1f} % (a uniform guess among the values), "
        "100 / P % (a uniform guess among the P values of the sequence)",
        "",
        f"| arm | seed | parameters | {header} | final train loss | time (s) |",
        "|---|---:|---:|" + "---:|" * (len(names) + 2),
    ]
    for run in results:
        cells = " | ".join(f"{100 * run['accuracy'][name]:.1f}" for name in names)
        lines.append(
            f"| {NAMES[run['arm']]} | {run['seed']} | {run['parameters']:,} | {cells} | "
            f"{run['final_train_loss']:.3f} | {run['seconds']:.0f} |"
        )
    lines += ["", f"| arm | seeds | {header} | time per run (s) |", "|---|---:|" + "---:|" * (len(names) + 1)]
    for arm in dict.fromkeys(run["arm"] for run in results):
        runs = [run for run in results if run["arm"] == arm]
        cells = []
        for name in names:
            mean, std = mean_std([100 * run["accuracy"][name] for run in runs])
            cells.append(f"{mean:.1f} ± {std:.1f}")
        seconds = statistics.fmean(run["seconds"] for run in runs)
        lines.append(f"| {NAMES[arm]} | {len(runs)} | " + " | ".join(cells) + f" | {seconds:.0f} |")
    return "\n".join(lines)


def parse_settings(values: list[str]) -> list[tuple[int, int]]:
    settings = []
    for value in values:
        try:
            length, pairs = (int(part) for part in value.split(":"))
        except ValueError:
            raise SystemExit(f"mqar.py: error: a setting is SEQ_LEN:NUM_PAIRS, e.g. 64:4, got {value!r}") from None
        settings.append((length, pairs))
    return settings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=["fastformer", "gpt2", "uniform"])
    parser.add_argument("--settings", nargs="+", default=["64:4", "64:8", "128:8", "128:16"], help="SEQ_LEN:NUM_PAIRS")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data_seed", type=int, default=0)
    parser.add_argument("--num_keys", type=int, default=64)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--ffn", type=int, default=128)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--eval_batch_size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps")
    parser.add_argument("--log_every", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a seconds-long check of the script")
    args = parser.parse_args(argv)
    if args.smoke:
        args.settings, args.num_keys, args.test = ["16:2", "32:4"], 8, 20
        args.hidden_size, args.layers, args.heads, args.ffn, args.steps, args.batch_size = 16, 1, 2, 32, 3, 8
        args.log_every = 0
    args.settings = parse_settings(args.settings)
    args.positions = max(length for length, _ in args.settings)
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    print("command: python benchmarks/mqar.py " + " ".join(sys.argv[1:] if argv is None else argv), flush=True)
    tests = {setting: test_set(args, *setting) for setting in args.settings}
    tag = "-".join(f"L{length}P{pairs}" for length, pairs in args.settings)
    results = []
    for seed in args.seeds:
        for arm in args.arms:
            path = output / f"{arm}-{tag}-seed{seed}.json"
            if path.exists() and not args.smoke:
                results.append(json.loads(path.read_text()))
                print(f"{arm} seed {seed}: read back from {path}")
                continue
            result = train_run(arm, seed, args, tests)
            path.write_text(json.dumps(result, indent=1))
            accuracies = ", ".join(f"{name} {100 * value:.1f} %" for name, value in result["accuracy"].items())
            print(f"{arm} seed {seed}: {accuracies}, {result['seconds']:.0f} s", flush=True)
            results.append(result)
    results.sort(key=lambda run: (args.arms.index(run["arm"]), run["seed"]))
    print(tables(results, args))
    return results


if __name__ == "__main__":
    main()
