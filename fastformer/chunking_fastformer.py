# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Sequence chunking (`config.sequence_chunk_size`): a layer runs over consecutive chunks of the sequence, each chunk
recomputed in the backward pass, so that only the chunks' inputs and their `(batch, hidden)` pools are kept.

`split_sequence` cuts the sequence, `run_chunk` runs one chunk under activation checkpointing, and `ChunkStates`
carries the causal prefix pools from one chunk to the next. The encoder's chunked global vectors are the attention's
own (`FastformerAdditiveAttention.chunked_global_key`).

This file imports only torch and its siblings `pooling_fastformer.py` and `cache_fastformer.py`: it is copied beside
`modeling_fastformer.py` into checkpoints (Hub custom code).
"""

from collections.abc import Callable

import torch
import torch.utils.checkpoint
from torch import nn

from .cache_fastformer import FastformerCacheLayer
from .pooling_fastformer import SoftmaxPool


class ChunkStates:
    """The prefix pools a sequence-chunked causal layer carries from one chunk to the next, read and written like a
    `FastformerCache`'s (`read_state`, `write_state`) but replaced rather than updated in place, so that gradients
    flow through them from chunk to chunk."""

    def __init__(self, states: dict[str, SoftmaxPool | None]):
        self.states = dict(states)

    def read_state(self, layer_idx: int, slot: str) -> SoftmaxPool | None:
        return self.states.get(slot)

    def write_state(self, layer_idx: int, slot: str, state: SoftmaxPool):
        self.states[slot] = state

    @staticmethod
    def run(block: Callable, pieces, masks, parts, cache, layer_idx: int, *inputs) -> torch.Tensor:
        """`block(piece, mask, part, *inputs, layer_idx, *pools) -> (output, *pools)` on each chunk in turn
        (`run_chunk`; `part`: the chunk's `Segments`, or None), `pools` one per slot of `FastformerCacheLayer.SLOTS`
        (or None), from those of `cache` (a `FastformerCache` or None), which gets the final ones. Returns the
        outputs concatenated along the sequence."""
        slots, outputs = FastformerCacheLayer.SLOTS, []
        states = [None if cache is None else cache.read_state(layer_idx, slot) for slot in slots]
        for piece, mask, part in zip(pieces, masks, parts):
            out, *states = run_chunk(block, piece, mask, part, *inputs, layer_idx, *states)
            outputs.append(out)
        for slot, state in zip(slots, states):
            if cache is not None and state is not None:
                cache.write_state(layer_idx, slot, state)
        return torch.cat(outputs, dim=1)


def split_sequence(hidden_states: torch.Tensor, mask: torch.Tensor | None, chunk: int, attention: nn.Module):
    """`hidden_states` `(batch, seq, hidden)` and `mask` `(batch, seq, 1)` (or None: a None per chunk) in consecutive
    chunks of `chunk` positions; refused under sequence parallelism (each process would pool only its own chunks)."""
    if attention.sequence_parallel_group is not None:
        raise ValueError(
            "`sequence_chunk_size` cannot be combined with sequence parallelism (each process would pool only its "
            "own chunks): set `config.sequence_chunk_size=0`, or give each process fewer tokens instead."
        )
    pieces = hidden_states.split(chunk, dim=1)
    return pieces, [None] * len(pieces) if mask is None else mask.split(chunk, dim=1)


def run_chunk(function: Callable, *args):
    """`function(*args)`, which keeps only its inputs for the backward pass and runs again there while gradients are
    recorded (non-reentrant activation checkpointing; dropout replays the same masks)."""
    if torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(function, *args, use_reentrant=False)
    return function(*args)
