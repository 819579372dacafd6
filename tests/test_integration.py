"""Save/load, Hub custom code (trust_remote_code) and Trainer integration."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import assert_far, randomize_, tiny_config
from safetensors.torch import load_file
from test_modeling_fastformer import random_batch
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from fastformer import FastformerConfig, FastformerForSequenceClassification, FastformerModel


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    """Every parameter (random biases and LayerNorms included) is saved and reloaded: a key lost on the way would
    come back at its fresh initialisation, which gives logits far from the saved model's."""
    config = tiny_config(num_labels=3, attention_logit_layout="per_head", share_layer_parameters=True)
    model = randomize_(FastformerForSequenceClassification(config)).eval()
    input_ids, attention_mask = random_batch(config)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    state = load_file(tmp_path / "model.safetensors")
    assert set(state) == set(model.state_dict())
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is FastformerForSequenceClassification
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask).logits
        torch.testing.assert_close(
            loaded(input_ids, attention_mask=attention_mask).logits, expected, atol=1e-5, rtol=1e-5
        )
        fresh = FastformerForSequenceClassification(config).eval()
        assert_far(fresh(input_ids, attention_mask=attention_mask).logits, expected, atol=1e-5)


# The package's modules that a checkpoint carries as custom code: the model file and its relative imports.
CARRIED_MODULES = (
    "configuration_fastformer",
    "modeling_fastformer",
    "pooling_fastformer",
    "cache_fastformer",
    "chunking_fastformer",
    "inputs_fastformer",
    "sequence_parallel",
)


def test_checkpoint_carries_custom_code_and_auto_map(tmp_path):
    FastformerForSequenceClassification(tiny_config()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_fastformer.FastformerConfig",
        "AutoModel": "modeling_fastformer.FastformerModel",
        "AutoModelForSequenceClassification": "modeling_fastformer.FastformerForSequenceClassification",
        "AutoModelForCausalLM": "modeling_fastformer.FastformerForCausalLM",
        "AutoModelForSeq2SeqLM": "modeling_fastformer.FastformerForConditionalGeneration",
        "AutoModelForMaskedLM": "modeling_fastformer.FastformerForMaskedLM",
        "AutoModelForTokenClassification": "modeling_fastformer.FastformerForTokenClassification",
        "AutoModelForQuestionAnswering": "modeling_fastformer.FastformerForQuestionAnswering",
        "AutoModelForMultipleChoice": "modeling_fastformer.FastformerForMultipleChoice",
    }
    for name in CARRIED_MODULES:
        assert (tmp_path / f"{name}.py").exists(), name


REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["fastformer"] = None  # the package (even if installed) cannot be imported: only the checkpoint's code
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    try:
        import fastformer
    except ImportError:
        pass
    else:
        raise AssertionError("the package must not be importable here")
    checkpoint, data = sys.argv[1], json.load(open(sys.argv[2]))
    config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
    encoder = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
    ids, mask = torch.tensor(data["input_ids"]), torch.tensor(data["attention_mask"])
    with torch.no_grad():
        print(json.dumps({
            "config_class": type(config).__name__,
            "model_class": type(model).__name__,
            "encoder_class": type(encoder).__name__,
            "module": type(model).__module__,
            "logits": model(ids, attention_mask=mask).logits.tolist(),
            "hidden": encoder(ids, attention_mask=mask).last_hidden_state.tolist(),
        }))
    """
)


def test_trust_remote_code_loads_without_the_package(tmp_path):
    config = tiny_config(num_labels=3)
    model = FastformerForSequenceClassification(config).eval()
    input_ids, attention_mask = random_batch(config)
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    data = tmp_path / "inputs.json"
    data.write_text(json.dumps({"input_ids": input_ids.tolist(), "attention_mask": attention_mask.tolist()}))
    script = tmp_path / "load.py"
    script.write_text(REMOTE_CODE_SCRIPT)
    # A working directory and PYTHONPATH without the repository, and the package blocked in the script.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-P", str(script), str(checkpoint), str(data)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["config_class"] == "FastformerConfig"
    assert loaded["model_class"] == "FastformerForSequenceClassification"
    assert loaded["encoder_class"] == "FastformerModel"
    assert loaded["module"].startswith("transformers_modules.")
    with torch.no_grad():
        torch.testing.assert_close(
            torch.tensor(loaded["logits"]), model(input_ids, attention_mask=attention_mask).logits
        )
        torch.testing.assert_close(
            torch.tensor(loaded["hidden"]),
            model.fastformer(input_ids, attention_mask=attention_mask).last_hidden_state,
        )


def test_modeling_files_import_only_libraries_and_each_other():
    """Hub custom code: the files a checkpoint carries (the model file and its relative imports) must work when
    copied alone into a checkpoint directory, so they import only the standard library, torch, transformers,
    huggingface_hub and each other (catches an import of the `fastformer` package or of another of its modules,
    which a checkpoint does not carry)."""
    import ast
    import importlib

    carried = set(CARRIED_MODULES)
    allowed = set(sys.stdlib_module_names) | {"torch", "transformers", "huggingface_hub"}
    for name in carried:
        module = importlib.import_module(f"fastformer.{name}")
        for node in ast.walk(ast.parse(open(module.__file__).read())):
            if isinstance(node, ast.Import):
                assert all(alias.name.split(".")[0] in allowed for alias in node.names), ast.dump(node)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    assert node.level == 1 and node.module in carried, ast.dump(node)
                else:
                    assert node.module.split(".")[0] in allowed, ast.dump(node)


def test_trainer_loss_falls(tmp_path):
    datasets = pytest.importorskip("datasets")
    config = tiny_config(num_labels=2, max_position_embeddings=32)
    torch.manual_seed(0)
    # Label 1 iff token 7 occurs: learnable through the global query.
    rows = []
    for i in range(64):
        length = int(torch.randint(6, 24, ()))
        ids = torch.randint(10, config.vocab_size, (length,))
        label = i % 2
        if label:
            ids[int(torch.randint(0, length, ()))] = 7
        rows.append({"input_ids": ids.tolist(), "attention_mask": [1] * length, "labels": label})
    dataset = datasets.Dataset.from_list(rows)

    def collate(batch):
        width = max(len(row["input_ids"]) for row in batch)
        pad = lambda seq: seq + [0] * (width - len(seq))  # noqa: E731
        return {
            "input_ids": torch.tensor([pad(r["input_ids"]) for r in batch]),
            "attention_mask": torch.tensor([pad(r["attention_mask"]) for r in batch]),
            "labels": torch.tensor([r["labels"] for r in batch]),
        }

    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        num_train_epochs=8,
        learning_rate=3e-3,
        logging_steps=4,
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=FastformerForSequenceClassification(config), args=args, train_dataset=dataset, data_collator=collate
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) >= 4
    assert losses[-1] < 0.5 * losses[0], losses


def test_encoder_and_head_share_the_base_model_prefix(tmp_path):
    """A classifier checkpoint loads into the bare encoder with identical encoder weights (and vice versa); the
    weights are random everywhere, so a parameter left at its initialisation would differ."""
    classifier = randomize_(FastformerForSequenceClassification(tiny_config()))
    classifier.save_pretrained(tmp_path)
    encoder = FastformerModel.from_pretrained(tmp_path)
    for name, param in encoder.state_dict().items():
        assert torch.equal(param, classifier.fastformer.state_dict()[name]), name
    assert isinstance(encoder.config, FastformerConfig)
