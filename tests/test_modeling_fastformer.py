"""Tests of FastformerConfig, FastformerModel and FastformerForSequenceClassification (tiny configs, seeded)."""

import pytest
import torch
from reference import official_classifier, official_self_attention, paper_self_attention
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from fastformer import FastformerConfig, FastformerForSequenceClassification, FastformerModel
from fastformer.modeling_fastformer import FastformerAdditiveAttention


def tiny_config(**kwargs):
    defaults = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_dropout_prob=0.0,
        max_position_embeddings=64,
    )
    defaults.update(kwargs)
    return FastformerConfig(**defaults)


def random_batch(config, batch=3, seq=12, lengths=(12, 7, 3)):
    input_ids = torch.randint(1, config.vocab_size, (batch, seq))
    attention_mask = torch.zeros(batch, seq, dtype=torch.long)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
    input_ids = input_ids.masked_fill(attention_mask == 0, config.pad_token_id)
    return input_ids, attention_mask


def perturb_biases(model):
    """Zero-initialised biases would hide bias bugs from the reference comparisons."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.1)
    return model


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
    config = tiny_config()
    attention = perturb_biases(FastformerAdditiveAttention(config))
    for module in attention.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.3)
    x = torch.randn(2, seq, config.hidden_size)
    mask = torch.ones(2, seq, dtype=torch.long)
    mask[1, (seq + 1) // 2 :] = 0
    out, alpha, beta = attention(x, mask.bool().unsqueeze(-1))
    sd = {f"x.{k}": v for k, v in attention.state_dict().items()}
    expected = official_self_attention(sd, "x", x, mask, config.num_attention_heads)
    # Only real tokens are compared: the official mask lets padded queries produce arbitrary values too.
    real = mask.bool()
    torch.testing.assert_close(out[real], expected[real], atol=1e-5, rtol=1e-5)
    assert alpha.shape == beta.shape == (2, config.num_attention_heads, seq)


@pytest.mark.parametrize("share_query_value", [True, False])
def test_attention_equals_paper_equations_per_head(share_query_value):
    config = tiny_config(attention_logit_layout="per_head", share_query_value=share_query_value)
    attention = perturb_biases(FastformerAdditiveAttention(config))
    torch.nn.init.normal_(attention.query_att.weight, std=1.0)
    torch.nn.init.normal_(attention.key_att.weight, std=1.0)
    assert (attention.value is None) == share_query_value
    x = torch.randn(3, 9, config.hidden_size)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[2, 4:] = 0
    out, _, _ = attention(x, mask.bool().unsqueeze(-1))
    sd = {f"x.{k}": v for k, v in attention.state_dict().items()}
    expected = paper_self_attention(sd, "x", x, mask, config.num_attention_heads, share_query_value)
    real = mask.bool()
    torch.testing.assert_close(out[real], expected[real], atol=1e-5, rtol=1e-5)


def test_classifier_equals_official_forward():
    config = tiny_config(num_labels=3)
    model = perturb_biases(FastformerForSequenceClassification(config)).eval()
    input_ids, attention_mask = random_batch(config)
    logits = model(input_ids, attention_mask=attention_mask).logits
    expected = official_classifier(
        model.state_dict(), input_ids, attention_mask, config.num_attention_heads, 2, config.layer_norm_eps
    )
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_layer_sharing_applies_one_layer_at_every_depth():
    shared = FastformerModel(tiny_config(share_layer_parameters=True, num_hidden_layers=3)).eval()
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
    torch.testing.assert_close(
        shared(input_ids, attention_mask=attention_mask).last_hidden_state,
        unshared(input_ids, attention_mask=attention_mask).last_hidden_state,
    )


def test_without_position_embeddings_the_model_is_permutation_equivariant():
    config = tiny_config(position_embedding_type="none", max_position_embeddings=8)
    model = FastformerModel(config).eval()
    assert model.embeddings.position_embeddings is None
    input_ids = torch.randint(1, config.vocab_size, (2, 20))  # longer than the (unused) position table
    permutation = torch.randperm(20)
    out = model(input_ids).last_hidden_state
    out_permuted = model(input_ids[:, permutation]).last_hidden_state
    torch.testing.assert_close(out[:, permutation], out_permuted, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------ padding invariance


@pytest.mark.parametrize("pooler_type", ["attention", "first", "mean"])
@pytest.mark.parametrize("layout", ["dense", "per_head"])
def test_padding_does_not_change_real_tokens(pooler_type, layout):
    config = tiny_config(pooler_type=pooler_type, attention_logit_layout=layout)
    model = perturb_biases(FastformerForSequenceClassification(config)).eval()
    input_ids = torch.randint(1, config.vocab_size, (2, 10))
    padded_ids = torch.cat([input_ids, torch.zeros(2, 6, dtype=torch.long)], dim=1)
    padded_ids[1, 10:] = torch.randint(1, config.vocab_size, (6,))  # padding content must not matter either
    padded_mask = torch.cat([torch.ones(2, 10), torch.zeros(2, 6)], dim=1).long()
    plain = model(input_ids, output_hidden_states=True)
    padded = model(padded_ids, attention_mask=padded_mask, output_hidden_states=True)
    torch.testing.assert_close(padded.hidden_states[-1][:, :10], plain.hidden_states[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.logits, plain.logits, atol=1e-5, rtol=1e-5)


def test_batch_equals_rows_one_by_one():
    config = tiny_config(num_labels=4)
    model = perturb_biases(FastformerForSequenceClassification(config)).eval()
    input_ids, attention_mask = random_batch(config)
    batched = model(input_ids, attention_mask=attention_mask, output_hidden_states=True)
    for row in range(3):
        length = int(attention_mask[row].sum())
        single = model(input_ids[row : row + 1, :length], output_hidden_states=True)
        torch.testing.assert_close(batched.logits[row : row + 1], single.logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            batched.hidden_states[-1][row, :length], single.hidden_states[-1][0], atol=1e-5, rtol=1e-5
        )


def test_attention_weights_are_distributions_over_real_tokens():
    config = tiny_config()
    model = FastformerModel(config).eval()
    input_ids, attention_mask = random_batch(config)
    out = model(input_ids, attention_mask=attention_mask, output_attentions=True)
    assert len(out.attentions) == config.num_hidden_layers
    for alpha, beta in out.attentions:
        for weights in (alpha, beta):
            assert weights.shape == (3, config.num_attention_heads, 12)
            torch.testing.assert_close(weights.sum(-1), torch.ones(3, config.num_attention_heads))
            assert torch.all(weights.masked_select(attention_mask[:, None, :] == 0) == 0)


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
    config = tiny_config()
    model = FastformerForSequenceClassification(config).eval()
    input_ids, attention_mask = random_batch(config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _assert_finite_forward_backward(model, input_ids=input_ids, attention_mask=attention_mask)
    reference = model(input_ids, attention_mask=attention_mask).logits
    torch.testing.assert_close(out.logits.float(), reference, atol=5e-2, rtol=5e-2)


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
    with pytest.raises(ValueError, match="class ids"):
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
    config = tiny_config(hidden_dropout_prob=0.1)
    model = FastformerForSequenceClassification(config)
    input_ids, attention_mask = random_batch(config)
    labels = torch.tensor([0, 1, 1])

    def gradients():
        model.zero_grad()
        torch.manual_seed(1)  # same dropout masks in both runs
        model(input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    plain = gradients()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.fastformer.encoder.layer)
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


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
