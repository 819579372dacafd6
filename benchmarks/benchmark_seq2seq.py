#!/usr/bin/env python
"""Encoder-decoder summarization cost with long inputs: Fastformer (both cross-attention types) vs LED vs BART.

All four models have the same width, depth, heads, FFN and vocabulary (defaults: hidden 256, 8 heads, 2 encoder +
2 decoder layers, FFN 1024, vocab 8,000), GELU, dropout 0, float32, on the CPU, in one run:

- `fastformer-sdpa`: `FastformerForConditionalGeneration(cross_attention_type="scaled_dot_product")`;
- `fastformer-additive`: the same with `cross_attention_type="additive"`;
- `led`: `LEDForConditionalGeneration` (Longformer sliding-window attention, window `--led-window`, global
  attention on the first token, as LED is used for summarization), 4,096 encoder positions;
- `bart`: `BartForConditionalGeneration` with its learned position table extended to 4,096 (full O(n^2)
  attention through SDPA).

Measured, each as the mean of `--repeats` runs after two warm-up runs (`common.seconds_per_call`):

- training step: forward + backward + `AdamW.step()` on a batch of `--batch` random documents of `--source`
  tokens with summaries of `--target` tokens (teacher forcing);
- generated summary: `generate()` for one document of `--source` tokens with beam search (`--beams`, the paper's
  5) and exactly `--new-tokens` new tokens (`min_new_tokens = max_new_tokens`, so every model does the same
  number of decoding steps), with the cache. Time includes the one encoder pass.

Run: `python benchmarks/benchmark_seq2seq.py [--source 4096] [--repeats 3] [--json out.json]`.
"""

import argparse
import json

import torch
from common import cpu_name, machine, seconds_per_call
from transformers import BartConfig, BartForConditionalGeneration, LEDConfig, LEDForConditionalGeneration

from fastformer import FastformerConfig, FastformerForConditionalGeneration


PAD, START, END = 0, 2, 3


def build_models(args) -> dict[str, torch.nn.Module]:
    tokens = dict(pad_token_id=PAD, bos_token_id=START, eos_token_id=END, decoder_start_token_id=START)
    positions = args.source + args.new_tokens + 8
    models = {}
    for name, cross in (("fastformer-sdpa", "scaled_dot_product"), ("fastformer-additive", "additive")):
        config = FastformerConfig(
            vocab_size=args.vocab,
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_decoder_layers=args.layers,
            num_attention_heads=args.heads,
            intermediate_size=args.ffn,
            max_position_embeddings=positions,
            hidden_dropout_prob=0.0,
            cross_attention_type=cross,
            is_encoder_decoder=True,
            **tokens,
        )
        models[name] = FastformerForConditionalGeneration(config)
    shared = dict(
        vocab_size=args.vocab,
        d_model=args.hidden,
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        encoder_attention_heads=args.heads,
        decoder_attention_heads=args.heads,
        encoder_ffn_dim=args.ffn,
        decoder_ffn_dim=args.ffn,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation_function="gelu",
        **tokens,
    )
    models["led"] = LEDForConditionalGeneration(
        LEDConfig(
            max_encoder_position_embeddings=positions,
            max_decoder_position_embeddings=1024,
            attention_window=args.led_window,
            **shared,
        )
    )
    models["bart"] = BartForConditionalGeneration(
        BartConfig(max_position_embeddings=positions, forced_eos_token_id=None, **shared)
    )
    return models


def model_inputs(name: str, input_ids: torch.Tensor) -> dict:
    inputs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    if name == "led":
        global_attention = torch.zeros_like(input_ids)
        global_attention[:, 0] = 1
        inputs["global_attention_mask"] = global_attention
    return inputs


def time_training_step(name, model, args) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = model_inputs(name, torch.randint(4, args.vocab, (args.batch, args.source)))
    labels = torch.randint(4, args.vocab, (args.batch, args.target))

    def step():
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return seconds_per_call(step, args.repeats)


def time_generation(name, model, args) -> float:
    model.eval()
    inputs = model_inputs(name, torch.randint(4, args.vocab, (1, args.source)))
    kwargs = dict(
        num_beams=args.beams,
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        do_sample=False,
        use_cache=True,
        early_stopping=False,
        length_penalty=1.0,
    )

    def generate():
        out = model.generate(**inputs, **kwargs)
        assert out.shape[1] >= args.new_tokens, out.shape

    with torch.no_grad():
        return seconds_per_call(generate, args.repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=int, default=4096, help="document length in tokens")
    parser.add_argument("--target", type=int, default=64, help="summary length in training steps")
    parser.add_argument("--new-tokens", type=int, default=64, help="generated tokens per summary")
    parser.add_argument("--batch", type=int, default=2, help="documents per training step")
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--layers", type=int, default=2, help="encoder layers = decoder layers")
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--led-window", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["fastformer-sdpa", "fastformer-additive", "led", "bart"])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {name: model for name, model in build_models(args).items() if name in args.models}

    rows = []
    for name, model in models.items():
        row = dict(model=name, parameters=sum(p.numel() for p in model.parameters()))
        row["train_s"] = time_training_step(name, model, args)
        row["generate_s"] = time_generation(name, model, args)
        rows.append(row)
        print(
            f"{name}: {row['parameters'] / 1e6:.2f} M parameters, training step {row['train_s']:.3f} s, "
            f"summary {row['generate_s']:.3f} s",
            flush=True,
        )

    by_name = {row["model"]: row for row in rows}
    print(f"\nMachine: {machine()}")
    print(
        f"Models: hidden {args.hidden}, {args.heads} heads, {args.layers}+{args.layers} layers, FFN {args.ffn}, "
        f"vocab {args.vocab}, fp32. Training step: fwd+bwd+AdamW, batch {args.batch} x {args.source} source / "
        f"{args.target} target tokens. Summary: 1 document of {args.source} tokens, beam {args.beams}, "
        f"{args.new_tokens} new tokens. Median of {args.repeats} runs.\n"
    )
    peers = [peer for peer in ("led", "bart") if peer in by_name]
    header = "| model | parameters | training step (s) | " + "".join(f"step / {p.upper()} | " for p in peers)
    header += "summary (s) | " + "".join(f"summary / {p.upper()} | " for p in peers)
    print(header.rstrip())
    print("|---|---:|---:|" + "---:|" * len(peers) + "---:|" + "---:|" * len(peers))
    for row in rows:
        cells = [row["model"], f"{row['parameters'] / 1e6:.2f} M", f"{row['train_s']:.3f}"]
        cells += [f"{row['train_s'] / by_name[p]['train_s']:.2f}x" for p in peers]
        cells += [f"{row['generate_s']:.3f}"]
        cells += [f"{row['generate_s'] / by_name[p]['generate_s']:.2f}x" for p in peers]
        print("| " + " | ".join(cells) + " |")
    if "led" in by_name:
        for name in ("fastformer-sdpa", "fastformer-additive"):
            if name in by_name:
                ratio = by_name[name]["train_s"] / by_name["led"]["train_s"]
                verdict = "met" if ratio <= 0.5 else "NOT met"
                print(f"{name} training step / LED: {ratio:.2f} (target <= 0.5: {verdict})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"machine": cpu_name(), "threads": torch.get_num_threads(), "args": vars(args), "rows": rows},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
