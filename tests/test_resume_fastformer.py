"""Resuming a `Trainer` run of the classifier from a checkpoint ends with the weights of the uninterrupted run."""

import pytest
import torch
from helpers import StopAfter, tiny_config
from transformers import Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from fastformer import FastformerForSequenceClassification


datasets = pytest.importorskip("datasets")


def collate(features):
    """Right-pads a batch with id 0."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {
        key: torch.tensor([f[key] + [0] * (width - len(f[key])) for f in features])
        for key in ("input_ids", "attention_mask")
    }
    batch["labels"] = torch.tensor([f["labels"] for f in features])
    return batch


def documents():
    generator = torch.Generator().manual_seed(0)
    rows = []
    for i in range(48):
        length = int(torch.randint(5, 30, (), generator=generator))
        ids = torch.randint(10, 99, (length,), generator=generator)
        if i % 2:
            ids[int(torch.randint(0, length, (), generator=generator))] = 7
        rows.append({"input_ids": ids.tolist(), "attention_mask": [1] * length, "labels": i % 2})
    return datasets.Dataset.from_list(rows)


def train(output_dir, callbacks=(), resume=None):
    set_seed(0)
    model = FastformerForSequenceClassification(tiny_config(num_labels=2, hidden_dropout_prob=0.2))
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=8,
        num_train_epochs=3,
        learning_rate=3e-3,
        warmup_steps=2,
        save_steps=5,
        logging_steps=3,
        report_to=[],
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=documents(), data_collator=collate, callbacks=list(callbacks)
    )
    trainer.train(resume_from_checkpoint=resume)
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_resumed_classifier_ends_with_the_weights_of_the_uninterrupted_run(tmp_path):
    """3 epochs of 6 steps with dropout, stopped after the step-10 checkpoint (mid-epoch 2): the resumed run restores
    the optimizer, scheduler, sampler position and RNG states (dropout), and ends exactly where the uninterrupted run
    ends. (Not with `train_sampling_strategy="group_by_length"` in transformers 5.24: its `LengthGroupedSampler`
    shuffles with the global RNG at the start of each epoch, which a resumed run cannot reproduce.)"""
    expected = train(tmp_path / "uninterrupted")
    interrupted = train(tmp_path / "run", callbacks=[StopAfter(10)])
    checkpoint = get_last_checkpoint(str(tmp_path / "run"))
    assert checkpoint.endswith("checkpoint-10")
    assert any(not torch.equal(interrupted[name], expected[name]) for name in expected)
    resumed = train(tmp_path / "run", resume=checkpoint)
    for name, tensor in expected.items():
        assert torch.equal(resumed[name], tensor), name
