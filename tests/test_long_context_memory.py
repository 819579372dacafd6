"""Memory options for long sequences (issue #14): `sequence_chunk_size` and `recompute_causal_pool` compute the same
function as the default (outputs, gradients, decoding state), keep only chunk-sized activations, and give finite
gradients together with gradient checkpointing and `chunk_size_feed_forward`. The million-token runs themselves are
in `benchmarks/benchmark_long_context.py` (not timed tests)."""

import pytest
import torch
from helpers import assert_far, randomize_

from fastformer import FastformerConfig, FastformerForSequenceClassification, FastformerModel


SMALL = dict(
    vocab_size=64,
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=64,
    num_hidden_layers=2,
    hidden_dropout_prob=0.0,
    position_embedding_type="none",
)
SEQ = 42


# Parameters whose gradient is zero in exact arithmetic: each adds the same number to every logit of one softmax
# (the logit layers' biases; the pooler's last bias; the key bias of scaled-dot-product cross-attention, `q . b_K`
# for every source token, which it uses for nothing else), which the softmax cancels. What autograd returns for
# them is float32 rounding of sums of opposite terms, so two groupings of the same sums differ by that noise, not by
# a relative error. (The additive cross-attention's key bias also enters the pooled keys: an ordinary gradient.)
SHIFT_INVARIANT = ("query_att.bias", "key_att.bias", "att_fc2.bias")
DOT_CROSS_KEY_BIAS = "crossattention.self.key.bias"


def assert_close_to_scale(actual, expected, rtol=1e-4, name=""):
    """Equal up to `rtol` of the tensor's largest entry (an element-wise relative tolerance would fail near zero)."""
    error = (actual - expected).abs().max().item()
    assert error <= rtol * expected.abs().max().item(), f"{name}: max error {error:.3g}"


def assert_same_gradients(grads, expected, config):
    """Every gradient as `assert_close_to_scale`, except the `SHIFT_INVARIANT` ones, which must be zero up to
    rounding in both runs: at most 1e-6 of the model's largest gradient (float32 eps is 1.2e-7; measured <= 3e-8)."""
    assert grads.keys() == expected.keys()
    largest = max(g.abs().max().item() for g in expected.values())
    dot_cross = config.add_cross_attention and config.cross_attention_type == "scaled_dot_product"
    zero = SHIFT_INVARIANT + ((DOT_CROSS_KEY_BIAS,) if dot_cross else ())
    for name in expected:
        if name.endswith(zero):
            for run in (grads, expected):
                assert run[name].abs().max().item() <= 1e-6 * largest, (
                    f"{name}: not zero ({run[name].abs().max():.3g})"
                )
        else:
            assert_close_to_scale(grads[name], expected[name], name=name)


def inputs(batch=3):
    """Token ids and a mask with holes (row 0), left padding (row 1) and a row of padding only (row 2)."""
    torch.manual_seed(1)
    input_ids = torch.randint(1, SMALL["vocab_size"], (batch, SEQ))
    attention_mask = torch.ones(batch, SEQ, dtype=torch.long)
    attention_mask[0, 5::4] = 0
    attention_mask[1, :20] = 0
    attention_mask[2] = 0
    return input_ids, attention_mask


def pair(kind: str, layout: str = "post", **options):
    """The same weights twice, the default config and one with `options` (both in the `layout` of
    `layer_norm_position`); weights redrawn (`randomize_`, std 0.3) so that tokens mix: at the default init (std
    0.02) a chunk's pools would hardly differ from the sequence's."""
    extra = {
        "encoder": {},
        "causal": {"is_decoder": True},
        "additive_cross": {"is_decoder": True, "add_cross_attention": True, "cross_attention_type": "additive"},
        "dot_cross": {"is_decoder": True, "add_cross_attention": True},
    }[kind]
    model_class = FastformerForSequenceClassification if kind == "encoder" else FastformerModel
    torch.manual_seed(0)
    default = model_class(FastformerConfig(**SMALL, **extra, layer_norm_position=layout))
    other = model_class(FastformerConfig(**SMALL, **extra, layer_norm_position=layout, **options))
    other.load_state_dict(randomize_(default).state_dict())
    return default.train(), other.train()


def extra_inputs(model) -> dict:
    """A source sequence `(3, 9, hidden)` for the models with cross-attention."""
    if not model.config.add_cross_attention:
        return {}
    torch.manual_seed(2)
    return {"encoder_hidden_states": torch.randn(3, 9, SMALL["hidden_size"])}


def step(model, scale: float = 1.0):
    """Outputs and every parameter's gradient of one loss that weighs every output element differently."""
    input_ids, attention_mask = inputs()
    out = model(input_ids=input_ids, attention_mask=attention_mask, **extra_inputs(model))
    y = out.logits if isinstance(model, FastformerForSequenceClassification) else out.last_hidden_state
    ((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() * scale).backward()
    return y.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["encoder", "causal", "additive_cross", "dot_cross"])
@pytest.mark.parametrize("chunk, layout", [(8, "post"), (41, "post"), (8, "pre")])
def test_sequence_chunk_size_computes_the_same_function(kind, chunk, layout):
    default, chunked = pair(kind, sequence_chunk_size=chunk, layout=layout)
    y, grads = step(default)
    y_chunked, grads_chunked = step(chunked)
    assert_close_to_scale(y_chunked, y, rtol=1e-5)
    assert_same_gradients(grads_chunked, grads, default.config)
    # The comparison can fail: chunks that pooled only themselves (the likeliest bug) move the hidden states by far
    # more than the tolerance.
    base = default.fastformer if kind == "encoder" else default
    input_ids, attention_mask = inputs()
    with torch.no_grad():
        whole = base(input_ids=input_ids, attention_mask=attention_mask, **extra_inputs(default)).last_hidden_state
        local = torch.cat(
            [
                base(
                    input_ids=input_ids[:, i : i + chunk],
                    attention_mask=attention_mask[:, i : i + chunk],
                    **extra_inputs(default),
                ).last_hidden_state
                for i in range(0, SEQ, chunk)
            ],
            dim=1,
        )
    assert_far(local, whole, atol=1e-5 * whole.abs().max().item())


@pytest.mark.parametrize("kind", ["causal", "additive_cross"])
def test_recompute_causal_pool_gives_identical_outputs_and_gradients(kind):
    default, lean = pair(kind, recompute_causal_pool=True)
    y, grads = step(default)
    y_lean, grads_lean = step(lean)
    assert torch.equal(y_lean, y)
    for name in grads:
        assert torch.equal(grads_lean[name], grads[name]), name


def test_sequence_chunked_decoder_fills_the_same_decoding_state():
    default, chunked = pair("causal", sequence_chunk_size=8)
    input_ids, _ = inputs()
    with torch.no_grad():
        states = [model(input_ids=input_ids[:, :-1], use_cache=True).cache for model in (default, chunked)]
        following = [
            model(input_ids=input_ids[:, -1:], cache=cache).last_hidden_state
            for model, cache in zip((default, chunked), states)
        ]
    for layer in range(SMALL["num_hidden_layers"]):
        for slot in ("query", "key"):
            torch.testing.assert_close(states[1].read_state(layer, slot), states[0].read_state(layer, slot))
    assert_close_to_scale(following[1], following[0], rtol=1e-5)


@pytest.mark.parametrize("kind", ["encoder", "causal"])
def test_sequence_chunked_layers_save_only_their_inputs_and_outputs(kind):
    """Outside the chunks' recomputation, autograd keeps no feed-forward intermediate and nothing of the pools: the
    saved bytes fall several-fold."""

    def saved_bytes(model):
        seen = {}

        def pack(tensor):
            seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        input_ids, attention_mask = inputs()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(input_ids=input_ids, attention_mask=attention_mask)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        return sum(size for pointer, size in seen.items() if pointer not in params)

    default, chunked = pair(kind, sequence_chunk_size=7)
    assert saved_bytes(chunked) * 3 < saved_bytes(default)


def test_memory_options_together_give_finite_gradients_under_loss_scaling():
    """Gradient checkpointing, feed-forward chunking, sequence chunking and the lean causal pool together, with a
    fp16-style loss scale and padding-only prefixes: every gradient finite and equal to the default's."""
    default, lean = pair("causal", sequence_chunk_size=14, chunk_size_feed_forward=7, recompute_causal_pool=True)
    lean.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _, grads = step(default, scale=2.0**16)
    _, grads_lean = step(lean, scale=2.0**16)
    for name in grads:
        assert torch.isfinite(grads_lean[name]).all(), name
    assert_same_gradients(grads_lean, grads, default.config)


def test_sequence_chunk_size_must_not_be_negative():
    with pytest.raises(ValueError, match="sequence_chunk_size"):
        FastformerConfig(sequence_chunk_size=-1)
