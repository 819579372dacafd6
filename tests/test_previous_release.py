"""Checkpoints saved by the previous release still load and compute the same logits (and token ids).

`tests/fixtures/previous_release/` holds tiny checkpoints and a tokenizer written with `save_pretrained` by release
0.1.0 (commit 878fc57; the code files `save_pretrained` copies beside them were left out to keep the fixture small),
`expected_logits.json`, the logits that release computed for fixed inputs (with left padding for the causal model and
padding on both sides of the encoder-decoder), and `expected_tokens.json`, its tokenizer's ids for fixed texts. Never
regenerate them: they stand for checkpoints already published.
"""

import json
from pathlib import Path

import pytest
import torch

from fastformer import FastformerForCausalLM, FastformerForConditionalGeneration, FastformerForSequenceClassification


FIXTURES = Path(__file__).parent / "fixtures" / "previous_release"
EXPECTED = json.loads((FIXTURES / "expected_logits.json").read_text())
TOLERANCE = 1e-5
CHECKPOINTS = {
    "sequence_classification": FastformerForSequenceClassification,
    "causal_lm": FastformerForCausalLM,
    "conditional_generation_scaled_dot_product": FastformerForConditionalGeneration,
    "conditional_generation_additive": FastformerForConditionalGeneration,
}


def _at_real_tokens(logits, case):
    """`logits` at real tokens only: what padding positions hold is not part of a model's contract."""
    if logits.dim() == 2:  # (batch, num_labels)
        return logits
    mask = torch.tensor(case.get("decoder_attention_mask", case["attention_mask"])).bool()  # (batch, seq)
    return logits[mask]  # (real tokens, vocab)


def _logits(model, case):
    inputs = {name: torch.tensor(value) for name, value in case.items() if name != "logits"}
    with torch.no_grad():
        return _at_real_tokens(model(**inputs).logits, case)


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_previous_release_checkpoint_loads_with_the_same_logits(name):
    """Catches a renamed or reshaped parameter, a changed config default or field (e.g. the seq2seq config split into
    encoder/decoder fields), or changed math that would break checkpoints already published."""
    case = EXPECTED[name]
    expected = _at_real_tokens(torch.tensor(case["logits"]), case)
    model_class = CHECKPOINTS[name]
    model, info = model_class.from_pretrained(FIXTURES / name, output_loading_info=True)
    assert not any(info.values()), info  # every saved tensor used, none missing or re-initialised
    model.eval()
    # The comparison can fail: the same architecture with other weights is far outside the tolerance.
    torch.manual_seed(1)
    fresh = model_class(model.config).eval()
    assert (_logits(fresh, case) - expected).abs().max() > 100 * TOLERANCE
    torch.testing.assert_close(_logits(model, case), expected, rtol=0, atol=TOLERANCE)


def test_previous_release_tokenizer_loads_with_the_same_ids():
    """Catches a tokenizer rewrite (e.g. the move onto transformers' `BertTokenizer`) that changes how a saved
    tokenizer is rebuilt: its normaliser, pre-tokenizer, special-token template, truncation or length limit."""
    from transformers import AutoTokenizer

    from fastformer import FastformerTokenizer

    expected = json.loads((FIXTURES / "expected_tokens.json").read_text())
    for tokenizer in (
        FastformerTokenizer.from_pretrained(FIXTURES / "tokenizer"),
        AutoTokenizer.from_pretrained(FIXTURES / "tokenizer"),
    ):
        assert type(tokenizer) is FastformerTokenizer
        assert (len(tokenizer), tokenizer.model_max_length) == (expected["vocab_size"], expected["model_max_length"])
        assert tokenizer(expected["texts"], truncation=True)["input_ids"] == expected["input_ids"]
        assert tokenizer(*expected["pair"])["input_ids"] == expected["pair_input_ids"]
        assert list(tokenizer(expected["texts"][0])) == ["input_ids", "attention_mask"]
