#!/usr/bin/env python
"""A short end-to-end demo of FastformerForSequenceClassification (until the main job lands).

Trains a small Fastformer from scratch with the `Trainer` on a synthetic long-sequence task (sequences of up to
1,024 tokens whose words lean 60/40 towards one half of the vocabulary: which half?), evaluates it, saves a checkpoint with its custom code and reloads it through
`AutoModelForSequenceClassification.from_pretrained(..., trust_remote_code=True)`.

    python examples/demo_classification.py --output_dir outputs/demo
"""

import argparse
import shutil

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments, set_seed

from fastformer import FastformerConfig, FastformerForSequenceClassification


def make_dataset(num_rows: int, seq_len: int, vocab_size: int, seed: int) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(num_rows):
        length = int(torch.randint(seq_len // 2, seq_len + 1, (), generator=generator))
        label = i % 2
        half = (vocab_size - 10) // 2
        ids = torch.randint(10, 10 + half, (length,), generator=generator)  # words of the first half
        leaning = torch.rand(length, generator=generator) < (0.6 if label else 0.4)
        ids[leaning] += half  # move 60% (label 1) or 40% (label 0) of the words to the second half
        rows.append({"input_ids": ids.tolist(), "labels": label})
    return Dataset.from_list(rows)


def collate(batch):
    width = max(len(row["input_ids"]) for row in batch)
    input_ids = torch.zeros(len(batch), width, dtype=torch.long)
    attention_mask = torch.zeros(len(batch), width, dtype=torch.long)
    for i, row in enumerate(batch):
        input_ids[i, : len(row["input_ids"])] = torch.tensor(row["input_ids"])
        attention_mask[i, : len(row["input_ids"])] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.tensor([r["labels"] for r in batch])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--train_rows", type=int, default=512)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_seed(args.seed)

    config = FastformerConfig(
        vocab_size=1000, hidden_size=64, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=args.seq_len, hidden_dropout_prob=0.1, num_labels=2,
    )
    model = FastformerForSequenceClassification(config)
    train = make_dataset(args.train_rows, args.seq_len, config.vocab_size, args.seed)
    test = make_dataset(128, args.seq_len, config.vocab_size, args.seed + 1)

    def accuracy(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    training_args = TrainingArguments(
        output_dir=args.output_dir, per_device_train_batch_size=16, num_train_epochs=args.epochs,
        learning_rate=2e-3, warmup_steps=10, logging_steps=10, save_strategy="no", report_to=[], seed=args.seed,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train, eval_dataset=test,
                      data_collator=collate, compute_metrics=accuracy)
    trainer.train()
    metrics = trainer.evaluate()
    print(f"test accuracy: {metrics['eval_accuracy']:.3f} on {len(test)} sequences of up to {args.seq_len} tokens")

    checkpoint = f"{args.output_dir}/checkpoint"
    shutil.rmtree(checkpoint, ignore_errors=True)
    trainer.save_model(checkpoint)
    reloaded = AutoModelForSequenceClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
    batch = collate([test[i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        same = torch.allclose(reloaded(**batch).logits, model(**batch).logits, atol=1e-6)
    print(f"checkpoint in {checkpoint}; reloaded with AutoModelForSequenceClassification, same logits: {same}")


if __name__ == "__main__":
    main()
