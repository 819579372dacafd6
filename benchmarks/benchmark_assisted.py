#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Assisted and prompt-lookup decoding vs plain greedy decoding of a causal Fastformer, on this CPU.

A target model and a smaller draft model are trained on the same data with the same tokenizer: `lm_equal_budget.py`'s
data preparation (its corpora or `--train_file`, split by document, a byte-level BPE trained on the training
documents, blocks of `--context` tokens), batches, learning-rate schedule and next-token loss, both pre-LN (the layout
that trains with a short warm-up). The trained models are saved in `--output_dir` (`target/`, `draft/`, with
`training.json`) and read back on a rerun with the same settings, never re-trained.

Then `generate()` runs (batch 1, `--new_tokens` new tokens, no EOS stop) in three cases: `--prompts` held-out prompts
of `--prompt_tokens` tokens with plain greedy decoding; the same prompts with `repetition_penalty` (greedy with the
penalty: models trained for minutes loop over one token, such as a newline, under plain greedy decoding, where every
draft is trivially right); and repetitive inputs, `--prompts` held-out passages of `--passage_tokens` tokens, each
repeated `--repeats` times. Each case compares plain greedy with greedy assisted by the draft (`assistant_model=`,
for each `--draft_tokens` k; constant schedule, no confidence threshold, so every round drafts k tokens) and with
prompt lookup (`prompt_lookup_num_tokens=`, for each `--lookup_tokens` n: n-grams of the text itself as drafts). The
methods run interleaved, prompt by prompt, for `--rounds` rounds; tokens/s is per round and method (new tokens / wall
seconds, prefill included), reported as the median over the rounds, and its ratio to greedy as the median of the
per-round ratios. Acceptance rate: accepted draft tokens / drafted tokens; tokens per target forward: new tokens /
the target's forwards (rounds of verification). Every output is compared with greedy's, token for token. Also: the
teacher-forced top-1 agreement of the two models on held-out text (the acceptance rate on real text), and the cache's
memory with recording on (k states kept) vs off, measured on real caches after a prefill.

    OMP_NUM_THREADS=1 python benchmarks/benchmark_assisted.py --output_dir outputs/assisted
    python benchmarks/benchmark_assisted.py --output_dir outputs/assisted-smoke --smoke   # seconds, a toy corpus
"""

import argparse
import json
import math
import os
import random
import statistics
import time
from pathlib import Path

import torch
from common import machine
from lm_equal_budget import (
    CORPORA,
    EOS,
    batch_at,
    blocks,
    build_causal_model,
    learning_rate,
    next_token_loss,
    prepare_data,
)
from lm_equal_budget import evaluate as held_out_loss
from transformers.generation.candidate_generator import AssistedCandidateGenerator, PromptLookupCandidateGenerator
from transformers.utils import logging

from fastformer import FastformerCache, FastformerForCausalLM


SIZES = {  # (hidden, layers, heads, ffn) of the two models; the smoke run's are tiny
    "target": (256, 4, 4, 1024),
    "draft": (128, 1, 2, 512),
}
SMOKE_SIZES = {"target": (32, 2, 2, 64), "draft": (16, 1, 1, 32)}


def model_args(args, role: str) -> argparse.Namespace:
    """The `lm_equal_budget.py` settings that build and train the `role` model."""
    hidden, layers, heads, ffn = (SMOKE_SIZES if args.smoke else SIZES)[role]
    return argparse.Namespace(
        hidden_size=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        dropout=0.0,
        context=args.context,
        ablation=["pre_ln"],
        objective="clm",
        steps=args.steps,
        warmup=0.1,
        schedule="cosine",
    )


def train(role: str, args, train_blocks, eval_blocks, vocab_size: int, eos: int) -> tuple[FastformerForCausalLM, dict]:
    """The trained `role` model, read back from `--output_dir/<role>` when trained there with the same settings."""
    settings = vars(model_args(args, role)) | {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "vocab_size": vocab_size,
    }
    folder = Path(args.output_dir) / role
    record_path = folder / "training.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record["settings"] == settings:
            return FastformerForCausalLM.from_pretrained(folder).eval(), record
    torch.manual_seed(args.seed)
    margs = model_args(args, role)
    model = build_causal_model("fastformer", margs, vocab_size, eos)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate(step, margs))
    model.train()
    start = time.perf_counter()
    for step in range(args.steps):
        loss = next_token_loss(model, batch_at(step, train_blocks, args.batch_size, args.seed))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        loss = held_out_loss(model, eval_blocks, args.batch_size)
    model.eval()
    record = {
        "settings": settings,
        "parameters": sum(p.numel() for p in model.parameters()),
        "training_seconds": seconds,
        "held_out_loss": loss,
    }
    model.save_pretrained(folder)
    record_path.write_text(json.dumps(record, indent=1))
    return model, record


class Acceptance:
    """Counts, over `generate()` calls, the drafted and accepted tokens and the target's verification forwards, from
    transformers' candidate generators (`update_candidate_strategy`, called once per round with the target's
    `candidate_length + 1` logits and the number of accepted draft tokens)."""

    def __init__(self):
        self.drafted = self.accepted = self.forwards = 0

    def __enter__(self):
        self.originals = {}
        for cls in (AssistedCandidateGenerator, PromptLookupCandidateGenerator):
            original = cls.update_candidate_strategy
            self.originals[cls] = original

            def counting(generator, input_ids, scores, num_matches, _original=original):
                self.drafted += scores.shape[1] - 1
                self.accepted += int(num_matches)
                self.forwards += 1
                return _original(generator, input_ids, scores, num_matches)

            cls.update_candidate_strategy = counting
        return self

    def __exit__(self, *exc):
        for cls, original in self.originals.items():
            cls.update_candidate_strategy = original


def held_out_prompts(held_ids, count: int, length: int) -> list[torch.Tensor]:
    """`count` prompts of `length` tokens from places spread over the held-out stream."""
    stream = torch.from_numpy(held_ids.astype("int64"))
    starts = torch.linspace(0, len(stream) - length - 1, count).long().tolist()
    return [stream[start : start + length].unsqueeze(0) for start in starts]


def with_draft(draft, k: int):
    """The `generate()` kwargs of assisted decoding with `draft` drafting `k` tokens a round (transformers reads `k`
    from the draft's generation config)."""

    def kwargs() -> dict:
        draft.generation_config.num_assistant_tokens = k
        return {"assistant_model": draft}

    return kwargs


def run_methods(target, methods: dict, prompts, new_tokens: int, eos: int, rounds: int, **decoding) -> dict:
    """Each method (name -> a function giving its extra `generate()` kwargs; "greedy" first) on every prompt,
    interleaved, `rounds` times, with the `decoding` kwargs (e.g. a repetition penalty) for all: per method the
    tokens/s of each round, the acceptance counts (over all rounds) and whether every output equals greedy's."""
    common = dict(max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=eos) | decoding
    results = {name: {"seconds": [0.0] * rounds, "counts": Acceptance(), "same": True} for name in methods}
    greedy = {}
    with torch.no_grad():
        for extra in methods.values():  # warm-up: one short call each
            target.generate(prompts[0], **(common | {"max_new_tokens": 4}), **extra())
        for round_index in range(rounds):
            for index, prompt in enumerate(prompts):
                for name, extra in methods.items():
                    kwargs = extra()
                    with results[name]["counts"]:
                        start = time.perf_counter()
                        output = target.generate(prompt, **common, **kwargs)
                        results[name]["seconds"][round_index] += time.perf_counter() - start
                    assert output.shape[1] == prompt.shape[1] + new_tokens
                    if name == "greedy":
                        greedy[index] = output
                    else:
                        results[name]["same"] &= torch.equal(output, greedy[index])
    tokens = new_tokens * len(prompts)
    for name, result in results.items():
        result["tokens_per_second"] = [tokens / seconds for seconds in result["seconds"]]
        result["ratio"] = [
            mine / base for mine, base in zip(result["tokens_per_second"], results["greedy"]["tokens_per_second"])
        ]
    return results


def table(results: dict, new_tokens: int, prompts: int, rounds: int) -> str:
    lines = [
        "| method | tokens/s | vs greedy (range over rounds) | acceptance rate | tokens per target forward "
        "| same tokens as greedy |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, result in results.items():
        counts = result["counts"]
        speed = statistics.median(result["tokens_per_second"])
        ratio = statistics.median(result["ratio"])
        if name == "greedy":
            lines.append(f"| {name} | {speed:.1f} | 1.00x | - | 1.00 | - |")
            continue
        acceptance = counts.accepted / counts.drafted if counts.drafted else float("nan")
        per_forward = new_tokens * prompts * rounds / counts.forwards
        same = "yes" if result["same"] else "**no**"
        lines.append(
            f"| {name} | {speed:.1f} | {ratio:.2f}x ({min(result['ratio']):.2f}-{max(result['ratio']):.2f}) | "
            f"{acceptance:.3f} ({counts.accepted:,}/{counts.drafted:,}) | "
            f"{per_forward:.2f} | {same} |"
        )
    return "\n".join(lines)


@torch.no_grad()
def top1_agreement(target, draft, eval_blocks) -> float:
    """The fraction of held-out positions where the draft's most likely next token is the target's (teacher-forced:
    both read the real text), the acceptance rate a draft would have on text the target writes itself."""
    same = (target(eval_blocks).logits.argmax(-1) == draft(eval_blocks).logits.argmax(-1)).float()
    return same.mean().item()


def cache_memory(model, prompt: torch.Tensor, keep: int | None) -> int:
    """Bytes of `model`'s cache after a prefill of `prompt`, recording the last `keep` states (None: off)."""
    cache = FastformerCache(model.config.num_hidden_layers)
    if keep is not None:
        cache.activate_past_recording(recurrent_states_to_keep=keep)
    with torch.no_grad():
        model(prompt, cache=cache, use_cache=True)
    return cache.memory_bytes()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--output_dir", required=True, help="data, trained models and results.json")
    parser.add_argument("--smoke", action="store_true", help="a toy corpus and tiny models: seconds")
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    parser.add_argument("--train_file", help="a local text file instead of the corpora (blank-line separated)")
    parser.add_argument("--cache_dir", help="where fetched corpora are cached")
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--context", type=int, default=256, help="tokens per training block and position table")
    parser.add_argument("--steps", type=int, default=100, help="training steps of each model")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompts", type=int, default=6, help="held-out prompts")
    parser.add_argument("--prompt_tokens", type=int, default=64)
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--draft_tokens", nargs="+", type=int, default=[2, 4, 6], help="num_assistant_tokens")
    parser.add_argument("--lookup_tokens", nargs="+", type=int, default=[3, 10], help="prompt_lookup_num_tokens")
    parser.add_argument("--passage_tokens", type=int, default=48, help="the repeated passage of prompt lookup")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument(
        "--repetition_penalty", type=float, default=1.3, help="of the second case (text that does not degenerate)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    if args.smoke:
        args.vocab_size, args.context, args.steps, args.batch_size = 300, 64, 5, 2
        args.prompts, args.prompt_tokens, args.new_tokens, args.rounds = 2, 8, 8, 1
        args.draft_tokens, args.lookup_tokens, args.passage_tokens, args.repeats = [2], [2], 6, 3
    needed = max(args.prompt_tokens, args.passage_tokens * args.repeats) + args.new_tokens
    if needed > args.context:
        parser.error(f"prompts and new tokens need {needed} positions, more than --context {args.context}")
    return args


def smoke_corpus(folder: Path) -> Path:
    """40 documents of a toy grammar (the smoke run's data)."""
    rng = random.Random(0)
    nouns, verbs = "cat dog bird fish horse cow".split(), "sees likes chases feeds".split()
    docs = [
        " ".join(f"the {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)} ." for _ in range(30))
        for _ in range(40)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "smoke-corpus.txt"
    path.write_text("\n\n".join(docs) + "\n")
    return path


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable_progress_bar()
    out = Path(args.output_dir)
    if args.smoke and not args.train_file:
        args.train_file = str(smoke_corpus(out))
    data_args = argparse.Namespace(
        output_dir=args.output_dir,
        corpora=args.corpora,
        train_file=args.train_file,
        cache_dir=args.cache_dir,
        held_out_fraction=0.05,
        data_seed=0,
        vocab_size=args.vocab_size,
    )
    tokenizer, train_ids, held_ids, meta = prepare_data(data_args)
    eos, vocab_size = tokenizer.token_to_id(EOS), tokenizer.get_vocab_size()
    train_blocks = blocks(train_ids, args.context)
    eval_blocks = blocks(held_ids, args.context)[:32]
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} (1 min)", flush=True)
    print(f"data: {meta['tokens']} tokens, {len(train_blocks):,} training blocks of {args.context}", flush=True)

    models, records = {}, {}
    for role in ("target", "draft"):
        models[role], records[role] = train(role, args, train_blocks, eval_blocks, vocab_size, eos)
    target, draft = models["target"], models["draft"]
    print("\n| model | hidden x layers | parameters | training | held-out loss (perplexity) |")
    print("|---|---|---:|---:|---:|")
    for role in ("target", "draft"):
        record, margs = records[role], model_args(args, role)
        print(
            f"| {role} | {margs.hidden_size} x {margs.layers} | {record['parameters']:,} | "
            f"{args.steps} steps, {record['training_seconds']:.0f} s | "
            f"{record['held_out_loss']:.3f} ({math.exp(record['held_out_loss']):.0f}) |"
        )

    draft.generation_config.assistant_confidence_threshold = 0.0  # every round drafts k tokens
    draft.generation_config.num_assistant_tokens_schedule = "constant"
    agreement = top1_agreement(target, draft, eval_blocks[:8])
    print(f"\nteacher-forced top-1 agreement of draft and target on held-out text: {agreement:.3f}")

    prompts = held_out_prompts(held_ids, args.prompts, args.prompt_tokens)
    passages = held_out_prompts(held_ids, args.prompts, args.passage_tokens)
    drafts = {f"assisted, k={k}": with_draft(draft, k) for k in args.draft_tokens}
    lookups = {f"prompt lookup, n={n}": (lambda n=n: {"prompt_lookup_num_tokens": n}) for n in args.lookup_tokens}
    cases = {  # name: (what, prompts, methods, decoding kwargs)
        "held_out": ("held-out prompts, greedy", prompts, drafts | lookups, {}),
        "held_out_penalty": (
            f"held-out prompts, greedy with `repetition_penalty={args.repetition_penalty}`",
            prompts,
            drafts | lookups,
            {"repetition_penalty": args.repetition_penalty},
        ),
        "repetitive": (
            f"held-out passages of {args.passage_tokens} tokens, each repeated {args.repeats} times, greedy",
            [passage.repeat(1, args.repeats) for passage in passages],
            lookups | {name: drafts[name] for name in list(drafts)[-1:]},
            {},
        ),
    }
    results = {}
    for case, (what, case_prompts, methods, decoding) in cases.items():
        results[case] = run_methods(
            target, {"greedy": dict} | methods, case_prompts, args.new_tokens, eos, args.rounds, **decoding
        )
        print(
            f"\n{what}: {len(case_prompts)} prompt(s), {args.new_tokens} new tokens each, batch 1; tokens/s: median "
            f"of {args.rounds} interleaved rounds.\n"
        )
        print(table(results[case], args.new_tokens, len(case_prompts), args.rounds))

    memory = {}
    print("\nCache memory after a prefill of one prompt (batch 1, float32):\n")
    print("| model | recording | bytes | vs off |")
    print("|---|---|---:|---:|")
    for role, model in models.items():
        off = cache_memory(model, prompts[0], None)
        memory[role] = {"off": off}
        print(f"| {role} | off | {off:,} | 1.00x |")
        for k in sorted(set(args.draft_tokens)):
            on = memory[role][k] = cache_memory(model, prompts[0], k)
            print(f"| {role} | k={k} | {on:,} | {on / off:.2f}x |")

    summary = {
        "machine": machine(),
        "training": records,
        "top1_agreement": agreement,
        "decoding": {case: {name: summarize(row) for name, row in rows.items()} for case, rows in results.items()},
        "cache_bytes": memory,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    return summary


def summarize(result: dict) -> dict:
    counts = result["counts"]
    return {
        "tokens_per_second": result["tokens_per_second"],
        "ratio_to_greedy": result["ratio"],
        "drafted": counts.drafted,
        "accepted": counts.accepted,
        "target_forwards": counts.forwards,
        "same_as_greedy": result["same"],
    }


if __name__ == "__main__":
    main()
