"""Sequence classification of packed batches (issue #25): a row that packs several documents gives one row of
logits per document, each equal to the document run alone (outputs and gradients, for every pooler), the labels are
one per document, and `DataCollatorForPackedSequenceClassification` builds such batches (also through the `Trainer`).

Every comparison runs on randomized weights (tokens mix) and first shows that the encoder without the boundaries,
pooled per document all the same, fails it by far more than the tolerance (`assert_far`)."""

import pytest
import torch
from helpers import assert_far, randomize_, tiny_config
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from fastformer import DataCollatorForPackedSequenceClassification, FastformerForSequenceClassification
from fastformer.pooling_fastformer import Segments


ATOL = 1e-4
ROWS = ((5, 1, 9, 17), (12, 7))  # documents per row: one-token ones, and longer than a scan block
PADDING = 3  # the second row ends in padding


def documents(vocab: int, seed: int = 0) -> list[list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randint(3, vocab, (n,), generator=generator) for n in row] for row in ROWS]


def packed_batch(rows: list[list[torch.Tensor]]) -> dict:
    """Rows of packed documents, positions restarting at 0 per document, padded on the right to one length."""
    width = max(sum(len(doc) for doc in row) for row in rows) + PADDING
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    positions = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for r, row in enumerate(rows):
        total = sum(len(doc) for doc in row)
        ids[r, :total] = torch.cat(row)
        positions[r, :total] = torch.cat([torch.arange(len(doc)) for doc in row])
        mask[r, :total] = 1
    return {"input_ids": ids, "position_ids": positions, "attention_mask": mask}


def unsegmented_logits(model, batch: dict) -> torch.Tensor:
    """The documents pooled one by one from an encoder that does not keep them apart (`seq_idx` of one document per
    row): what the boundaries are for."""
    ids = batch["input_ids"]
    hidden = model.fastformer(**batch, seq_idx=torch.zeros_like(ids)).last_hidden_state
    segments = Segments.from_starts(torch.nn.functional.pad(batch["position_ids"][:, 1:] == 0, (1, 0)))
    segments = Segments.from_starts(segments.starts & batch["attention_mask"].bool())
    return model.classifier(model.pooler(hidden, batch["attention_mask"], segments))


@pytest.mark.parametrize("pooler_type", ["attention", "mean", "first"])
def test_a_packed_batch_gives_each_document_its_own_logits(pooler_type):
    model = randomize_(FastformerForSequenceClassification(tiny_config(num_labels=3, pooler_type=pooler_type)))
    model.eval()
    rows = documents(model.config.vocab_size)
    batch = packed_batch(rows)
    with torch.no_grad():
        logits = model(**batch).logits
        expected = torch.cat([model(doc.unsqueeze(0)).logits for row in rows for doc in row])
        assert_far(unsegmented_logits(model, batch), expected, ATOL)
    assert logits.shape == (sum(map(len, ROWS)), 3)
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=ATOL)


def test_packed_loss_and_gradients_equal_the_documents_alone():
    """The loss over a packed batch (one label per document) is the mean over its documents, and its parameter
    gradients are those of the documents run one by one; also with gradient checkpointing."""
    model = randomize_(FastformerForSequenceClassification(tiny_config(num_labels=3, pooler_type="attention")))
    model.train()
    model.gradient_checkpointing_enable()
    rows = documents(model.config.vocab_size)
    labels = torch.tensor([0, 2, 1, 1, 2, 0])

    def gradients(loss):
        model.zero_grad()
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    packed_loss, packed = gradients(model(**packed_batch(rows), labels=labels).loss)
    docs = [doc for row in rows for doc in row]
    losses = [model(doc.unsqueeze(0), labels=label.view(1)).loss for doc, label in zip(docs, labels)]
    separate_loss, separate = gradients(torch.stack(losses).mean())
    torch.testing.assert_close(packed_loss, separate_loss, atol=ATOL, rtol=ATOL)
    assert packed.keys() == separate.keys()
    for name in packed:
        torch.testing.assert_close(packed[name], separate[name], atol=1e-3, rtol=1e-3, msg=name)


def test_packed_labels_are_one_per_document():
    model = FastformerForSequenceClassification(tiny_config(num_labels=3))
    batch = packed_batch(documents(model.config.vocab_size))
    with pytest.raises(ValueError, match=r"`labels` must have shape \(6,\)"):
        model(**batch, labels=torch.tensor([0, 1]))  # one per row
    multi = FastformerForSequenceClassification(tiny_config(num_labels=3, problem_type="multi_label_classification"))
    assert multi(**batch, labels=torch.ones(6, 3)).logits.shape == (6, 3)


def features(rows) -> list[dict]:
    docs = [doc for row in rows for doc in row]
    return [{"input_ids": doc.tolist(), "labels": i % 3} for i, doc in enumerate(docs)]


def test_the_packing_collator_gives_the_padded_batch_logits_and_loss(tmp_path):
    """`DataCollatorForPackedSequenceClassification` packs the documents into one row with their labels; the
    `Trainer`'s loss on it equals that of the same documents padded (`DataCollatorWithPadding`), one per row."""
    model = randomize_(FastformerForSequenceClassification(tiny_config(num_labels=3))).eval()
    batch = features(documents(model.config.vocab_size))
    packed = DataCollatorForPackedSequenceClassification()(batch)
    assert packed["input_ids"].shape == (1, sum(map(sum, ROWS))) and packed["labels"].tolist() == [0, 1, 2, 0, 1, 2]
    padded = DataCollatorWithPadding(_PadOnly())(batch)
    args = TrainingArguments(tmp_path, report_to=[], use_cpu=True)
    trainer = Trainer(model=model, args=args, data_collator=DataCollatorForPackedSequenceClassification())
    with torch.no_grad():
        padded_out = model(**padded)
        packed_loss = trainer.compute_loss(model, dict(packed))
        torch.testing.assert_close(model(**packed).logits, padded_out.logits, atol=ATOL, rtol=ATOL)
        mixed = model(packed["input_ids"], labels=packed["labels"][:1]).loss  # the row as one document
    torch.testing.assert_close(packed_loss, padded_out.loss, atol=ATOL, rtol=ATOL)
    assert abs(mixed.item() - padded_out.loss.item()) > 100 * ATOL


class _PadOnly:
    """The least a tokenizer offers `DataCollatorWithPadding`: right padding with id 0."""

    padding_side = "right"
    model_input_names = ["input_ids", "attention_mask"]

    def pad(self, features, return_tensors="pt", **kwargs):
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.tensor([f["input_ids"] + [0] * (width - len(f["input_ids"])) for f in features])
        mask = torch.tensor([[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features])
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["labels"] for f in features])}


def test_the_packing_collator_refuses_what_it_cannot_pack():
    collate = DataCollatorForPackedSequenceClassification()
    with pytest.raises(ValueError, match="Document 1 has no tokens"):
        collate([{"input_ids": [5, 6], "labels": 0}, {"input_ids": [], "labels": 1}])
    with pytest.raises(ValueError, match="Document 0 is padded"):
        collate([{"input_ids": [5, 6, 0], "attention_mask": [1, 1, 0], "labels": 0}])
    with pytest.raises(ValueError, match="label every document or none"):
        collate([{"input_ids": [5, 6], "labels": 0}, {"input_ids": [7]}])
    with pytest.raises(ValueError, match=r"keys \['special_tokens_mask'\]"):
        collate([{"input_ids": [5, 6], "special_tokens_mask": [1, 0]}])
    assert collate([{"input_ids": [5, 6], "label": 0.5}])["labels"].dtype == torch.float32
    assert "labels" not in collate([{"input_ids": [5, 6], "attention_mask": [1, 1]}])
