#!/usr/bin/env python
"""Per-token decoding latency and cache memory: causal Fastformer vs GPT-2 with its key/value cache.

Both models have hidden 512, 8 heads, 4 layers, FFN 2048 and GPT-2's vocabulary (50,257), float32, in eval mode
under `torch.no_grad()`. For each batch size and context length the decoding state is built once, then `--steps`
greedy one-token steps are timed from a copy of it (median of `--repeats` runs, after a warm-up run); the time of
one step is the per-token latency (every sequence of the batch gets its next token). The cache's bytes are read off
the state:

- Fastformer: the context is run through the model's parallel causal form (prefill), which leaves the
  `FastformerCache` (per layer and head: running max, normaliser and weighted sum of both prefix pools).
- GPT-2: the `DynamicCache` is filled with random keys/values of the context's length: its step cost does not
  depend on their values, and a real quadratic prefill at 32k tokens would take many minutes on a CPU.

At batch 1 both models spend most of a step reading the same ~150 MB of weights (the 50k-word output layer alone
is 103 MB), so the key/value cache's cost shows fully only at long contexts or in batches.

Run: `python benchmarks/benchmark_generation.py [--contexts 128 1024 8192 32768] [--batch-contexts 8:128,1024,8192]`.
`--hidden/--heads/--layers/--ffn/--vocab` set another size for both models (e.g. the equal-budget LM's: 256, 4, 4,
1024, 8192, where a step is dominated by per-op overhead rather than by reading the weights).
"""

import argparse
import copy
import json
import statistics
import time

import torch
from common import cpu_name, machine
from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel

from fastformer import FastformerConfig, FastformerForCausalLM


HIDDEN, HEADS, LAYERS, FFN, VOCAB = 512, 8, 4, 2048, 50257


def fastformer_state(model, batch: int, context: int):
    ids = torch.randint(3, model.config.vocab_size, (batch, context))
    return model.fastformer(ids, use_cache=True).cache


def gpt2_state(model, batch: int, context: int):
    cache = DynamicCache(config=model.config)
    config = model.config
    shape = (batch, config.n_head, context, config.n_embd // config.n_head)
    for layer in range(config.n_layer):
        cache.update(torch.randn(shape), torch.randn(shape), layer)
    return cache


def cache_bytes(cache) -> int:
    tensors = []
    for layer in cache.layers:
        tensors += [t for t in getattr(layer, "recurrent_states", {}).values() if t is not None]
        tensors += [t for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if t is not None]
    return sum(t.numel() * t.element_size() for t in tensors)


def time_decoding(model, state, steps: int, repeats: int) -> float:
    """Median seconds per decoding step over `repeats` runs of `steps` greedy steps, each from a copy of `state`."""
    timings = []
    for run in range(repeats + 1):  # run 0 is a warm-up
        cache = copy.deepcopy(state)
        token = torch.randint(3, model.config.vocab_size, (cache_batch(state), 1))
        start = time.perf_counter()
        for _ in range(steps):
            token = model(token, cache=cache, use_cache=True).logits[:, -1:].argmax(-1)
        if run:
            timings.append((time.perf_counter() - start) / steps)
        del cache
    return statistics.median(timings)


def cache_batch(cache) -> int:
    layer = cache.layers[0]
    tensor = layer.keys if getattr(layer, "keys", None) is not None else layer.recurrent_states[0]
    return tensor.shape[0]


def parse_batch_contexts(text: str) -> list[tuple[int, int]]:
    """`"8:128,1024;4:32768"` -> [(8, 128), (8, 1024), (4, 32768)]."""
    pairs = []
    for group in filter(None, text.split(";")):
        batch, contexts = group.split(":")
        pairs += [(int(batch), int(c)) for c in contexts.split(",")]
    return pairs


def build_models(vocab, hidden, heads, layers, ffn, positions, gpt2_attention=None) -> tuple:
    """A causal Fastformer and a GPT-2 of the same size (random weights, eval mode), on the current default device;
    `gpt2_attention`: GPT-2's `attn_implementation` (None: transformers' default)."""
    fastformer = FastformerForCausalLM(
        FastformerConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            num_attention_heads=heads,
            num_hidden_layers=layers,
            intermediate_size=ffn,
            max_position_embeddings=positions,
            is_decoder=True,
            hidden_dropout_prob=0.0,
        )
    ).eval()
    attention = {} if gpt2_attention is None else {"attn_implementation": gpt2_attention}
    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=vocab,
            n_embd=hidden,
            n_head=heads,
            n_layer=layers,
            n_inner=ffn,
            n_positions=positions,
            **attention,
        )
    ).eval()
    return fastformer, gpt2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[128, 1024, 8192, 32768], help="at batch 1")
    parser.add_argument("--batch-contexts", default="8:128,1024,8192", help="more (batch, context) pairs")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--heads", type=int, default=HEADS)
    parser.add_argument("--layers", type=int, default=LAYERS)
    parser.add_argument("--ffn", type=int, default=FFN)
    parser.add_argument("--vocab", type=int, default=VOCAB)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = [(1, c) for c in args.contexts] + parse_batch_contexts(args.batch_contexts)
    positions = max(c for _, c in cases) + args.steps + 1
    fastformer, gpt2 = build_models(args.vocab, args.hidden, args.heads, args.layers, args.ffn, positions)

    rows = []
    with torch.no_grad():
        for batch, context in cases:
            row = dict(batch=batch, context=context)
            for name, model, make_state in (("fastformer", fastformer, fastformer_state), ("gpt2", gpt2, gpt2_state)):
                state = make_state(model, batch, context)
                row[f"{name}_cache_bytes"] = cache_bytes(state)
                row[f"{name}_ms"] = time_decoding(model, state, args.steps, args.repeats) * 1e3
                del state
            rows.append(row)
            print(
                f"batch {batch}, context {context}: fastformer {row['fastformer_ms']:.2f} ms/step, "
                f"gpt2 {row['gpt2_ms']:.2f} ms/step",
                flush=True,
            )

    print(f"\nMachine: {machine()}")
    print(
        f"Models: hidden {args.hidden}, {args.heads} heads, {args.layers} layers, FFN {args.ffn}, vocab {args.vocab}, fp32; "
        f"{args.steps} greedy steps per run, median of {args.repeats} runs\n"
    )
    print(
        "| batch | context | Fastformer ms/token | GPT-2 ms/token | GPT-2 / Fastformer | Fastformer cache | GPT-2 cache |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['batch']} | {row['context']:,} | {row['fastformer_ms']:.2f} | {row['gpt2_ms']:.2f} | "
            f"{row['gpt2_ms'] / row['fastformer_ms']:.1f}x | {row['fastformer_cache_bytes'] / 1024:.1f} KiB | "
            f"{row['gpt2_cache_bytes'] / 2**20:.1f} MiB |"
        )
    for batch in sorted({row["batch"] for row in rows}):
        same_batch = [row for row in rows if row["batch"] == batch]
        first = same_batch[0]
        for row in same_batch[1:]:
            print(
                f"batch {batch}: Fastformer step time at {row['context']:,} / at {first['context']:,}: "
                f"{row['fastformer_ms'] / first['fastformer_ms']:.2f}"
            )
        constant = len({row["fastformer_cache_bytes"] for row in same_batch}) == 1
        print(f"batch {batch}: Fastformer cache bytes identical at every context: {constant}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": cpu_name(), "threads": torch.get_num_threads(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
