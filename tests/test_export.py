"""`torch.export` of every part a serving runtime runs (`fastformer/export_fastformer.py`, docs/deploy.md): each
encoder head, the causal LM's prefill and decoding step, the encoder-decoder's encoder and decoder step, exported
once (batch 2, length 9) with a dynamic batch and length and run at batches and lengths it never saw, against eager
PyTorch: outputs and decoding state. A graph specialised on the length would refuse those inputs
(`test_a_length_specialised_program_refuses_other_lengths` shows it once). The programs are shared with
`test_onnx.py` (built once per process)."""

import functools

import pytest
import torch
from helpers import assert_far, causal_config, randomize_, seq2seq_config, tiny_config

from fastformer import (
    FastformerForCausalLM,
    FastformerForConditionalGeneration,
    FastformerForMaskedLM,
    FastformerForMultipleChoice,
    FastformerForQuestionAnswering,
    FastformerForSequenceClassification,
    FastformerForTokenClassification,
    FastformerModel,
)
from fastformer.export_fastformer import (
    CausalLMPrefill,
    EncoderHead,
    deployment_modules,
    export_program,
)
from fastformer.pooling_fastformer import (
    EXPORTED_SCAN_LEVELS,
    SoftmaxPool,
    exported_block_counts,
    exporting,
    prefix_scan,
)


ENCODER_HEADS = {
    cls.__name__: cls
    for cls in (
        FastformerModel,
        FastformerForSequenceClassification,
        FastformerForTokenClassification,
        FastformerForQuestionAnswering,
        FastformerForMaskedLM,
        FastformerForMultipleChoice,
    )
}
SEQ2SEQ = ("seq2seq-scaled_dot_product", "seq2seq-additive")
# (batch, length) pairs never seen at export (batch 2, length 9): one token, block boundaries of the causal scan
# (16, 17), and a prompt of 300 tokens (three scan levels in eager PyTorch, the exported four in the graph).
ENCODER_SHAPES = ((1, 1), (3, 17), (1, 64))
CAUSAL_SHAPES = ((1, 1), (3, 16), (2, 17), (1, 300))


@functools.cache
def model(case: str):
    """The randomized eval-mode model of `case`: an encoder head's class name (one layer), "causal" (two layers),
    or "seq2seq-<cross_attention_type>" (one encoder layer, two decoder layers)."""
    torch.manual_seed(0)
    if case in ENCODER_HEADS:
        built = ENCODER_HEADS[case](tiny_config(num_hidden_layers=1, num_labels=3))
    elif case == "causal":
        built = FastformerForCausalLM(causal_config())
    else:
        kind = case.split("-", 1)[1]
        config = seq2seq_config(num_hidden_layers=1, cross_attention_type=kind, max_position_embeddings=64)
        built = FastformerForConditionalGeneration(config)
    return randomize_(built).eval()


@functools.cache
def module(case: str, part: str = "model"):
    return deployment_modules(model(case))[part]


@functools.cache
def program(case: str, part: str = "model") -> torch.export.ExportedProgram:
    """`export_program` of the part, traced once (batch 2, length 9), every batch and length dynamic."""
    return export_program(module(case, part))


def token_batch(case: str, batch: int, length: int, seed: int = 1, left: bool = True, choices: int = 0):
    """Ids in the vocabulary (never the padding id 0) and a mask whose row 0 has its first (`left`) or last third
    padded (id 0); `(batch, choices, length)` with `choices`."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, choices, length) if choices else (batch, length)
    input_ids = torch.randint(3, model(case).config.vocab_size, shape, generator=generator)
    mask = torch.ones(shape, dtype=torch.long)
    cut = length // 3
    if cut:
        mask[0, ..., :cut] = 0 if left else 1
        mask[0, ..., length - cut :] = 1 if left else 0
    return input_ids.masked_fill(mask == 0, 0), mask


def assert_matches(got, want, rtol: float = 1e-5):
    """Equal up to `rtol` of the larger magnitude of `want` (or 1)."""
    scale = max(1.0, want.abs().max().item())
    torch.testing.assert_close(got, want, atol=rtol * scale, rtol=0)


def eager_state(cache, case: str) -> torch.Tensor:
    """The state of an eager forward's cache, stacked like the exported modules' (an independent reading: the cache
    layers' stored tensors)."""
    pools = cache.self_attention_cache if hasattr(cache, "self_attention_cache") else cache
    slots = module(case, "decode_step" if case == "causal" else "decoder_step").slot_indices
    return torch.stack([torch.stack([layer.recurrent_states[s] for s in slots]) for layer in pools.layers])


def causal_steps(case: str, prompt, mask, new_tokens, run_prefill, run_step):
    """Logits of `new_tokens` `(batch, k)` fed one at a time after the prompt, through `run_prefill(ids, mask)` ->
    `(logits, state)` and `run_step(ids, position_ids, state)` -> `(logits, state)`; and the last state."""
    _, state = run_prefill(prompt, mask)
    position = mask.sum(-1, keepdim=True)
    logits = []
    for step in range(new_tokens.shape[1]):
        step_logits, state = run_step(new_tokens[:, step : step + 1], position + step, state)
        logits.append(step_logits)
    return torch.cat(logits, dim=1), state


@pytest.mark.parametrize("case", list(ENCODER_HEADS))
def test_encoder_heads_run_at_unseen_batches_and_lengths(case):
    """Every encoder head, exported once, gives eager PyTorch's outputs at other batches and lengths (padding in
    row 0). The comparison can fail: the outputs move by far more than the tolerance when the first token changes
    (tokens mix)."""
    choices = 3 if case == "FastformerForMultipleChoice" else 0
    runnable = program(case).module()
    for batch, length in ENCODER_SHAPES:
        input_ids, mask = token_batch(case, batch, length, left=False, choices=choices)
        with torch.no_grad():
            want = module(case)(input_ids, mask)
        got = runnable(input_ids, mask)
        assert len(got) == len(want) == len(module(case).output_names)
        for g, w in zip(got, want):
            assert_matches(g, w)
    changed = input_ids.clone()
    changed[..., 0] = (changed[..., 0] + 1) % model(case).config.vocab_size
    with torch.no_grad():
        assert_far(module(case)(changed, mask)[0], want[0], atol=1e-5 * max(1.0, want[0].abs().max().item()))


def test_causal_prefill_gives_eager_logits_and_state():
    """The exported prefill gives the eager forward's logits and decoding state (every layer and slot, left padding
    in row 0) at unseen batches and lengths, 300 tokens included; the state it returns for one prompt is far from
    that of another."""
    runnable = program("causal", "prefill").module()
    for batch, length in CAUSAL_SHAPES:
        input_ids, mask = token_batch("causal", batch, length)
        with torch.no_grad():
            eager = model("causal")(input_ids, attention_mask=mask, use_cache=True)
        logits, state = runnable(input_ids, mask)
        assert state.shape == (2, 2, batch, 4, 8 + 2)  # (layers, slots, batch, heads, head_dim + 2)
        assert_matches(logits, eager.logits)
        assert_matches(state, eager_state(eager.cache, "causal"))
    other = runnable(*token_batch("causal", batch, length, seed=2))[1]
    assert_far(other, state, atol=1e-5 * state.abs().max().item())


def test_causal_decode_steps_continue_the_prefill():
    """Prefill (exported) then four exported decoding steps give the logits of the eager forward over the whole
    text, at a batch and prompt length the programs never saw, with a left-padded row; the final state is the
    eager prefill's of the whole text. Decoding from an empty state instead (no prompt) is far off."""
    prefill, step = program("causal", "prefill").module(), program("causal", "decode_step").module()
    prompt, mask = token_batch("causal", 3, 21)
    new_tokens = token_batch("causal", 3, 4, seed=3)[0]
    logits, state = causal_steps("causal", prompt, mask, new_tokens, prefill, step)
    whole = torch.cat([prompt, new_tokens], 1)
    whole_mask = torch.cat([mask, torch.ones_like(new_tokens)], 1)
    with torch.no_grad():
        eager = model("causal")(whole, attention_mask=whole_mask, use_cache=True)
    assert_matches(logits, eager.logits[:, -4:], rtol=1e-4)
    assert_matches(state, eager_state(eager.cache, "causal"), rtol=1e-4)
    empty = module("causal", "decode_step").initial_state(3)
    no_prompt = step(new_tokens[:, :1], torch.zeros(3, 1, dtype=torch.long), empty)[0]
    assert_far(no_prompt, logits[:, :1], atol=1e-4 * logits.abs().max().item())


def test_decode_step_from_the_initial_state_is_a_one_token_prefill():
    """`initial_state` is the empty state: one exported step from it gives the exported prefill's logits and state
    of that one token (batch 3, unseen)."""
    input_ids = token_batch("causal", 3, 1)[0]
    empty = module("causal", "decode_step").initial_state(3)
    logits, state = program("causal", "decode_step").module()(input_ids, torch.zeros(3, 1, dtype=torch.long), empty)
    prefill_logits, prefill_state = program("causal", "prefill").module()(input_ids, torch.ones_like(input_ids))
    assert_matches(logits, prefill_logits)
    assert_matches(state, prefill_state)


@pytest.mark.parametrize("case", SEQ2SEQ)
def test_seq2seq_encoder_and_decoder_steps_give_the_eager_forward(case):
    """The exported encoder gives the eager encoder's output at unseen source lengths (padding in row 0), and four
    exported decoder steps from the initial state, reading its cross-attention projections, give the logits of the
    eager teacher-forced forward (no cache) at each step; the decoder state grows no axis with the steps."""
    encoder, step = program(case, "encoder").module(), program(case, "decoder_step").module()
    seq2seq, start = model(case), model(case).config.decoder_start_token_id
    for batch, source_length in ((1, 1), (3, 23)):
        source, source_mask = token_batch(case, batch, source_length, left=False)
        hidden, cross = encoder(source, source_mask)
        with torch.no_grad():
            assert_matches(hidden, seq2seq.get_encoder()(source, attention_mask=source_mask).last_hidden_state)
        targets = torch.cat([torch.full((batch, 1), start), token_batch(case, batch, 3, seed=4)[0]], 1)
        state = module(case, "decoder_step").initial_state(batch)
        for position in range(targets.shape[1]):
            ids, positions = targets[:, position : position + 1], torch.full((batch, 1), position)
            logits, state = step(ids, positions, source_mask, state, cross)
            assert state.shape == module(case, "decoder_step").initial_state(batch).shape
            with torch.no_grad():
                eager = seq2seq(source, attention_mask=source_mask, decoder_input_ids=targets[:, : position + 1])
            assert_matches(logits[:, 0], eager.logits[:, -1], rtol=1e-4)
    other_source = token_batch(case, batch, source_length, seed=5, left=False)[0]
    other = step(ids, positions, source_mask, state, encoder(other_source, source_mask)[1])[0]
    assert_far(other, logits, atol=1e-4 * logits.abs().max().item())


def test_a_length_specialised_program_refuses_other_lengths():
    """The check the tests above make would fail for a graph specialised on the length: the prefill exported with
    static shapes (length 9) refuses a prompt of 17 tokens, which the dynamic program runs."""
    prefill = module("causal", "prefill")
    static = export_program(prefill, dynamic=False).module()
    input_ids, mask = token_batch("causal", 2, 17)
    with pytest.raises(Exception, match="(?i)shape|size|dimension|expected"):
        static(input_ids, mask)
    assert_matches(program("causal", "prefill").module()(input_ids, mask)[0], prefill(input_ids, mask)[0])


@pytest.mark.parametrize("block", [2, 3, 16])
def test_traced_scan_levels_equal_the_eager_scan_at_every_length(block):
    """The scan an export traces (`exported_block_counts`: a fixed number of levels, the last one a single block of
    whatever is left) gives the eager scan's prefix pools (float64) at every length from 1 to 300, also far past
    `block^levels` (with blocks of 2: 16 items), where the last block is long."""
    assert not exporting() and EXPORTED_SCAN_LEVELS == 4
    generator = torch.Generator().manual_seed(0)
    for n in range(1, 301):
        m = torch.randn(2, 3, n, dtype=torch.float64, generator=generator) * 5
        sums = torch.randn(2, 3, n, 4, dtype=torch.float64, generator=generator)
        m[0, 0, : n // 2] = torch.finfo(torch.float64).min  # padding: empty pools
        sums[0, 0, : n // 2] = 0
        items = SoftmaxPool(m, sums)
        want = prefix_scan(items, block)
        got = prefix_scan(items, block, counts=exported_block_counts(n, block))
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


def test_deployment_modules_refuse_what_they_cannot_export():
    """A training-mode model, an encoder module for a decoder, a decoder module for an encoder: each refused by name."""
    classifier = FastformerForSequenceClassification(tiny_config(num_hidden_layers=1))
    with pytest.raises(ValueError, match="eval mode"):
        EncoderHead(classifier.train())
    with pytest.raises(ValueError, match="deployment_modules"):
        EncoderHead(model("causal"))
    with pytest.raises(
        ValueError, match="CausalLMPrefill.*FastformerForCausalLM.*FastformerForSequenceClassification"
    ):
        CausalLMPrefill(classifier.eval())
