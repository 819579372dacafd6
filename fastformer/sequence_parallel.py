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
    shard = sp.shard_sequence(input_ids, attention_mask, labels, group=group, causal=True)
    outputs = model(**shard.model_inputs())
    loss = sp.global_loss(outputs.loss, group)  # value: the whole sequence's loss; gradient: this shard's share
    loss.backward()
    sp.all_reduce_gradients(model, group)  # now every process holds the gradient of the whole sequence's loss
    optimizer.step()

The model code needs nothing but `torch.distributed`; the hooks live in `modeling_fastformer.py` (a
`sequence_parallel_group` attribute of the attention modules and of the pooler, None by default: then the model
computes exactly what it computes without this module).
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


def _process_group(group):
    """A `ProcessGroup` from a group, a 1-D `DeviceMesh`, or None (the default group)."""
    if group is None:
        return dist.group.WORLD
    if hasattr(group, "get_group"):  # DeviceMesh
        return group.get_group()
    return group


def enable_sequence_parallel(model: nn.Module, group=None) -> nn.Module:
    """Make `model` (any Fastformer encoder, sequence classifier or causal LM, also one loaded with
    `trust_remote_code`) pool over a sequence sharded over `group` (`False` turns it off again). Returns `model`.

    Not supported: encoder-decoder models (the cross-attention), `config.sequence_chunk_size` (its chunked encoder
    pools do not go through the hooks). Decoding: a cache filled while sharded holds the whole sequence's pools on
    every process, but counts only the local tokens; generate without sequence parallelism."""
    config = getattr(model, "config", None)
    if group is not False:
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
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}
        if self.labels is not None:
            inputs["labels"] = self.labels
        if self.shift_labels is not None:
            inputs["shift_labels"] = self.shift_labels
        if self.num_items_in_batch is not None:
            inputs["num_items_in_batch"] = self.num_items_in_batch
        return inputs


def shard_sequence(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    group=None,
    *,
    causal: bool = False,
    pad_token_id: int = 0,
) -> SequenceShard:
    """This process's contiguous slice of the sequence dimension of a `(batch, seq)` batch (which every process
    passes whole). The sequence is padded at the end to a multiple of the group's size (padding: `pad_token_id`,
    attention mask 0, label -100), so a shard may be all padding.

    labels: `(batch, seq)` token labels (causal LM: the input ids, shifted here across the shards; encoder heads:
    per-token labels), or anything else (e.g. `(batch,)` class ids), passed unchanged to every process.
    causal: the positions of a causal model with a mask count only the real tokens (as the model does itself)."""
    group = _process_group(group)
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    batch, length = input_ids.shape
    padded = -(-length // world) * world
    extra = padded - length
    if extra and attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if causal and attention_mask is not None:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    else:
        position_ids = torch.arange(length, device=input_ids.device).expand(batch, length)
    token_labels = labels is not None and tuple(labels.shape) == (batch, length)
    shift_labels = num_items = None
    if token_labels:
        if causal:
            labels = nn.functional.pad(labels[:, 1:], (0, 1), value=-100)  # position t predicts token t + 1
        num_items = (labels != -100).sum().clamp(min=1)
    if extra:
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
