"""`benchmarks/padding_share.py` counts an epoch's padded tokens as the Trainer batches them: checked against a count
by hand and against transformers' own length grouping."""

from pathlib import Path

from helpers import load_script


padding_share = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "padding_share.py", "padding_share")


def test_padded_tokens_pads_each_batch_to_its_longest_document():
    lengths = [5, 1, 3, 2, 8]
    # batches [5, 1] -> 2 * 5, [3, 2] -> 2 * 3, [8] -> 1 * 8
    assert padding_share.padded_tokens(lengths, [0, 1, 2, 3, 4], batch_size=2) == 10 + 6 + 8
    # the order decides: [8, 5] -> 16, [3, 2] -> 6, [1] -> 1
    assert padding_share.padded_tokens(lengths, [4, 0, 2, 3, 1], batch_size=2) == 16 + 6 + 1


def test_length_grouping_leaves_less_padding_than_random_order():
    lengths = [1 + (7919 * i) % 997 for i in range(400)]
    grouped = padding_share.epoch_order(lengths, 16, seed=0, grouped=True)
    shuffled = padding_share.epoch_order(lengths, 16, seed=0, grouped=False)
    assert sorted(grouped) == sorted(shuffled) == list(range(400))  # each document once per epoch
    real = sum(lengths)
    assert (
        padding_share.padded_tokens(lengths, grouped, 16)
        < 1.2 * real
        < padding_share.padded_tokens(lengths, shuffled, 16)
    )
