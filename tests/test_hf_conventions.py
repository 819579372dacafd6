"""Regression tests for the ways generic Hugging Face code used to trip over the model (issue #13): constructors
that edited the caller's config, the encoder-decoder's copied configs, standard keywords that raised, attention
tuples, the causal position limit counting padding, the cross-attention's implementation switch, float64
computed in float32, and assisted decoding on a stateful model. Each docstring names the old behaviour it catches."""

import copy

import pytest
import torch
from helpers import assert_far, causal_config, max_difference, randomize_, seq2seq_config, tiny_config

from fastformer import (
    FastformerForCausalLM,
    FastformerForConditionalGeneration,
    FastformerForSequenceClassification,
    FastformerForTokenClassification,
    FastformerModel,
)


def test_constructors_never_change_the_config_they_are_given():
    """`FastformerForCausalLM(cfg)` used to set `cfg.is_decoder = True` (and the seq2seq class `is_encoder_decoder`)
    on the caller's object, so a token classifier built from it afterwards raised."""
    config = tiny_config()
    before = config.to_dict()
    causal = FastformerForCausalLM(config)
    seq2seq = FastformerForConditionalGeneration(config)
    assert config.to_dict() == before
    assert causal.config.is_decoder and seq2seq.config.is_encoder_decoder  # the models own adjusted copies
    FastformerForTokenClassification(config)  # raised "needs config.is_decoder=False" before


def test_encoder_and_decoder_read_one_config():
    """The seq2seq model used to deep-copy its config into the encoder and the decoder, so edits (vocab size,
    output flags) reached only one of them."""
    model = FastformerForConditionalGeneration(seq2seq_config())
    assert model.fastformer.config is model.config and model.decoder.config is model.config
    assert model.decoder.causal and model.decoder.cross_attention and not model.fastformer.causal


@pytest.mark.parametrize("tie", [True, False])
def test_seq2seq_resize_token_embeddings_accepts_the_new_ids_everywhere(tie, tmp_path):
    """`resize_token_embeddings` left the encoder's and decoder's copied configs at the old `vocab_size`, so every
    new id was rejected until a save/reload; with `tie_word_embeddings=False` a reload could drop a table."""
    model = randomize_(FastformerForConditionalGeneration(seq2seq_config(tie_word_embeddings=tie))).eval()
    model.resize_token_embeddings(120)
    new_id = 110
    source = torch.tensor([[5, new_id, 7, 8]])
    target = torch.tensor([[1, new_id, 9]])
    with torch.no_grad():
        logits = model(input_ids=source, decoder_input_ids=target).logits
        assert logits.shape == (1, 3, 120)
        other = model(input_ids=torch.tensor([[5, 6, 7, 8]]), decoder_input_ids=target).logits
    assert_far(logits, other, atol=1e-5)  # the new id is read, not ignored
    model.save_pretrained(tmp_path)
    reloaded = FastformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(input_ids=source, decoder_input_ids=target).logits, logits, atol=1e-5, rtol=1e-5
        )


def test_seq2seq_set_input_embeddings_reaches_the_decoder():
    """`set_input_embeddings` replaced only the encoder's table; the decoder kept the old one."""
    model = FastformerForConditionalGeneration(seq2seq_config(tie_word_embeddings=False))
    table = torch.nn.Embedding(99, 32, padding_idx=0)
    model.set_input_embeddings(table)
    assert model.get_input_embeddings() is table and model.decoder.get_input_embeddings() is table


def test_use_cache_on_an_encoder_is_ignored_like_bert():
    """`use_cache=True` on an encoder raised a ValueError; BERT ignores it."""
    model = randomize_(FastformerModel(tiny_config())).eval()
    input_ids = torch.randint(3, 99, (2, 7))
    with torch.no_grad():
        plain = model(input_ids).last_hidden_state
        cached = model(input_ids, use_cache=True)
    assert cached.cache is None
    torch.testing.assert_close(cached.last_hidden_state, plain, atol=0, rtol=0)


def test_output_attentions_on_the_causal_model_and_in_generate():
    """`output_attentions=True` raised on the causal model, so `generate(..., output_attentions=True)` broke. The
    causal layers have no attention maps: the result is an empty tuple, and generation is unchanged."""
    model = randomize_(FastformerForCausalLM(causal_config())).eval()
    input_ids = torch.randint(3, 99, (1, 5))
    with torch.no_grad():
        out = model(input_ids, output_attentions=True, output_hidden_states=True)
    assert out.attentions == () and len(out.hidden_states) == model.config.num_hidden_layers + 1
    generated = model.generate(
        input_ids, max_new_tokens=3, do_sample=False, output_attentions=True, return_dict_in_generate=True
    )
    plain = model.generate(input_ids, max_new_tokens=3, do_sample=False)
    assert torch.equal(generated.sequences, plain)


def test_causal_lm_accepts_the_v5_loss_keywords():
    """`shift_labels` and other v5 loss keywords were rejected by `FastformerForCausalLM.forward`."""
    model = randomize_(FastformerForCausalLM(causal_config())).eval()
    input_ids = torch.randint(3, 99, (2, 6))
    with torch.no_grad():
        from_labels = model(input_ids, labels=input_ids).loss
        shifted = torch.nn.functional.pad(input_ids, (0, 1), value=-100)[:, 1:].contiguous()
        from_shift = model(input_ids, labels=input_ids, shift_labels=shifted).loss
        summed = model(input_ids, labels=input_ids, num_items_in_batch=torch.tensor(1)).loss
    torch.testing.assert_close(from_shift, from_labels)
    torch.testing.assert_close(summed, from_labels * 10)  # 2 rows x 5 predicted tokens, summed instead of averaged


def test_attentions_are_one_tensor_per_layer():
    """`attentions` used to be `(alpha, beta)` tuples, which broke tensor methods, visualisers and output capture.
    Now one `(batch, heads, 2, seq)` tensor per layer: alpha and beta, each a distribution over the real tokens."""
    config = tiny_config()
    model = randomize_(FastformerForSequenceClassification(config))
    input_ids = torch.randint(3, 99, (2, 6))
    attention_mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    out = model(input_ids, attention_mask=attention_mask, output_attentions=True)
    assert len(out.attentions) == config.num_hidden_layers
    for weights in out.attentions:
        assert isinstance(weights, torch.Tensor) and weights.shape == (2, config.num_attention_heads, 2, 6)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, config.num_attention_heads, 2))
        assert weights[1, :, :, 4:].abs().max() == 0
        assert_far(weights[:, :, 0], weights[:, :, 1], atol=1e-4)  # alpha and beta are not one distribution


def test_causal_position_limit_counts_positions_not_padding():
    """With `max_position_embeddings=64`, a prompt left-padded to 64 with 10 real tokens could not `generate()`
    3 tokens: the limit counted the padding, and the error named position 64."""
    model = FastformerForCausalLM(causal_config(max_position_embeddings=64)).eval()
    input_ids = torch.cat([torch.zeros(1, 54, dtype=torch.long), torch.randint(3, 99, (1, 10))], dim=1)
    attention_mask = (input_ids != 0).long()
    out = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 67)
    full = torch.randint(3, 99, (1, 63))  # feeds positions 0..62, then the generated tokens at 63 and 64
    with pytest.raises(ValueError, match="reaches position 64 but the position table holds 64"):
        model.generate(full, attention_mask=torch.ones_like(full), max_new_tokens=3, do_sample=False)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_cross_attention_runs_through_the_attention_interface(implementation):
    """`attn_implementation="sdpa"` / `"eager"` were refused; both must give the same logits, and `"eager"` the
    cross-attention maps `(batch, heads, dec_seq, enc_seq)`, rows summing to 1 over the real source tokens."""
    config = seq2seq_config()
    reference = randomize_(FastformerForConditionalGeneration(config)).eval()
    model = copy.deepcopy(reference)
    model.set_attn_implementation(implementation)
    assert model.config._attn_implementation == implementation
    source = torch.randint(3, 99, (2, 9))
    source_mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4])
    target = torch.randint(3, 99, (2, 4))
    with torch.no_grad():
        out = model(input_ids=source, attention_mask=source_mask, decoder_input_ids=target, output_attentions=True)
        expected = reference(input_ids=source, attention_mask=source_mask, decoder_input_ids=target).logits
    torch.testing.assert_close(out.logits, expected, atol=2e-5, rtol=2e-5)
    if implementation == "eager":
        assert len(out.cross_attentions) == 2
        maps = out.cross_attentions[0]
        assert maps.shape == (2, config.num_attention_heads, 4, 9)
        torch.testing.assert_close(maps.sum(-1), torch.ones(2, config.num_attention_heads, 4))
        assert maps[1, :, :, 5:].abs().max() == 0


def test_float64_is_computed_in_float64():
    """The softmaxes (`.float()`) computed a float64 model in float32, so `gradcheck` failed."""
    model = randomize_(FastformerModel(tiny_config(position_embedding_type="none", num_hidden_layers=1))).double()
    embeds = torch.randn(1, 4, 32, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0]])
    assert torch.autograd.gradcheck(lambda x: model(inputs_embeds=x, attention_mask=mask).last_hidden_state, embeds)
    with torch.no_grad():
        exact = model(inputs_embeds=embeds).last_hidden_state
        rounded = model.float()(inputs_embeds=embeds.float()).last_hidden_state
    assert max_difference(exact, rounded) > 1e-9  # float32 is visibly different: the float64 path is really float64


@pytest.mark.parametrize("mode", [{"assistant_model": "self"}, {"prompt_lookup_num_tokens": 2}])
def test_assisted_decoding_gives_the_greedy_tokens(mode):
    """Assisted decoding failed with "Assisted decoding requires a cache" (transformers 5.25), then was refused: the
    cache now rolls back rejected draft tokens (tests/test_assisted_decoding.py tests it in depth)."""
    model = randomize_(FastformerForCausalLM(causal_config(eos_token_id=None))).eval()
    input_ids = torch.randint(3, 99, (1, 4), generator=torch.Generator().manual_seed(0))
    kwargs = {key: model if value == "self" else value for key, value in mode.items()}
    greedy = model.generate(input_ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(model.generate(input_ids, max_new_tokens=12, do_sample=False, **kwargs), greedy)
