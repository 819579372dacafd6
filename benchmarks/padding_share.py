"""How much of a padded epoch is padding: the ceiling on what packing can buy.

Packing removes padding and nothing else, so against a padded run it can speed training up by at most
`padded tokens / real tokens` (per-token cost held equal). This script counts both for the main job's training
documents (the job's data, fixed split and tokenizer, cut at `--max_seq_length`) in two batch orders: the job's
length-grouped order (transformers' `LengthGroupedSampler`, what `--train_sampling_strategy group_by_length` uses)
and the Trainer's random order, one epoch per seed, batches of `--batch_size` padded to their longest document.

    python benchmarks/padding_share.py --max_seq_length 2048 --batch_size 16 --seeds 0 1 2
"""

import argparse

import torch
from common import machine
from transformers.trainer_pt_utils import LengthGroupedSampler

from fastformer.classify.reporting import markdown_table
from fastformer.classify.run_classification import DataArguments, load_data
from fastformer.tokenization_fastformer import FastformerTokenizer


def padded_tokens(lengths: list[int], order: list[int], batch_size: int) -> int:
    """Tokens of one epoch in `order`, each batch of `batch_size` padded to its longest document."""
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def epoch_order(lengths: list[int], batch_size: int, seed: int, grouped: bool) -> list[int]:
    """The Trainer's order of one epoch: length-grouped (`LengthGroupedSampler`) or a random permutation."""
    generator = torch.Generator().manual_seed(seed)
    if grouped:
        return list(LengthGroupedSampler(batch_size, lengths=lengths, generator=generator))
    return torch.randperm(len(lengths), generator=generator).tolist()


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max_seq_length", type=int, default=2048)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    texts, _ = load_data(DataArguments())["train"]
    tokenizer = FastformerTokenizer()
    ids = tokenizer(texts, truncation=True, max_length=args.max_seq_length)["input_ids"]
    lengths = [len(row) for row in ids]
    real = sum(lengths)
    print(f"machine: {machine()}")
    print(f"{len(lengths)} training documents, {real:,} real tokens at --max_seq_length {args.max_seq_length}\n")
    rows = []
    for grouped in (True, False):
        for seed in args.seeds:
            padded = padded_tokens(lengths, epoch_order(lengths, args.batch_size, seed, grouped), args.batch_size)
            name = "length-grouped (job default)" if grouped else "random (Trainer default)"
            rows.append([name, seed, f"{padded:,}", f"{real / padded:.3f}", f"{padded / real:.2f}x"])
    print(markdown_table(["order", "seed", "padded tokens", "real share", "packing's ceiling"], rows, align="lrrrr"))


if __name__ == "__main__":
    main()
