#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""ListOps (the Long Range Arena task, Tay et al. 2021): Fastformer's encoder against the same-size BERT and against
Fastformer with uniform pooling weights, trained on the same data with the same budget.

**The task.** A nested expression over the digits 0-9 with four operators, written as a flat token sequence, e.g.
`[MAX 2 9 [MIN 4 7 ] 0 ]` (value 9); the label is its value (10 classes). Operators: `[MAX` (maximum), `[MIN`
(minimum), `[MED` (median: the middle element of the sorted arguments, or for an even count the mean of the two
middle ones rounded down, as LRA's `int(np.median(...))`) and `[SM` (sum modulo 10); `]` closes an operator.

**Sampling** (LRA's rules, `lra_benchmarks/data/listops.py` of google-research/long-range-arena, re-implemented
here): a node at depth `d` (the root has depth 1) is, when `d < max_depth`, an operator with probability 0.25 and
otherwise a digit (uniform over 0-9); at `d = max_depth` always a digit. An operator is uniform over the four and has
`randint(2, max_args)` arguments, each a node at depth `d + 1`. A tree's length counts its tokens (a digit 1, an
operator 2: its name and `]`); a sampled tree is kept when `min_length < length < max_length` (strict, as LRA) and its
token string has not been kept before (LRA keeps a set of trees). LRA: `max_depth=10`, `max_args=10`,
`min_length=500`, `max_length=2000`, 96,000/2,000/2,000 train/validation/test examples. A tree that grows past
`max_length` is abandoned as soon as it does (it would be rejected anyway; the kept trees' distribution is the same).

**The split.** One `random.Random(data_seed)` draws all `train + val + test` distinct expressions in order; the first
`train` are the training set, the next `val` the validation set, the last `test` the test set: fixed by the seed,
disjoint by construction. Labels come from the tree (`tree_value`, recursive) and are checked against an independent
stack evaluator over the tokens (`evaluate_tokens`) for every example.

**Input.** A word-level vocabulary of 17 ids (`<pad>`, `<cls>`, the ten digits, the four operators, `]`); a
`<cls>` id is prepended (LRA's `pooling_mode="CLS"`), rows are right-padded to the longest row of their batch with an
attention mask.

**Arms** (same hidden size, depth, heads, FFN, learned absolute positions, GELU, dropout, classifier on the first
token, data, batches, steps, optimizer and schedule per seed):
`fastformer` (`FastformerForSequenceClassification`, the official post-LN layout, `pooler_type="first"`),
`uniform` (the same, with `ablations.uniform_pooling`: alpha and beta uniform over the real tokens),
`fastformer_pre` (the same as `fastformer` with `layer_norm_position="pre"`), `uniform_pre` (both) and `bert`
(`BertForSequenceClassification`, SDPA softmax attention, its pooler: dense + tanh on the first token).
Training: AdamW (weight decay 0.01), linear warm-up over `--warmup` of the steps then linear decay to 0, batches
drawn with a generator seeded by the run's seed (every arm of a seed sees the same batches), the model after the last
step scored on the validation and test sets (no model selection).

Each (arm, seed) run writes `<arm>-seed<seed>.json` in `--output_dir`; a finished run is read back, not re-trained
(the file name does not encode the sizes or steps: use one output directory per setting).
The generated data is cached there too (`data-<settings>.json`).

    python benchmarks/listops.py --output_dir outputs/listops --seeds 0 1 2
    python benchmarks/listops.py --smoke --output_dir outputs/listops-smoke
"""

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from functools import reduce
from pathlib import Path

import torch
from common import machine, mean_std


OPERATORS = ("[MAX", "[MIN", "[MED", "[SM")
END = "]"
DIGITS = tuple(str(digit) for digit in range(10))
OPERATOR_PROBABILITY = 0.25  # LRA's VALUE_P: a node above the maximum depth is an operator with this probability
VOCAB = ("<pad>", "<cls>", *DIGITS, *OPERATORS, END)
TOKEN_ID = {token: index for index, token in enumerate(VOCAB)}
PAD, CLS = TOKEN_ID["<pad>"], TOKEN_ID["<cls>"]
NUM_CLASSES = 10
ARMS = ("fastformer", "bert", "uniform", "fastformer_pre", "uniform_pre")
NAMES = {
    "fastformer": "Fastformer (post-LN)",
    "bert": "BERT (softmax attention)",
    "uniform": "Fastformer, uniform alpha/beta",
    "fastformer_pre": "Fastformer (pre-LN)",
    "uniform_pre": "Fastformer (pre-LN), uniform alpha/beta",
}


# ----------------------------------------------------------------------------------------------------------------
# generator and evaluators


class _TooLong(Exception):
    """A tree being sampled has grown past `max_length` tokens."""


def sample_tree(rng: random.Random, max_depth: int = 10, max_args: int = 10, max_length: int | None = None):
    """One expression tree by LRA's rules (module docstring): a digit `int`, or `(operator, children)` with
    `children` a tuple of trees. With `max_length`, raises `_TooLong` as soon as the tree has `max_length` tokens or
    more (such a tree would be rejected)."""
    count = [0]

    def node(depth: int):
        if depth < max_depth and rng.random() <= OPERATOR_PROBABILITY:
            count[0] += 2
            if max_length is not None and count[0] >= max_length:
                raise _TooLong
            arity = rng.randint(2, max_args)
            operator = rng.choice(OPERATORS)
            return operator, tuple(node(depth + 1) for _ in range(arity))
        count[0] += 1
        if max_length is not None and count[0] >= max_length:
            raise _TooLong
        return rng.randrange(10)

    return node(1)


def tree_tokens(tree) -> list[str]:
    """The token list of a tree: `[OP`, the arguments' tokens, `]`; a digit is one token."""
    if isinstance(tree, int):
        return [str(tree)]
    operator, children = tree
    return [operator, *(token for child in children for token in tree_tokens(child)), END]


def tree_value(tree) -> int:
    """The value of a tree, recursively (the generator's label)."""
    if isinstance(tree, int):
        return tree
    operator, children = tree
    values = sorted(tree_value(child) for child in children)
    if operator == "[MAX":
        return values[-1]
    if operator == "[MIN":
        return values[0]
    if operator == "[MED":
        return (values[(len(values) - 1) // 2] + values[len(values) // 2]) // 2
    return sum(values) % 10


def evaluate_tokens(tokens: list[str]) -> int:
    """The value of a token list by a stack machine (independent of the tree code: `statistics.median`, a reduce for
    the sum). Raises ValueError on a malformed expression."""
    apply = {
        "[MAX": max,
        "[MIN": min,
        "[MED": lambda args: int(statistics.median(args)),
        "[SM": lambda args: reduce(lambda a, b: (a + b) % 10, args, 0),
    }
    stack: list[list] = [["ROOT"]]
    for token in tokens:
        if token in apply:
            stack.append([token])
        elif token == END:
            if len(stack) < 2 or len(stack[-1]) < 2:
                raise ValueError(f"evaluate_tokens: unmatched or empty {END!r}")
            operator, *args = stack.pop()
            stack[-1].append(apply[operator](args))
        elif token in DIGITS:
            stack[-1].append(int(token))
        else:
            raise ValueError(f"evaluate_tokens: unknown token {token!r}")
    if len(stack) != 1 or len(stack[0]) != 2:
        raise ValueError("evaluate_tokens: the tokens are not exactly one complete expression")
    return stack[0][1]


def generate_split(
    data_seed: int, sizes: tuple[int, int, int], min_length: int, max_length: int, max_depth: int, max_args: int
) -> dict[str, list[tuple[list[str], int]]]:
    """`{"train", "val", "test"}` -> lists of `(tokens, label)`: `sum(sizes)` distinct expressions with
    `min_length < len(tokens) < max_length` drawn in order from `random.Random(data_seed)`, cut in that order."""
    if not 0 <= min_length < max_length - 1:
        raise ValueError(f"generate_split: need 0 <= min_length < max_length - 1, got {min_length}, {max_length}")
    if any(size < 0 for size in sizes):
        raise ValueError(f"generate_split: split sizes must be >= 0, got {sizes}")
    rng, seen, examples = random.Random(data_seed), set(), []
    attempts, limit = 0, 1000 * (sum(sizes) + 100)
    while len(examples) < sum(sizes):
        attempts += 1
        if attempts > limit:
            raise ValueError(
                f"generate_split: only {len(examples)} of {sum(sizes)} expressions with {min_length} < length < "
                f"{max_length} after {attempts} trees (max_depth={max_depth}, max_args={max_args})"
            )
        try:
            tree = sample_tree(rng, max_depth, max_args, max_length)
        except _TooLong:
            continue
        tokens = tree_tokens(tree)
        key = " ".join(tokens)
        if len(tokens) <= min_length or key in seen:
            continue
        seen.add(key)
        examples.append((tokens, tree_value(tree)))
    train, val = sizes[0], sizes[0] + sizes[1]
    return {"train": examples[:train], "val": examples[train:val], "test": examples[val:]}


def load_data(args) -> dict[str, list[tuple[list[str], int]]]:
    """The split of `args` (cached as JSON in `args.output_dir`), every label checked by `evaluate_tokens`."""
    settings = (args.data_seed, args.train, args.val, args.test, args.min_length, args.max_length)
    path = Path(args.output_dir) / ("data-" + "-".join(map(str, (*settings, args.max_depth, args.max_args))) + ".json")
    if path.exists():
        data = {
            name: [(tokens, label) for tokens, label in rows] for name, rows in json.loads(path.read_text()).items()
        }
    else:
        sizes = (args.train, args.val, args.test)
        data = generate_split(args.data_seed, sizes, args.min_length, args.max_length, args.max_depth, args.max_args)
        path.write_text(json.dumps(data))
    for name, rows in data.items():
        wrong = sum(evaluate_tokens(tokens) != label for tokens, label in rows)
        if wrong:
            raise RuntimeError(f"listops: {wrong} {name} labels disagree with the stack evaluator")
    return data


def encode(rows: list[tuple[list[str], int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(ids, mask, labels)`: `<cls>` + the tokens' ids, right-padded to the longest row `(n, 1 + longest)`."""
    width = 1 + max(len(tokens) for tokens, _ in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    for row, (tokens, _) in enumerate(rows):
        ids[row, : 1 + len(tokens)] = torch.tensor([CLS, *(TOKEN_ID[token] for token in tokens)])
    return ids, (ids != PAD).long(), torch.tensor([label for _, label in rows])


# ----------------------------------------------------------------------------------------------------------------
# models and training


def build_model(arm: str, args) -> torch.nn.Module:
    """The arm's classifier (module docstring), `args`' sizes, `max_length + 1` positions (the `<cls>` id)."""
    common = dict(
        vocab_size=len(VOCAB),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.ffn,
        hidden_act="gelu",
        hidden_dropout_prob=args.dropout,
        max_position_embeddings=args.max_length + 1,
        layer_norm_eps=1e-5,
        initializer_range=0.02,
        pad_token_id=PAD,
        num_labels=NUM_CLASSES,
    )
    if arm == "bert":
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(attention_probs_dropout_prob=args.dropout, type_vocab_size=1, **common)
        config._attn_implementation = "sdpa"
        return BertForSequenceClassification(config)
    from ablations import uniform_pooling

    from fastformer import FastformerConfig, FastformerForSequenceClassification

    position = "pre" if arm in ("fastformer_pre", "uniform_pre") else "post"
    config = FastformerConfig(layer_norm_position=position, pooler_type="first", **common)
    model = FastformerForSequenceClassification(config)
    return uniform_pooling(model) if arm in ("uniform", "uniform_pre") else model


def learning_rate(step: int, steps: int, peak: float, warmup: float) -> float:
    """Linear warm-up over `warmup * steps` steps to `peak`, then linear decay to 0 at `steps` (step counts from 0)."""
    warm = max(1, round(warmup * steps))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(0.0, (steps - step) / max(1, steps - warm))


def batch_indices(step: int, size: int, batch_size: int, seed: int) -> torch.Tensor:
    """The training rows of `step`: a permutation of `range(size)` per epoch (seeded by `seed` and the epoch),
    consumed `batch_size` at a time; the same for every arm of a seed."""
    start = step * batch_size
    epoch, offset = divmod(start, size)
    rows = []
    while len(rows) < batch_size:
        order = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        rows.extend(order[offset : offset + batch_size - len(rows)].tolist())
        epoch, offset = epoch + 1, 0
    return torch.tensor(rows)


@torch.no_grad()
def accuracy(model, rows, batch_size: int) -> float:
    """The fraction of `rows` whose arg-max logit is the label (batches of rows sorted by length)."""
    model.eval()
    order = sorted(range(len(rows)), key=lambda index: len(rows[index][0]))
    correct = 0
    for start in range(0, len(rows), batch_size):
        ids, mask, labels = encode([rows[index] for index in order[start : start + batch_size]])
        correct += (model(input_ids=ids, attention_mask=mask).logits.argmax(-1) == labels).sum().item()
    model.train()
    return correct / len(rows)


def train_run(arm: str, seed: int, args, data) -> dict:
    torch.manual_seed(seed)
    model = build_model(arm, args)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    train = data["train"]
    losses = []
    start = time.perf_counter()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup)
        ids, mask, labels = encode([train[index] for index in batch_indices(step, len(train), args.batch_size, seed)])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if args.log_every and (step + 1) % args.log_every == 0:
            recent = statistics.fmean(losses[-args.log_every :])
            print(f"  {arm} seed {seed} step {step + 1}: loss {recent:.3f}", flush=True)
    train_seconds = time.perf_counter() - start
    result = {
        "arm": arm,
        "seed": seed,
        "parameters": parameters,
        "val_accuracy": accuracy(model, data["val"], args.eval_batch_size),
        "test_accuracy": accuracy(model, data["test"], args.eval_batch_size),
        "final_train_loss": statistics.fmean(losses[-max(1, args.steps // 10) :]),
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - start,
    }
    return result


# ----------------------------------------------------------------------------------------------------------------
# tables


def majority(data) -> tuple[int, float]:
    """The most frequent training label and its accuracy on the test set."""
    label = Counter(label for _, label in data["train"]).most_common(1)[0][0]
    return label, sum(row_label == label for _, row_label in data["test"]) / len(data["test"])


def tables(results: list[dict], data, args) -> str:
    """Markdown: the data, the per-run rows and mean ± std per arm (sample std over the seeds)."""
    lengths = [len(tokens) for rows in data.values() for tokens, _ in rows]
    label, base = majority(data)
    lines = [
        f"Data: {len(data['train'])}/{len(data['val'])}/{len(data['test'])} train/val/test expressions, "
        f"{args.min_length} < length < {args.max_length} tokens (mean {statistics.fmean(lengths):.0f}), "
        f"max depth {args.max_depth}, max arguments {args.max_args}, data seed {args.data_seed}; majority class "
        f"({label}, from training) on test: {100 * base:.1f} %",
        "",
        "| arm | seed | parameters | val acc. (%) | test acc. (%) | final train loss | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results:
        lines.append(
            f"| {NAMES[run['arm']]} | {run['seed']} | {run['parameters']:,} | {100 * run['val_accuracy']:.1f} | "
            f"{100 * run['test_accuracy']:.1f} | {run['final_train_loss']:.3f} | {run['seconds']:.0f} |"
        )
    lines += [
        "",
        "| arm | seeds | test acc. (%), mean ± std | val acc. (%) | time per run (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for arm in dict.fromkeys(run["arm"] for run in results):
        runs = [run for run in results if run["arm"] == arm]
        test = mean_std([100 * run["test_accuracy"] for run in runs])
        val = mean_std([100 * run["val_accuracy"] for run in runs])
        seconds = statistics.fmean(run["seconds"] for run in runs)
        lines.append(
            f"| {NAMES[arm]} | {len(runs)} | {test[0]:.1f} ± {test[1]:.1f} | {val[0]:.1f} ± {val[1]:.1f} | "
            f"{seconds:.0f} |"
        )
    lines.append(f"| majority class | – | {100 * base:.1f} | – | – |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=["fastformer", "bert", "uniform"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data_seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--min_length", type=int, default=100)
    parser.add_argument("--max_length", type=int, default=500)
    parser.add_argument("--max_depth", type=int, default=10)
    parser.add_argument("--max_args", type=int, default=10)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--ffn", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--eval_batch_size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps")
    parser.add_argument("--log_every", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a seconds-long check of the script")
    args = parser.parse_args(argv)
    if args.smoke:
        args.train, args.val, args.test, args.min_length, args.max_length = 64, 16, 16, 10, 40
        args.hidden_size, args.layers, args.heads, args.ffn, args.steps, args.batch_size = 16, 1, 2, 32, 3, 8
        args.log_every = 0
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    print("command: python benchmarks/listops.py " + " ".join(sys.argv[1:] if argv is None else argv), flush=True)
    data = load_data(args)
    results = []
    for seed in args.seeds:
        for arm in args.arms:
            path = output / f"{arm}-seed{seed}.json"
            if path.exists() and not args.smoke:
                results.append(json.loads(path.read_text()))
                print(f"{arm} seed {seed}: read back from {path}")
                continue
            result = train_run(arm, seed, args, data)
            path.write_text(json.dumps(result, indent=1))
            print(f"{arm} seed {seed}: test {100 * result['test_accuracy']:.1f} %, {result['seconds']:.0f} s")
            results.append(result)
    results.sort(key=lambda run: (args.arms.index(run["arm"]), run["seed"]))
    print(tables(results, data, args))
    return results


if __name__ == "__main__":
    main()
