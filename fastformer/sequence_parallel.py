# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Sequence (context) parallelism: one sequence split in contiguous shards over the processes of a `torch.distributed`
group, each process running the model on its shard only.

Fastformer's attention reads the rest of the sequence only through softmax pools (the encoder's global query and key,
the causal prefix pools, the classifier's attention pooler), and a softmax pool of a concatenation is an exact merge of
the pools of its parts: each process pools its shard into `(max, normaliser, weighted sum)` and one all-reduce per
pool, `O(batch * hidden)` numbers whatever the length, gives every process the pool of the whole sequence (the causal
prefix pools: an exclusive scan of the same summaries over the ranks). Softmax attention needs ring attention instead,
whose traffic grows with the length. See docs/distributed.md.

Usage (every process runs the same lines, on the same full batch)::

    from fastformer import sequence_parallel as sp

    sp.enable_sequence_parallel(model, group)  # group: a ProcessGroup, a 1-D DeviceMesh, or None (the default group)
    shard = sp.shard_sequence(input_ids, attention_mask, labels, group=group, model=model)  # checks the whole batch
    outputs = model(**shard.model_inputs())
    loss = sp.global_loss(outputs.loss, group)  # value: the whole sequence's loss; gradient: this shard's share
    loss.backward()
    sp.all_reduce_gradients(model, group)  # now every process holds the gradient of the whole sequence's loss
    optimizer.step()

The model imports the collectives at the end of this file (`sharded_softmax_pool`, `sharded_prefix_pools`,
`sharded_first_or_mean`), so this file travels with `modeling_fastformer.py` into checkpoints and imports only torch
and its sibling `pooling_fastformer.py`. The switch is a `sequence_parallel_group` attribute of the attention modules
and of the pooler, None by default: then the model computes exactly what it computes without this module.

Supported: `FastformerModel` (encoder or causal), `FastformerForSequenceClassification`, `FastformerForMaskedLM`,
`FastformerForTokenClassification`, `FastformerForCausalLM`. Refused (`ValueError`): `FastformerForQuestionAnswering`,
`FastformerForMultipleChoice` (`UNSUPPORTED_HEADS`), encoder-decoder models, `config.sequence_chunk_size`.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .inputs_fastformer import check_class_ids, check_position_limit, default_position_ids, validate_inputs
from .pooling_fastformer import SoftmaxPool, compute_dtype, merge_all, softmax_pool


def _process_group(group):
    """A `ProcessGroup` from a group, a 1-D `DeviceMesh`, or None (the default group)."""
    if group is None:
        return dist.group.WORLD
    if hasattr(group, "get_group"):  # DeviceMesh
        return group.get_group()
    return group


SUPPORTED_MODELS = (
    "FastformerModel (encoder or causal), FastformerForSequenceClassification, FastformerForMaskedLM, "
    "FastformerForTokenClassification and FastformerForCausalLM"
)
# Heads that sequence parallelism refuses, and why (matched by class name, so also when loaded with
# `trust_remote_code` or wrapped by FSDP2's generated subclass).
UNSUPPORTED_HEADS = {
    "FastformerForQuestionAnswering": (
        "its span loss is a softmax over the whole sequence's start and end logits, which each process would take "
        "over its own shard only (a wrong loss, different on every process)"
    ),
    "FastformerForMultipleChoice": "its inputs are (batch, num_choices, seq), which `shard_sequence` does not split",
}
# The labels of the supported heads: per token, with the config attribute that counts their classes, or per
# sequence (None: class ids `(batch,)`, regression or multi-label targets `(batch, num_labels)`).
TOKEN_LABEL_CLASSES = {
    "FastformerForCausalLM": "vocab_size",
    "FastformerForMaskedLM": "vocab_size",
    "FastformerForTokenClassification": "num_labels",
    "FastformerForSequenceClassification": None,
}


def _class_names(module: nn.Module) -> set:
    return {cls.__name__ for cls in type(module).__mro__}


def _refuse_unsupported_heads(model: nn.Module):
    """Raise a `ValueError` naming the head if `model` is or contains a head that sequence parallelism refuses."""
    for module in model.modules():
        for name in _class_names(module) & UNSUPPORTED_HEADS.keys():
            raise ValueError(
                f"Sequence parallelism does not support `{name}`: {UNSUPPORTED_HEADS[name]}. Supported: "
                f"{SUPPORTED_MODELS}."
            )


def enable_sequence_parallel(model: nn.Module, group=None) -> nn.Module:
    """Make `model` (a Fastformer encoder, sequence classifier, masked LM, token classifier or causal LM, also one
    loaded with `trust_remote_code`) pool over a sequence sharded over `group` (`False` turns it off again). Returns
    `model`.

    Refused with a `ValueError`: `FastformerForQuestionAnswering` (its span loss is a softmax over the whole
    sequence, not a pool), `FastformerForMultipleChoice` (`(batch, num_choices, seq)` inputs), encoder-decoder
    models (the cross-attention), `config.sequence_chunk_size` (its chunked encoder pools do not go through the
    hooks). Decoding: a cache filled while sharded holds the whole sequence's pools on every process, but counts only
    the local tokens; generate without sequence parallelism."""
    config = getattr(model, "config", None)
    if group is not False:
        _refuse_unsupported_heads(model)
        if config is not None and getattr(config, "sequence_chunk_size", 0):
            raise ValueError("Sequence parallelism does not combine with `config.sequence_chunk_size`; set it to 0.")
        if config is not None and (config.is_encoder_decoder or config.add_cross_attention):
            raise ValueError("Sequence parallelism supports encoders and causal LMs, not encoder-decoder models.")
    process_group = None if group is False else _process_group(group)
    hooked = 0
    for module in model.modules():
        if "sequence_parallel_group" in dir(type(module)):
            module.sequence_parallel_group = process_group
            hooked += 1
    if not hooked:
        raise ValueError(f"{type(model).__name__} has no sequence-parallel hooks (`sequence_parallel_group`).")
    return model


@dataclass
class SequenceShard:
    """This process's slice of a batch: `[offset, offset + input_ids.shape[1])` of the (padded) sequence.

    `position_ids` are the whole sequence's (what the model computes from the full batch); `labels` are ready for
    the model (causal: already shifted over the whole sequence, so the last token of a shard predicts the first of
    the next one); `num_items_in_batch` is the count of the whole batch's labels, so that the shards' token losses
    add up to the whole sequence's mean; `length` is the unpadded length of the whole sequence."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor
    labels: torch.Tensor | None
    shift_labels: torch.Tensor | None
    num_items_in_batch: torch.Tensor | None
    offset: int
    length: int
    group: object

    def model_inputs(self) -> dict:
        """Keyword arguments for the model's `forward`."""
        inputs = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }
        if self.labels is not None:
            inputs["labels"] = self.labels
        if self.shift_labels is not None:
            inputs["shift_labels"] = self.shift_labels
        if self.num_items_in_batch is not None:
            inputs["num_items_in_batch"] = self.num_items_in_batch
        return inputs


def _settings_from_model(model: nn.Module | None, causal: bool | None, token_labels: bool | None):
    """`(config, causal, token_labels, label_classes)` for `shard_sequence`: the caller's values, or what `model` and
    its head imply (a contradiction is a `ValueError`). `label_classes`: the config attribute that counts the
    classes of the head's per-token labels, or None."""
    if model is None:
        return None, bool(causal), token_labels, None
    _refuse_unsupported_heads(model)
    config = getattr(model, "config", None)

    def agree(name: str, given, derived: bool) -> bool:
        if given is not None and bool(given) != derived:
            raise ValueError(f"`{name}={given}` contradicts the model: `{type(model).__name__}` has {name}={derived}.")
        return derived

    base = getattr(model, "fastformer", model)
    causal = agree("causal", causal, bool(getattr(base, "causal", getattr(config, "is_decoder", False))))
    head = next((name for name in TOKEN_LABEL_CLASSES if name in _class_names(model)), None)
    if head is None:
        return config, causal, token_labels, None
    label_classes = TOKEN_LABEL_CLASSES[head]
    return config, causal, agree("token_labels", token_labels, label_classes is not None), label_classes


def shard_sequence(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    group=None,
    *,
    model: nn.Module | None = None,
    causal: bool | None = None,
    token_labels: bool | None = None,
    pad_token_id: int | None = None,
) -> SequenceShard:
    """This process's contiguous slice of the sequence dimension of a `(batch, seq)` batch, which every process
    passes whole (the same batch on every process). The sequence is padded at the end to a multiple of the group's
    size (padding: `pad_token_id`, attention mask 0, label -100), so a shard may be all padding.

    The whole batch is checked here, before any collective, so that an input error that only one shard holds (an id
    outside the vocabulary, a position past the position table, a bad label) raises the same `ValueError` on every
    process, instead of the error on one process and a broken or hanging collective on the others: the shapes
    always, and with `model` also the ids, the positions and per-token labels, as the model itself checks them.

    model: the model (with its `config`), recommended: it supplies the defaults of `causal`, `token_labels` (from
        its head) and `pad_token_id`, and the checks above; question answering and multiple choice are refused.
    labels: per-token labels `(batch, seq)` (causal LM: the input ids, shifted here over the whole sequence; masked
        LM, token classification: class ids), sliced and counted over the whole batch (`num_items_in_batch`); or
        per-sequence targets (class ids `(batch,)`, regression or multi-label targets `(batch, num_labels)`), passed
        unchanged to every process.
    token_labels: whether `labels` are per token. Default: from the head of `model` (causal LM, masked LM, token
        classification: per token; sequence classification: per sequence). Without such a model, labels of any
        other shape than `(batch, seq)` are per sequence, and `(batch, seq)` labels are per token with `causal` (a
        causal LM's labels) and must otherwise be declared: a multi-label target with `num_labels == seq` has that
        shape too.
    causal: the positions of a causal model with a mask count only the real tokens (as the model does itself).
        Default: whether `model` is causal; False without a model.
    pad_token_id: the id of the padding added here. Default: `model.config.pad_token_id`, else 0."""
    if input_ids.dim() == 3:
        raise ValueError(
            "`shard_sequence` needs `input_ids` (batch, seq) (multiple choice's (batch, num_choices, seq) is not "
            f"supported), got {tuple(input_ids.shape)}."
        )
    config, causal, token_labels, label_classes = _settings_from_model(model, causal, token_labels)
    # Checks of the whole batch, as the model makes them: the same on every process, and before any collective.
    batch, length = validate_inputs(config, input_ids, attention_mask, None)
    if labels is not None and token_labels is None:
        if tuple(labels.shape) == (batch, length) and not causal:
            raise ValueError(
                f"`labels` of shape {(batch, length)} = (batch, seq) may be per token (masked LM, token "
                "classification) or per sequence (e.g. multi-label targets with `num_labels == seq`): pass "
                "`token_labels=True` or `token_labels=False`, or the model (`model=`), whose head decides."
            )
        token_labels = tuple(labels.shape) == (batch, length)
    token_labels = bool(token_labels) and labels is not None
    if pad_token_id is None:
        pad_token_id = 0 if getattr(config, "pad_token_id", None) is None else config.pad_token_id
    position_ids = default_position_ids(causal, length, attention_mask, device=input_ids.device).expand(batch, length)
    if config is not None:
        check_position_limit(config, position_ids, causal)
    shift_labels = num_items = None
    if token_labels:  # without the head (`model`), the ids' range is not known: only shape and dtype are checked
        classes = getattr(config, label_classes, None) if label_classes is not None else None
        labels = check_class_ids(labels, classes, "labels", (batch, length))
        if causal:  # position t predicts token t + 1
            labels = nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
        num_items = (labels != -100).sum().clamp(min=1)

    group = _process_group(group)
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    padded = -(-length // world) * world
    extra = padded - length
    if extra:
        vocab_size = getattr(config, "vocab_size", None)
        if pad_token_id < 0 or (vocab_size is not None and pad_token_id >= vocab_size):
            raise ValueError(f"`pad_token_id` {pad_token_id} is outside the vocabulary [0, {vocab_size}).")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        input_ids = nn.functional.pad(input_ids, (0, extra), value=pad_token_id)
        attention_mask = nn.functional.pad(attention_mask, (0, extra), value=0)
        # padding repeats the last position: never past the position table
        position_ids = torch.cat([position_ids, position_ids[:, -1:].expand(batch, extra)], dim=1)
        if token_labels:
            labels = nn.functional.pad(labels, (0, extra), value=-100)
    size = padded // world
    local = slice(rank * size, (rank + 1) * size)
    if token_labels:
        labels = labels[:, local].contiguous()
        if causal:  # the model checks `labels` (the shape) and reads `shift_labels` (the targets)
            shift_labels = labels
    return SequenceShard(
        input_ids=input_ids[:, local].contiguous(),
        attention_mask=None if attention_mask is None else attention_mask[:, local].contiguous(),
        position_ids=position_ids[:, local].contiguous(),
        labels=labels,
        shift_labels=shift_labels,
        num_items_in_batch=num_items,
        offset=rank * size,
        length=length,
        group=group,
    )


def gather_sequence(tensor: torch.Tensor, shard: SequenceShard, dim: int = 1) -> torch.Tensor:
    """The whole sequence of a per-shard output (e.g. `last_hidden_state`, logits; `dim`: its sequence dimension),
    padding removed, on every process. For inspection: no gradient flows back through it."""
    pieces = [torch.empty_like(tensor) for _ in range(dist.get_world_size(shard.group))]
    dist.all_gather(pieces, tensor.detach().contiguous(), group=shard.group)
    return torch.cat(pieces, dim=dim).narrow(dim, 0, shard.length)


class _ShareOfTotal(torch.autograd.Function):
    """Forward: `total` (a number computed without gradient); backward: the gradient goes to `share`."""

    @staticmethod
    def forward(ctx, share, total):
        return total.to(share.dtype).clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def global_loss(loss: torch.Tensor, group=None, replicated: bool = False) -> torch.Tensor:
    """The whole sequence's loss as a value on every process, whose gradient is this process's share, so that
    `all_reduce_gradients` after `backward()` gives every process the whole loss's gradient.

    replicated=False: `loss` is this shard's share of a token loss (causal LM, masked LM, token classification with
    `shard.num_items_in_batch`): the value is the sum of the shares. replicated=True: `loss` is the same on every
    process (sequence classification: computed from the pooled vector): its share is `loss / world`."""
    group = _process_group(group)
    world = dist.get_world_size(group)
    if replicated:
        return _ShareOfTotal.apply(loss / world, loss.detach())
    total = loss.detach().clone()
    dist.all_reduce(total, group=group)
    return _ShareOfTotal.apply(loss, total)


def all_reduce_gradients(model: nn.Module, group=None):
    """Sum every parameter's gradient over `group` (the processes hold shares of one loss: a sum, not DDP's mean).
    Parameters without a gradient on this process take part with zeros."""
    group = _process_group(group)
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad, group=group)


# The collectives of the model (`modeling_fastformer.py`): a sequence split in contiguous shards over the processes of
# a group. Each softmax pool exchanges only `O(batch * hidden)` numbers per pool, whatever the length. They are
# autograd-aware: every process must run the same forward and backward.


class AllReduceSum(torch.autograd.Function):
    """Sum of a tensor over the processes of a group, differentiable: the gradient is the sum of the processes'
    gradients, so that when every process's loss is its share of a total, each gets the gradient of the total."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group):
        ctx.group = group
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor, group=group)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return AllReduceSum.apply(grad, ctx.group), None


def all_reduce_sum(tensor: torch.Tensor, group) -> torch.Tensor:
    """`AllReduceSum` of `tensor` over `group`."""
    return AllReduceSum.apply(tensor, group)


def sharded_softmax_pool(logits: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None, group):
    """`softmax_pool` of a sequence sharded over `group`: this process holds `logits` `(batch, n, heads)`, `values`
    `(batch, n, heads * d)` and `mask` `(batch, n, 1)` of its shard.

    The shard's pool, then one all-reduce MAX of the maxima `m` and one all-reduce SUM of the rescaled `[S, Z]`
    `(batch, heads, d + 1)`. Returns the pool of the whole sequence (the same on every process) and this shard's
    unnormalised weights relative to its `m`, as `softmax_pool` does. The maximum only rescales, so it carries no
    gradient and the gradient stays exact."""
    pool, exps = softmax_pool(logits, values, mask)
    top = pool.m.clone()
    dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
    scale = torch.exp(pool.m - top)  # (batch, heads), <= 1
    return SoftmaxPool(top, all_reduce_sum(scale.unsqueeze(-1) * pool.sums, group)), exps * scale.unsqueeze(1)


def sharded_prefix_pools(logits, values, keep, state: SoftmaxPool | None, group):
    """The pool of the tokens before this process's shard (`state`, e.g. a cache's, then the shards of the lower
    ranks of `group`: an exclusive scan) and the pool of the whole sequence (every shard), for the
    causal prefix pools. `logits` `(batch, n, heads)`, `values` `(batch, n, heads, head_dim)`, `keep` `(batch, n)` or
    None. Each process pools its shard, then every shard's pool is gathered with one all-reduce SUM of the `[S, Z]`
    `(world, batch, heads, head_dim + 1)` (each process filling its own row: an all-gather that every backend has
    and autograd follows to the lower ranks) and one of the maxima, and `merge`d in rank order."""
    dtype = compute_dtype(logits, values)
    lowest = torch.finfo(dtype).min
    mask = None if keep is None else keep.unsqueeze(-1)
    shard, _ = softmax_pool(logits.to(dtype), values.flatten(2).to(dtype), mask)
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    mine = (torch.arange(world, device=shard.m.device) == rank).to(dtype)  # (world,)
    maxima = mine.view(world, 1, 1) * shard.m
    dist.all_reduce(maxima, group=group)  # (world, batch, heads)
    sums = all_reduce_sum(mine.view(world, 1, 1, 1) * shard.sums, group)  # (world, batch, heads, head_dim + 1)
    carried = [] if state is None else [SoftmaxPool(state.m.to(dtype), state.sums.to(dtype))]
    shards = [SoftmaxPool(maxima[row], sums[row]) for row in range(world)]
    # The higher ranks' rows are made empty pools rather than skipped: every process runs the same ops, and its
    # backward always reaches the all-reduce (which the other processes' backward waits for).
    lower = [
        SoftmaxPool(pool.m if row < rank else torch.full_like(pool.m, lowest), pool.sums * float(row < rank))
        for row, pool in enumerate(shards)
    ]
    return merge_all(carried + lower), merge_all(carried + shards)


def sharded_first_or_mean(pooler_type: str, hidden_states: torch.Tensor, attention_mask, group) -> torch.Tensor:
    """The `"first"` or `"mean"` pooler of a sequence sharded over `group` (the same vector on each process): the
    first token (rank 0's), or the mean over all the real tokens, `(batch, hidden)`. `attention_mask` `(batch, n)` or
    None."""
    if pooler_type == "first":  # rank 0's first token; the other ranks add 0 (in the same ops)
        return all_reduce_sum(hidden_states[:, 0] * float(dist.get_rank(group) == 0), group)
    weights = (
        torch.ones_like(hidden_states[..., :1])
        if attention_mask is None
        else (attention_mask.to(hidden_states.dtype).unsqueeze(-1))
    )  # (batch, n, 1)
    total = all_reduce_sum(torch.cat([(hidden_states * weights).sum(dim=1), weights.sum(dim=1)], dim=-1), group)
    return total[:, :-1] / total[:, -1:].clamp(min=1.0)
