"""One process of `test_sequence_parallel.py`: `python sequence_parallel_worker.py RANK WORLD INIT_FILE OUT_DIR MODE`.

MODE `compare`: every process builds the same randomized models (`helpers.randomize_`, so that tokens mix), runs
each on the whole batch alone (the reference), then on its shard with sequence parallelism, and writes, per case,
the largest differences of the outputs, the loss and the parameter gradients (summed over the processes) from the
reference, and the difference without the collectives (each shard alone), each relative to max(1, the largest
reference value), to `OUT_DIR/rank{RANK}.json`. A case that raises records `{"error": "Type: message"}` instead.

MODE `errors`: every process runs the documented training step on a batch with an input error that only the second
shard holds, and writes, per case, the exception it got and the sum over the processes of a 1 that each contributes
after it (2 when the group survived the error: no process was left inside a collective), to
`OUT_DIR/errors{RANK}.json`.
"""

import copy
import json
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import causal_config, max_difference, randomize_, tiny_config  # noqa: E402

from fastformer import (  # noqa: E402
    FastformerForCausalLM,
    FastformerForMaskedLM,
    FastformerForSequenceClassification,
    FastformerForTokenClassification,
    FastformerModel,
)
from fastformer import sequence_parallel as sp  # noqa: E402


def scale(tensor: torch.Tensor) -> float:
    return max(1.0, tensor.detach().abs().max().item())


def gradient_difference(model, reference) -> float:
    """Largest |difference| of the gradients (summed over the processes) relative to max(1, |reference gradient|)."""
    sp.all_reduce_gradients(model)
    worst = 0.0
    for (name, param), ref in zip(model.named_parameters(), reference.parameters()):
        assert ref.grad is not None, name
        worst = max(worst, max_difference(param.grad, ref.grad) / scale(ref.grad))
    return worst


def without_collectives(model, shard, output_of):
    """The output with each process pooling its own shard only (sequence parallelism off), gathered."""
    sp.enable_sequence_parallel(model, False)
    with torch.no_grad():
        alone = output_of(model(**shard.model_inputs()))
    sp.enable_sequence_parallel(model)
    return alone


def token_lm_differences(model, reference, full, shard, **model_kwargs):
    """Run `model` on its shard, back-propagate the whole sequence's loss and compare logits, loss and gradients
    with the reference's `full` output (already back-propagated)."""
    out = model(**shard.model_inputs(), **model_kwargs)
    loss = sp.global_loss(out.loss)
    loss.backward()
    logits = sp.gather_sequence(out.logits, shard)
    alone = without_collectives(model, shard, lambda o: sp.gather_sequence(o.logits, shard))
    return {
        "output": max_difference(logits, full.logits) / scale(full.logits),
        "loss": abs(loss.item() - full.loss.item()) / max(1.0, abs(full.loss.item())),
        "gradients": gradient_difference(model, reference),
        "without_collectives": max_difference(alone, full.logits) / scale(full.logits),
    }


def encoder_case(masks, seed):
    config = tiny_config()
    reference = randomize_(FastformerModel(config), seed=seed)
    model = sp.enable_sequence_parallel(copy.deepcopy(reference))
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, config.vocab_size, masks.shape, generator=generator)
    probe = torch.randn(*masks.shape, config.hidden_size, generator=generator)  # loss = sum_t probe_t . h_t
    full = reference(input_ids, attention_mask=masks, output_attentions=True)
    (full.last_hidden_state * probe).sum().backward()

    shard = sp.shard_sequence(input_ids, masks)
    padding = shard.input_ids.shape[1] * dist.get_world_size() - masks.shape[1]
    local_probe = torch.nn.functional.pad(probe, (0, 0, 0, padding))
    local_probe = local_probe[:, shard.offset : shard.offset + shard.input_ids.shape[1]]
    out = model(**shard.model_inputs(), output_attentions=True)
    sp.global_loss((out.last_hidden_state * local_probe).sum()).backward()
    hidden = sp.gather_sequence(out.last_hidden_state, shard)
    weights = [sp.gather_sequence(layer, shard, dim=-1) for layer in out.attentions]
    alone = without_collectives(model, shard, lambda o: sp.gather_sequence(o.last_hidden_state, shard))
    return {
        "output": max_difference(hidden, full.last_hidden_state) / scale(full.last_hidden_state),
        "attention_weights": max(max_difference(w, r) for w, r in zip(weights, full.attentions)),
        "gradients": gradient_difference(model, reference),
        "without_collectives": max_difference(alone, full.last_hidden_state) / scale(full.last_hidden_state),
    }


def classifier_case(pooler_type, masks, seed, mesh=False, multi_label=False, by_model=False, token_labels=None):
    """`multi_label`: multi-hot float targets `(batch, num_labels)` with `num_labels == seq`, the shape of token
    labels; `shard_sequence` learns that they are not from the model (`by_model`) or from `token_labels=False`."""
    num_labels = masks.shape[1] if multi_label else 3
    config = tiny_config(num_labels=num_labels, pooler_type=pooler_type)
    if multi_label:
        config.problem_type = "multi_label_classification"
    reference = randomize_(FastformerForSequenceClassification(config), seed=seed)
    group = init_device_mesh("cpu", (dist.get_world_size(),)) if mesh else None  # a 1-D DeviceMesh as the group
    model = sp.enable_sequence_parallel(copy.deepcopy(reference), group)
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, config.vocab_size, masks.shape, generator=generator)
    if multi_label:
        labels = (torch.rand(masks.shape[0], num_labels, generator=generator) < 0.5).float()
    else:
        labels = torch.randint(0, 3, (masks.shape[0],), generator=generator)
    full = reference(input_ids, attention_mask=masks, labels=labels)
    full.loss.backward()

    told = {"model": model} if by_model else {}  # how `shard_sequence` learns what the labels are
    if token_labels is not None:
        told["token_labels"] = token_labels
    shard = sp.shard_sequence(input_ids, masks, labels, group, **told)
    out = model(**shard.model_inputs())
    loss = sp.global_loss(out.loss, group, replicated=True)
    loss.backward()
    alone = without_collectives(model, shard, lambda o: o.logits)
    return {
        "output": max_difference(out.logits, full.logits) / scale(full.logits),
        "loss": abs(loss.item() - full.loss.item()) / max(1.0, abs(full.loss.item())),
        "gradients": gradient_difference(model, reference),
        "without_collectives": max_difference(alone, full.logits) / scale(full.logits),
    }


def masked_lm_case(masks, seed):
    config = tiny_config()
    reference = randomize_(FastformerForMaskedLM(config), seed=seed)
    model = sp.enable_sequence_parallel(copy.deepcopy(reference))
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, config.vocab_size, masks.shape, generator=generator)
    chosen = (torch.rand(masks.shape, generator=generator) < 0.4) & masks.bool()
    labels = input_ids.masked_fill(~chosen, -100)
    full = reference(input_ids, attention_mask=masks, labels=labels)
    full.loss.backward()

    shard = sp.shard_sequence(input_ids, masks, labels, model=model)  # token labels: sliced, counted over the batch
    return token_lm_differences(model, reference, full, shard)


def token_classification_case(masks, seed):
    config = tiny_config(num_labels=5)
    reference = randomize_(FastformerForTokenClassification(config), seed=seed)
    model = sp.enable_sequence_parallel(copy.deepcopy(reference))
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, config.vocab_size, masks.shape, generator=generator)
    labels = torch.randint(0, 5, masks.shape, generator=generator).masked_fill(masks == 0, -100)
    full = reference(input_ids, attention_mask=masks, labels=labels)
    full.loss.backward()

    shard = sp.shard_sequence(input_ids, masks, labels, token_labels=True)  # declared instead of `model=`
    return token_lm_differences(model, reference, full, shard)


def causal_case(masks, seed, checkpointing=False, **config_kwargs):
    config = causal_config(**config_kwargs)
    reference = randomize_(FastformerForCausalLM(config), seed=seed)
    model = sp.enable_sequence_parallel(copy.deepcopy(reference))
    if checkpointing:  # the layers' collectives run again in the backward pass, in the same order on every process
        model.activation_checkpointing_enable()
        model.train()
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, config.vocab_size, masks.shape, generator=generator)
    labels = input_ids.masked_fill(masks == 0, -100)
    full = reference(input_ids, attention_mask=masks, labels=labels, use_cache=False)
    full.loss.backward()

    shard = sp.shard_sequence(input_ids, masks, labels, causal=True)
    return token_lm_differences(model, reference, full, shard, use_cache=False)


def run_cases(cases: dict) -> dict:
    """Each case's numbers, or the exception it raised (the same on every process when raised before the
    collectives, so that the next case still pairs up)."""
    results = {}
    for name, case in cases.items():
        try:
            results[name] = case()
        except Exception as error:  # recorded for the test to report
            results[name] = {"error": f"{type(error).__name__}: {error}"}
    return results


def compare_cases() -> dict:
    # 13 tokens over 2 processes: shards of 7, the last one padded. Row 1: padding in the middle and at the end;
    # row 2: real tokens only in the first shard (the second is all padding).
    masks = torch.ones(3, 13, dtype=torch.long)
    masks[1, 4:7] = 0
    masks[1, 11:] = 0
    masks[2, 5:] = 0
    left_padded = torch.ones(2, 15, dtype=torch.long)
    left_padded[1, :4] = 0
    # Row 1 has no real token at all, and `shard_sequence` pads the 13 tokens to 14.
    empty_row = torch.ones(3, 13, dtype=torch.long)
    empty_row[1] = 0
    empty_row[2, 9:] = 0
    return run_cases(
        {
            "encoder": lambda: encoder_case(masks, seed=0),
            "encoder_no_mask": lambda: encoder_case(torch.ones(2, 12, dtype=torch.long), seed=1),
            "encoder_empty_row": lambda: encoder_case(empty_row, seed=10),
            "classifier_attention": lambda: classifier_case("attention", masks, seed=2),
            "classifier_first": lambda: classifier_case("first", masks, seed=3),
            "classifier_mean": lambda: classifier_case("mean", masks, seed=4),
            "classifier_device_mesh": lambda: classifier_case("attention", masks, seed=8, mesh=True),
            "classifier_empty_row": lambda: classifier_case("attention", empty_row, seed=11),
            "classifier_multi_label": lambda: classifier_case(
                "attention", masks, seed=12, multi_label=True, by_model=True
            ),
            "classifier_multi_label_declared": lambda: classifier_case(
                "mean", masks, seed=13, multi_label=True, token_labels=False
            ),
            "masked_lm": lambda: masked_lm_case(masks, seed=9),
            "token_classification": lambda: token_classification_case(masks, seed=14),
            "causal_lm": lambda: causal_case(left_padded, seed=5),
            "causal_lm_no_positions": lambda: causal_case(masks, seed=6, position_embedding_type="none"),
            "causal_lm_checkpointing": lambda: causal_case(left_padded, seed=7, checkpointing=True),
        }
    )


def training_step(model, input_ids, labels):
    """The documented step on the whole batch `input_ids` (every process passes the same), as in the docs."""
    shard = sp.shard_sequence(input_ids, labels=labels, model=model)
    loss = sp.global_loss(model(**shard.model_inputs()).loss)
    loss.backward()
    sp.all_reduce_gradients(model)


def error_case(model_class, config, input_ids, labels) -> dict:
    model = sp.enable_sequence_parallel(randomize_(model_class(config), seed=0))
    try:
        training_step(model, input_ids, labels)
        error = None
    except Exception as raised:  # recorded for the test to compare over the processes
        error = f"{type(raised).__name__}: {raised}"
    alive = torch.ones(1)
    dist.all_reduce(alive)
    return {"error": error, "group_sum": alive.item()}


def errors_cases() -> dict:
    """Each batch is fine in the first shard (tokens 0-6 of 13, 0-34 of 70) and wrong in the second only."""
    config = tiny_config(num_labels=5)  # vocabulary 99, 64 positions
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, config.vocab_size, (2, 13), generator=generator)
    bad_id = ids.clone()
    bad_id[1, 10] = config.vocab_size
    bad_label = torch.randint(0, 5, (2, 13), generator=generator)
    bad_label[0, 11] = 5
    too_long = torch.randint(3, config.vocab_size, (2, 70), generator=generator)
    return {
        "id_outside_vocabulary": error_case(FastformerForMaskedLM, config, bad_id, ids),
        "past_position_table": error_case(FastformerForSequenceClassification, config, too_long, torch.tensor([0, 4])),
        "token_label_outside_classes": error_case(FastformerForTokenClassification, config, ids, bad_label),
    }


def main():
    rank, world, init_file, out_dir, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    results = compare_cases() if mode == "compare" else errors_cases()
    with open(os.path.join(out_dir, f"{'rank' if mode == 'compare' else 'errors'}{rank}.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
