"""ONNX export (`export_onnx`, `torch.onnx.export(..., dynamo=True)`) of every part a serving runtime runs, checked
in ONNX Runtime against eager PyTorch at batches and lengths never seen at export (batch 2, length 9): each encoder
head, the causal LM's prefill and decoding step (a whole decoding loop in ONNX Runtime), the encoder-decoder's
encoder and decoder step; logits and decoding state. The ONNX models are converted from the `torch.export` programs
that `test_export.py` builds (shared within one process)."""

import functools

import numpy as np
import pytest
import torch
from helpers import assert_far
from test_export import (
    CAUSAL_SHAPES,
    ENCODER_HEADS,
    ENCODER_SHAPES,
    SEQ2SEQ,
    assert_matches,
    causal_steps,
    eager_state,
    model,
    module,
    program,
    token_batch,
)

from fastformer.export_fastformer import export_onnx


ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """`session(case, part)`: an ONNX Runtime session of the part's ONNX model, converted once per module (the causal
    decoding step with onnxscript's optimizer, `export_onnx`'s default; the others without, a third faster to
    convert); calling it with torch tensors (in `input_names` order, a tuple argument flattened) returns torch
    tensors."""
    folder = tmp_path_factory.mktemp("onnx")

    @functools.cache
    def build(case: str, part: str = "model"):
        path = folder / f"{case}-{part}.onnx"
        export_onnx(module(case, part), path, program=program(case, part), optimize=part == "decode_step")
        runtime = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [node.name for node in runtime.get_inputs()]
        assert names == list(module(case, part).input_names)
        assert [node.name for node in runtime.get_outputs()] == list(module(case, part).output_names)
        axes = [
            a for axes in module(case, part).axes().values() for a in (axes if isinstance(axes, tuple) else [axes])
        ]
        for node, named in zip(runtime.get_inputs(), axes, strict=True):  # the dynamic axes carry their names
            assert all(node.shape[axis] == name for axis, name in named.items()), (node.name, node.shape)

        def run(*inputs):
            flat = [t for x in inputs for t in (x if isinstance(x, tuple) else (x,))]
            outputs = runtime.run(None, {name: t.numpy() for name, t in zip(names, flat)})
            return tuple(torch.from_numpy(np.asarray(output)) for output in outputs)

        return run

    return build


@pytest.mark.parametrize("case", list(ENCODER_HEADS))
def test_encoder_heads_in_onnx_runtime(session, case):
    """Every encoder head's ONNX model gives eager PyTorch's outputs at unseen batches and lengths (padding in row
    0); the outputs move by far more than the tolerance when the first token changes."""
    choices = 3 if case == "FastformerForMultipleChoice" else 0
    run = session(case)
    for batch, length in ENCODER_SHAPES:
        input_ids, mask = token_batch(case, batch, length, left=False, choices=choices)
        with torch.no_grad():
            want = module(case)(input_ids, mask)
        got = run(input_ids, mask)
        for g, w in zip(got, want, strict=True):
            assert_matches(g, w, rtol=1e-4)
    changed = input_ids.clone()
    changed[..., 0] = (changed[..., 0] + 1) % model(case).config.vocab_size
    assert_far(run(changed, mask)[0], want[0], atol=1e-4 * max(1.0, want[0].abs().max().item()))


def test_causal_prefill_in_onnx_runtime(session):
    """The prefill's ONNX model gives the eager forward's logits and decoding state (left padding in row 0) at
    unseen batches and lengths, 300 tokens included (a scan level more than any length near the export's)."""
    run = session("causal", "prefill")
    for batch, length in CAUSAL_SHAPES:
        input_ids, mask = token_batch("causal", batch, length)
        with torch.no_grad():
            eager = model("causal")(input_ids, attention_mask=mask, use_cache=True)
        logits, state = run(input_ids, mask)
        assert_matches(logits, eager.logits, rtol=1e-4)
        assert_matches(state, eager_state(eager.cache, "causal"), rtol=1e-4)
    assert_far(run(*token_batch("causal", batch, length, seed=2))[1], state, atol=1e-4 * state.abs().max().item())


def test_causal_decoding_loop_in_onnx_runtime(session):
    """A serving loop entirely in ONNX Runtime (prefill, then four decoding steps with the state passed back in)
    gives the logits of the eager forward over the whole text and its final state; without the prompt's state the
    first step's logits are far off."""
    prefill, step = session("causal", "prefill"), session("causal", "decode_step")
    prompt, mask = token_batch("causal", 3, 21)
    new_tokens = token_batch("causal", 3, 4, seed=3)[0]
    logits, state = causal_steps("causal", prompt, mask, new_tokens, prefill, step)
    whole = torch.cat([prompt, new_tokens], 1)
    with torch.no_grad():
        whole_mask = torch.cat([mask, torch.ones_like(new_tokens)], 1)
        eager = model("causal")(whole, attention_mask=whole_mask, use_cache=True)
    assert_matches(logits, eager.logits[:, -4:], rtol=1e-4)
    assert_matches(state, eager_state(eager.cache, "causal"), rtol=1e-4)
    empty = module("causal", "decode_step").initial_state(3)
    no_prompt = step(new_tokens[:, :1], torch.zeros(3, 1, dtype=torch.long), empty)[0]
    assert_far(no_prompt, logits[:, :1], atol=1e-4 * logits.abs().max().item())


@pytest.mark.parametrize("case", SEQ2SEQ)
def test_seq2seq_encoder_and_decoder_steps_in_onnx_runtime(session, case):
    """The encoder's and the decoder step's ONNX models, run in turn (the encoder's projections fed to every
    step, the state passed back in), give the eager encoder output and the eager teacher-forced logits at each of
    four steps, at unseen batches and source lengths (padding in row 0)."""
    encoder, step = session(case, "encoder"), session(case, "decoder_step")
    seq2seq, start = model(case), model(case).config.decoder_start_token_id
    for batch, source_length in ((1, 1), (3, 23)):
        source, source_mask = token_batch(case, batch, source_length, left=False)
        hidden, *cross = encoder(source, source_mask)
        with torch.no_grad():
            assert_matches(hidden, seq2seq.get_encoder()(source, attention_mask=source_mask).last_hidden_state, 1e-4)
        targets = torch.cat([torch.full((batch, 1), start), token_batch(case, batch, 3, seed=4)[0]], 1)
        state = module(case, "decoder_step").initial_state(batch)
        for position in range(targets.shape[1]):
            ids, positions = targets[:, position : position + 1], torch.full((batch, 1), position)
            logits, state = step(ids, positions, source_mask, state, tuple(cross))
            with torch.no_grad():
                eager = seq2seq(source, attention_mask=source_mask, decoder_input_ids=targets[:, : position + 1])
            assert_matches(logits[:, 0], eager.logits[:, -1], rtol=1e-4)
    other_cross = tuple(encoder(token_batch(case, batch, source_length, seed=5, left=False)[0], source_mask)[1:])
    other = step(ids, positions, source_mask, state, other_cross)[0]
    assert_far(other, logits, atol=1e-4 * logits.abs().max().item())
