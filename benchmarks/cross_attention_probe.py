#!/usr/bin/env python
"""Can the decoder read the source? A synthetic retrieval task comparing the two cross-attention types.

On the small XSum budget (`summarization_quality.py`) every model learns a language model of summaries and ignores
the document, so ROUGE cannot tell the cross-attention types apart. Here the summary can only come from the source:

- a document is `--length` tokens (uniform in [length / 2, length]) of filler words `f0..f{F-1}` with `--keys`
  key words `k0..k{K-1}` (distinct) placed at random positions;
- its summary is those key words in document order, then `</s>`.

Both `FastformerForConditionalGeneration` variants (same config, seed, data, steps, AdamW schedule) are trained
with teacher forcing, then decode the held-out documents greedily. Reported: exact-match rate (the whole summary
right), key recall (ROUGE-1-like set overlap: the fraction of the document's keys that appear in the output) and
the teacher-forced test loss.

Run: `python benchmarks/cross_attention_probe.py [--steps 600] [--length 256]`.
"""

import argparse
import math
import time

import torch

from fastformer import FastformerConfig, FastformerForConditionalGeneration


PAD, START, END = 0, 1, 2


def make_data(n: int, args, generator: torch.Generator):
    """`(input_ids, attention_mask, labels)`: right-padded documents and `keys + </s>` summaries."""
    first_key, first_filler = 3, 3 + args.num_key_words
    docs, sums = [], []
    for _ in range(n):
        length = int(torch.randint(args.length // 2, args.length + 1, (1,), generator=generator))
        doc = torch.randint(first_filler, first_filler + args.filler_words, (length,), generator=generator)
        positions = torch.randperm(length, generator=generator)[: args.keys].sort().values
        keys = first_key + torch.randperm(args.num_key_words, generator=generator)[: args.keys]
        doc[positions] = keys
        docs.append(doc)
        sums.append(torch.cat([keys, torch.tensor([END])]))
    width = max(len(d) for d in docs)
    input_ids = torch.full((n, width), PAD)
    attention_mask = torch.zeros(n, width, dtype=torch.long)
    for i, doc in enumerate(docs):
        input_ids[i, : len(doc)] = doc
        attention_mask[i, : len(doc)] = 1
    return input_ids, attention_mask, torch.stack(sums)


def train_and_score(cross_attention_type: str, train, test, args) -> dict:
    torch.manual_seed(args.seed)
    config = FastformerConfig(
        vocab_size=3 + args.num_key_words + args.filler_words,
        hidden_size=args.hidden,
        num_attention_heads=args.heads,
        num_hidden_layers=args.layers,
        num_decoder_layers=args.layers,
        intermediate_size=4 * args.hidden,
        hidden_dropout_prob=0.0,
        max_position_embeddings=args.length,
        cross_attention_type=cross_attention_type,
        is_encoder_decoder=True,
        pad_token_id=PAD,
        bos_token_id=START,
        eos_token_id=END,
        decoder_start_token_id=START,
    )
    model = FastformerForConditionalGeneration(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 50) * max(0.0, 1 - s / args.steps)
    )
    input_ids, attention_mask, labels = train
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    model.train()
    for step in range(args.steps):
        rows = torch.randint(0, len(input_ids), (args.batch,), generator=generator)
        width = int(attention_mask[rows].sum(1).max())
        loss = model(input_ids[rows, :width], attention_mask=attention_mask[rows, :width], labels=labels[rows]).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    train_seconds = time.perf_counter() - start

    model.eval()
    test_ids, test_mask, test_labels = test
    with torch.no_grad():
        test_loss = model(test_ids, attention_mask=test_mask, labels=test_labels).loss.item()
        generated = model.generate(
            test_ids, attention_mask=test_mask, max_new_tokens=args.keys + 1, do_sample=False, num_beams=1
        )[:, 1:]
    exact, recall = 0, 0.0
    for row, target in zip(generated.tolist(), test_labels.tolist()):
        output = row[: row.index(END) + 1] if END in row else row
        exact += output == target
        recall += len(set(output) & set(target[:-1])) / (len(target) - 1)
    return dict(
        exact=exact / len(test_labels),
        recall=recall / len(test_labels),
        test_loss=test_loss,
        train_loss=loss.item(),
        train_seconds=train_seconds,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=256, help="longest document (tokens)")
    parser.add_argument("--keys", type=int, default=4, help="key words per document (= summary length)")
    parser.add_argument("--num_key_words", type=int, default=64)
    parser.add_argument("--filler_words", type=int, default=64)
    parser.add_argument("--train_docs", type=int, default=4000)
    parser.add_argument("--test_docs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(1234)
    train, test = make_data(args.train_docs, args, generator), make_data(args.test_docs, args, generator)

    print(
        f"Documents of {args.length // 2}-{args.length} tokens, {args.keys} of {args.num_key_words} key words among "
        f"{args.filler_words} filler words; {args.train_docs} training / {args.test_docs} held-out documents; "
        f"hidden {args.hidden}, {args.heads} heads, {args.layers}+{args.layers} layers; {args.steps} AdamW steps of "
        f"batch {args.batch}, lr {args.lr}; greedy decoding. Chance key recall ~ "
        f"{args.keys / args.num_key_words:.3f}, chance test loss ~ {math.log(args.num_key_words):.2f} nats.\n"
    )
    print("| cross_attention_type | exact match | key recall | test loss | final train loss | train time (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for cross in ("scaled_dot_product", "additive"):
        r = train_and_score(cross, train, test, args)
        print(
            f"| {cross} | {r['exact']:.3f} | {r['recall']:.3f} | {r['test_loss']:.3f} | {r['train_loss']:.3f} | "
            f"{r['train_seconds']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
