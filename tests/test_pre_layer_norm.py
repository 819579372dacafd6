"""`layer_norm_position="pre"` (GPT-2's layout: `x + Dense(f(LayerNorm(x)))`, raw embeddings, a final LayerNorm)
against the float64 reference of tests/reference.py, in the encoder, the causal LM (full and incremental) and the
encoder-decoder; the layouts differ only where they should; the choice survives save/load; bad values are refused.
Sequence-chunked layers in this layout: tests/test_long_context_memory.py; transformers' common tests:
tests/conformance/."""

import pytest
import torch
from helpers import assert_far, causal_config, randomize_, seq2seq_config, tiny_config
from reference import causal_lm_logits, encoder_stack, seq2seq_logits

from fastformer import (
    FastformerConfig,
    FastformerForCausalLM,
    FastformerForConditionalGeneration,
    FastformerModel,
)


# The embedding LayerNorm of the post-LN layout and the final one of the pre-LN layout: the only parameters that
# differ between the two (by name and place).
MOVED = {"embeddings.LayerNorm": "final_layer_norm"}


def as_post_ln(state_dict: dict) -> dict:
    """A pre-LN state dict renamed for the post-LN layout (final LayerNorm -> embedding LayerNorm): the same weights
    read by the other layout, the baseline that shows a comparison can tell the layouts apart."""
    renamed = {}
    for name, value in state_dict.items():
        for post, pre in MOVED.items():
            name = name.replace(pre, post)
        renamed[name] = value
    return renamed


def padded_inputs(batch=2, seq=24, vocab=99):
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, vocab, (batch, seq), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :6] = 0  # left padding (a causal batch) / padding anywhere (an encoder)
    attention_mask[0, 9:11] = 0  # a hole
    return input_ids, attention_mask


def test_pre_ln_encoder_equals_the_reference():
    config = tiny_config(layer_norm_position="pre", num_hidden_layers=3)
    model = randomize_(FastformerModel(config)).eval()
    input_ids, attention_mask = padded_inputs()
    with torch.no_grad():
        out = model(input_ids, attention_mask=attention_mask).last_hidden_state
    expected = encoder_stack(model.state_dict(), config, input_ids, attention_mask, prefix="")
    real = attention_mask.bool()
    torch.testing.assert_close(out[real].double(), expected[real], atol=1e-4, rtol=1e-5)
    post = FastformerConfig(**{**config.to_dict(), "layer_norm_position": "post"})
    assert_far(
        out[real],
        encoder_stack(as_post_ln(model.state_dict()), post, input_ids, attention_mask, prefix="")[real],
        atol=1e-4,
    )


@pytest.mark.parametrize("share_layer_parameters", [False, True])
def test_pre_ln_causal_lm_equals_the_reference(share_layer_parameters):
    config = causal_config(
        layer_norm_position="pre", num_hidden_layers=3, share_layer_parameters=share_layer_parameters
    )
    model = randomize_(FastformerForCausalLM(config)).eval()
    input_ids, attention_mask = padded_inputs()
    with torch.no_grad():
        logits = model(input_ids, attention_mask=attention_mask, use_cache=False).logits
    expected = causal_lm_logits(model.state_dict(), config, input_ids, attention_mask)
    real = attention_mask.bool()
    torch.testing.assert_close(logits[real].double(), expected[real], atol=5e-4, rtol=1e-5)
    post = FastformerConfig(**{**config.to_dict(), "layer_norm_position": "post"})
    assert_far(
        logits[real],
        causal_lm_logits(as_post_ln(model.state_dict()), post, input_ids, attention_mask)[real],
        atol=5e-4,
    )


@pytest.mark.parametrize("cross_attention_type", ["scaled_dot_product", "additive"])
def test_pre_ln_encoder_decoder_equals_the_reference(cross_attention_type):
    config = seq2seq_config(layer_norm_position="pre", cross_attention_type=cross_attention_type)
    model = randomize_(FastformerForConditionalGeneration(config)).eval()
    input_ids, attention_mask = padded_inputs(seq=20)
    decoder_input_ids = torch.randint(3, 99, (2, 11), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids, use_cache=False
        ).logits
    expected = seq2seq_logits(model.state_dict(), config, input_ids, attention_mask, decoder_input_ids)
    torch.testing.assert_close(logits.double(), expected, atol=5e-4, rtol=1e-5)
    post = FastformerConfig(**{**config.to_dict(), "layer_norm_position": "post"})
    assert_far(
        logits,
        seq2seq_logits(as_post_ln(model.state_dict()), post, input_ids, attention_mask, decoder_input_ids),
        atol=5e-4,
    )


def test_pre_ln_incremental_decoding_equals_the_full_forward():
    model = randomize_(FastformerForCausalLM(causal_config(layer_norm_position="pre"))).eval()
    input_ids = torch.randint(3, 99, (2, 50), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(input_ids, use_cache=False).logits
        out = model(input_ids[:, :7], use_cache=True)
        cache, steps = out.cache, [out.logits]
        for t in range(7, 50):
            out = model(input_ids[:, t : t + 1], cache=cache, use_cache=True)
            cache = out.cache
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=5e-4, rtol=0)
    alone = model(input_ids.reshape(-1, 1), use_cache=False).logits.view(*input_ids.shape, -1)
    assert_far(full, alone, atol=5e-4)  # the context matters: a cache never read would fail


def test_the_layouts_differ_only_in_where_the_embedding_layer_norm_sits():
    pre = FastformerForCausalLM(causal_config(layer_norm_position="pre"))
    post = FastformerForCausalLM(causal_config())
    pre_names, post_names = set(pre.state_dict()), set(post.state_dict())
    assert pre_names - post_names == {"fastformer.final_layer_norm.weight", "fastformer.final_layer_norm.bias"}
    assert post_names - pre_names == {"fastformer.embeddings.LayerNorm.weight", "fastformer.embeddings.LayerNorm.bias"}
    assert post.fastformer.final_layer_norm is None and pre.fastformer.embeddings.LayerNorm is None
    # the encoder-decoder: the encoder and the decoder each end with their own final LayerNorm
    seq2seq = FastformerForConditionalGeneration(seq2seq_config(layer_norm_position="pre"))
    assert {name for name in seq2seq.state_dict() if "final_layer_norm" in name} == {
        f"{part}.final_layer_norm.{p}" for part in ("fastformer", "decoder") for p in ("weight", "bias")
    }


def test_pre_ln_hidden_states_end_with_the_normalised_last_hidden_state():
    model = randomize_(FastformerModel(tiny_config(layer_norm_position="pre"))).eval()
    input_ids, _ = padded_inputs()
    with torch.no_grad():
        out = model(input_ids, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)
    # normalised by the final LayerNorm: per position, (x - mean) / std * weight + bias
    norm = model.final_layer_norm
    unit = (out.last_hidden_state - norm.bias) / norm.weight
    torch.testing.assert_close(unit.mean(-1), torch.zeros(2, 24), atol=1e-4, rtol=0)


def test_pre_ln_survives_save_and_load(tmp_path):
    model = randomize_(FastformerForCausalLM(causal_config(layer_norm_position="pre"))).eval()
    model.save_pretrained(tmp_path)
    loaded = FastformerForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.layer_norm_position == "pre"
    input_ids, _ = padded_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids).logits, model(input_ids).logits, rtol=0, atol=0)


def test_bad_layer_norm_position_is_refused():
    with pytest.raises(ValueError, match=r"`layer_norm_position` must be one of \('post', 'pre'\), got 'sandwich'"):
        FastformerConfig(layer_norm_position="sandwich")
