#!/usr/bin/env python
"""Training-step time and peak memory of Fastformer against BERT (sdpa), Longformer and BigBird, and against
Fastformer's own GEMM floor, at several sequence lengths.

All models: hidden 512, 8 heads, FFN 2048, 2 layers, vocabulary 30,522, batch 1, float32, train mode with dropout
0 (so the step measures the architecture, not the dropout RNG). Longformer uses its default 512-token attention
window, BigBird its block-sparse attention (block 64, 3 random blocks). A step is forward + backward from a fixed
random upstream gradient of the last hidden state. The GEMM floor is Fastformer's own linear layers alone (the same
shapes, each run forward and backward on a random input), i.e. what any implementation of these layers must pay.

Each (model, length) runs in a fresh subprocess: it builds the model and input, runs two warm-up steps (the first
steps pay for the allocator's page faults), then times `--repeats` steps and reports their mean
(`common.seconds_per_call`). Peak memory is the process's peak resident set size during the
steps minus its resident size just before the first step.

Run: `python benchmarks/benchmark_encoder.py [--lengths 512 2048 8192] [--models ...] [--json out.json]`.
"""

import argparse
import json
import os
import subprocess
import sys

import torch
from common import machine, seconds_per_call


HIDDEN, HEADS, FFN, LAYERS, VOCAB = 512, 8, 2048, 2, 30522
MODELS = ("fastformer", "gemm_floor", "bert", "longformer", "bigbird")


def build(name: str, length: int):
    """Return a callable running one training step of `name` at `length` tokens."""
    torch.manual_seed(0)
    input_ids = torch.randint(5, VOCAB, (1, length))
    upstream = torch.randn(1, length, HIDDEN)
    if name == "gemm_floor":
        return gemm_floor(length)
    if name == "fastformer":
        from fastformer import FastformerConfig, FastformerModel

        model = FastformerModel(
            FastformerConfig(
                vocab_size=VOCAB,
                hidden_size=HIDDEN,
                num_attention_heads=HEADS,
                intermediate_size=FFN,
                num_hidden_layers=LAYERS,
                hidden_dropout_prob=0.0,
                max_position_embeddings=length,
            )
        )
    elif name == "bert":
        from transformers import BertConfig, BertModel

        model = BertModel(
            BertConfig(
                vocab_size=VOCAB,
                hidden_size=HIDDEN,
                num_attention_heads=HEADS,
                intermediate_size=FFN,
                num_hidden_layers=LAYERS,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
                max_position_embeddings=length,
                attn_implementation="sdpa",
            ),
            add_pooling_layer=False,
        )
    elif name == "longformer":
        from transformers import LongformerConfig, LongformerModel

        model = LongformerModel(
            LongformerConfig(
                vocab_size=VOCAB,
                hidden_size=HIDDEN,
                num_attention_heads=HEADS,
                intermediate_size=FFN,
                num_hidden_layers=LAYERS,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
                max_position_embeddings=length + 2,
                attention_window=512,
            ),
            add_pooling_layer=False,
        )
    elif name == "bigbird":
        from transformers import BigBirdConfig, BigBirdModel

        model = BigBirdModel(
            BigBirdConfig(
                vocab_size=VOCAB,
                hidden_size=HIDDEN,
                num_attention_heads=HEADS,
                intermediate_size=FFN,
                num_hidden_layers=LAYERS,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
                max_position_embeddings=length,
                attention_type="block_sparse",
                block_size=64,
                num_random_blocks=3,
            ),
            add_pooling_layer=False,
        )
    else:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        model(input_ids=input_ids).last_hidden_state.backward(upstream)

    return step


def gemm_floor(length: int):
    """Fastformer's linear layers alone: per layer query, key, transform, attention output (h->h), the two logit
    projections (h->heads) and the FFN (h->ffn, ffn->h), each forward and backward on a random input."""
    shapes = [(HIDDEN, HIDDEN)] * 4 + [(HIDDEN, HEADS)] * 2 + [(HIDDEN, FFN), (FFN, HIDDEN)]
    layers = [torch.nn.Linear(i, o) for _ in range(LAYERS) for i, o in shapes]
    inputs = {width: torch.randn(1, length, width, requires_grad=True) for width in (HIDDEN, FFN)}
    grads = {width: torch.randn(1, length, width) for width in (HIDDEN, FFN, HEADS)}

    def step():
        for layer in layers:
            layer.zero_grad(set_to_none=True)
            layer(inputs[layer.in_features]).backward(grads[layer.out_features])
        for x in inputs.values():
            x.grad = None

    return step


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(name: str, length: int, repeats: int) -> dict:
    from fastformer.classify.reporting import peak_memory_mib

    step = build(name, length)
    baseline = rss_bytes()
    seconds = seconds_per_call(step, repeats)
    peak = peak_memory_mib() * 2**20
    return {"seconds": seconds, "peak_mib": max(peak - baseline, 0) / 2**20}


def run_case(name: str, length: int, repeats: int, timeout: int) -> dict:
    command = [sys.executable, __file__, "--worker", name, str(length), "--repeats", str(repeats)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout}s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last[:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per (model, length) subprocess")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.repeats)))
        return

    results = {}
    for length in args.lengths:
        for name in args.models:
            results[(name, length)] = run_case(name, length, args.repeats, args.timeout)
            print(f"{name:>10} @ {length:>5}: {results[(name, length)]}", file=sys.stderr, flush=True)

    def cell(name, length, key, fmt):
        value = results.get((name, length), {})
        return fmt.format(value[key]) if key in value else value.get("error", "-")

    def ratio(length, other):
        a, b = results.get(("fastformer", length), {}), results.get((other, length), {})
        return f"{a['seconds'] / b['seconds']:.2f}" if "seconds" in a and "seconds" in b else "-"

    print(f"Machine: {machine()}")
    print(
        f"Config: hidden {HIDDEN}, {HEADS} heads, FFN {FFN}, {LAYERS} layers, batch 1, fp32, forward+backward, "
        f"mean of {args.repeats} steps after 2 warm-up steps\n"
    )
    print(
        "| tokens | "
        + " | ".join(f"{m} s" for m in args.models)
        + " | "
        + " | ".join(f"{m} MiB" for m in args.models if m != "gemm_floor")
        + " |"
    )
    print("|---:" * (1 + len(args.models) + len([m for m in args.models if m != "gemm_floor"])) + "|")
    for length in args.lengths:
        times = [cell(m, length, "seconds", "{:.3f}") for m in args.models]
        memory = [cell(m, length, "peak_mib", "{:.0f}") for m in args.models if m != "gemm_floor"]
        print(f"| {length:,} | " + " | ".join(times) + " | " + " | ".join(memory) + " |")
    others = [m for m in ("bert", "longformer", "bigbird", "gemm_floor") if m in args.models]
    print("\nFastformer time as a fraction of each peer's (lower is better):\n")
    print("| tokens | " + " | ".join(f"/ {m}" for m in others) + " |")
    print("|---:" * (1 + len(others)) + "|")
    for length in args.lengths:
        print(f"| {length:,} | " + " | ".join(ratio(length, m) for m in others) + " |")
    ff = [results.get(("fastformer", n), {}).get("seconds") for n in args.lengths]
    for (n1, t1), (n2, t2) in zip(zip(args.lengths, ff), zip(args.lengths[1:], ff[1:])):
        if t1 and t2:
            print(f"\nFastformer growth t({n2})/t({n1}) = {t2 / t1:.2f} (length ratio {n2 / n1:.0f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{m}@{n}": v for (m, n), v in results.items()}, f, indent=2)


if __name__ == "__main__":
    main()
