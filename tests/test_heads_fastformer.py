"""Masked-LM, token-classification, question-answering and multiple-choice heads."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_far, randomize_, tiny_config
from test_modeling_fastformer import random_batch
from toys import toy_tokenizer
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForTokenClassification,
    DataCollatorForLanguageModeling,
    pipeline,
)

from fastformer import (
    FastformerForMaskedLM,
    FastformerForMultipleChoice,
    FastformerForQuestionAnswering,
    FastformerForTokenClassification,
)


HEADS = {
    "AutoModelForMaskedLM": (AutoModelForMaskedLM, FastformerForMaskedLM),
    "AutoModelForTokenClassification": (AutoModelForTokenClassification, FastformerForTokenClassification),
    "AutoModelForQuestionAnswering": (AutoModelForQuestionAnswering, FastformerForQuestionAnswering),
    "AutoModelForMultipleChoice": (AutoModelForMultipleChoice, FastformerForMultipleChoice),
}


def build(head, **kwargs):
    """A head at weights large enough that tokens mix (see `helpers.randomize_`)."""
    return randomize_(head(tiny_config(**kwargs))).eval()


def mask_tokenizer():
    """The toy word-level tokenizer (w0..w94) plus a `<mask>` token, id 99: 100 ids in all."""
    tokenizer = toy_tokenizer()
    tokenizer.add_special_tokens({"mask_token": "<mask>"})
    assert tokenizer.mask_token_id == 99 and len(tokenizer) == 100
    return tokenizer


def inputs_of(model, input_ids, attention_mask):
    if isinstance(model, FastformerForMultipleChoice):  # two choices per row: the row and the row before it
        pair = lambda x: torch.stack([x, x.roll(1, dims=0)], dim=1)  # noqa: E731
        return pair(input_ids), pair(attention_mask)
    return input_ids, attention_mask


# ------------------------------------------------------------------------------------------------ masked LM


def test_masked_lm_logits_and_loss_equal_an_independent_computation():
    model = build(FastformerForMaskedLM, hidden_act="gelu")
    input_ids, attention_mask = random_batch(model.config)
    labels = torch.full_like(input_ids, -100)
    labels[0, [1, 5, 9]] = torch.tensor([4, 50, 98])
    labels[1, 2] = 7
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    with torch.no_grad():
        hidden = model.fastformer(input_ids, attention_mask=attention_mask).last_hidden_state
        head = model.lm_head
        h = F.gelu(hidden @ head.dense.weight.T + head.dense.bias)
        h = F.layer_norm(h, (32,), head.LayerNorm.weight, head.LayerNorm.bias, eps=model.config.layer_norm_eps)
        logits = h @ model.fastformer.embeddings.word_embeddings.weight.T + head.decoder.bias
        picked = labels != -100
        expected = -logits.log_softmax(-1)[picked].gather(-1, labels[picked].unsqueeze(-1)).mean()
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("head", [FastformerForMaskedLM, FastformerForTokenClassification])
def test_token_losses_divide_by_num_items_in_batch_from_the_trainer(head):
    """With `num_items_in_batch` (the labelled tokens of the whole optimizer step), micro-batch losses add up to the
    token mean of the global batch: two halves give the loss and gradient of the whole batch."""
    model = build(head, num_labels=5)
    assert model.accepts_loss_kwargs
    input_ids, attention_mask = random_batch(model.config, batch=4, lengths=(12, 7, 3, 9))
    labels = torch.randint(0, 5, input_ids.shape).masked_fill(attention_mask == 0, -100)
    labels[:, ::2] = -100
    whole = model(input_ids, attention_mask=attention_mask, labels=labels).loss
    count = int((labels != -100).sum())
    halves = sum(
        model(input_ids[rows], attention_mask=attention_mask[rows], labels=labels[rows], num_items_in_batch=count).loss
        for rows in (slice(0, 2), slice(2, 4))
    )
    torch.testing.assert_close(halves, whole)


def test_masked_lm_without_masked_tokens_has_zero_loss_not_nan():
    model = build(FastformerForMaskedLM)
    input_ids, attention_mask = random_batch(model.config)
    model.train()
    out = model(input_ids, attention_mask=attention_mask, labels=torch.full_like(input_ids, -100))
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_masked_lm_decoder_is_tied_and_stays_tied_through_save_load_and_resize(tmp_path):
    model = build(FastformerForMaskedLM, share_layer_parameters=True)
    embeddings = model.fastformer.embeddings.word_embeddings
    assert model.lm_head.decoder.weight is embeddings.weight
    assert model.get_output_embeddings() is model.lm_head.decoder
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is FastformerForMaskedLM
    assert loaded.lm_head.decoder.weight is loaded.fastformer.embeddings.word_embeddings.weight
    input_ids, attention_mask = random_batch(model.config)
    with torch.no_grad():
        assert torch.equal(
            loaded(input_ids, attention_mask=attention_mask).logits,
            model(input_ids, attention_mask=attention_mask).logits,
        )
    # A gradient step on the loaded model moves both ends of the tie together.
    loaded.train()
    loaded(input_ids, labels=input_ids).loss.backward()
    torch.optim.SGD(loaded.parameters(), lr=1.0).step()
    assert loaded.lm_head.decoder.weight is loaded.fastformer.embeddings.word_embeddings.weight
    loaded.resize_token_embeddings(120)
    assert loaded.lm_head.decoder.weight is loaded.fastformer.embeddings.word_embeddings.weight
    assert loaded.lm_head.decoder.bias.shape == (120,) and loaded.config.vocab_size == 120
    assert loaded(torch.tensor([[119, 3]])).logits.shape == (1, 2, 120)


def test_masked_lm_trains_on_data_collator_for_language_modeling_batches():
    tokenizer = mask_tokenizer()
    model = build(FastformerForMaskedLM, vocab_size=len(tokenizer))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3, seed=0)
    # Periodic sequences: every masked word is predictable from its neighbours.
    texts = [
        " ".join(f"w{(start + 3 * i) % 60}" for i in range(n)) for start, n in [(0, 20), (5, 13), (7, 17), (2, 9)]
    ]
    features = [tokenizer(text) for text in texts]
    batch = collator(features)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert (batch["input_ids"] == tokenizer.mask_token_id).any()
    out = model(**batch)
    with torch.no_grad():
        picked = batch["labels"] != -100
        expected = F.cross_entropy(out.logits[picked], batch["labels"][picked])
    torch.testing.assert_close(out.loss, expected)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model(**collator(features)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.6 * sum(losses[:10]), losses  # from ln(100) = 4.6 to about 2.5


def test_fill_mask_pipeline_ranks_the_model_probabilities():
    tokenizer = mask_tokenizer()
    model = build(FastformerForMaskedLM, vocab_size=len(tokenizer))
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer)
    results = fill("w1 w2 <mask> w4 w5", top_k=4)
    with torch.no_grad():
        probs = model(**tokenizer("w1 w2 <mask> w4 w5", return_tensors="pt")).logits[0, 2].softmax(-1)
    top = probs.topk(4)
    assert [r["token"] for r in results] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor([r["score"] for r in results]), top.values)
    assert results[0]["sequence"].split()[2] == tokenizer.convert_ids_to_tokens(top.indices[0].item())


# ---------------------------------------------------------------------------------------- token classification


def test_token_classification_loss_ignores_minus_100_and_equals_cross_entropy():
    model = build(FastformerForTokenClassification, num_labels=5)
    input_ids, attention_mask = random_batch(model.config)
    labels = torch.randint(0, 5, input_ids.shape).masked_fill(attention_mask == 0, -100)
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    assert out.logits.shape == (3, 12, 5)
    with torch.no_grad():
        hidden = model.fastformer(input_ids, attention_mask=attention_mask).last_hidden_state
        logits = hidden @ model.classifier.weight.T + model.classifier.bias
        real = attention_mask.bool()
        expected = F.cross_entropy(logits[real], labels[real])
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("head", [FastformerForTokenClassification, FastformerForQuestionAnswering])
def test_token_level_heads_are_padding_invariant_and_batch_equals_rows(head):
    """Each row's token logits equal those of the row alone, also with extra padding (catches padding read as
    tokens by the encoder); without the mask they would be far off."""
    model = build(head, num_labels=3)
    input_ids, attention_mask = random_batch(model.config, lengths=(12, 7, 3))
    tensors = lambda out: [out.logits] if hasattr(out, "logits") else [out.start_logits, out.end_logits]  # noqa: E731
    with torch.no_grad():
        batch = tensors(model(input_ids, attention_mask=attention_mask))
        padded_ids = torch.cat([input_ids, torch.full((3, 9), 0)], dim=1)
        padded_mask = torch.cat([attention_mask, torch.zeros(3, 9, dtype=torch.long)], dim=1)
        padded = tensors(model(padded_ids, attention_mask=padded_mask))
        for row, length in enumerate((12, 7, 3)):
            alone = tensors(model(input_ids[row : row + 1, :length]))
            for full, more, single in zip(batch, padded, alone):
                torch.testing.assert_close(full[row, :length], single[0], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(more[row, :length], single[0], atol=1e-5, rtol=1e-5)
        unmasked = tensors(model(padded_ids))
        assert_far(unmasked[0][1, :7], tensors(model(input_ids[1:2, :7]))[0][0], atol=1e-5)


# --------------------------------------------------------------------------------------- question answering


def test_question_answering_loss_is_bert_span_loss_with_clamped_positions():
    model = build(FastformerForQuestionAnswering)
    input_ids, attention_mask = random_batch(model.config)
    start, end = torch.tensor([2, 0, 40]), torch.tensor([5, 3, 50])  # row 2's answer lies beyond the 12 tokens
    out = model(input_ids, attention_mask=attention_mask, start_positions=start, end_positions=end)
    with torch.no_grad():
        hidden = model.fastformer(input_ids, attention_mask=attention_mask).last_hidden_state
        logits = hidden @ model.qa_outputs.weight.T + model.qa_outputs.bias  # (batch, seq, 2)
        expected = (F.cross_entropy(logits[:2, :, 0], start[:2]) + F.cross_entropy(logits[:2, :, 1], end[:2])) / 2
    torch.testing.assert_close(out.start_logits, logits[..., 0])
    torch.testing.assert_close(out.end_logits, logits[..., 1])
    torch.testing.assert_close(out.loss, expected)
    # (batch, 1) positions, as some data pipelines give them, mean the same.
    again = model(input_ids, attention_mask=attention_mask, start_positions=start[:, None], end_positions=end[:, None])
    torch.testing.assert_close(again.loss, expected)
    # every answer outside the input: nothing to learn, loss 0 (BERT's gives NaN)
    far = torch.full((3,), 99)
    assert model(input_ids, attention_mask=attention_mask, start_positions=far, end_positions=far).loss.item() == 0.0


# ------------------------------------------------------------------------------------------- multiple choice


@pytest.mark.parametrize("pooler_type", ["attention", "first", "mean"])
def test_multiple_choice_scores_each_choice_independently(pooler_type):
    model = build(FastformerForMultipleChoice, pooler_type=pooler_type)
    torch.manual_seed(1)
    input_ids = torch.randint(1, 99, (2, 3, 10))
    attention_mask = torch.ones(2, 3, 10, dtype=torch.long)
    attention_mask[0, 1, 6:] = 0
    attention_mask[1, 2, 2:] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    labels = torch.tensor([2, 0])
    out = model(input_ids, attention_mask=attention_mask, labels=labels)
    assert out.logits.shape == (2, 3)
    with torch.no_grad():
        expected = torch.empty(2, 3)
        for row in range(2):
            for choice in range(3):
                length = int(attention_mask[row, choice].sum())
                ids = input_ids[row, choice, :length].unsqueeze(0)  # the choice alone, unpadded
                hidden = model.fastformer(ids).last_hidden_state
                expected[row, choice] = model.classifier(model.pooler(hidden)).squeeze()
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, F.cross_entropy(expected, labels), atol=1e-5, rtol=1e-5)
    embeds = model.fastformer.embeddings.word_embeddings(input_ids)
    with torch.no_grad():
        from_embeds = model(inputs_embeds=embeds, attention_mask=attention_mask).logits
    torch.testing.assert_close(from_embeds, out.logits)


# ------------------------------------------------------------------------------- Auto classes and remote code


@pytest.mark.parametrize("auto_name", list(HEADS))
def test_auto_class_round_trip(auto_name, tmp_path):
    """Every parameter (random biases and LayerNorms included) survives save/load: catches a key that is not saved
    or not loaded, which would come back at its fresh initialisation, far from the saved model's outputs."""
    auto, head = HEADS[auto_name]
    model = build(head, num_labels=3)
    fresh = auto.from_config(model.config).eval()
    assert type(fresh) is head
    model.save_pretrained(tmp_path)
    loaded = auto.from_pretrained(tmp_path).eval()
    assert type(loaded) is head
    with torch.no_grad():
        inputs = inputs_of(model, *random_batch(model.config))
        for a, b, c in zip(model(*inputs).to_tuple(), loaded(*inputs).to_tuple(), fresh(*inputs).to_tuple()):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)  # (bmm's summation order may differ)
            assert_far(c, a, atol=1e-5)


REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["fastformer"] = None  # only the checkpoints' own code can be used
    import torch
    import transformers

    root, data = sys.argv[1], json.load(open(sys.argv[2]))
    results = {}
    for auto_name, inputs in data.items():
        model = getattr(transformers, auto_name).from_pretrained(f"{root}/{auto_name}", trust_remote_code=True).eval()
        with torch.no_grad():
            out = model(*(torch.tensor(x) for x in inputs))
        tied = model.get_output_embeddings() is not None and (
            model.get_output_embeddings().weight is model.get_input_embeddings().weight)
        results[auto_name] = {"class": type(model).__name__, "module": type(model).__module__, "tied": tied,
                              "outputs": [t.tolist() for t in out.to_tuple()]}
    print(json.dumps(results))
    """
)


def test_trust_remote_code_loads_every_head_without_the_package(tmp_path):
    models, data = {}, {}
    for auto_name, (_, head) in HEADS.items():
        models[auto_name] = build(head, num_labels=3)
        models[auto_name].save_pretrained(tmp_path / auto_name)
        inputs = inputs_of(models[auto_name], *random_batch(models[auto_name].config))
        data[auto_name] = [x.tolist() for x in inputs]
    (tmp_path / "inputs.json").write_text(json.dumps(data))
    (tmp_path / "load.py").write_text(REMOTE_CODE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-P", str(tmp_path / "load.py"), str(tmp_path), str(tmp_path / "inputs.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    for auto_name, (_, head) in HEADS.items():
        assert loaded[auto_name]["class"] == head.__name__
        assert loaded[auto_name]["module"].startswith("transformers_modules.")
        assert loaded[auto_name]["tied"] == (head is FastformerForMaskedLM)
        with torch.no_grad():
            expected = models[auto_name](*(torch.tensor(x) for x in data[auto_name])).to_tuple()
        for got, want in zip(loaded[auto_name]["outputs"], expected):
            torch.testing.assert_close(torch.tensor(got), want)


# ----------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("head", [head for _, head in HEADS.values()])
def test_heads_refuse_a_causal_config(head):
    with pytest.raises(ValueError, match="is_decoder=False"):
        head(tiny_config(is_decoder=True))


def test_bad_labels_and_shapes_raise_clear_errors():
    input_ids, attention_mask = random_batch(tiny_config())
    mlm = build(FastformerForMaskedLM)
    with pytest.raises(ValueError, match=r"ids in \[0, 99\).*\[99\]"):
        mlm(input_ids, labels=torch.full_like(input_ids, 99))
    with pytest.raises(ValueError, match=r"shape \(3, 12\)"):
        mlm(input_ids, labels=input_ids[:, :5])
    with pytest.raises(ValueError, match="integer class ids"):
        mlm(input_ids, labels=input_ids.float())

    tokens = build(FastformerForTokenClassification, num_labels=4)
    with pytest.raises(ValueError, match=r"ids in \[0, 4\).*\[-1, 4\]"):
        tokens(input_ids, labels=torch.tensor([[-1, 4] + [0] * 10] * 3))

    qa = build(FastformerForQuestionAnswering)
    with pytest.raises(ValueError, match="both `start_positions` and `end_positions`"):
        qa(input_ids, start_positions=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"integer token indices of shape \(3,\)"):
        qa(input_ids, start_positions=torch.tensor([0, 1]), end_positions=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer token indices"):
        qa(input_ids, start_positions=torch.zeros(3), end_positions=torch.zeros(3))

    choice = build(FastformerForMultipleChoice)
    with pytest.raises(ValueError, match=r"\(batch, num_choices, seq\), got \(3, 12\)"):
        choice(input_ids, attention_mask=attention_mask)
    ids3 = input_ids.view(3, 2, 6)
    with pytest.raises(ValueError, match="`attention_mask` has shape"):
        choice(ids3, attention_mask=attention_mask)
    with pytest.raises(ValueError, match=r"ids in \[0, 2\)"):
        choice(ids3, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="exactly one of"):
        choice(attention_mask=attention_mask.view(3, 2, 6))
