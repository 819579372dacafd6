"""Train a causal Fastformer on one long sequence split over several processes (sequence parallelism, #16).

    python examples/sequence_parallel.py --processes 2 --length 65536 --steps 3

Every process holds `length / processes` tokens of the one sequence and their activations; per layer and pool the
processes exchange `O(hidden)` numbers (`fastformer/sequence_parallel.py`, docs/distributed.md). The processes are
started here (`torch.multiprocessing`, gloo on CPU, rendezvous through a temporary file); under `torchrun` each
process runs `train()` directly. Prints the loss of each step (the whole sequence's, identical on every process)
and each process's peak resident memory, in all and above what it held before the first step (activations,
gradients and optimizer state: compare `--processes 1` at a length with `--processes 2` at twice that length).

`--memory-limit-mib N` caps each process's data memory (`RLIMIT_DATA`, Linux): a sequence one process cannot hold
under the cap then trains on 2 processes, e.g. (measured, benchmarks/RESULTS.md)

    python examples/sequence_parallel.py --processes 1 --length 65536 --memory-limit-mib 3072   # out of memory
    python examples/sequence_parallel.py --processes 2 --length 65536 --memory-limit-mib 3072   # trains
"""

import argparse
import os
import resource
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastformer import FastformerConfig, FastformerForCausalLM
from fastformer import sequence_parallel as sp
from fastformer.classify.reporting import peak_memory_mib


def train(args):
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial weights on every process
    config = FastformerConfig(
        vocab_size=1000,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        intermediate_size=4 * args.hidden,
        hidden_dropout_prob=0.0,
        is_decoder=True,
        position_embedding_type="none",
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = FastformerForCausalLM(config)
    if world > 1:
        sp.enable_sequence_parallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    # One long text: a random pattern of 61 tokens, repeated, so that the loss can fall within a few steps.
    pattern = torch.randint(3, config.vocab_size, (61,), generator=torch.Generator().manual_seed(1))
    input_ids = pattern[torch.arange(args.length) % len(pattern)].unsqueeze(0)  # (1, length)
    shard = sp.shard_sequence(input_ids, labels=input_ids, causal=True)  # this process's slice
    before = peak_memory_mib()
    for step in range(args.steps):
        start = time.perf_counter()
        outputs = model(**shard.model_inputs(), use_cache=False)
        loss = sp.global_loss(outputs.loss)  # the whole sequence's mean token loss
        optimizer.zero_grad()
        loss.backward()
        sp.all_reduce_gradients(model)  # the whole sequence's gradient, on every process
        optimizer.step()
        if rank == 0:
            print(f"step {step}: loss {loss.item():.4f}  ({time.perf_counter() - start:.2f} s)", flush=True)
    peaks = [None] * world
    dist.all_gather_object(peaks, (round(peak_memory_mib()), round(peak_memory_mib() - before)))
    if rank == 0:
        print(f"length {args.length}, {world} process(es), {shard.input_ids.shape[1]} tokens each")
        for index, (peak, above) in enumerate(peaks):
            print(f"  rank {index}: peak RSS {peak} MiB, {above} MiB above the RSS before the first step")


def limit_memory(args):
    if args.memory_limit_mib:
        limit = args.memory_limit_mib * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def spawned(rank, args, init_file):
    torch.set_num_threads(args.threads)
    limit_memory(args)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=args.processes)
    try:
        train(args)
    except (RuntimeError, MemoryError) as error:
        if "alloc" not in str(error) and not isinstance(error, MemoryError):
            raise
        print(f"rank {rank}: out of memory under --memory-limit-mib {args.memory_limit_mib}: {error}", flush=True)
        os._exit(1)  # the other processes wait in a collective: end them with this one
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--length", type=int, default=65536, help="tokens of the one training sequence")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--memory-limit-mib", type=int, default=0, help="cap on each process's data memory (Linux)")
    args = parser.parse_args()
    if "LOCAL_RANK" in os.environ:  # under torchrun
        torch.set_num_threads(args.threads)
        limit_memory(args)
        dist.init_process_group("gloo")
        train(args)
        dist.destroy_process_group()
        return
    with tempfile.TemporaryDirectory() as directory:
        try:
            mp.spawn(spawned, args=(args, os.path.join(directory, "rendezvous")), nprocs=args.processes)
        except mp.ProcessExitedException as error:
            raise SystemExit(f"training stopped: {error}") from None


if __name__ == "__main__":
    main()
