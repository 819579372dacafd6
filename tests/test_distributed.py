"""Scale-out on transformers' native engines (issue #16 items 1-2), run for real on 2 gloo CPU processes.

One `torchrun --nproc_per_node 2` run of tests/distributed_worker.py (a free port, ~25 s) loads tiny checkpoints
through `from_pretrained(..., distributed_config=DistributedConfig(tp_size=2 | fsdp_size=2))`, which applies the
plans Fastformer declares; the tests below read what each rank measured. Dropout is 0 so that the processes and the
single-process references compute the same function; the differences left are float32 summation order.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import free_port
from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageReader  # noqa: F401  (DCP is available)

import fastformer
from fastformer import FastformerConfig


WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
TINY = dict(
    vocab_size=96,
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=48,
    num_hidden_layers=2,
    max_position_embeddings=32,
    hidden_dropout_prob=0.0,
    pad_token_id=0,
)
# name -> (class, config overrides): the LM heads are tied (the default); the classifier takes the paper's
# no-sharing value projection and per-head logits, the seq2seq decoder the additive cross-attention.
CHECKPOINTS = {
    "mlm": ("FastformerForMaskedLM", {}),
    "causal": ("FastformerForCausalLM", {"is_decoder": True}),
    "seq2seq": (
        "FastformerForConditionalGeneration",
        {"cross_attention_type": "additive", "decoder_start_token_id": 1},
    ),
    "classifier": (
        "FastformerForSequenceClassification",
        {"share_query_value": False, "attention_logit_layout": "per_head", "num_labels": 3},
    ),
}
# float32 summation order only: one process and two differ by ~1e-7 in the forward, ~1e-6 in trained weights; a
# wrong split (a column-split `query` feeding the dense `query_att`, a missing all-reduce, a halved gradient)
# moves them by 1e-2 or more.
FORWARD_TOLERANCE = 1e-5
TRAINING_TOLERANCE = 1e-4


def torchrun(workdir, *options, env=None):
    """`torchrun --nproc_per_node 2 tests/distributed_worker.py WORKDIR OPTIONS` on a free port, one thread a rank."""
    command = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [
            command,
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            str(WORKER),
            str(workdir),
            *options,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Saves the checkpoints and inputs, runs the 2 ranks, returns (workdir, [rank 0 results, rank 1 results])."""
    workdir = tmp_path_factory.mktemp("distributed")
    for name, (architecture, overrides) in CHECKPOINTS.items():
        torch.manual_seed(0)
        getattr(fastformer, architecture)(FastformerConfig(**TINY, **overrides)).save_pretrained(workdir / name)
    generator = torch.Generator().manual_seed(0)
    torch.save(
        {
            "input_ids": torch.randint(2, TINY["vocab_size"], (4, 12), generator=generator),
            "decoder_input_ids": torch.randint(2, TINY["vocab_size"], (4, 7), generator=generator),
            "class_labels": torch.randint(0, 3, (4,), generator=generator),
        },
        workdir / "inputs.pt",
    )
    result = torchrun(workdir)
    outputs = [
        json.loads((workdir / f"rank{r}.json").read_text()) for r in range(2) if (workdir / f"rank{r}.json").exists()
    ]
    errors = [output["error"] for output in outputs if "error" in output]
    assert result.returncode == 0 and not errors, (errors or [""])[0] + result.stderr[-3000:]
    return workdir, outputs


def both(results, kind, name):
    return [rank[kind][name] for rank in results]


def test_plans_are_declared_for_fastformer_module_names():
    """The config's plans name Fastformer's modules (transformers' defaults name Llama's `embed_tokens`, `layers.*`,
    `norm`); the heads add the vocabulary split of their LM head; rules that a variant lacks are dropped (no
    `value` under query-value sharing, cross-attention only in the seq2seq decoder); every style is registered."""
    from transformers.distributed.fsdp import ALL_FSDP_STYLES
    from transformers.distributed.parallel_utils import ALL_PARALLEL_STYLES, replace_layer_number_by_wildcard

    assert FastformerConfig.base_model_fsdp_plan == {
        "embeddings.word_embeddings": "free_full_weight",
        "encoder.layer.*": "free_full_weight",
    }
    assert FastformerConfig.base_model_pp_plan is None  # see docs/distributed.md
    heads = {"mlm": "lm_head.decoder", "causal": "lm_head", "seq2seq": "lm_head", "classifier": None}
    for name, (architecture, overrides) in CHECKPOINTS.items():
        model = getattr(fastformer, architecture)(FastformerConfig(**TINY, **overrides))
        modules = {replace_layer_number_by_wildcard(n) for n, _ in model.named_modules()}
        assert set(model.tp_plan) <= modules and set(model.fsdp_plan) <= modules, name
        assert set(model.tp_plan.values()) <= set(ALL_PARALLEL_STYLES.keys()), name
        assert set(model.fsdp_plan.values()) <= set(ALL_FSDP_STYLES), name
        assert model.fsdp_plan["fastformer.encoder.layer.*"] == "free_full_weight", name
        assert model.tp_plan["fastformer.encoder.layer.*.intermediate.dense"] == "colwise", name
        assert model.tp_plan["fastformer.encoder.layer.*.output.dense"] == "rowwise", name
        assert model.tp_plan["fastformer.encoder.layer.*.attention.self.query"] == "colwise_rep", name
        assert not any("query_att" in key or "key_att" in key for key in model.tp_plan), name  # replicated
        assert ("fastformer.encoder.layer.*.attention.self.value" in model.tp_plan) == (name == "classifier")
        assert any("crossattention" in key for key in model.tp_plan) == (name == "seq2seq"), name
        if heads[name]:
            assert model.tp_plan[heads[name]] == "colwise_gather_output", name
    seq2seq = fastformer.FastformerForConditionalGeneration(FastformerConfig(**TINY))
    assert seq2seq.tp_plan["decoder.encoder.layer.*.crossattention.self.key"] == "colwise_rep"
    assert seq2seq.fsdp_plan["decoder.encoder.layer.*"] == "free_full_weight"


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_tensor_parallel_plan_equals_the_unsharded_model(ranks, name):
    """`DistributedConfig(tp_size=2)` with the declared plan: on both ranks the logits, the loss and every gradient
    (DTensor gradients gathered) equal the plain model's within FORWARD_TOLERANCE (measured: <= 1e-7); the
    parameters are split as the plan says (the dense logit layers and the LayerNorms stay whole)."""
    for result in both(ranks[1], "tp", name):
        assert result["logits"] <= FORWARD_TOLERANCE and result["loss"] <= FORWARD_TOLERANCE, result
        assert result["grad"] <= FORWARD_TOLERANCE, result
        placed = result["placements"]
        layer = "fastformer.encoder.layer.1."
        assert placed[layer + "attention.self.query.weight"] == "S(0)"
        assert placed[layer + "attention.self.transform.weight"] == "S(0)"
        assert placed[layer + "intermediate.dense.weight"] == "S(0)"
        assert placed[layer + "output.dense.weight"] == "S(1)" and placed[layer + "output.dense.bias"] == "R"
        assert placed[layer + "attention.self.key_att.weight"] == "local"
        assert placed[layer + "output.LayerNorm.weight"] == "local"
        assert placed["fastformer.embeddings.word_embeddings.weight"] == "S(0)"
        if name == "classifier":
            assert placed[layer + "attention.self.value.weight"] == "S(0)"
        if name == "seq2seq":
            assert placed["decoder.encoder.layer.0.crossattention.self.key.weight"] == "S(0)"


@pytest.mark.parametrize("name", ["mlm", "causal", "seq2seq"])
def test_fsdp2_plan_shards_every_layer_and_trains_like_one_process(ranks, name):
    """`DistributedConfig(fsdp_size=2)`: one FSDP2 unit per FastformerLayer (and the word-embedding table, kept
    gathered for the tied head) plus the root; every parameter a DTensor sharded on dim 0. Three AdamW steps on half
    of each global batch per rank give the losses of one process on the whole batch (TRAINING_TOLERANCE; measured
    <= 5e-7) and its weights (measured <= 2e-6), and the weights of one process accumulating the two halves (measured
    1.2e-7), while the weights moved by 3e-2."""
    expected_units = {
        "mlm": [
            "",
            "fastformer.embeddings.word_embeddings",
            "fastformer.encoder.layer.0",
            "fastformer.encoder.layer.1",
        ],
        "seq2seq": [
            "",
            "decoder.embeddings.word_embeddings",
            "decoder.encoder.layer.0",
            "decoder.encoder.layer.1",
            "fastformer.encoder.layer.0",
            "fastformer.encoder.layer.1",
        ],
    }
    expected_units["causal"] = expected_units["mlm"]
    for result in both(ranks[1], "fsdp", name):
        assert result["units"] == expected_units[name]
        assert set(result["placements"].values()) == {"S(0)"}
        assert result["losses"] == pytest.approx(result["whole_losses"], abs=TRAINING_TOLERANCE)
        assert result["losses"] == pytest.approx(result["accumulated_losses"], abs=TRAINING_TOLERANCE)
        assert result["weights_vs_whole"] <= TRAINING_TOLERANCE
        assert result["weights_vs_accumulated"] <= TRAINING_TOLERANCE
        assert result["moved"] > 100 * TRAINING_TOLERANCE


@pytest.mark.parametrize("name", ["mlm", "causal", "seq2seq"])
@pytest.mark.parametrize("kind", ["dcp", "gathered"])
def test_sharded_checkpoint_reloads_into_plain_from_pretrained(ranks, name, kind):
    """The FSDP2-trained model saved from both ranks, with torch distributed checkpointing (`save_pretrained(...,
    distributed_checkpoint=True)`: one shard file per rank) or gathered, loads in this process (no process group)
    with a plain `from_pretrained`: the same weights bit for bit, the ties kept, the same logits as the sharded
    model's; the checkpoint carries Fastformer's code and `auto_map`, not torch's FSDP wrapper class."""
    workdir = ranks[0]
    directory = workdir / f"{kind}_{name}"
    shards = sorted(p.name for p in directory.glob("*.safetensors"))
    if kind == "dcp":
        assert shards == [
            "shard-00001-model-00001-of-00001.safetensors",
            "shard-00002-model-00001-of-00001.safetensors",
        ]
    saved = torch.load(workdir / f"fsdp_{name}.pt")
    cls = getattr(fastformer, CHECKPOINTS[name][0])
    model = cls.from_pretrained(directory).eval()
    weights = dict(model.named_parameters())
    assert weights.keys() == saved["weights"].keys()
    for key, tensor in saved["weights"].items():
        assert torch.equal(weights[key], tensor), key
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    inputs = torch.load(workdir / "inputs.pt")
    batch = {"input_ids": inputs["input_ids"]}
    if name == "seq2seq":
        batch["decoder_input_ids"] = inputs["decoder_input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, saved["logits"], rtol=0, atol=1e-6)
    config = json.loads((directory / "config.json").read_text())
    assert all(
        target.startswith(("modeling_fastformer.", "configuration_fastformer."))
        for target in config["auto_map"].values()
    ), config["auto_map"]
    assert (directory / "modeling_fastformer.py").exists() and not list(directory.glob("_fsdp*.py"))


def test_trainer_trains_the_fsdp2_model_like_one_process(ranks, tmp_path):
    """transformers' `Trainer` on the masked LM sharded at load by `DistributedConfig(fsdp_size=2)`, 2 rows per rank
    per step (every parameter a DTensor during training), against one process's `Trainer` with 4 rows per step: the
    logged losses and the saved (gathered) weights agree within TRAINING_TOLERANCE (measured: 5e-7 and 6e-7)."""
    from distributed_worker import TRAINER_ARGS, trainer_dataset
    from safetensors.torch import load_file
    from transformers import Trainer, TrainingArguments

    workdir, results = ranks
    for result in results:
        assert result["trainer"]["sharded"] == result["trainer"]["parameters"] > 0
    torch.manual_seed(0)
    model = fastformer.FastformerForMaskedLM.from_pretrained(workdir / "mlm")
    args = TrainingArguments(output_dir=str(tmp_path / "single"), per_device_train_batch_size=4, **TRAINER_ARGS)
    trainer = Trainer(model=model, args=args, train_dataset=trainer_dataset(torch.load(workdir / "inputs.pt")))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert results[0]["trainer"]["losses"] == pytest.approx(losses, abs=TRAINING_TOLERANCE)
    sharded = load_file(workdir / "trainer_fsdp" / "model.safetensors")
    single = dict(model.state_dict())
    assert sharded.keys() <= single.keys() and "fastformer.encoder.layer.1.output.dense.weight" in sharded
    for key, tensor in sharded.items():
        torch.testing.assert_close(tensor, single[key], rtol=0, atol=TRAINING_TOLERANCE, msg=key)


@pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="deepspeed is not installed (not a test dependency: docs/distributed.md says how it was run)",
)
def test_deepspeed_zero2_on_cpu_trains_like_one_process(ranks):
    """DeepSpeed ZeRO stage 2 on 2 gloo CPU processes (`DS_ACCELERATOR=cpu`): 3 AdamW steps on half of each global
    batch per rank, gradient clipped to norm 1, give the losses and the weights of one process on the whole batch
    with the same clipping within TRAINING_TOLERANCE (measured: 0 and 2e-6)."""
    workdir = ranks[0]
    result = torchrun(workdir, "deepspeed", env={"DS_ACCELERATOR": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    trained = torch.load(workdir / "deepspeed.pt")
    model = fastformer.FastformerForMaskedLM.from_pretrained(workdir / "mlm")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    inputs = torch.load(workdir / "inputs.pt")["input_ids"]
    losses = []
    for _ in range(3):
        loss = model(input_ids=inputs, labels=inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the norms are 1.1 to 1.8: clipping acts
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert trained["losses"] == pytest.approx(losses, abs=TRAINING_TOLERANCE)
    for name, tensor in model.named_parameters():
        torch.testing.assert_close(
            trained["weights"][name], tensor.detach(), rtol=0, atol=TRAINING_TOLERANCE, msg=name
        )
