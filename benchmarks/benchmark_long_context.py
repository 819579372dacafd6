#!/usr/bin/env python
"""Long-context scaling (issue #14): forward and backward time and peak memory against length, up to 1,048,576 tokens.

Models (hidden 256, 16 heads, FFN 1024, 2 layers, vocabulary 30,522, batch 1, float32, train mode, dropout 0,
`position_embedding_type="none"`):
  * `encoder`: `FastformerForSequenceClassification` (2 labels), loss from a label;
  * `causal`: the causal stack, `FastformerModel` with `is_decoder=True` (no LM head: its `seq x vocab` logits
    alone would be 120 GiB at a million tokens), loss `sum_t h_t . w` for a fixed random `w`;
  * `bert` (SDPA) and `longformer` (512-token window): the same dimensions, encoder loss as for `encoder`; run only
    at the lengths given with `--peer-lengths` (their time is quadratic, resp. large).
Lengths from `--checkpoint-from` on run with the memory options: gradient checkpointing
(`model.gradient_checkpointing_enable()`) and `chunk_size_feed_forward=--ff-chunk`; or, with `--sequence-chunk N`,
`config.sequence_chunk_size=N` instead of gradient checkpointing (each layer runs and is recomputed N positions at a
time); `--lean-pool` additionally sets `config.recompute_causal_pool=True` (the causal prefix pools keep only their
inputs for the backward pass). `--mmap-threshold BYTES` runs the workers with glibc's `MALLOC_MMAP_THRESHOLD_=BYTES`
(buffers from that size on are mapped and unmapped one by one, never kept in malloc's heap: without it, the chunks'
freed buffers fragment the heap and the resident set grows by gigabytes). `--saved-breakdown LENGTH` prints what
autograd saves per module without any option.

Every (model, length) runs in a fresh subprocess: build, one forward and one backward timed once (no warm-up from
`--no-warmup-from` tokens on; below it, one untimed warm-up step first), peak resident set size of the whole process
(`ru_maxrss`, model and inputs included), and whether every parameter gradient is finite. `--count-ops` counts the
aten ops a causal forward dispatches (`TorchDispatchMode`) at the given lengths.

Run: `python benchmarks/benchmark_long_context.py [--lengths 4096 16384 65536] [--models encoder causal]
[--peer-lengths 4096] [--count-ops 4096 65536]`.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

import torch
from common import CountOps, machine


HIDDEN, HEADS, FFN, LAYERS, VOCAB = 256, 16, 1024, 2, 30522
MODELS = ("encoder", "causal", "bert", "longformer")


def fastformer(
    name: str, length: int, checkpointing: bool, ff_chunk: int, sequence_chunk: int = 0, lean_pool: bool = False
):
    from fastformer import FastformerConfig, FastformerForSequenceClassification, FastformerModel

    config = FastformerConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        hidden_dropout_prob=0.0,
        position_embedding_type="none",
        chunk_size_feed_forward=ff_chunk if checkpointing else 0,
        is_decoder=name == "causal",
        sequence_chunk_size=sequence_chunk if checkpointing else 0,
        recompute_causal_pool=lean_pool and checkpointing,
    )
    model = FastformerModel(config) if name == "causal" else FastformerForSequenceClassification(config)
    if checkpointing and not sequence_chunk:
        model.gradient_checkpointing_enable()
    return model


def peer(name: str, length: int):
    if name == "bert":
        from transformers import BertConfig, BertForSequenceClassification

        return BertForSequenceClassification(
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
            )
        )
    from transformers import LongformerConfig, LongformerForSequenceClassification

    return LongformerForSequenceClassification(
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
        )
    )


def build(
    name: str, length: int, checkpointing: bool, ff_chunk: int, sequence_chunk: int = 0, lean_pool: bool = False
):
    """Return the model and a `loss()` callable for one training step of `name` at `length` tokens."""
    torch.manual_seed(0)
    input_ids = torch.randint(5, VOCAB, (1, length))
    if name in ("bert", "longformer"):
        model = peer(name, length)
    else:
        model = fastformer(name, length, checkpointing, ff_chunk, sequence_chunk, lean_pool)
    model.train()
    if name == "causal":
        probe = torch.randn(HIDDEN)
        return model, lambda: (model(input_ids=input_ids).last_hidden_state @ probe).sum()
    labels = torch.tensor([1])
    return model, lambda: model(input_ids=input_ids, labels=labels).loss


def worker(
    name: str, length: int, checkpointing: bool, ff_chunk: int, sequence_chunk: int, lean_pool: bool, warmup: bool
) -> dict:
    from fastformer.classify.reporting import peak_memory_mib

    model, loss = build(name, length, checkpointing, ff_chunk, sequence_chunk, lean_pool)
    if warmup:
        loss().backward()
        model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    value = loss()
    middle = time.perf_counter()
    value.backward()
    end = time.perf_counter()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return {
        "forward_s": middle - start,
        "backward_s": end - middle,
        "peak_gib": peak_memory_mib() / 2**10,
        "finite": bool(torch.isfinite(value)) and all(bool(torch.isfinite(g).all()) for g in grads),
    }


def count_ops(length: int) -> int:
    """Aten ops dispatched by one causal forward (no gradient) at `length` tokens."""
    model, loss = build("causal", length, False, 0)
    with torch.no_grad(), CountOps() as ops:
        loss()
    return ops.count


def saved_breakdown(name: str, length: int) -> dict:
    """GiB of activations autograd saves for the backward pass in one forward of `name` at `length` tokens, without
    any memory option, by the innermost module that saved them (parameters excluded, each storage counted once)."""
    model, loss = build(name, length, False, 0)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    stack, seen, totals = ["(outside modules)"], set(), {}
    for module_name, module in model.named_modules():
        label = re.sub(r"layer\.\d+\.", "layer.*.", module_name) or "(model)"
        module.register_forward_pre_hook(lambda m, a, label=label: stack.append(label))
        module.register_forward_hook(lambda m, a, o: stack.pop() and None)  # (a hook's non-None return replaces o)

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            totals[stack[-1]] = totals.get(stack[-1], 0) + storage.nbytes() / 2**30
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss()
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def run_case(args, name: str, length: int) -> dict:
    checkpointing = length >= args.checkpoint_from
    command = [
        sys.executable,
        __file__,
        "--worker",
        name,
        str(length),
        "--ff-chunk",
        str(args.ff_chunk),
        "--checkpoint-from",
        str(args.checkpoint_from),
        "--no-warmup-from",
        str(args.no_warmup_from),
        "--sequence-chunk",
        str(args.sequence_chunk),
    ] + (["--lean-pool"] if args.lean_pool and name == "causal" else [])
    try:
        env = dict(os.environ, **({"MALLOC_MMAP_THRESHOLD_": str(args.mmap_threshold)} if args.mmap_threshold else {}))
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {args.timeout}s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"error": last[:120]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["checkpointing"] = checkpointing
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--models", nargs="+", default=["encoder", "causal", "bert", "longformer"], choices=MODELS)
    parser.add_argument("--peer-lengths", type=int, nargs="*", default=[4096], help="lengths for bert/longformer")
    parser.add_argument("--checkpoint-from", type=int, default=131072, help="gradient checkpointing from this length")
    parser.add_argument("--ff-chunk", type=int, default=65536, help="chunk_size_feed_forward when checkpointing")
    parser.add_argument(
        "--sequence-chunk",
        type=int,
        default=0,
        help="config.sequence_chunk_size (instead of gradient checkpointing) when checkpointing",
    )
    parser.add_argument("--lean-pool", action="store_true", help="config.recompute_causal_pool when checkpointing")
    parser.add_argument("--mmap-threshold", type=int, default=0, help="glibc MALLOC_MMAP_THRESHOLD_ of the workers")
    parser.add_argument("--no-warmup-from", type=int, default=131072, help="no warm-up step from this length on")
    parser.add_argument("--count-ops", type=int, nargs="*", default=[4096, 65536])
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per (model, length) subprocess")
    parser.add_argument(
        "--saved-breakdown",
        type=int,
        metavar="LENGTH",
        help="only print what autograd saves per module at LENGTH tokens (no memory option), and exit",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "LENGTH"), help=argparse.SUPPRESS)
    parser.add_argument("--ops-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, length = args.worker[0], int(args.worker[1])
        print(
            json.dumps(
                worker(
                    name,
                    length,
                    length >= args.checkpoint_from,
                    args.ff_chunk,
                    args.sequence_chunk,
                    args.lean_pool,
                    length < args.no_warmup_from,
                )
            )
        )
        return
    if args.saved_breakdown:
        for name in args.models:
            if name in ("encoder", "causal"):
                parts = saved_breakdown(name, args.saved_breakdown)
                print(
                    f"{name} at {args.saved_breakdown:,} tokens: {sum(parts.values()):.2f} GiB saved for backward "
                    f"(x{2**20 / args.saved_breakdown:.0f} at 1,048,576)"
                )
                for label, gib in parts.items():
                    print(f"  {label:<40} {gib:6.3f} GiB")
        return
    if args.ops_worker:
        print(count_ops(args.ops_worker))
        return

    results = {}
    for length in args.lengths:
        for name in args.models:
            if name in ("bert", "longformer") and length not in args.peer_lengths:
                continue
            results[(name, length)] = run_case(args, name, length)
            print(f"{name:>10} @ {length:>7}: {results[(name, length)]}", file=sys.stderr, flush=True)
    ops = {}
    for length in args.count_ops:
        done = subprocess.run([sys.executable, __file__, "--ops-worker", str(length)], capture_output=True, text=True)
        ops[length] = int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None

    print(f"Machine: {machine()}")
    print(
        f"Config: hidden {HIDDEN}, {HEADS} heads, FFN {FFN}, {LAYERS} layers, vocabulary {VOCAB}, batch 1, fp32, "
        f"no position table; from {args.checkpoint_from:,} tokens: "
        + (f"sequence_chunk_size={args.sequence_chunk}" if args.sequence_chunk else "gradient checkpointing")
        + f", chunk_size_feed_forward={args.ff_chunk}"
        + f"{', recompute_causal_pool' if args.lean_pool else ''}"
        + (f"; MALLOC_MMAP_THRESHOLD_={args.mmap_threshold}" if args.mmap_threshold else "")
        + "\n"
    )
    print("| model | tokens | memory options | forward s | backward s | fwd+bwd s | peak RSS GiB | gradients finite |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for (name, length), r in results.items():
        if "error" in r:
            print(f"| {name} | {length:,} | | {r['error']} | | | | |")
            continue
        total = r["forward_s"] + r["backward_s"]
        print(
            f"| {name} | {length:,} | {'yes' if r['checkpointing'] else 'no'} | {r['forward_s']:.2f} | "
            f"{r['backward_s']:.2f} | {total:.2f} | {r['peak_gib']:.2f} | {'yes' if r['finite'] else 'NO'} |"
        )

    def total(name, length):
        r = results.get((name, length), {})
        return r["forward_s"] + r["backward_s"] if "forward_s" in r else None

    print()
    for length in args.lengths:
        causal, encoder = total("causal", length), total("encoder", length)
        if causal and encoder:
            print(f"causal / encoder fwd+bwd at {length:,}: {causal / encoder:.2f}")
    for name in ("encoder", "causal"):
        for short, long in zip(args.lengths, args.lengths[1:]):
            if total(name, short) and total(name, long):
                print(
                    f"{name} t({long:,}) / t({short:,}) = {total(name, long) / total(name, short):.2f} "
                    f"(length ratio {long / short:.0f})"
                )
    for short, long in zip(args.count_ops, args.count_ops[1:]):
        if ops.get(short) and ops.get(long):
            print(
                f"causal forward aten ops: {ops[short]:,} at {short:,}, {ops[long]:,} at {long:,} "
                f"(ratio {ops[long] / ops[short]:.2f})"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": {f"{m}@{n}": v for (m, n), v in results.items()}, "ops": ops}, f, indent=2)


if __name__ == "__main__":
    main()
