"""One rank of the distributed checks of tests/test_distributed.py, run by `torchrun --nproc_per_node 2` on gloo (CPU).

    torchrun --nproc_per_node 2 --master_port PORT tests/distributed_worker.py WORKDIR [deepspeed]

WORKDIR holds the tiny checkpoints the test saved (`<name>/`, plain `save_pretrained`) and `inputs.pt`; each rank
writes `rank<r>.json` (measured differences, placements) and rank 0 writes `fsdp_<name>.pt` (trained weights and
logits) next to the checkpoints it saved, `dcp_<name>/` (torch distributed checkpointing, one shard file per
rank) and `gathered_<name>/` (plain safetensors), for the test to reload without any process group. Every check
loads through transformers' native path, `from_pretrained(..., distributed_config=DistributedConfig(...))`, which
applies the plans the models declare (`base_model_tp_plan` / `base_model_fsdp_plan` and the heads' rules).
"""

import json
import os
import sys
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor
from transformers.distributed import DistributedConfig


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fastformer  # noqa: E402


TP_MODELS = ("mlm", "causal", "seq2seq", "classifier")  # see test_distributed.CHECKPOINTS
FSDP_MODELS = ("mlm", "causal", "seq2seq")
STEPS = 3
LR = 1e-2


def model_class(workdir: Path, name: str):
    architecture = json.loads((workdir / name / "config.json").read_text())["architectures"][0]
    return getattr(fastformer, architecture)


def model_inputs(inputs: dict, name: str, rows=slice(None)) -> dict:
    batch = {"input_ids": inputs["input_ids"][rows], "labels": inputs["input_ids"][rows]}
    if name == "seq2seq":
        batch["decoder_input_ids"] = inputs["decoder_input_ids"][rows]
        batch["labels"] = inputs["decoder_input_ids"][rows]
    if name == "classifier":
        batch["labels"] = inputs["class_labels"][rows]
    return batch


def placements(model) -> dict:
    """`{parameter: "Shard(dim=0)" | "Replicate()" | "local"}` (each shared parameter once)."""
    return {
        name: str(param.placements[0]) if isinstance(param, DTensor) else "local"
        for name, param in model.named_parameters()
    }


def full(tensor):
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def check_tensor_parallel(workdir: Path, inputs: dict, name: str) -> dict:
    """The declared TP plan against the plain model: logits, loss and every gradient (gathered)."""
    cls = model_class(workdir, name)
    plain = cls.from_pretrained(workdir / name)
    sharded = cls.from_pretrained(workdir / name, distributed_config=DistributedConfig(tp_size=2))
    batch = model_inputs(inputs, name)
    expected, got = plain(**batch), sharded(**batch)
    expected.loss.backward()
    got.loss.backward()
    reference = dict(plain.named_parameters())
    grads = {n: (full(p.grad) - reference[n].grad).abs().max().item() for n, p in sharded.named_parameters()}
    return {
        "logits": (full(got.logits) - expected.logits).abs().max().item(),
        "loss": abs(full(got.loss).item() - expected.loss.item()),
        "grad": max(grads.values()),
        "grad_worst": max(grads, key=grads.get),
        "placements": placements(sharded),
    }


def train(model, batches, world_batches: int = 1):
    """STEPS AdamW steps; each step accumulates the gradient of every batch in `batches[step]` (loss / count).
    Returns the losses (mean over `batches[step]`)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    losses = []
    for step_batches in batches:
        total = 0.0
        for batch in step_batches:
            loss = model(**batch).loss / len(step_batches)
            loss.backward()
            total += full(loss).item()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(total)
    return losses


def check_fsdp(workdir: Path, inputs: dict, name: str, rank: int) -> dict:
    """FSDP2 through the declared plan: the units and DTensor parameters; STEPS training steps on half of each global
    batch per rank against one process on the whole batch and one process accumulating the two halves; then a DCP
    save (`save_pretrained(..., distributed_checkpoint=True)`) for the test to reload."""
    cls = model_class(workdir, name)
    model = cls.from_pretrained(workdir / name, distributed_config=DistributedConfig(fsdp_size=2))
    units = sorted(n for n, m in model.named_modules() if isinstance(m, FSDPModule))
    local = placements(model)

    half = inputs["input_ids"].shape[0] // 2
    mine = slice(rank * half, (rank + 1) * half)
    sharded_losses = train(model, [[model_inputs(inputs, name, mine)]] * STEPS)
    global_losses = []
    for loss in sharded_losses:  # the global batch's loss: mean of the two ranks' (equal token counts)
        value = torch.tensor(loss)
        dist.all_reduce(value)
        global_losses.append(value.item() / 2)

    whole = cls.from_pretrained(workdir / name)
    whole_losses = train(whole, [[model_inputs(inputs, name)]] * STEPS)
    accumulated = cls.from_pretrained(workdir / name)
    halves = [model_inputs(inputs, name, slice(0, half)), model_inputs(inputs, name, slice(half, 2 * half))]
    accumulated_losses = train(accumulated, [halves] * STEPS)

    trained = {n: full(p.detach()) for n, p in model.named_parameters()}
    reference = dict(whole.named_parameters())
    accumulation = dict(accumulated.named_parameters())
    model.eval()
    with torch.no_grad():
        logits = full(model(**model_inputs(inputs, name)).logits)
    model.save_pretrained(workdir / f"dcp_{name}", distributed_checkpoint=True)  # each rank writes its shards
    model.save_pretrained(workdir / f"gathered_{name}")  # full weights gathered, written by rank 0
    if rank == 0:
        torch.save({"weights": trained, "logits": logits}, workdir / f"fsdp_{name}.pt")
    return {
        "units": units,
        "placements": local,
        "losses": global_losses,
        "whole_losses": whole_losses,
        "accumulated_losses": accumulated_losses,
        "weights_vs_whole": max((trained[n] - p).abs().max().item() for n, p in reference.items()),
        "weights_vs_accumulated": max((trained[n] - p).abs().max().item() for n, p in accumulation.items()),
        "moved": max(
            (trained[n] - p).abs().max().item() for n, p in cls.from_pretrained(workdir / name).named_parameters()
        ),
    }


TRAINER_ARGS = dict(
    max_steps=STEPS,
    learning_rate=LR,
    lr_scheduler_type="constant",
    weight_decay=0.0,
    seed=0,
    use_cpu=True,
    report_to="none",
    disable_tqdm=True,
    save_strategy="no",
    logging_steps=1,
    dataloader_num_workers=0,
)


def trainer_dataset(inputs: dict) -> list[dict]:
    """The 4 rows of `inputs` for the masked-LM Trainer runs: every step's global batch is all of them."""
    return [{"input_ids": row, "labels": row} for row in inputs["input_ids"]]


def check_trainer(workdir: Path, inputs: dict) -> dict:
    """transformers' `Trainer` on the masked LM loaded with `DistributedConfig(fsdp_size=2)` (the Trainer takes over a
    model sharded by transformers at load: `is_distributed_loading_by_transformers`), 2 rows per rank per step; the
    test runs one process with 4 rows per step and compares. `save_model` writes the gathered weights."""
    from transformers import Trainer, TrainingArguments

    model = fastformer.FastformerForMaskedLM.from_pretrained(
        workdir / "mlm", distributed_config=DistributedConfig(fsdp_size=2)
    )
    args = TrainingArguments(output_dir=str(workdir / "trainer_fsdp"), per_device_train_batch_size=2, **TRAINER_ARGS)
    trainer = Trainer(model=model, args=args, train_dataset=trainer_dataset(inputs))
    trainer.train()
    trainer.save_model()
    return {
        "sharded": sum(isinstance(p, DTensor) for p in trainer.model.parameters()),
        "parameters": sum(1 for _ in trainer.model.parameters()),
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
    }


def run_deepspeed(workdir: Path, inputs: dict, rank: int):
    """DeepSpeed ZeRO stage 2 (`deepspeed.initialize`, CPU accelerator, gloo) on the masked LM: STEPS AdamW steps on
    half of each global batch per rank, the gradient clipped to norm 1 (as in examples/accelerate/deepspeed_zero2.yaml;
    the norm is of the whole gradient, which ZeRO-2 partitions over the ranks). Rank 0 writes the losses and the weights to `deepspeed.pt`."""
    import deepspeed

    model = fastformer.FastformerForMaskedLM.from_pretrained(workdir / "mlm")
    config = {
        "train_micro_batch_size_per_gpu": inputs["input_ids"].shape[0] // 2,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 2},
        "steps_per_print": 10**6,
        "gradient_clipping": 1.0,
        "optimizer": {"type": "AdamW", "params": {"lr": LR, "weight_decay": 0.0, "torch_adam": True}},
    }
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
    half = inputs["input_ids"].shape[0] // 2
    mine = model_inputs(inputs, "mlm", slice(rank * half, (rank + 1) * half))
    losses = []
    for _ in range(STEPS):
        loss = engine(**mine).loss
        engine.backward(loss)
        engine.step()
        value = loss.detach().clone()
        dist.all_reduce(value)
        losses.append(value.item() / 2)
    if rank == 0:  # ZeRO-2 partitions the optimizer state and the gradients; the parameters stay whole
        torch.save(
            {"losses": losses, "weights": {n: p.detach() for n, p in engine.module.named_parameters()}},
            workdir / "deepspeed.pt",
        )


def main():
    workdir = Path(sys.argv[1])
    if sys.argv[2:] == ["deepspeed"]:
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
        torch.set_num_threads(1)
        run_deepspeed(workdir, torch.load(workdir / "inputs.pt"), int(os.environ["RANK"]))
        dist.destroy_process_group()
        return
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    inputs = torch.load(workdir / "inputs.pt")
    results = {"tp": {}, "fsdp": {}}
    try:
        for name in TP_MODELS:
            torch.manual_seed(0)
            results["tp"][name] = check_tensor_parallel(workdir, inputs, name)
        for name in FSDP_MODELS:
            torch.manual_seed(0)
            results["fsdp"][name] = check_fsdp(workdir, inputs, name, rank)
        torch.manual_seed(0)
        results["trainer"] = check_trainer(workdir, inputs)
    except Exception:  # reported to the test, which fails with it
        results["error"] = traceback.format_exc()
        raise
    finally:
        (workdir / f"rank{rank}.json").write_text(json.dumps(results, indent=1))
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
