"""Tests of FastformerConfig, FastformerModel and FastformerForSequenceClassification (tiny configs, seeded)."""

import pytest
import torch
from helpers import assert_far, randomize_, tiny_config
from reference import (
    additive_self_attention,
    encoder_stack,
    official_classifier,
    official_self_attention,
    paper_self_attention,
)
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from fastformer import FastformerConfig, FastformerForSequenceClassification, FastformerModel
from fastformer.modeling_fastformer import FastformerAdditiveAttention


def random_batch(config, batch=3, seq=12, lengths=(12, 7, 3)):
    input_ids = torch.randint(1, config.vocab_size, (batch, seq))
    attention_mask = torch.zeros(batch, seq, dtype=torch.long)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
    input_ids = input_ids.masked_fill(attention_mask == 0, config.pad_token_id)
    return input_ids, attention_mask


# ----------------------------------------------------------------------------------------------------- config


def test_config_defaults_are_the_official_ones():
    config = FastformerConfig()
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (256, 16, 2)
    assert (config.intermediate_size, config.hidden_act, config.hidden_dropout_prob) == (256, "gelu", 0.2)
    assert (config.max_position_embeddings, config.layer_norm_eps, config.initializer_range) == (256, 1e-12, 0.02)
    assert config.share_query_value and not config.share_layer_parameters
    assert config.attention_logit_layout == "dense"
    assert config.position_embedding_type == "absolute" and config.pooler_type == "attention"
    assert config.head_dim == 16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hidden_size=30, num_attention_heads=4), "divisible"),
        (dict(attention_logit_layout="vector"), "attention_logit_layout"),
        (dict(position_embedding_type="rotary"), "position_embedding_type"),
        (dict(pooler_type="max"), "pooler_type"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob"),
        (dict(pad_token_id=99), "pad_token_id"),
    ],
)
def test_config_rejects_invalid_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


def test_config_round_trip(tmp_path):
    config = tiny_config(share_layer_parameters=True, attention_logit_layout="per_head", pooler_type="mean")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, FastformerConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()


# -------------------------------------------------------------------------------- equality with the references


@pytest.mark.parametrize("seq", [1, 5, 17])
def test_attention_equals_official_code(seq):
    """The attention module against the official `FastSelfAttention` (catches any slip in eqs. 3-6, the scale, the
    mask or the residual `+ q`)."""
    config = tiny_config()
    attention = randomize_(FastformerAdditiveAttention(config))
    x = torch.randn(2, seq, config.hidden_size)
    mask = torch.ones(2, seq, dtype=torch.long)
    mask[1, (seq + 1) // 2 :] = 0
    out = attention(x, mask.bool().unsqueeze(-1))[0]
    sd = {f"x.{k}": v.double() for k, v in attention.state_dict().items()}
    expected = official_self_attention(sd, "x", x.double(), mask, config.num_attention_heads)
    # Only real tokens are compared: the official mask lets padded queries produce arbitrary values too.
    real = mask.bool()
    torch.testing.assert_close(out[real].double(), expected[real], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("share_query_value", [True, False])
def test_attention_equals_paper_equations_per_head(share_query_value):
    """The per-head logit layout against the paper's per-head loop (catches a wrong block-diagonal logit matrix,
    and the value projection being ignored or used when shared)."""
    config = tiny_config(attention_logit_layout="per_head", share_query_value=share_query_value)
    attention = randomize_(FastformerAdditiveAttention(config), std=0.5)
    assert (attention.value is None) == share_query_value
    x = torch.randn(3, 9, config.hidden_size)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[2, 4:] = 0
    out = attention(x, mask.bool().unsqueeze(-1))[0]
    sd = {f"x.{k}": v.double() for k, v in attention.state_dict().items()}
    expected = paper_self_attention(sd, "x", x.double(), mask, config.num_attention_heads, share_query_value)
    real = mask.bool()
    torch.testing.assert_close(out[real].double(), expected[real], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("share_layer_parameters", [False, True])
@pytest.mark.parametrize(
    "layout, share_query_value", [("dense", True), ("per_head", True), ("per_head", False), ("dense", False)]
)
def test_encoder_equals_the_reference_in_every_layout(layout, share_query_value, share_layer_parameters):
    """The whole encoder (embeddings, positions, every layer, LayerNorms, activation) against the plain float64
    reference, with padding, in every layout: catches encoder-math, mask, position and layer-sharing bugs."""
    config = tiny_config(
        attention_logit_layout=layout,
        share_query_value=share_query_value,
        share_layer_parameters=share_layer_parameters,
        num_hidden_layers=3,
    )
    model = randomize_(FastformerModel(config)).eval()
    input_ids, attention_mask = random_batch(config)
    with torch.no_grad():
        out = model(input_ids, attention_mask=attention_mask).last_hidden_state
    expected = encoder_stack(model.state_dict(), config, input_ids, attention_mask, prefix="")
    real = attention_mask.bool()
    torch.testing.assert_close(out[real].double(), expected[real], atol=1e-4, rtol=1e-4)
    # Tokens mix: the reference without any mask (padding read as tokens) is far from the model.
    assert_far(
        out[real],
        encoder_stack(model.state_dict(), config, input_ids, torch.ones_like(attention_mask), prefix="")[real],
        atol=1e-4,
    )


@pytest.mark.parametrize("layout", ["dense", "per_head"])
def test_returned_attentions_are_the_reference_alpha_and_beta(layout):
    """`attentions[l]` is one `(batch, heads, 2, seq)` tensor per layer: `[:, :, 0]` the global query's weights
    alpha, `[:, :, 1]` the global key's weights beta of layer `l`, recomputed independently from the state dict and
    the layer's input. Catches alpha and beta swapped, weights of another layer, unmasked padding."""
    config = tiny_config(attention_logit_layout=layout)
    model = randomize_(FastformerModel(config), std=0.5).eval()
    input_ids, attention_mask = random_batch(config)
    with torch.no_grad():
        out = model(input_ids, attention_mask=attention_mask, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == config.num_hidden_layers
    sd = model.state_dict()
    for layer, weights in enumerate(out.attentions):
        assert weights.shape == (3, config.num_attention_heads, 2, 12)
        layer_input = out.hidden_states[layer].double()
        _, alpha, beta = additive_self_attention(
            {k: v.double() for k, v in sd.items()},
            f"encoder.layer.{layer}.attention.self",
            layer_input,
            attention_mask,
            config.num_attention_heads,
        )
        assert_far(alpha, beta, atol=1e-5)  # a swap is visible
        torch.testing.assert_close(weights[:, :, 0].double(), alpha, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(weights[:, :, 1].double(), beta, atol=1e-5, rtol=1e-5)


def test_classifier_equals_official_forward():
    """The classifier (encoder + attention pooler + dense) against the official `Model.forward`."""
    config = tiny_config(num_labels=3)
    model = randomize_(FastformerForSequenceClassification(config)).eval()
    input_ids, attention_mask = random_batch(config)
    logits = model(input_ids, attention_mask=attention_mask).logits
    expected = official_classifier(
        model.state_dict(), input_ids, attention_mask, config.num_attention_heads, 2, config.layer_norm_eps
    )
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def independent_pool(pooler_type, hidden, attention_mask, sd):
    """`(batch, seq, hidden)` -> `(batch, hidden)`: first token, masked mean, or the official `AttentionPooling`."""
    m = attention_mask.to(hidden.dtype)
    if pooler_type == "first":
        return hidden[:, 0]
    if pooler_type == "mean":
        return (hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True)
    scores = torch.tanh(hidden @ sd["pooler.att_fc1.weight"].T + sd["pooler.att_fc1.bias"])
    weights = torch.exp(scores @ sd["pooler.att_fc2.weight"].T + sd["pooler.att_fc2.bias"]) * m[..., None]
    return (weights / weights.sum(1, keepdim=True) * hidden).sum(1)


@pytest.mark.parametrize("pooler_type", ["attention", "first", "mean"])
def test_poolers_equal_independent_computations(pooler_type):
    """Classifier logits = `classifier(pool(last hidden state))` with each pooler computed independently (catches a
    mean over padding too, the last token for "first", an unmasked or wrongly normalised attention pooler)."""
    config = tiny_config(pooler_type=pooler_type, num_labels=3)
    model = randomize_(FastformerForSequenceClassification(config)).eval()
    input_ids, attention_mask = random_batch(config)
    with torch.no_grad():
        out = model(input_ids, attention_mask=attention_mask, output_hidden_states=True)
    sd = model.state_dict()
    hidden = out.hidden_states[-1]
    expected = independent_pool(pooler_type, hidden, attention_mask, sd) @ sd["classifier.weight"].T
    expected = expected + sd["classifier.bias"]
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5)
    if pooler_type != "first":  # padding would matter
        unmasked = (
            independent_pool(pooler_type, hidden, torch.ones_like(attention_mask), sd) @ sd["classifier.weight"].T
        )
        assert_far(out.logits, unmasked + sd["classifier.bias"], atol=1e-5)


def test_layer_sharing_applies_one_layer_at_every_depth():
    """Catches a shared-weights model that applies its layer once (or a stack that ignores the sharing)."""
    shared = randomize_(FastformerModel(tiny_config(share_layer_parameters=True, num_hidden_layers=3))).eval()
    unshared = FastformerModel(tiny_config(num_hidden_layers=3)).eval()
    assert len(shared.encoder.layer) == 1 and len(unshared.encoder.layer) == 3
    layer_params = sum(p.numel() for p in unshared.encoder.layer[0].parameters())
    assert sum(p.numel() for p in unshared.parameters()) - sum(p.numel() for p in shared.parameters()) == (
        2 * layer_params
    )
    # Three copies of the shared layer in an unshared model compute the same function.
    for layer in unshared.encoder.layer:
        layer.load_state_dict(shared.encoder.layer[0].state_dict())
    unshared.embeddings.load_state_dict(shared.embeddings.state_dict())
    input_ids, attention_mask = random_batch(shared.config)
    with torch.no_grad():
        expected = unshared(input_ids, attention_mask=attention_mask).last_hidden_state
        torch.testing.assert_close(shared(input_ids, attention_mask=attention_mask).last_hidden_state, expected)
        once = FastformerModel(tiny_config(share_layer_parameters=True, num_hidden_layers=1)).eval()
        once.load_state_dict(shared.state_dict())  # the same weights, applied at one depth only
        assert_far(once(input_ids, attention_mask=attention_mask).last_hidden_state, expected, atol=1e-5)


def test_without_position_embeddings_the_model_is_permutation_equivariant():
    """Catches positions added although `position_embedding_type="none"` (and, with the mixing check, a model whose
    tokens do not interact, which would be equivariant trivially)."""
    config = tiny_config(position_embedding_type="none", max_position_embeddings=8)
    model = randomize_(FastformerModel(config)).eval()
    assert model.embeddings.position_embeddings is None
    input_ids = torch.randint(1, config.vocab_size, (2, 20))  # longer than the (unused) position table
    permutation = torch.randperm(20)
    with torch.no_grad():
        out = model(input_ids).last_hidden_state
        out_permuted = model(input_ids[:, permutation]).last_hidden_state
        torch.testing.assert_close(out[:, permutation], out_permuted, atol=1e-5, rtol=1e-5)
        changed = input_ids.clone()
        changed[:, 1:] = (changed[:, 1:] + 1) % config.vocab_size
        assert_far(model(changed).last_hidden_state[:, 0], out[:, 0], atol=1e-5)  # token 0 sees the others


# ------------------------------------------------------------------------------------------ padding invariance


@pytest.mark.parametrize("pooler_type", ["attention", "first", "mean"])
@pytest.mark.parametrize("layout", ["dense", "per_head"])
def test_padding_does_not_change_real_tokens(pooler_type, layout):
    """Right padding (with arbitrary ids) changes neither the real tokens' hidden states nor the logits: catches an
    attention or pooler mask that is ignored or inverted. Checked to be far from the unmasked padded input."""
    config = tiny_config(pooler_type=pooler_type, attention_logit_layout=layout)
    model = randomize_(FastformerForSequenceClassification(config)).eval()
    input_ids = torch.randint(1, config.vocab_size, (2, 10))
    padded_ids = torch.cat([input_ids, torch.zeros(2, 6, dtype=torch.long)], dim=1)
    padded_ids[1, 10:] = torch.randint(1, config.vocab_size, (6,))  # padding content must not matter either
    padded_mask = torch.cat([torch.ones(2, 10), torch.zeros(2, 6)], dim=1).long()
    with torch.no_grad():
        plain = model(input_ids, output_hidden_states=True)
        padded = model(padded_ids, attention_mask=padded_mask, output_hidden_states=True)
        unmasked = model(padded_ids, output_hidden_states=True)
    torch.testing.assert_close(padded.hidden_states[-1][:, :10], plain.hidden_states[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.logits, plain.logits, atol=1e-5, rtol=1e-5)
    assert_far(unmasked.hidden_states[-1][:, :10], plain.hidden_states[-1], atol=1e-5)
    if pooler_type != "first":
        assert_far(unmasked.logits, plain.logits, atol=1e-5)


def test_batch_equals_rows_one_by_one():
    """A padded batch gives each row the logits and hidden states of that row alone (catches masks or pools that
    mix rows or read padding)."""
    config = tiny_config(num_labels=4)
    model = randomize_(FastformerForSequenceClassification(config)).eval()
    input_ids, attention_mask = random_batch(config)
    with torch.no_grad():
        batched = model(input_ids, attention_mask=attention_mask, output_hidden_states=True)
        unmasked = model(input_ids, output_hidden_states=True)
        for row in range(3):
            length = int(attention_mask[row].sum())
            single = model(input_ids[row : row + 1, :length], output_hidden_states=True)
            torch.testing.assert_close(batched.logits[row : row + 1], single.logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(
                batched.hidden_states[-1][row, :length], single.hidden_states[-1][0], atol=1e-5, rtol=1e-5
            )
            if length < input_ids.shape[1]:
                assert_far(unmasked.hidden_states[-1][row, :length], single.hidden_states[-1][0], atol=1e-5)


def test_attention_weights_are_distributions_over_real_tokens():
    """Each returned alpha and beta sums to 1 over the real tokens and is exactly 0 on padding."""
    config = tiny_config()
    model = randomize_(FastformerModel(config)).eval()
    input_ids, attention_mask = random_batch(config)
    out = model(input_ids, attention_mask=attention_mask, output_attentions=True)
    assert len(out.attentions) == config.num_hidden_layers
    for weights in out.attentions:
        assert weights.shape == (3, config.num_attention_heads, 2, 12)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, config.num_attention_heads, 2))
        assert torch.all(weights.masked_select(attention_mask[:, None, None, :] == 0) == 0)


# --------------------------------------------------------------------------------------------- finite values


def _assert_finite_forward_backward(model, **inputs):
    out = model(**inputs)
    loss = out.logits.float().pow(2).sum() if hasattr(out, "logits") else out.last_hidden_state.float().sum()
    assert torch.isfinite(loss)
    loss.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name
    return out


@pytest.mark.parametrize("pooler_type", ["attention", "first", "mean"])
def test_all_padding_row_is_finite(pooler_type):
    config = tiny_config(pooler_type=pooler_type)
    model = FastformerForSequenceClassification(config).train()
    input_ids, attention_mask = random_batch(config, lengths=(12, 0, 5))
    out = _assert_finite_forward_backward(model, input_ids=input_ids, attention_mask=attention_mask)
    assert torch.isfinite(out.logits).all()
    # The other rows are unaffected by the empty one.
    model.eval()
    alone = model(input_ids[:1], attention_mask=attention_mask[:1]).logits
    torch.testing.assert_close(model(input_ids, attention_mask=attention_mask).logits[:1], alone)


def test_bf16_autocast_is_finite_and_close_to_float32():
    """Under bf16 autocast the logits stay within 5% of their scale of the float32 logits (measured: 0.9%), and
    that tolerance rejects another model (catches a bf16 path that computes something else, e.g. softmaxes that
    lose the mask or run unnormalised in low precision)."""
    config = tiny_config()
    model = randomize_(FastformerForSequenceClassification(config)).eval()
    input_ids, attention_mask = random_batch(config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _assert_finite_forward_backward(model, input_ids=input_ids, attention_mask=attention_mask)
    with torch.no_grad():
        reference = model(input_ids, attention_mask=attention_mask).logits
        other = randomize_(FastformerForSequenceClassification(config), seed=1).eval()
        unrelated = other(input_ids, attention_mask=attention_mask).logits
    tolerance = 0.05 * reference.abs().max().item()
    torch.testing.assert_close(out.logits.float(), reference, atol=tolerance, rtol=0)
    assert_far(unrelated, reference, atol=tolerance, factor=10)


def test_large_logits_do_not_overflow():
    config = tiny_config()
    model = FastformerForSequenceClassification(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "att" in name and name.endswith("weight"):
                param.mul_(1e4)
    input_ids, attention_mask = random_batch(config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _assert_finite_forward_backward(model, input_ids=input_ids, attention_mask=attention_mask)


def test_4096_token_input_is_finite():
    config = tiny_config(max_position_embeddings=4096, hidden_size=16, intermediate_size=16)
    model = FastformerForSequenceClassification(config).train()
    input_ids = torch.randint(1, config.vocab_size, (1, 4096))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 4000:] = 0
    _assert_finite_forward_backward(model, input_ids=input_ids, attention_mask=attention_mask)


# ------------------------------------------------------------------------------------------------ the head


def test_losses_follow_problem_type():
    input_ids, attention_mask = random_batch(tiny_config())
    # regression
    model = FastformerForSequenceClassification(tiny_config(num_labels=1)).eval()
    labels = torch.randn(3)
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    assert model.config.problem_type == "regression"
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), labels))
    # single label
    model = FastformerForSequenceClassification(tiny_config(num_labels=3)).eval()
    labels = torch.tensor([0, 2, 1])
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    assert model.config.problem_type == "single_label_classification"
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    # multi label
    model = FastformerForSequenceClassification(tiny_config(num_labels=3)).eval()
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    assert model.config.problem_type == "multi_label_classification"
    torch.testing.assert_close(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels))


def test_tuple_output_and_inputs_embeds():
    config = tiny_config()
    model = FastformerModel(config).eval()
    input_ids, attention_mask = random_batch(config)
    by_ids = model(input_ids, attention_mask=attention_mask).last_hidden_state
    embeds = model.get_input_embeddings()(input_ids)
    by_embeds = model(inputs_embeds=embeds, attention_mask=attention_mask, return_dict=False)[0]
    torch.testing.assert_close(by_ids, by_embeds)


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "make_inputs, message",
    [
        (lambda c: dict(input_ids=torch.randint(0, 99, (1, 65))), "max_position_embeddings"),
        (lambda c: dict(input_ids=torch.tensor([[1, 2, 99]])), "outside the vocabulary"),
        (lambda c: dict(input_ids=torch.tensor([[1, -1, 3]])), "outside the vocabulary"),
        (lambda c: dict(input_ids=torch.ones(2, 5).long(), attention_mask=torch.ones(2, 6)), "attention_mask"),
        (lambda c: dict(input_ids=torch.ones(2, 5).long(), attention_mask=torch.ones(5)), "attention_mask"),
        (lambda c: dict(), "exactly one"),
        (lambda c: dict(input_ids=torch.ones(1, 3).long(), inputs_embeds=torch.ones(1, 3, 32)), "exactly one"),
        (lambda c: dict(inputs_embeds=torch.ones(1, 3, 31)), "inputs_embeds"),
        (lambda c: dict(input_ids=torch.ones(1, 0).long()), "empty"),
        (lambda c: dict(input_ids=torch.ones(5).long()), "shape"),
    ],
)
def test_bad_inputs_raise_clear_errors(make_inputs, message):
    model = FastformerModel(tiny_config())
    with pytest.raises(ValueError, match=message):
        model(**make_inputs(model.config))


def test_bad_labels_raise_clear_errors():
    model = FastformerForSequenceClassification(tiny_config(num_labels=3))
    input_ids, attention_mask = random_batch(model.config)
    with pytest.raises(ValueError, match=r"ids in \[0, 3\)"):
        model(input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 3, 1]))
    model.config.problem_type = "multi_label_classification"
    with pytest.raises(ValueError, match="Multi-label"):
        model(input_ids, attention_mask=attention_mask, labels=torch.ones(3, 2))


# ------------------------------------------------------------------------------- transformers integration


def test_auto_classes_resolve_to_fastformer():
    config = AutoConfig.for_model("fastformer", hidden_size=32, num_attention_heads=4, intermediate_size=37)
    assert isinstance(config, FastformerConfig)
    assert type(AutoModel.from_config(config)) is FastformerModel
    assert type(AutoModelForSequenceClassification.from_config(config)) is FastformerForSequenceClassification


def test_gradient_checkpointing_gives_the_same_gradients():
    """Checkpointed layers recompute the forward with the same dropout masks: the gradients equal the plain ones
    (catches a recomputation that draws new dropout masks or drops an input); with other dropout masks they would
    differ by far more than the tolerance."""
    config = tiny_config(hidden_dropout_prob=0.1)
    model = randomize_(FastformerForSequenceClassification(config))
    input_ids, attention_mask = random_batch(config)
    labels = torch.tensor([0, 1, 1])

    def gradients(seed=1):
        model.zero_grad()
        torch.manual_seed(seed)  # same dropout masks in both runs
        model(input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    plain = gradients()
    other_masks = gradients(seed=2)
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.fastformer.encoder.layer)
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-5, rtol=1e-4, msg=name)
    assert_far(
        torch.cat([g.flatten() for g in other_masks.values()]),
        torch.cat([g.flatten() for g in plain.values()]),
        atol=1e-5,
    )


def test_torch_compile_matches_eager():
    """The default inductor backend compiles forward and backward; values and gradients match eager."""
    config = tiny_config()
    model = FastformerForSequenceClassification(config).train()
    input_ids, attention_mask = random_batch(config)
    labels = torch.tensor([0, 1, 1])
    eager_loss = model(input_ids, attention_mask=attention_mask, labels=labels).loss
    eager_grads = torch.autograd.grad(eager_loss, list(model.parameters()))
    compiled = torch.compile(model)
    loss = compiled(input_ids, attention_mask=attention_mask, labels=labels).loss
    grads = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(loss, eager_loss)
    for grad, eager_grad in zip(grads, eager_grads):
        torch.testing.assert_close(grad, eager_grad)
