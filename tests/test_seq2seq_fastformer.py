"""FastformerForConditionalGeneration: both cross-attention types, the cache, generate(), pipeline, trainers."""

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import assert_far, randomize_, seq2seq_config
from reference import additive_cross_attention, seq2seq_logits
from toys import toy_tokenizer
from transformers import AutoModelForSeq2SeqLM

from fastformer import FastformerForConditionalGeneration
from fastformer.modeling_fastformer import FastformerAdditiveCrossAttention, FastformerCrossAttention


CROSS_TYPES = ["scaled_dot_product", "additive"]


def seq2seq_model(seed=0, **kwargs):
    """A `FastformerForConditionalGeneration` at weights large enough that tokens mix (`helpers.randomize_`)."""
    return randomize_(FastformerForConditionalGeneration(seq2seq_config(**kwargs)), seed=seed).eval()


def source_batch(lengths=(40, 23)):
    width = max(lengths)
    input_ids = torch.zeros(len(lengths), width, dtype=torch.long)
    attention_mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        input_ids[i, :n] = torch.randint(3, 99, (n,))
        attention_mask[i, :n] = 1
    return input_ids, attention_mask


# ------------------------------------------------------------------------------- cross-attention, independently


def test_scaled_dot_product_cross_attention_equals_plain_softmax_attention():
    config = seq2seq_config()
    attention = randomize_(FastformerCrossAttention(config))
    x, memory = torch.randn(2, 7, 32), torch.randn(2, 11, 32)
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[1, 6:] = 0
    out = attention(x, memory, mask)[0]
    heads, d = 4, 8
    q = attention.query(x).view(2, 7, heads, d).transpose(1, 2)
    k = attention.key(memory).view(2, 11, heads, d).transpose(1, 2)
    v = attention.value(memory).view(2, 11, heads, d).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(mask[:, None, None, :] == 0, -math.inf)
    expected = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(2, 7, 32)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout, share_query_value", [("dense", True), ("per_head", True), ("dense", False)])
def test_additive_cross_attention_equals_the_equations(layout, share_query_value):
    """Section 8.3, token by token in float64 from the state dict (no production helper): p_tj = G_t * k_j,
    beta_t = softmax_j(w_k . p_tj / sqrt(d)). Catches key logits computed with the query weights, a dense probe
    restricted to its head, a missing scale, the encoder mask ignored, the value projection ignored."""
    config = seq2seq_config(attention_logit_layout=layout, share_query_value=share_query_value)
    attention = randomize_(FastformerAdditiveCrossAttention(config), std=0.5)
    x, memory = torch.randn(2, 6, 32), torch.randn(2, 9, 32)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, 5:] = 0
    with torch.no_grad():
        out = attention(x, memory, mask)[0]
    sd = {f"x.{k}": v.double() for k, v in attention.state_dict().items()}
    keep = torch.ones(2, 6, dtype=torch.bool)
    expected = additive_cross_attention(sd, "x", x.double(), keep, memory.double(), mask, 4)
    torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-5)  # the prefix pool runs in float32
    unmasked = additive_cross_attention(sd, "x", x.double(), keep, memory.double(), torch.ones_like(mask), 4)
    assert_far(out[0], unmasked[0], atol=1e-4)


@pytest.mark.parametrize("cross_attention_type", CROSS_TYPES)
@pytest.mark.parametrize(
    "layout, share_query_value, share_layer_parameters",
    [("dense", True, False), ("per_head", False, False), ("dense", False, True)],
)
def test_seq2seq_equals_the_reference_with_padding_on_both_sides(
    cross_attention_type, layout, share_query_value, share_layer_parameters
):
    """The whole encoder-decoder against the float64 reference (encoder, causal decoder layers, cross-attention of
    either type, shared embeddings, head), with source padding and a `decoder_attention_mask` holding zeros (left
    padding and a hole). Catches decoder padding ignored by the self- or the additive cross-attention's prefix
    pools, the encoder mask ignored, cross-attention math and layer-sharing bugs."""
    config = seq2seq_config(
        cross_attention_type=cross_attention_type,
        attention_logit_layout=layout,
        share_query_value=share_query_value,
        share_layer_parameters=share_layer_parameters,
    )
    model = randomize_(FastformerForConditionalGeneration(config)).eval()
    input_ids, attention_mask = source_batch(lengths=(15, 9))
    decoder_input_ids = torch.randint(3, 99, (2, 10))
    decoder_mask = torch.ones_like(decoder_input_ids)
    decoder_mask[1, :3] = 0  # left padding
    decoder_mask[0, 5] = 0  # a hole
    with torch.no_grad():
        logits = model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_mask,
        ).logits
        unmasked = model(input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
    expected = seq2seq_logits(model.state_dict(), config, input_ids, attention_mask, decoder_input_ids, decoder_mask)
    real = decoder_mask.bool()
    torch.testing.assert_close(logits[real].double(), expected[real], atol=5e-4, rtol=1e-5)  # measured: 7e-5
    assert_far(logits[real], unmasked[real], atol=5e-4)  # the decoder padding matters


# ------------------------------------------------------------------------- incremental == teacher-forced


@pytest.mark.parametrize("cross_attention_type", CROSS_TYPES)
def test_incremental_decoding_equals_teacher_forced_forward(cross_attention_type):
    """Decoding through the cache (prefill of 1 and of 8 tokens, then one at a time) gives the teacher-forced
    logits: catches a decoder state that is not read or not written, cross-attention projections cached for the
    wrong layer, and (with the no-source check) a decoder that ignores the source."""
    model = seq2seq_model(cross_attention_type=cross_attention_type, num_decoder_layers=3)
    input_ids, attention_mask = source_batch()
    labels = torch.randint(3, 99, (2, 30))
    with torch.no_grad():
        full = model(input_ids, attention_mask=attention_mask, labels=labels).logits
        other_source = model(
            torch.randint(3, 99, input_ids.shape), attention_mask=attention_mask, labels=labels
        ).logits
        decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels)
        encoder_outputs = model.get_encoder()(input_ids, attention_mask=attention_mask)
        cache, pieces = None, []
        for start, end in [(0, 1), (1, 9), (9, 10)] + [(t, t + 1) for t in range(10, 30)]:
            out = model(
                encoder_outputs=encoder_outputs,
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids[:, start:end],
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            pieces.append(out.logits)
    assert cache.get_seq_length() == 30
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=5e-4, rtol=0)  # measured: <= 5e-5
    assert_far(other_source, full, atol=5e-4)


@pytest.mark.parametrize("cross_attention_type", CROSS_TYPES)
def test_incremental_decoding_with_decoder_padding_equals_teacher_forced(cross_attention_type):
    """Left-padded decoder inputs decoded through the cache give the teacher-forced logits at the real positions,
    and those of the unpadded rows (catches decoder padding that enters a prefix pool of the decoding state)."""
    model = seq2seq_model(cross_attention_type=cross_attention_type)
    input_ids, attention_mask = source_batch()
    decoder_input_ids = torch.randint(3, 99, (2, 12))
    decoder_mask = torch.ones_like(decoder_input_ids)
    decoder_mask[1, :4] = 0
    with torch.no_grad():
        encoder_outputs = model.get_encoder()(input_ids, attention_mask=attention_mask)
        full = model(
            encoder_outputs=encoder_outputs,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_mask,
        ).logits
        cache, pieces = None, []
        for start, end in [(0, 5)] + [(t, t + 1) for t in range(5, 12)]:
            out = model(
                encoder_outputs=encoder_outputs,
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids[:, start:end],
                decoder_attention_mask=decoder_mask[:, :end],
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            pieces.append(out.logits)
        alone = model(
            input_ids[1:], attention_mask=attention_mask[1:], decoder_input_ids=decoder_input_ids[1:, 4:]
        ).logits
        unmasked = model(
            encoder_outputs=encoder_outputs, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
        ).logits
    real = decoder_mask.bool()
    torch.testing.assert_close(torch.cat(pieces, 1)[real], full[real], atol=5e-4, rtol=0)
    torch.testing.assert_close(full[1, 4:], alone[0], atol=5e-4, rtol=0)
    assert_far(unmasked[1, 4:], alone[0], atol=5e-4)


@pytest.mark.parametrize("cross_attention_type", CROSS_TYPES)
def test_source_padding_does_not_change_the_logits(cross_attention_type):
    """Source padding (with arbitrary ids) changes nothing: catches an encoder or cross-attention mask that is
    ignored; the unmasked padded source is checked to be far off."""
    model = seq2seq_model(cross_attention_type=cross_attention_type)
    source = torch.randint(3, 99, (1, 15))
    padded = torch.cat([source, torch.randint(3, 99, (1, 9))], dim=1)
    mask = torch.cat([torch.ones(1, 15), torch.zeros(1, 9)], dim=1).long()
    labels = torch.randint(3, 99, (1, 8))
    with torch.no_grad():
        expected = model(source, labels=labels).logits
        torch.testing.assert_close(
            model(padded, attention_mask=mask, labels=labels).logits, expected, atol=1e-4, rtol=0
        )
        assert_far(model(padded, labels=labels).logits, expected, atol=1e-4)


@pytest.mark.parametrize("cross_attention_type", CROSS_TYPES)
def test_beam_search_with_and_without_cache_gives_the_same_sequences(cross_attention_type):
    model = seq2seq_model(cross_attention_type=cross_attention_type)
    input_ids, attention_mask = source_batch()
    kwargs = dict(attention_mask=attention_mask, num_beams=4, max_new_tokens=20, min_new_tokens=20, do_sample=False)
    with_cache = model.generate(input_ids, use_cache=True, **kwargs)
    without_cache = model.generate(input_ids, use_cache=False, **kwargs)
    assert with_cache.shape == (2, 21)
    assert torch.equal(with_cache, without_cache)


@pytest.mark.parametrize("cross_attention_type", CROSS_TYPES)
def test_beam_reordering_moves_the_decoder_state_and_keeps_the_shared_encoder_projections(cross_attention_type):
    """`_reorder_cache` moves every decoder state to its beam and leaves the encoder projections in place (not
    copied); decoding on from the reordered cache gives the logits of the reordered prefixes run from scratch
    (catches a state left behind or the projections of one batch item moved to another)."""
    model = seq2seq_model(cross_attention_type=cross_attention_type)
    beams = 3
    input_ids, attention_mask = source_batch()
    encoder_outputs = model.get_encoder()(input_ids, attention_mask=attention_mask)
    memory = encoder_outputs.last_hidden_state.repeat_interleave(beams, dim=0)  # as generate() expands it
    mask = attention_mask.repeat_interleave(beams, dim=0)
    decoder_input_ids = torch.randint(3, 99, (2 * beams, 4))
    with torch.no_grad():
        cache = model(
            encoder_outputs=(memory,), attention_mask=mask, decoder_input_ids=decoder_input_ids, use_cache=True
        ).cache
    beam_idx = torch.tensor([2, 0, 0, 4, 5, 3])  # each batch item picks among its own beams
    states = [s.clone() for s in cache.self_attention_cache.layers[0].recurrent_states.values() if s is not None]
    cross_keys = cache.cross_attention_cache.layers[0].keys
    assert model._reorder_cache(cache, beam_idx) is cache
    moved = [s for s in cache.self_attention_cache.layers[0].recurrent_states.values() if s is not None]
    for before, after in zip(states, moved, strict=True):
        torch.testing.assert_close(after, before[beam_idx], atol=0, rtol=0)
    assert cache.cross_attention_cache.layers[0].keys is cross_keys  # not copied
    next_tokens = torch.randint(3, 99, (2 * beams, 1))
    reordered = torch.cat([decoder_input_ids[beam_idx], next_tokens], dim=1)
    with torch.no_grad():
        continued = model(
            encoder_outputs=(memory,), attention_mask=mask, decoder_input_ids=next_tokens, cache=cache, use_cache=True
        ).logits[:, -1]
        from_scratch = model(encoder_outputs=(memory,), attention_mask=mask, decoder_input_ids=reordered).logits[:, -1]
        unordered = model(
            encoder_outputs=(memory,),
            attention_mask=mask,
            decoder_input_ids=torch.cat([decoder_input_ids, next_tokens], dim=1),
        ).logits[:, -1]
    torch.testing.assert_close(continued, from_scratch, atol=5e-4, rtol=0)
    assert_far(unordered, from_scratch, atol=5e-4)


@pytest.mark.parametrize("cross_attention_type", CROSS_TYPES)
def test_encoder_runs_once_in_generate(cross_attention_type):
    model = seq2seq_model(cross_attention_type=cross_attention_type)
    calls = []
    model.get_encoder().register_forward_hook(lambda *args: calls.append(1))
    input_ids, attention_mask = source_batch()
    model.generate(input_ids, attention_mask=attention_mask, num_beams=2, max_new_tokens=6, min_new_tokens=6)
    assert len(calls) == 1


# --------------------------------------------------------------------------------------- learning and tools


DOCUMENTS = [
    ("w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20 w21", "w12 w15 w19"),
    ("w30 w31 w32 w33 w34 w35 w36 w37 w38", "w33 w30"),
    ("w50 w51 w52 w53 w54 w55 w56 w57 w58 w59 w60 w61 w62 w63", "w63 w51 w55 w57"),
    ("w70 w71 w72 w73 w74 w75 w76", "w76 w70"),
]


@pytest.mark.parametrize("cross_attention_type", CROSS_TYPES)
def test_tiny_model_overfits_and_generate_reproduces_the_summaries(cross_attention_type):
    torch.manual_seed(0)
    tokenizer = toy_tokenizer()
    model = FastformerForConditionalGeneration(seq2seq_config(cross_attention_type=cross_attention_type))
    batch = tokenizer([d for d, _ in DOCUMENTS], padding=True, return_tensors="pt")
    labels = tokenizer([s + " </s>" for _, s in DOCUMENTS], padding=True, return_tensors="pt").input_ids
    labels = labels.masked_fill(labels == tokenizer.pad_token_id, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(300):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    generated = model.generate(**batch, num_beams=3, max_new_tokens=8)
    summaries = tokenizer.batch_decode(generated, skip_special_tokens=True)
    assert summaries == [s for _, s in DOCUMENTS], (loss.item(), summaries)


def test_seq2seq_trainer_with_predict_with_generate(tmp_path):
    datasets = pytest.importorskip("datasets")
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    tokenizer = toy_tokenizer()
    model = FastformerForConditionalGeneration(seq2seq_config())
    rows = [
        {"input_ids": tokenizer(d).input_ids, "labels": tokenizer(s + " </s>").input_ids} for d, s in DOCUMENTS * 4
    ]
    dataset = datasets.Dataset.from_list(rows)
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        num_train_epochs=2,
        learning_rate=1e-3,
        predict_with_generate=True,
        generation_max_length=8,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset.select(range(4)),
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        processing_class=tokenizer,
    )
    trainer.train()
    prediction = trainer.predict(dataset.select(range(4)))
    tokens = torch.as_tensor(prediction.predictions)
    assert tokens.shape[0] == 4 and not tokens.is_floating_point()
    assert ((tokens >= 0) & (tokens < 99) | (tokens == -100)).all()  # generated ids (or the padding of -100)
    assert math.isfinite(prediction.metrics["test_loss"])


# ------------------------------------------------------------------------------------------ save and load


def test_save_load_round_trip_and_shared_embeddings(tmp_path):
    """Every parameter (random biases and LayerNorms) survives save/load and the three embedding uses stay one
    tensor: a lost key would reload at its fresh initialisation, far from the saved model."""
    model = seq2seq_model(cross_attention_type="additive", share_layer_parameters=True)
    shared = model.fastformer.embeddings.word_embeddings.weight
    assert model.lm_head.weight is shared and model.decoder.embeddings.word_embeddings.weight is shared
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is FastformerForConditionalGeneration
    assert loaded.lm_head.weight is loaded.fastformer.embeddings.word_embeddings.weight
    input_ids, attention_mask = source_batch()
    labels = torch.randint(3, 99, (2, 12))
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask, labels=labels).logits
        torch.testing.assert_close(
            loaded(input_ids, attention_mask=attention_mask, labels=labels).logits, expected, atol=1e-5, rtol=1e-5
        )
        fresh = FastformerForConditionalGeneration(model.config).eval()
        assert_far(fresh(input_ids, attention_mask=attention_mask, labels=labels).logits, expected, atol=1e-5)


REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["fastformer"] = None  # only the checkpoint's own code may be used
    import torch
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    data = json.load(open(sys.argv[2]))
    ids, mask = torch.tensor(data["input_ids"]), torch.tensor(data["attention_mask"])
    out = model.generate(ids, attention_mask=mask, num_beams=2, max_new_tokens=8, min_new_tokens=8)
    print(json.dumps({"module": type(model).__module__, "generated": out.tolist()}))
    """
)


def test_trust_remote_code_round_trip(tmp_path):
    model = seq2seq_model(cross_attention_type="additive")
    model.save_pretrained(tmp_path / "checkpoint")
    input_ids, attention_mask = source_batch()
    (tmp_path / "inputs.json").write_text(
        json.dumps({"input_ids": input_ids.tolist(), "attention_mask": attention_mask.tolist()})
    )
    (tmp_path / "load.py").write_text(REMOTE_CODE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-P", "load.py", "checkpoint", "inputs.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["module"].startswith("transformers_modules.")
    expected = model.generate(
        input_ids, attention_mask=attention_mask, num_beams=2, max_new_tokens=8, min_new_tokens=8
    )
    assert loaded["generated"] == expected.tolist()


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_seq2seq_inputs_raise_clear_errors():
    model = seq2seq_model(max_position_embeddings=32)
    labels = torch.randint(3, 99, (1, 5))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.randint(3, 99, (1, 33)), labels=labels)
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.randint(3, 99, (1, 10)), attention_mask=torch.ones(1, 11), labels=labels)
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(torch.randint(3, 99, (1, 10)))
    with pytest.raises(ValueError, match="decoder_attention_mask"):
        model(torch.randint(3, 99, (1, 10)), labels=labels, decoder_attention_mask=torch.ones(1, 6))
    with pytest.raises(ValueError, match="labels"):
        model(torch.randint(3, 99, (1, 10)), labels=torch.tensor([[5, 7, 120]]))
    no_start = FastformerForConditionalGeneration(seq2seq_config(decoder_start_token_id=None))
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        no_start(torch.randint(3, 99, (1, 10)), labels=labels)
    with pytest.raises(ValueError, match="cross_attention_type"):
        seq2seq_config(cross_attention_type="linear")


def test_loss_is_the_token_mean_and_honours_num_items_in_batch():
    model = seq2seq_model()
    input_ids, attention_mask = source_batch()
    labels = torch.randint(3, 99, (2, 9))
    labels[1, 6:] = -100  # a shorter summary, padded with -100
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    flat_logits, flat_labels = out.logits.reshape(-1, 99), labels.reshape(-1)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(flat_logits, flat_labels))
    summed = torch.nn.functional.cross_entropy(flat_logits, flat_labels, reduction="sum")
    with_items = model(input_ids, attention_mask=attention_mask, labels=labels, num_items_in_batch=40).loss
    torch.testing.assert_close(with_items, summed / 40)
    # every label ignored: zero, not the NaN of `CrossEntropyLoss`'s mean over no tokens
    nothing = model(input_ids, attention_mask=attention_mask, labels=torch.full_like(labels, -100)).loss
    assert nothing.item() == 0.0


def test_labels_that_are_a_strided_view_give_the_loss_of_their_copy():
    # a slice of a wider tensor (e.g. `ids[:, :9]`) is not contiguous; the loss flattens its targets with `view`
    model = seq2seq_model()
    input_ids, attention_mask = source_batch()
    wide = torch.randint(3, 99, (2, 15))
    labels = wide[:, :9]
    assert not labels.is_contiguous()
    loss = model(input_ids, attention_mask=attention_mask, labels=labels).loss
    torch.testing.assert_close(loss, model(input_ids, attention_mask=attention_mask, labels=labels.clone()).loss)
