#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Packed batches (issue #25): dispatched aten ops and time of a row packing several documents against the unpacked
row of the same length.

Models (hidden 64, 4 heads, FFN 256, 2 layers, vocabulary 1,000, batch 1, float32, eval mode, dropout 0,
`position_embedding_type="none"`): `encoder`, `FastformerModel`; `causal`, `FastformerModel` with `is_decoder=True`
(its prefix pools are a segmented scan when packed). A row of `--lengths` tokens holds `--documents` documents of
random lengths (uniform random cut points) summing to the row's length, with `position_ids` restarting at 0 for each
document, as `DataCollatorWithFlattening` makes them; one document is the row with `position_ids` `0..n-1`, which
takes the unpacked path. No decoding cache is built (`use_cache=False`: a packed row returns none). The loss of a
forward+backward is `sum_t h_t . w` for a fixed random `w`.

Per (model, length, documents): the aten ops that one forward dispatches (`TorchDispatchMode`, every call counted,
under `torch.no_grad`) and that one forward+backward dispatches, and the mean seconds of a forward (`torch.no_grad`)
and of a forward+backward over `--repeats` timed calls after two warm-up calls (`common.seconds_per_call`), each
ratio against the unpacked row. The number of ops should not depend on the number of documents (no Python loop over
documents), and the packed row should cost about what the unpacked one does.

With `--rounds R`, every document count is timed R times, the counts interleaved round by round (so that a drift
in the machine's speed meets every case alike), and the median is reported.

Run: `python benchmarks/benchmark_packing.py [--lengths 4096 16384 65536] [--documents 1 2 64 512] [--models encoder
causal] [--repeats 5] [--rounds 1] [--quick] [--no-time] [--json out.json]`.
"""

import argparse
import json
import statistics
import sys

import torch
from common import CountOps, machine, seconds_per_call

from fastformer.classify.reporting import markdown_table


HIDDEN, HEADS, FFN, LAYERS, VOCAB = 64, 4, 256, 2, 1000
MODELS = ("encoder", "causal")


def build(name: str):
    from fastformer import FastformerConfig, FastformerModel

    torch.manual_seed(0)
    config = FastformerConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        position_embedding_type="none",
        is_decoder=name == "causal",
    )
    return FastformerModel(config).eval()


def packed_inputs(length: int, documents: int, seed: int = 0) -> dict:
    """One row of `length` tokens holding `documents` documents of random lengths, `position_ids` restarting at 0
    for each (`0..length-1` for one document)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (1, length), generator=generator)
    starts = torch.zeros(length, dtype=torch.bool)
    starts[torch.randperm(length - 1, generator=generator)[: documents - 1] + 1] = True
    index = torch.arange(length)
    position_ids = index - torch.where(starts, index, 0).cummax(dim=0).values
    return {"input_ids": input_ids, "position_ids": position_ids.unsqueeze(0), "use_cache": False}


def measure(model, inputs: dict, repeats: int, timed: bool, count: bool = True) -> dict:
    probe = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(1))

    def forward():
        with torch.no_grad():
            return model(**inputs).last_hidden_state

    def forward_backward():
        model.zero_grad(set_to_none=True)
        (model(**inputs).last_hidden_state @ probe).sum().backward()

    result = {}
    for key, function in (("forward", forward), ("forward_backward", forward_backward)):
        if count:
            with CountOps() as ops:
                function()
            result[f"{key}_ops"] = ops.count
        if timed:
            result[f"{key}_s"] = seconds_per_call(function, repeats)
    return result


def ratio(value, base) -> str:
    return "" if value is None or not base else f"{value / base:.2f}"


def table(name: str, length: int, runs: dict) -> str:
    base = runs[1] if 1 in runs else next(iter(runs.values()))
    rows = []
    for documents, r in runs.items():
        row = [f"{documents:,}"]
        for key in ("forward_ops", "forward_backward_ops"):
            row += [f"{r[key]:,}", ratio(r[key], base[key])]
        for key in ("forward_s", "forward_backward_s"):
            if key in r:
                row += [f"{r[key] * 1e3:.1f}", ratio(r[key], base[key])]
        rows.append(row)
    header = ["documents", "fwd ops", "ratio", "fwd+bwd ops", "ratio"]
    if "forward_s" in base:
        header += ["fwd ms", "ratio", "fwd+bwd ms", "ratio"]
    return f"{name}, {length:,} tokens (ratios against 1 document, the unpacked row):\n\n" + markdown_table(
        header, rows, "r" * len(header)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--documents", type=int, nargs="+", default=[1, 2, 64, 512], help="documents per row")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every document count this many times, interleaved (1, 2, 64, 512, 1, 2, ...); report the median",
    )
    parser.add_argument("--no-time", action="store_true", help="count ops only")
    parser.add_argument("--quick", action="store_true", help="1,024 and 4,096 tokens, 2 timed calls")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.quick:
        args.lengths, args.repeats = [1024, 4096], 2

    results = {}
    for name in args.models:
        model = build(name)
        for length in args.lengths:
            counts = [documents for documents in sorted(set(args.documents)) if documents <= length]
            inputs = {documents: packed_inputs(length, documents) for documents in counts}
            rounds = {documents: [] for documents in counts}
            for round_index in range(
                args.rounds
            ):  # interleaved, so that drift in the machine's speed meets every case
                for documents in counts:
                    run = measure(model, inputs[documents], args.repeats, not args.no_time, count=round_index == 0)
                    rounds[documents].append(run)
                    print(f"{name} @ {length} x {documents} documents: {run}", file=sys.stderr, flush=True)
            runs = {}
            for documents, measured in rounds.items():
                runs[documents] = dict(measured[0])
                for key in ("forward_s", "forward_backward_s"):
                    if key in measured[0]:
                        runs[documents][key] = statistics.median(run[key] for run in measured)
            results[(name, length)] = runs

    print(f"Machine: {machine()}")
    print(
        f"Config: hidden {HIDDEN}, {HEADS} heads, FFN {FFN}, {LAYERS} layers, batch 1, fp32, eval mode; "
        f"{args.repeats} timed calls after 2 warm-up calls; median of {args.rounds} interleaved round(s)\n"
    )
    for (name, length), runs in results.items():
        print(table(name, length, runs) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine(),
                    "runs": {f"{name}@{length}": runs for (name, length), runs in results.items()},
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
