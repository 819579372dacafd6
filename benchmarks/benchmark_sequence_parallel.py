"""Sequence parallelism (#16 items 3-4): bytes communicated per layer and step time against sequence length, for one
process on the whole sequence and for 2 processes each holding half of it; then, computed on paper (not measured),
the same for 8 GPUs at 8M tokens against ring attention.

    python benchmarks/benchmark_sequence_parallel.py --lengths 4096 16384 65536

Measured here: a Fastformer stack (`FastformerModel`, encoder and causal) of `--layers` layers, batch 1, forward +
backward of `mean(h ** 2)` (the median of `--repeats` timed steps after one warm-up), float32, gloo on CPU. The 2
processes use 1 torch thread each; one process is timed with 1 thread (the same work per core) and with 2 (the whole
machine). Bytes: the sizes of the tensors passed to `torch.distributed.all_reduce` by the model, counted in the
forward and the backward pass, divided by the number of layers (the size of each all-reduce's message; a ring
all-reduce sends about 2 (P - 1) / P times that per process).
"""

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from common import machine

from fastformer import FastformerConfig, FastformerModel
from fastformer import sequence_parallel as sp


KINDS = ("encoder", "causal")


def build(kind: str, args) -> FastformerModel:
    torch.manual_seed(0)
    config = FastformerConfig(
        vocab_size=1000,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden,
        hidden_dropout_prob=0.0,
        position_embedding_type="none",
        is_decoder=kind == "causal",
        pad_token_id=0,
    )
    return FastformerModel(config)


class AllReduceCounter:
    """Counts the bytes of every `torch.distributed.all_reduce` (the model calls it through the module attribute)."""

    def __init__(self):
        self.bytes = 0
        self.calls = 0
        self.original = dist.all_reduce

        def counting(tensor, *args, **kwargs):
            self.bytes += tensor.numel() * tensor.element_size()
            self.calls += 1
            return self.original(tensor, *args, **kwargs)

        dist.all_reduce = counting

    def take(self):
        taken = (self.bytes, self.calls)
        self.bytes = self.calls = 0
        return taken


def measure(rank, world, threads, args, init_file, queue):
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    counter = AllReduceCounter()
    rows = []
    for kind in KINDS:
        model = build(kind, args)
        if world > 1:
            sp.enable_sequence_parallel(model)
        for length in args.lengths:
            input_ids = torch.randint(3, 1000, (1, length), generator=torch.Generator().manual_seed(length))
            shard = sp.shard_sequence(input_ids, causal=kind == "causal")
            times, forward_bytes, backward_bytes, calls = [], 0, 0, 0
            for repeat in range(args.repeats + 1):
                model.zero_grad(set_to_none=True)
                dist.barrier()
                start = time.perf_counter()
                hidden = model(shard.input_ids, position_ids=shard.position_ids, use_cache=False).last_hidden_state
                counter_forward = counter.take()
                sp.global_loss(hidden.pow(2).sum() / (length * args.hidden)).backward()
                counter_backward = counter.take()
                elapsed = time.perf_counter() - start
                if repeat:  # the first step warms up
                    times.append(elapsed)
                forward_bytes, backward_bytes = counter_forward[0], counter_backward[0] - 4  # minus global_loss's
                calls = counter_forward[1]
            rows.append((kind, length, statistics.median(times), forward_bytes, max(backward_bytes, 0), calls))
    slowest = [None] * world
    dist.all_gather_object(slowest, rows)
    if rank == 0:  # a step takes as long as its slowest process
        queue.put([(*row[:2], max(r[index][2] for r in slowest), *row[3:]) for index, row in enumerate(rows)])
    dist.destroy_process_group()


def run(world: int, threads: int, args):
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    with tempfile.TemporaryDirectory() as directory:
        mp.start_processes(
            measure,
            args=(world, threads, args, os.path.join(directory, "rendezvous"), queue),
            nprocs=world,
            start_method="spawn",
        )
        return queue.get()


def on_paper(processes=8, tokens=8 * 2**20, hidden=1024, heads=16, batch=1, ring_bytes=2, link_gb_s=450.0):
    """Per layer, per process, computed (not measured): what each all-reduce carries for Fastformer (float32
    summaries) and what ring attention sends around the ring (K and V blocks in `ring_bytes`-byte precision)."""
    head_dim = hidden // heads
    ring = 2 * (processes - 1) / processes  # a ring all-reduce sends this many times the message per process
    encoder_pool = batch * heads * 4 + batch * heads * (head_dim + 1) * 4  # MAX of m, SUM of [S, Z]
    encoder_forward = 2 * encoder_pool
    encoder_backward = 2 * batch * heads * (head_dim + 1) * 4
    causal_forward = 2 * processes * batch * heads * (head_dim + 2) * 4  # one row per process, all-reduced
    ring_forward = (processes - 1) * 2 * (tokens // processes) * hidden * ring_bytes * batch  # sent per process
    print(
        f"\nOn paper (computed, not measured): {processes} GPUs, {tokens:,} tokens, hidden {hidden}, {heads} heads,"
        f" batch {batch}; per layer and process"
    )
    print(f"{'scheme':<44}{'message (bytes)':>18}{'sent per process':>20}{'at ' + str(int(link_gb_s)) + ' GB/s':>14}")
    for name, message, sent in (
        ("Fastformer encoder, forward (2 pools)", encoder_forward, ring * encoder_forward),
        ("Fastformer encoder, backward", encoder_backward, ring * encoder_backward),
        ("Fastformer causal, forward (2 pools)", causal_forward, ring * causal_forward),
        ("Fastformer causal, backward", causal_forward, ring * causal_forward),
        (f"ring attention, forward (K, V, {ring_bytes}-byte)", 2 * tokens * hidden * ring_bytes * batch, ring_forward),
        ("ring attention, backward (K, V + dK, dV)", 4 * tokens * hidden * ring_bytes * batch, 2 * ring_forward),
    ):
        print(f"{name:<44}{message:>18,.0f}{sent:>20,.0f}{sent / (link_gb_s * 1e9) * 1e3:>12.4g} ms")
    print(
        f"ring attention / Fastformer encoder (forward, sent per process): {ring_forward / (ring * encoder_forward):,.0f}x"
        "; Fastformer's messages are a few KB: latency-bound (one all-reduce per pool), not bandwidth-bound."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    print(f"hidden {args.hidden}, {args.heads} heads, {args.layers} layers, batch 1, float32, fwd + bwd, gloo")
    one_thread, two_threads, two_processes = run(1, 1, args), run(1, 2, args), run(2, 1, args)
    print(
        f"\n{'model':<8}{'length':>8}{'1 proc x1 thr s':>17}{'1 proc x2 thr s':>17}{'2 proc x1 thr s':>17}"
        f"{'bytes/layer fwd':>17}{'bytes/layer bwd':>17}{'all-reduces fwd':>17}"
    )
    for single, double, sharded in zip(one_thread, two_threads, two_processes):
        kind, length, seconds, forward_bytes, backward_bytes, calls = sharded
        print(
            f"{kind:<8}{length:>8}{single[2]:>17.3f}{double[2]:>17.3f}{seconds:>17.3f}"
            f"{forward_bytes / args.layers:>17,.0f}{backward_bytes / args.layers:>17,.0f}{calls:>17}"
        )
    on_paper()


if __name__ == "__main__":
    main()
