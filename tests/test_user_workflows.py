"""Regression tests for the defects found by using the package as Hugging Face users do (issue #23): packed batches
accepted silently, a causal LM loaded from an encoder-decoder checkpoint, backward through a forward that continues
from a cache, feed-forward chunks that needed a multiple of the length, labels of other integer dtypes and shapes,
and checkpoints loaded into the other LayerNorm layout. Each docstring names the old behaviour it catches."""

import pytest
import torch
from helpers import assert_far, causal_config, max_difference, randomize_, seq2seq_config, tiny_config
from transformers import (
    AutoModelForCausalLM,
    DataCollatorWithFlattening,
    pipeline,
)

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


DOCUMENTS = [[5, 6, 7, 8, 9], [10, 11, 12, 13]]


def packed_batch(**collator_kwargs) -> dict:
    """Two documents packed into one row by transformers' own collator: positions 0..4 then 0..3."""
    return DataCollatorWithFlattening(**collator_kwargs)([{"input_ids": ids} for ids in DOCUMENTS])


# 1. Packed batches ---------------------------------------------------------------------------------------------


def test_packed_documents_would_mix():
    """Why packed rows need their boundaries: run as one row without them, the second document's logits differ from
    the document run alone by far more than rounding (every pool runs over the whole row)."""
    model = randomize_(FastformerForCausalLM(causal_config())).eval()
    packed = torch.tensor([sum(DOCUMENTS, [])])
    with torch.no_grad():
        together = model(packed).logits[:, len(DOCUMENTS[0]) :]
        alone = model(torch.tensor([DOCUMENTS[1]])).logits
    assert_far(together, alone, atol=1e-5)


@pytest.mark.parametrize("flash_kwargs", [False, True])
def test_sequence_classification_of_a_flattened_batch_scores_each_document(flash_kwargs):
    """`DataCollatorWithFlattening` batches (positions restarting at 0 inside a row; optionally `seq_idx` and
    `cu_seq_lens_q/k`) used to be accepted by every head and the documents pooled together into one row of logits.
    Sequence classification now gives one row of logits per document, each the document's own (the token heads:
    tests/test_packing.py)."""
    batch = packed_batch(return_seq_idx=flash_kwargs, return_flash_attn_kwargs=flash_kwargs)
    batch.pop("labels")
    model = randomize_(FastformerForSequenceClassification(tiny_config(num_labels=3))).eval()
    with torch.no_grad():
        logits = model(**batch).logits
        alone = torch.cat([model(torch.tensor([ids])).logits for ids in DOCUMENTS])
        together = model(torch.tensor([sum(DOCUMENTS, [])])).logits  # the row as one document
    assert logits.shape == (len(DOCUMENTS), 3)
    torch.testing.assert_close(logits, alone, atol=1e-4, rtol=1e-4)
    assert_far(together, alone[1:], atol=1e-4)


def test_encoder_decoder_refuses_packed_keywords():
    """The encoder-decoder passed `cu_seq_lens_q` and friends on to its encoder and decoder, which ignored them."""
    model = FastformerForConditionalGeneration(seq2seq_config()).eval()
    with pytest.raises(ValueError, match="packs several documents.*encoder-decoder model"):
        model(
            input_ids=torch.tensor([[5, 6, 7]]),
            decoder_input_ids=torch.tensor([[1, 5]]),
            cu_seq_lens_q=torch.tensor([0, 2, 3]),
        )


def test_positions_that_do_not_restart_are_accepted():
    """The packing check must not refuse ordinary rows: explicit `arange` positions, and `generate()`'s positions
    of a left-padded batch (padding at position 1, then 0, 1, 2 for the real tokens) give the same logits as the
    model's own positions."""
    model = randomize_(FastformerForCausalLM(causal_config())).eval()
    input_ids = torch.tensor([[0, 0, 5, 6, 7], [4, 5, 6, 7, 8]])
    attention_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
    with torch.no_grad():
        given = model(input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True)
        assert given.cache is not None  # not taken for a packed row, which decodes without a cache
        given = given.logits
        own = model(input_ids, attention_mask=attention_mask).logits
        model(input_ids, position_ids=torch.arange(5).expand(2, 5))
    torch.testing.assert_close(given[attention_mask.bool()], own[attention_mask.bool()])


# 2. A causal LM from an encoder-decoder checkpoint -----------------------------------------------------------------


def test_causal_lm_refuses_an_encoder_decoder_checkpoint(tmp_path):
    """`AutoModelForCausalLM.from_pretrained(seq2seq_dir)` (and `pipeline("text-generation")`) loaded the encoder's
    weights into causal layers, dropped the decoder's, kept `is_encoder_decoder=True`, and `generate()` then crashed
    with a `TypeError` about `output_attentions`."""
    FastformerForConditionalGeneration(seq2seq_config()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="AutoModelForSeq2SeqLM"):
        AutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="encoder-decoder config"):
        pipeline("text-generation", model=str(tmp_path))
    with pytest.raises(ValueError, match="encoder-decoder config"):
        FastformerForCausalLM(seq2seq_config())


# 3. Backward through a forward that continues from a cache ---------------------------------------------------------


def test_backward_through_a_continued_forward_equals_one_forward():
    """`lm(b, cache=lm(a, use_cache=True).cache, labels=b).loss.backward()` raised "modified by an inplace
    operation" (the state was copied into the tensor the first forward had returned). Now the gradients are those of
    one forward over `a + b` scoring the same targets (truncated backpropagation through time keeps working by
    detaching the state)."""
    model = randomize_(FastformerForCausalLM(causal_config()))
    a, b = torch.randint(3, 99, (2, 7)), torch.randint(3, 99, (2, 6))
    first = model(a, use_cache=True)
    model(b, cache=first.cache, labels=b).loss.backward()
    segmented = {name: param.grad for name, param in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    labels = torch.cat([torch.full((2, 8), -100), b[:, 1:]], dim=1)  # the targets b[1:], predicted from a + b[:-1]
    model(torch.cat([a, b], dim=1), labels=labels).loss.backward()
    whole = {name: param.grad for name, param in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model(b, labels=b).loss.backward()  # without the context: the comparison can fail
    name = "fastformer.embeddings.word_embeddings.weight"
    assert_far(segmented[name], dict(model.named_parameters())[name].grad, atol=1e-5)
    for name, grad in whole.items():
        torch.testing.assert_close(segmented[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_detached_state_trains_in_segments():
    """Truncated backpropagation through time: with the carried state detached, each segment's backward stays in
    its segment and a second segment's backward works after the first's."""
    model = randomize_(FastformerForCausalLM(causal_config()))
    stream = torch.randint(3, 99, (2, 18))
    cache = None
    for segment in stream.split(6, dim=1):
        out = model(segment, cache=cache, labels=segment, use_cache=True)
        out.loss.backward()
        cache = out.cache
        for layer in cache.layers:
            for slot, state in layer.recurrent_states.items():
                if state is not None:
                    layer.recurrent_states[slot] = state.detach()
    assert all(param.grad is not None and torch.isfinite(param.grad).all() for param in model.parameters())


# 9. Feed-forward chunks that do not divide the length ---------------------------------------------------------------


@pytest.mark.parametrize("length", [10, 7, 1])
def test_feed_forward_chunks_with_a_remainder(length):
    """`chunk_size_feed_forward=4` crashed unless the length was a multiple of 4 (transformers'
    `apply_chunking_to_forward`): in every `generate()` step and at 10 tokens. Now the last chunk is shorter and the
    output equals the unchunked layer's."""
    plain = randomize_(FastformerModel(tiny_config())).eval()
    chunked = FastformerModel(tiny_config(chunk_size_feed_forward=4)).eval()
    chunked.load_state_dict(plain.state_dict())
    input_ids = torch.randint(3, 99, (2, length))
    with torch.no_grad():
        torch.testing.assert_close(chunked(input_ids).last_hidden_state, plain(input_ids).last_hidden_state)


def test_generate_and_sequence_chunks_with_feed_forward_chunks():
    """`generate()` (one token a step) and a 24-token input in sequence chunks of 10 (a last chunk of 4) crashed
    with `chunk_size_feed_forward=4`; both now match the model without feed-forward chunks."""
    config = causal_config(chunk_size_feed_forward=4)
    plain = randomize_(FastformerForCausalLM(causal_config())).eval()
    chunked = FastformerForCausalLM(config).eval()
    chunked.load_state_dict(plain.state_dict())
    prompt = torch.tensor([[1, 5, 6]])
    generated = chunked.generate(prompt, max_new_tokens=5, do_sample=False)
    assert torch.equal(generated, plain.generate(prompt, max_new_tokens=5, do_sample=False))
    sequence_chunked = FastformerForCausalLM(causal_config(chunk_size_feed_forward=4, sequence_chunk_size=10)).eval()
    sequence_chunked.load_state_dict(plain.state_dict())
    input_ids = torch.randint(3, 99, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(sequence_chunked(input_ids).logits, plain(input_ids).logits, atol=1e-4, rtol=1e-4)


# 11. Labels ---------------------------------------------------------------------------------------------------------


def test_sequence_classification_loss_is_zero_when_every_label_is_ignored():
    """Sequence classification gave a NaN loss when every label was -100 (the other heads give 0)."""
    model = FastformerForSequenceClassification(tiny_config(num_labels=3))
    loss = model(torch.randint(3, 99, (2, 6)), labels=torch.tensor([-100, -100])).loss
    assert loss.item() == 0.0
    loss.backward()
    assert all(torch.isfinite(param.grad).all() for param in model.parameters() if param.grad is not None)


def _head_inputs(model_class, dtype):
    input_ids = torch.randint(3, 99, (2, 6))
    if model_class is FastformerForMultipleChoice:
        return {"input_ids": input_ids.view(2, 1, 6).expand(2, 3, 6), "labels": torch.tensor([2, 0], dtype=dtype)}
    if model_class is FastformerForSequenceClassification:
        return {"input_ids": input_ids, "labels": torch.tensor([1, 2], dtype=dtype)}
    if model_class is FastformerForQuestionAnswering:
        positions = torch.tensor([1, 4], dtype=dtype)
        return {"input_ids": input_ids, "start_positions": positions, "end_positions": positions + 1}
    labels = torch.randint(0, 3, (2, 6), dtype=dtype)
    return {"input_ids": input_ids, "labels": labels}


@pytest.mark.parametrize(
    "model_class",
    [
        FastformerForSequenceClassification,
        FastformerForTokenClassification,
        FastformerForMultipleChoice,
        FastformerForMaskedLM,
        FastformerForQuestionAnswering,
        FastformerForCausalLM,
    ],
)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_integer_class_ids_of_every_dtype(model_class, dtype):
    """int32 class ids passed every check and then crashed inside cross-entropy ("expected scalar type Long") in
    the classification heads, and int16/uint8 ids were taken for multi-label targets: any integer dtype now gives
    the int64 loss."""
    config = causal_config(num_labels=3) if model_class is FastformerForCausalLM else tiny_config(num_labels=3)
    model = randomize_(model_class(config)).eval()
    inputs = _head_inputs(model_class, dtype)
    reference = {key: value.long() if key != "input_ids" else value for key, value in inputs.items()}
    with torch.no_grad():
        loss = model(**inputs).loss
        torch.testing.assert_close(loss, model(**reference).loss)
    if model_class is FastformerForSequenceClassification:
        assert model.config.problem_type == "single_label_classification"


def test_regression_labels_must_match_the_number_of_targets():
    """Regression with `num_labels > 1` silently broadcast `(batch,)` labels against `(batch, num_labels)` logits."""
    model = FastformerForSequenceClassification(tiny_config(num_labels=2, problem_type="regression"))
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        model(torch.randint(3, 99, (2, 6)), labels=torch.tensor([0.5, 1.5]))
    assert model(torch.randint(3, 99, (2, 6)), labels=torch.rand(2, 2)).loss is not None
    single = FastformerForSequenceClassification(tiny_config(num_labels=1))
    assert single(torch.randint(3, 99, (2, 6)), labels=torch.tensor([0.5, 1.5])).loss is not None


@pytest.mark.parametrize("outside", [-1, -100, 6, 50])
def test_question_answering_ignores_every_position_outside_the_input(outside):
    """The QA docstring said positions outside the input are ignored, but -1 was clamped to 0 and trained as the
    first token. An example with a position outside `[0, seq)` is now ignored (a span without its start is no
    target): the loss equals the loss of the other example alone, in both terms."""
    model = randomize_(FastformerForQuestionAnswering(tiny_config())).eval()
    input_ids = torch.randint(3, 99, (2, 6))
    ends = torch.tensor([3, 4])
    with torch.no_grad():
        out = model(input_ids)
        loss = model(input_ids, start_positions=torch.tensor([outside, 2]), end_positions=ends).loss
        as_first = model(input_ids, start_positions=torch.tensor([0, 2]), end_positions=ends).loss
    cross_entropy = torch.nn.functional.cross_entropy
    expected = (
        cross_entropy(out.start_logits[1:], torch.tensor([2])) + cross_entropy(out.end_logits[1:], ends[1:])
    ) / 2
    torch.testing.assert_close(loss, expected)
    assert max_difference(loss, as_first) > 1e-3  # the old behaviour (trained as position 0) differs


# 12. Layouts --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("saved, requested", [("post", "pre"), ("pre", "post")])
@pytest.mark.parametrize("model_class", [FastformerForMaskedLM, FastformerModel])
def test_a_checkpoint_loads_only_into_its_own_layout(tmp_path, saved, requested, model_class):
    """A post-LN checkpoint loaded into a `layer_norm_position="pre"` override (and the reverse) with only
    transformers' load report: the LayerNorms took other roles and the logits moved by up to 39."""
    FastformerForMaskedLM(tiny_config(layer_norm_position=saved)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"layer_norm_position='{saved}'"):
        model_class.from_pretrained(tmp_path, layer_norm_position=requested)
    model, info = model_class.from_pretrained(tmp_path, output_loading_info=True)  # its own layout loads
    assert model.config.layer_norm_position == saved and not info["missing_keys"]


# 10. A row without any real token ------------------------------------------------------------------------------------


def test_a_row_without_real_tokens_does_not_depend_on_its_padding():
    """A row whose attention mask is all 0 got uniform weights over its positions, so its outputs depended on how
    much padding it had (and a sequence-parallel run, which pads to a multiple of the processes, differed from one
    process). Such a row now pools to 0 in every encoder pool and the attention pooler: its first positions are the
    same at any padded length."""
    model = randomize_(FastformerForSequenceClassification(tiny_config(num_labels=3))).eval()
    short, long = torch.randint(3, 99, (1, 5)), torch.randint(3, 99, (1, 9))
    long[:, :5] = short
    with torch.no_grad():
        out_short = model(short, attention_mask=torch.zeros_like(short), output_hidden_states=True)
        out_long = model(
            long, attention_mask=torch.zeros_like(long), output_hidden_states=True, output_attentions=True
        )
        unmasked = model(long, output_hidden_states=True)
    torch.testing.assert_close(out_short.hidden_states[-1], out_long.hidden_states[-1][:, :5])
    torch.testing.assert_close(out_short.logits, out_long.logits)
    assert_far(out_long.hidden_states[-1][:, :5], unmasked.hidden_states[-1][:, :5], atol=1e-5)
    assert torch.count_nonzero(out_long.attentions[0]) == 0  # alpha and beta are all 0
