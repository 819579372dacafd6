"""Causal Fastformer: prefix pooling, the constant-size cache, FastformerForCausalLM and generate()."""

import pytest
import torch
from helpers import assert_far, causal_config, randomize_
from reference import causal_lm_logits, naive_prefix_pool
from toys import toy_tokenizer
from transformers import AutoModelForCausalLM, pipeline

from fastformer import FastformerCache, FastformerForCausalLM
from fastformer.pooling_fastformer import prefix_softmax_pool


def causal_lm(seed=0, **kwargs):
    """A `FastformerForCausalLM` at weights large enough that tokens mix (`helpers.randomize_`)."""
    return randomize_(FastformerForCausalLM(causal_config(**kwargs)), seed=seed).eval()


def tokens_alone(model, input_ids):
    """The logits of every token run alone, without any context: `(batch, seq, vocab)` (the no-mixing baseline)."""
    with torch.no_grad():
        return model(input_ids.reshape(-1, 1), use_cache=False).logits.view(*input_ids.shape, -1)


def decode_incrementally(model, input_ids, attention_mask=None, prefill=1, step=1):
    """Feed `input_ids` through the cache: a prefill of `prefill` tokens, then `step` tokens at a time."""
    cache, logits, start = None, [], 0
    for end in [prefill] + list(range(prefill + step, input_ids.shape[1] + step, step)):
        end = min(end, input_ids.shape[1])
        if end <= start:
            continue
        mask = None if attention_mask is None else attention_mask[:, :end]
        out = model(input_ids[:, start:end], attention_mask=mask, cache=cache, use_cache=True)
        cache, start = out.cache, end
        logits.append(out.logits)
    return torch.cat(logits, dim=1), cache


# ------------------------------------------------------------------------------- the math, independently


@pytest.mark.parametrize("seq", [1, 5, 64, 65, 150])
def test_causal_pool_equals_naive_prefix_softmax(seq):
    logits = torch.randn(2, seq, 3) * 4
    values = torch.randn(2, seq, 3, 5)
    keep = torch.ones(2, seq, dtype=torch.bool)
    keep[1, : seq // 3] = False  # left padding
    keep[0, seq // 2 :: 7] = False  # holes
    pooled, _ = prefix_softmax_pool(logits, values, keep)
    torch.testing.assert_close(pooled.double(), naive_prefix_pool(logits, values, keep), atol=1e-5, rtol=1e-5)


def test_causal_pool_state_continues_exactly():
    logits, values = torch.randn(2, 200, 3) * 10, torch.randn(2, 200, 3, 5)
    whole, whole_state = prefix_softmax_pool(logits, values)
    first, state = prefix_softmax_pool(logits[:, :77], values[:, :77], chunk_size=16)
    second, state = prefix_softmax_pool(logits[:, 77:], values[:, 77:], state=state, chunk_size=16)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state, whole_state, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("share_layer_parameters", [False, True])
@pytest.mark.parametrize(
    "layout, share_query_value", [("dense", True), ("per_head", True), ("per_head", False), ("dense", False)]
)
def test_causal_lm_equals_the_reference_in_every_layout(layout, share_query_value, share_layer_parameters):
    """The whole causal LM against the float64 token-by-token reference (section 8.1 equations, prefix softmaxes
    written out), with left padding and holes, in every layout: catches bugs in the prefix pools, the causal
    masks, the positions of left-padded rows, the value projection and layer sharing."""
    config = causal_config(
        attention_logit_layout=layout,
        share_query_value=share_query_value,
        share_layer_parameters=share_layer_parameters,
        num_hidden_layers=3,
    )
    model = randomize_(FastformerForCausalLM(config)).eval()
    input_ids = torch.randint(3, 99, (2, 24))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :6] = 0  # left padding
    attention_mask[0, 9:11] = 0  # a hole
    with torch.no_grad():
        logits = model(input_ids, attention_mask=attention_mask, use_cache=False).logits
    expected = causal_lm_logits(model.state_dict(), config, input_ids, attention_mask)
    real = attention_mask.bool()
    torch.testing.assert_close(logits[real].double(), expected[real], atol=5e-4, rtol=1e-5)  # measured: 6e-5
    assert_far(logits[real], tokens_alone(model, input_ids)[real], atol=5e-4)


# ------------------------------------------------------------------------- incremental == full, causality


@pytest.mark.parametrize(
    "prefill, step, share_layer_parameters", [(1, 1, False), (64, 1, False), (100, 7, False), (5, 1, True)]
)
def test_incremental_decoding_equals_full_forward(prefill, step, share_layer_parameters):
    """Every prefix length from 1 to 300 is checked: position t of the full pass is the logits after t+1 tokens.
    Catches decoding that never reads (or never writes) the cached state, a wrong merge of the state, and shared
    layer weights sharing one cache slot (each depth must keep its own state)."""
    model = causal_lm(
        share_layer_parameters=share_layer_parameters, num_hidden_layers=3 if share_layer_parameters else 2
    )
    length = 100 if share_layer_parameters else 300
    input_ids = torch.randint(3, 99, (2, length))
    with torch.no_grad():
        full = model(input_ids, use_cache=False).logits
        incremental, cache = decode_incrementally(model, input_ids, prefill=prefill, step=step)
    assert cache.get_seq_length() == length
    torch.testing.assert_close(incremental, full, atol=5e-4, rtol=0)  # measured: <= 5e-5 on logits of ~20
    assert_far(full, tokens_alone(model, input_ids), atol=5e-4)


def test_incremental_decoding_with_left_padding_matches_unpadded_rows():
    """Left-padded rows, full and incremental, give the logits of the unpadded rows (catches padding that enters
    the prefix pools or shifts the positions); without the mask they would be far off."""
    model = causal_lm()
    lengths = [40, 25, 9]
    width = max(lengths)
    input_ids = torch.zeros(3, width, dtype=torch.long)
    attention_mask = torch.zeros(3, width, dtype=torch.long)
    rows = [torch.randint(3, 99, (n,)) for n in lengths]
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = row
        attention_mask[i, width - len(row) :] = 1
    with torch.no_grad():
        full = model(input_ids, attention_mask=attention_mask, use_cache=False).logits
        incremental, _ = decode_incrementally(model, input_ids, attention_mask, prefill=5)
        torch.testing.assert_close(incremental, full, atol=5e-4, rtol=0)
        unmasked = model(input_ids, use_cache=False).logits
        for i, row in enumerate(rows):
            alone = model(row[None], use_cache=False).logits[0]
            torch.testing.assert_close(full[i, width - len(row) :], alone, atol=5e-4, rtol=0)
            if len(row) < width:
                assert_far(unmasked[i, width - len(row) :], alone, atol=5e-4)


def test_changing_a_token_never_changes_earlier_outputs():
    """Causality, exactly, at chunk borders (catches a scan that lets later tokens into a prefix)."""
    model = causal_lm()
    input_ids = torch.randint(3, 99, (1, 130))
    with torch.no_grad():
        reference = model(input_ids, use_cache=False, output_hidden_states=True).hidden_states
        for t in (0, 63, 64, 100, 128):
            changed = input_ids.clone()
            changed[0, t + 1] = (changed[0, t + 1] + 1) % 99
            hidden = model(changed, use_cache=False, output_hidden_states=True).hidden_states
            for layer_ref, layer_new in zip(reference, hidden):
                assert torch.equal(layer_ref[:, : t + 1], layer_new[:, : t + 1])
                assert not torch.equal(layer_ref[:, t + 1 :], layer_new[:, t + 1 :]) or layer_ref is reference[0]


# ------------------------------------------------------------------------------------------------ stability


def _scale_attention_logits(model, factor):
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".query_att." in name or ".key_att." in name:
                param.mul_(factor)


def test_large_attention_logits_stay_finite_and_parallel_equals_recurrent():
    """Logit gaps of thousands: catches an exp() without max-subtraction (inf / NaN) in either path."""
    model = causal_lm()
    _scale_attention_logits(model, 1e3)  # logit gaps of thousands: exp() without care gives inf / 0 / NaN
    input_ids = torch.randint(3, 99, (2, 200))
    with torch.no_grad():
        full = model(input_ids, use_cache=False).logits
        incremental, _ = decode_incrementally(model, input_ids, prefill=50)
    assert torch.isfinite(full).all()
    torch.testing.assert_close(incremental, full, atol=5e-4, rtol=0)
    model.train()
    loss = model(input_ids, labels=input_ids, use_cache=False).loss
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_16k_tokens_parallel_equals_recurrent_chunks():
    """Carrying the state across 16k tokens in 4k pieces equals the one-pass scan (catches drift in the merge)."""
    model = causal_lm(max_position_embeddings=16384, hidden_size=16, intermediate_size=16, num_hidden_layers=1)
    input_ids = torch.randint(3, 99, (1, 16384))
    with torch.no_grad():
        full = model(input_ids, use_cache=False).logits
        pieces, cache = decode_incrementally(model, input_ids, prefill=5000, step=4000)
    assert torch.isfinite(full).all()
    assert cache.get_seq_length() == 16384
    torch.testing.assert_close(pieces, full, atol=5e-4, rtol=0)


def test_bf16_autocast_is_finite_and_close_to_float32():
    """Under bf16 autocast the logits (full and incremental) stay within 10% of their scale of the float32 logits
    (measured: 2.2% after two layers over 300 tokens), a tolerance that rejects an unrelated model (150% away): catches a low-precision path (the prefix pools
    must run in float32) that computes something else."""
    model = causal_lm()
    input_ids = torch.randint(3, 99, (2, 300))
    with torch.no_grad():
        reference = model(input_ids, use_cache=False).logits
        unrelated = causal_lm(seed=1)(input_ids, use_cache=False).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            full = model(input_ids, use_cache=False).logits
            incremental, _ = decode_incrementally(model, input_ids, prefill=100, step=50)
    tolerance = 0.1 * reference.abs().max().item()
    torch.testing.assert_close(full.float(), reference, atol=tolerance, rtol=0)
    torch.testing.assert_close(incremental.float(), reference, atol=tolerance, rtol=0)
    assert_far(unrelated, reference, atol=tolerance, factor=10)


# ---------------------------------------------------------------------------------------- cache and generate


def test_cache_size_does_not_grow_with_the_text():
    model = causal_lm()
    sizes = []
    with torch.no_grad():
        for length in (3, 300):
            cache = model(torch.randint(3, 99, (2, length)), use_cache=True).cache
            assert isinstance(cache, FastformerCache) and cache.get_seq_length() == length
            tensors = [s for layer in cache.layers for s in layer.recurrent_states.values() if s is not None]
            assert len(tensors) == 2 * model.config.num_hidden_layers
            sizes.append(sum(t.numel() * t.element_size() for t in tensors))
    assert sizes[0] == sizes[1] == 2 * 2 * 2 * 4 * (8 + 2) * 4  # layers x pools x batch x heads x (d + 2) x fp32


@pytest.mark.parametrize(
    "generate_kwargs",
    [
        dict(do_sample=False),
        dict(num_beams=3, do_sample=False),
        dict(num_beams=2, num_return_sequences=2, do_sample=False, length_penalty=0.5),
    ],
)
def test_generate_with_and_without_cache_gives_the_same_tokens(generate_kwargs):
    model = causal_lm()
    prompt = torch.randint(3, 99, (2, 12))
    prompt_mask = torch.ones_like(prompt)
    prompt[1, :4], prompt_mask[1, :4] = 0, 0  # left padding
    kwargs = dict(attention_mask=prompt_mask, max_new_tokens=25, min_new_tokens=25, **generate_kwargs)
    with_cache = model.generate(prompt, use_cache=True, **kwargs)
    without_cache = model.generate(prompt, use_cache=False, **kwargs)
    assert with_cache.shape[1] == 12 + 25
    assert torch.equal(with_cache, without_cache)


def test_sampling_with_and_without_cache_gives_the_same_tokens():
    model = causal_lm()
    prompt = torch.randint(3, 99, (3, 6))
    torch.manual_seed(5)
    with_cache = model.generate(prompt, do_sample=True, top_k=20, max_new_tokens=30, min_new_tokens=30)
    torch.manual_seed(5)
    without_cache = model.generate(
        prompt, do_sample=True, top_k=20, max_new_tokens=30, min_new_tokens=30, use_cache=False
    )
    assert torch.equal(with_cache, without_cache)


def test_greedy_generate_equals_a_manual_argmax_loop():
    model = causal_lm()
    sequence = torch.randint(3, 99, (1, 8))
    generated = model.generate(sequence, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    with torch.no_grad():
        for _ in range(10):
            next_token = model(sequence, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, next_token], dim=1)
    assert torch.equal(generated, sequence)


def test_text_generation_pipeline():
    tokenizer = toy_tokenizer()
    model = causal_lm()
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    out = generator("w1 w2 w3", max_new_tokens=5, min_new_tokens=5, do_sample=False, return_full_text=False)
    expected = model.generate(tokenizer("w1 w2 w3", return_tensors="pt").input_ids, max_new_tokens=5, do_sample=False)
    assert out[0]["generated_text"].split() == tokenizer.convert_ids_to_tokens(expected[0, 3:].tolist())


# -------------------------------------------------------------------------------------------- the LM head


def test_loss_is_next_token_cross_entropy_and_embeddings_are_tied():
    model = causal_lm()
    assert model.lm_head.weight is model.fastformer.embeddings.word_embeddings.weight
    input_ids = torch.randint(3, 99, (2, 20))
    labels = input_ids.clone()
    labels[0, :5] = -100
    out = model(input_ids, labels=labels, use_cache=False)
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, 99), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, expected)
    # The Trainer's `num_items_in_batch` (labelled tokens of the whole optimizer step) divides the summed loss.
    summed = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, 99), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum"
    )
    torch.testing.assert_close(
        model(input_ids, labels=labels, num_items_in_batch=100, use_cache=False).loss, summed / 100
    )
    # Nothing to predict (every label ignored): zero, not the NaN of a mean over no tokens.
    nothing = model(input_ids, labels=torch.full_like(labels, -100), use_cache=False).loss
    assert nothing.item() == 0.0


def test_auto_class_and_save_load_round_trip(tmp_path):
    """Every parameter (random biases and LayerNorms) survives save/load: a key lost on the way would reload at its
    fresh initialisation, far from the saved model."""
    model = causal_lm(share_layer_parameters=True)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is FastformerForCausalLM
    assert loaded.lm_head.weight is loaded.fastformer.embeddings.word_embeddings.weight
    input_ids = torch.randint(3, 99, (2, 30))
    with torch.no_grad():
        expected = model(input_ids).logits
        torch.testing.assert_close(loaded(input_ids).logits, expected, atol=1e-5, rtol=1e-5)
        assert_far(FastformerForCausalLM(model.config).eval()(input_ids).logits, expected, atol=1e-5)
    # one cache state per depth, also with shared weights
    assert len(model(input_ids, use_cache=True).cache.layers) == 2


def test_without_position_embeddings_generation_is_not_length_limited():
    model = causal_lm(position_embedding_type="none", max_position_embeddings=16)
    prompt = torch.randint(3, 99, (1, 20))  # longer than the (unused) table
    generated = model.generate(prompt, max_new_tokens=30, min_new_tokens=30, do_sample=False)
    assert generated.shape[1] == 50
    assert torch.equal(
        generated, model.generate(prompt, max_new_tokens=30, min_new_tokens=30, do_sample=False, use_cache=False)
    )


# ------------------------------------------------------------------------------------------------ bad input


def test_prompt_longer_than_the_position_table_is_refused():
    model = causal_lm(max_position_embeddings=32)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.randint(3, 99, (1, 33)))
    with pytest.raises(ValueError, match="at most 32"):
        model.generate(torch.randint(3, 99, (1, 30)), max_new_tokens=10, min_new_tokens=10, do_sample=False)


def test_bad_causal_inputs_raise_clear_errors():
    model = causal_lm()
    input_ids = torch.randint(3, 99, (2, 10))
    cache = model(input_ids, use_cache=True).cache
    with pytest.raises(ValueError, match="cached"):
        model(input_ids[:, :1], attention_mask=torch.ones(2, 1), cache=cache)
    with pytest.raises(ValueError, match="FastformerCache"):
        model(input_ids, cache=object())
    with pytest.raises(ValueError, match="labels"):
        model(input_ids, labels=input_ids[:, :5])
