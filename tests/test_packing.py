"""Packed batches (issue #25): several documents in one row, as `DataCollatorWithFlattening` makes them, give every
token exactly what its document alone gives, outputs and gradients, on every path (encoder, causal, sequence
chunks, gradient checkpointing, the token heads); the boundaries come from restarting `position_ids`, `seq_idx` or
`cu_seq_lens_q`, and rows may end in padding. What cannot keep documents apart refuses them by name.

Every whole-model comparison runs on randomized weights (tokens mix) and first shows that the unsegmented model,
which pools the whole row, fails it by far more than the tolerance (`assert_far`)."""

import pytest
import torch
from helpers import CountOps, assert_far, causal_config, randomize_, seq2seq_config, tiny_config
from transformers import DataCollatorWithFlattening, Trainer, TrainingArguments

from fastformer import (
    FastformerForCausalLM,
    FastformerForConditionalGeneration,
    FastformerForMaskedLM,
    FastformerForMultipleChoice,
    FastformerForQuestionAnswering,
    FastformerForTokenClassification,
    FastformerModel,
)
from fastformer.inputs_fastformer import document_position_ids, document_starts
from fastformer.pooling_fastformer import (
    Segments,
    finalize,
    pool_weights,
    prefix_softmax_pool,
    softmax_pool,
)


ATOL = 1e-4
LENGTHS = (5, 1, 9, 17)  # one-token documents, and documents longer than a scan block and a sequence chunk


def documents(vocab: int, lengths=LENGTHS, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (length,), generator=generator) for length in lengths]


def packed_row(docs: list[torch.Tensor], padding: int = 0) -> dict:
    """One row `(1, total + padding)`: the documents one after another, position ids restarting at 0 for each (as
    `DataCollatorWithFlattening`), then `padding` padding positions."""
    ids = torch.cat(docs + [torch.zeros(padding, dtype=torch.long)]).unsqueeze(0)
    positions = torch.cat([torch.arange(len(doc)) for doc in docs] + [torch.arange(padding)]).unsqueeze(0)
    inputs = {"input_ids": ids, "position_ids": positions}
    if padding:
        inputs["attention_mask"] = (torch.arange(ids.shape[1]) < ids.shape[1] - padding).long().unsqueeze(0)
    return inputs


def alone(model, docs, output) -> torch.Tensor:
    """Each document run on its own, the per-token outputs concatenated along the sequence."""
    return torch.cat([output(model(doc.unsqueeze(0))) for doc in docs], dim=1)


def unsegmented(model, inputs, output) -> torch.Tensor:
    """The row as one sequence (positions as given, no boundaries): what packing gave before."""
    return output(model(inputs["input_ids"], position_ids=torch.arange(inputs["input_ids"].shape[1]).unsqueeze(0)))


# --------------------------------------------------------------------------------------------- the primitives


def row_segments(starts: list[list[int]], n: int) -> Segments:
    flags = torch.zeros(len(starts), n, dtype=torch.bool)
    for row, positions in enumerate(starts):
        flags[row, positions] = True
    return Segments.from_starts(flags)


def bounds(segments: Segments, row: int) -> list[tuple[int, int]]:
    cuts = [0, *segments.starts[row].nonzero().flatten().tolist(), segments.starts.shape[1]]
    return list(zip(cuts[:-1], cuts[1:]))


def test_segment_pools_equal_each_document_pooled_alone():
    torch.manual_seed(0)
    n, heads, d = 53, 3, 4
    logits = torch.randn(2, n, heads, dtype=torch.float64) * 10
    values = torch.randn(2, n, heads * d, dtype=torch.float64)
    mask = torch.ones(2, n, 1, dtype=torch.bool)
    mask[1, 45:] = False  # a document that ends in padding
    segments = row_segments([[5, 6, 30], [40]], n)
    pool, exps = softmax_pool(logits, values, mask, segments)
    weights = pool_weights(pool, exps, segments)
    assert pool.m.shape == (2, 4, heads) and pool.sums.shape == (2, 4, heads, d + 1)
    for row in range(2):
        for index, (a, z) in enumerate(bounds(segments, row)):
            own, own_exps = softmax_pool(
                logits[row : row + 1, a:z], values[row : row + 1, a:z], mask[row : row + 1, a:z]
            )
            torch.testing.assert_close(finalize(pool)[row, index], finalize(own)[0], atol=1e-12, rtol=1e-12)
            torch.testing.assert_close(weights[row, a:z], pool_weights(own, own_exps)[0], atol=1e-12, rtol=1e-12)
    whole, _ = softmax_pool(logits, values, mask)
    assert_far(finalize(pool)[0, 0], finalize(whole)[0], atol=1e-12)


@pytest.mark.parametrize("chunk_size", [2, 4, 16])
def test_segmented_prefix_pools_restart_at_every_document(chunk_size):
    """The segmented scan (several levels at chunk 2 and 4) equals each document's own prefix pools, outputs and
    gradients; continuing from a state reaches only the positions of the document in progress, with the documents
    numbered from the piece's own first position (`Segments.from_starts`) or as in the whole row (a chunk of
    `Segments.split`)."""
    torch.manual_seed(1)
    n, heads, d = 53, 2, 3
    logits = (torch.randn(2, n, heads, dtype=torch.float64) * 10).requires_grad_()
    values = torch.randn(2, n, heads, d, dtype=torch.float64, requires_grad=True)
    keep = torch.ones(2, n, dtype=torch.bool)
    keep[1, 45:] = False
    segments = row_segments([[5, 6, 30], [16, 40]], n)
    pooled, _ = prefix_softmax_pool(logits, values, keep, chunk_size=chunk_size, segments=segments)
    expected = torch.zeros_like(pooled)
    for row in range(2):
        for a, z in bounds(segments, row):
            own, _ = prefix_softmax_pool(
                logits[row : row + 1, a:z], values[row : row + 1, a:z], keep[row : row + 1, a:z]
            )
            expected[row, a:z] = own[0]
    torch.testing.assert_close(pooled, expected, atol=1e-12, rtol=1e-12)
    upstream = torch.randn_like(pooled)
    got = torch.autograd.grad((pooled * upstream).sum(), [logits, values])
    want = torch.autograd.grad((expected * upstream).sum(), [logits, values])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    plain, _ = prefix_softmax_pool(logits, values, keep, chunk_size=chunk_size)
    assert_far(pooled.detach(), plain.detach(), atol=1e-12)
    for split in (3, 5, 6, 31, 41):  # the state after `split` tokens, then the rest
        first, state = prefix_softmax_pool(
            logits[:, :split],
            values[:, :split],
            keep[:, :split],
            chunk_size=chunk_size,
            segments=Segments.from_starts(segments.starts[:, :split]),
        )
        for part in (
            Segments.from_starts(segments.starts[:, split:]),
            Segments(segments.starts[:, split:], segments.ids[:, split:], segments),
        ):
            rest, _ = prefix_softmax_pool(
                logits[:, split:], values[:, split:], keep[:, split:], state, chunk_size=chunk_size, segments=part
            )
            torch.testing.assert_close(torch.cat([first, rest], 1), pooled, atol=1e-12, rtol=1e-12)


def test_document_starts_from_each_convention_agree():
    docs = documents(99)
    inputs = packed_row(docs)
    n = inputs["input_ids"].shape[1]
    from_positions = document_starts(inputs["position_ids"], None, {}, (1, n))
    seq_idx = torch.cat([torch.full((len(doc),), i) for i, doc in enumerate(docs)]).unsqueeze(0)
    from_seq_idx = document_starts(None, None, {"seq_idx": seq_idx}, (1, n))
    cu = torch.tensor([0, *torch.tensor([len(doc) for doc in docs]).cumsum(0).tolist()], dtype=torch.int32)
    from_cu = document_starts(None, None, {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu}, (1, n))
    assert from_positions.nonzero()[:, 1].tolist() == [5, 6, 15]
    assert torch.equal(from_positions, from_seq_idx) and torch.equal(from_positions, from_cu)
    assert torch.equal(document_position_ids(from_cu), inputs["position_ids"])
    assert document_starts(torch.arange(n).unsqueeze(0), None, {}, (1, n)) is None  # one document: nothing extra
    with pytest.raises(ValueError, match="`cu_seq_lens_k` must equal `cu_seq_lens_q`"):
        document_starts(None, None, {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu + 1}, (1, n))
    with pytest.raises(ValueError, match="must rise from 0 to the number of positions, 32"):
        document_starts(None, None, {"cu_seq_lens_q": cu[:-1]}, (1, n))


# ------------------------------------------------------------------------------------------------- the models


def hidden(outputs):
    return outputs.last_hidden_state


def logits(outputs):
    return outputs.logits


CASES = {
    "encoder": (FastformerModel, {}, hidden),
    "encoder-pre-ln": (FastformerModel, {"layer_norm_position": "pre"}, hidden),
    "encoder-chunked": (FastformerModel, {"sequence_chunk_size": 8}, hidden),
    "causal": (FastformerModel, {"is_decoder": True}, hidden),
    "causal-chunked-lean": (
        FastformerModel,
        {"is_decoder": True, "sequence_chunk_size": 8, "recompute_causal_pool": True},
        hidden,
    ),
    "masked-lm": (FastformerForMaskedLM, {}, logits),
    "token-classification": (FastformerForTokenClassification, {"num_labels": 3}, logits),
    "causal-lm": (FastformerForCausalLM, {"is_decoder": True}, logits),
}


@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_a_packed_row_equals_each_document_alone(case, padding):
    model_class, options, output = CASES[case]
    model = randomize_(model_class(tiny_config(**options))).eval()
    docs = documents(model.config.vocab_size)
    inputs = packed_row(docs, padding)
    with torch.no_grad():
        packed = output(model(**inputs))[:, : sum(LENGTHS)]
        expected = alone(model, docs, output)
        assert_far(unsegmented(model, inputs, output)[:, : sum(LENGTHS)], expected, ATOL)
    torch.testing.assert_close(packed, expected, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("case", ["encoder", "causal-chunked-lean", "masked-lm"])
def test_packed_gradients_equal_the_documents_gradients(case):
    """The parameter gradients of a packed row's summed output equal the sum over its documents run alone; also with
    gradient checkpointing."""
    model_class, options, output = CASES[case]
    model = randomize_(model_class(tiny_config(**options))).train()
    model.gradient_checkpointing_enable()
    docs = documents(model.config.vocab_size)
    weights = torch.randn(1, sum(LENGTHS), 1, generator=torch.Generator().manual_seed(3))

    def gradients(loss):
        model.zero_grad()
        loss.backward()
        return {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}

    packed = gradients((output(model(**packed_row(docs))) * weights).sum())
    separate = gradients((alone(model, docs, output) * weights).sum())
    assert packed.keys() == separate.keys()
    for name in packed:
        torch.testing.assert_close(packed[name], separate[name], atol=1e-3, rtol=1e-3, msg=name)


def test_question_answering_of_a_packed_row_equals_each_document_alone():
    model = randomize_(FastformerForQuestionAnswering(tiny_config())).eval()
    docs = documents(model.config.vocab_size)
    with torch.no_grad():
        packed = model(**packed_row(docs))
        for name in ("start_logits", "end_logits"):
            expected = torch.cat([getattr(model(doc.unsqueeze(0)), name) for doc in docs], dim=1)
            torch.testing.assert_close(getattr(packed, name), expected, atol=ATOL, rtol=ATOL)


def test_boundaries_from_seq_idx_and_cu_seq_lens_without_position_ids():
    """`seq_idx` or `cu_seq_lens_q` alone mark the documents; positions then restart at each (as the collator's)."""
    model = randomize_(FastformerForMaskedLM(tiny_config())).eval()
    docs = documents(model.config.vocab_size)
    ids = torch.cat(docs).unsqueeze(0)
    seq_idx = torch.cat([torch.full((len(doc),), i) for i, doc in enumerate(docs)]).unsqueeze(0)
    cu = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32)
    with torch.no_grad():
        expected = alone(model, docs, logits)
        for kwargs in ({"seq_idx": seq_idx}, {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": 17}):
            torch.testing.assert_close(model(ids, **kwargs).logits, expected, atol=ATOL, rtol=ATOL)


def test_trainer_with_the_flattening_collator_gives_the_padded_batch_loss(tmp_path):
    """`DataCollatorWithFlattening` through the `Trainer`: the loss of the packed batch equals that of the same
    documents padded, one per row (both the mean over the predicted tokens)."""
    model = randomize_(FastformerForCausalLM(causal_config())).eval()
    docs = documents(model.config.vocab_size)
    features = [{"input_ids": doc.tolist(), "labels": doc.tolist()} for doc in docs]
    packed = DataCollatorWithFlattening()(features)
    assert packed["input_ids"].shape[0] == 1
    longest = max(LENGTHS)
    ids = torch.zeros(len(docs), longest, dtype=torch.long)
    mask = torch.zeros(len(docs), longest, dtype=torch.long)
    for row, doc in enumerate(docs):
        ids[row, : len(doc)], mask[row, : len(doc)] = doc, 1
    labels = ids.masked_fill(mask == 0, -100)
    args = TrainingArguments(tmp_path, per_device_eval_batch_size=len(docs), report_to=[], use_cpu=True)
    trainer = Trainer(model=model, args=args, data_collator=DataCollatorWithFlattening())
    with torch.no_grad():
        padded_loss = model(ids, attention_mask=mask, labels=labels).loss
        packed_loss = trainer.compute_loss(model, dict(packed))
        mixed = model(packed["input_ids"], labels=packed["labels"]).loss  # the row as one sequence
    torch.testing.assert_close(packed_loss, padded_loss, atol=ATOL, rtol=ATOL)
    assert abs(mixed.item() - padded_loss.item()) > 100 * ATOL


def test_what_cannot_keep_documents_apart_refuses_them():
    docs = documents(99)
    inputs = packed_row(docs)
    seq2seq = FastformerForConditionalGeneration(seq2seq_config())
    seq_idx = torch.cat([torch.full((len(doc),), i) for i, doc in enumerate(docs)]).unsqueeze(0)
    with pytest.raises(ValueError, match="packs several documents.*an encoder-decoder model"):
        seq2seq(inputs["input_ids"], decoder_input_ids=inputs["input_ids"][:, :4], seq_idx=seq_idx)
    causal = FastformerForCausalLM(causal_config())
    cache = causal(docs[0].unsqueeze(0), use_cache=True).cache
    with pytest.raises(ValueError, match="decoding from a cache"):
        causal(**packed_row(docs), cache=cache)
    with pytest.raises(ValueError, match="FastformerForMultipleChoice.*each choice is one row"):
        FastformerForMultipleChoice(tiny_config())(
            inputs["input_ids"].unsqueeze(1), position_ids=inputs["position_ids"]
        )


# ------------------------------------------------------------------------------------------------- the op count


@pytest.mark.parametrize("case", ["encoder", "causal"])
def test_packed_op_count_does_not_grow_with_the_documents(case):
    """A packed row of 512 tokens dispatches the same number of aten ops for 2, 40 and 200 documents, forward and
    forward+backward, and at most 1.2x those of the unpacked row of the same length (one document): what the
    boundaries decide is derived once per forward (`Segments`), not again in every layer and pool, and nothing loops
    over documents (issue #25: at most 1.2x at 65,536 tokens; `benchmarks/benchmark_packing.py`)."""
    model_class, options, output = CASES[case]
    model = model_class(tiny_config(max_position_embeddings=512, **options)).eval()
    generator = torch.Generator().manual_seed(0)
    counts = {}
    for count in (1, 2, 40, 200):
        cuts = (torch.randperm(511, generator=generator)[: count - 1] + 1).sort().values.tolist()
        lengths = [end - start for start, end in zip([0, *cuts], [*cuts, 512])]
        inputs = dict(packed_row(documents(model.config.vocab_size, lengths)), use_cache=False)
        with torch.no_grad(), CountOps() as forward:
            model(**inputs)
        with CountOps() as forward_backward:
            output(model(**inputs)).sum().backward()
        counts[count] = (forward.count, forward_backward.count)
    assert counts[2] == counts[40] == counts[200], counts
    assert counts[2][0] <= 1.2 * counts[1][0] and counts[2][1] <= 1.2 * counts[1][1], counts
