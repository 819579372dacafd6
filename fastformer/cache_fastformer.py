# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""The decoding state of a causal Fastformer: one `SoftmaxPool` per prefix pool and depth, constant in the length.

`FastformerCache` is a transformers `Cache` of `FastformerCacheLayer`s (built on `LinearAttentionLayer`, from which
beam reordering, reset and offloading come); the `[S, m, Z]` tensor layout in which a layer stores a pool is known
only to `FastformerCacheLayer.pack` / `unpack`. `split_cache` unwraps the `EncoderDecoderCache` of a decoder with
cross-attention, `cached_encoder_projections` keeps the cross-attention's projections of the encoder output in it,
`renamed_cache_kwargs` accepts the cache under transformers' other names, and `FastformerGenerationMixin` tells
`generate()` how to treat the state.

This file imports only torch, transformers and its sibling `pooling_fastformer.py`: it is copied beside
`modeling_fastformer.py` into checkpoints (Hub custom code).
"""

from collections.abc import Callable

import torch
from transformers import GenerationMixin
from transformers.cache_utils import Cache, EncoderDecoderCache, LinearAttentionLayer
from transformers.utils.deprecation import deprecate_kwarg

from .pooling_fastformer import SoftmaxPool


class FastformerCacheLayer(LinearAttentionLayer):
    """One depth's decoding state: one `SoftmaxPool` per prefix pool, stored as one `(batch, heads, head_dim + 2)`
    tensor `[S, m, Z]` (`pack`), in named slots (`SLOTS`): the causal self-attention's global `"query"` and `"key"`,
    and the additive cross-attention's own global query `"cross_query"`. A slot is allocated on its first write, so
    unused slots cost nothing; the size is constant in the length."""

    SLOTS = ("query", "key", "cross_query")

    def __init__(self):
        super().__init__(number_of_states=len(self.SLOTS))

    @staticmethod
    def pack(pool: SoftmaxPool) -> torch.Tensor:
        """`pool` as the stored `(batch, heads, head_dim + 2)` tensor `[S, m, Z]`."""
        return torch.cat([pool.s, pool.m.unsqueeze(-1), pool.z.unsqueeze(-1)], dim=-1)

    @staticmethod
    def unpack(state: torch.Tensor | None) -> SoftmaxPool | None:
        """The `SoftmaxPool` of a stored `[S, m, Z]` tensor (None stays None)."""
        if state is None:
            return None
        return SoftmaxPool(state[..., -2], torch.cat([state[..., :-2], state[..., -1:]], dim=-1))

    def update_recurrent_state(self, recurrent_states: torch.Tensor, state_idx: int = 0, **kwargs) -> torch.Tensor:
        """Store the new state of slot `state_idx`. It replaces the old tensor instead of being copied into it (the
        parent's in-place update): a forward that continues from this state can then be differentiated back through
        the forward that wrote it (training over a long stream in segments), since no tensor that autograd saved is
        ever modified. (The parent copies to keep a static address for CUDA graphs; `FastformerCache` is not
        compileable, so nothing needs one.)"""
        self.recurrent_states[state_idx] = recurrent_states
        self.is_recurrent_states_initialized[state_idx] = True
        self.has_previous_state[state_idx] = True
        return recurrent_states


class FastformerCache(Cache):
    """Generation state of a causal Fastformer: a `FastformerCacheLayer` per depth, built on transformers'
    `LinearAttentionLayer` (beam reordering, reset, offloading come from there), plus the count of tokens seen so
    far, which `generate()` reads through `get_seq_length()`. Its memory does not depend on the text's length.

    A decoder with cross-attention keeps it inside an `EncoderDecoderCache`, beside a `DynamicCache` holding the
    cross-attention projections of the encoder output (computed once per generation); `split_cache` unwraps it."""

    def __init__(self, num_layers: int):
        super().__init__(layers=[FastformerCacheLayer() for _ in range(num_layers)])
        self._seen_tokens = 0

    def read_state(self, layer_idx: int, slot: str) -> SoftmaxPool | None:
        """The pool of prefix pool `slot` at depth `layer_idx`, or None before its first write."""
        return FastformerCacheLayer.unpack(self.get_recurrent_state(layer_idx, FastformerCacheLayer.SLOTS.index(slot)))

    def write_state(self, layer_idx: int, slot: str, pool: SoftmaxPool):
        self.update_recurrent_state(FastformerCacheLayer.pack(pool), layer_idx, FastformerCacheLayer.SLOTS.index(slot))

    def advance(self, num_tokens: int):
        """Count `num_tokens` more tokens as seen (called once per forward, after every layer has run)."""
        self._seen_tokens += num_tokens

    @property
    def is_compileable(self) -> bool:
        # There are no key/value tensors for `generate()` to build static 4D masks for.
        return False

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._seen_tokens

    def reset(self):
        super().reset()
        self._seen_tokens = 0


def split_cache(cache: FastformerCache | EncoderDecoderCache | None):
    """The one place that unwraps a decoder's cache: `(pool_cache, cross_cache)`, the `FastformerCache` of the
    prefix pools and the `EncoderDecoderCache` holding the cross-attention projections (each None if absent)."""
    if isinstance(cache, EncoderDecoderCache):
        return cache.self_attention_cache, cache
    return cache, None


def cached_encoder_projections(cache: EncoderDecoderCache | None, layer_idx: int, project: Callable, encoder_states):
    """Cross-attention `(keys, values)` of the encoder output: `project(encoder_states)` once, then read from the
    cache."""
    if cache is not None and cache.is_updated.get(layer_idx):
        layer = cache.cross_attention_cache.layers[layer_idx]
        return layer.keys, layer.values
    keys, values = project(encoder_states)
    if cache is not None:
        keys, values = cache.cross_attention_cache.update(keys, values, layer_idx)
        cache.is_updated[layer_idx] = True
    return keys, values


def renamed_cache_kwargs(forward: Callable) -> Callable:
    """`forward` also accepts the decoding state under its names in transformers' other models, `past_key_values`
    and `cache_params` (deprecated here: a warning, until transformers 5.40)."""
    forward = deprecate_kwarg("cache_params", "5.40.0", new_name="cache")(forward)
    return deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")(forward)


class FastformerGenerationMixin(GenerationMixin):
    """`generate()` for the causal heads, whose decoding state is a constant-size `FastformerCache` (inside an
    `EncoderDecoderCache` for seq2seq) that `forward` creates on the first step."""

    _is_stateful = True  # the state holds only the latest step: it cannot be cropped back to an earlier token

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # `generate()` must not build a `DynamicCache` for it

    def _assisted_decoding(self, *args, **kwargs):
        raise ValueError(
            "Assisted and prompt-lookup decoding roll the cache back to an earlier token, but Fastformer's stateful "
            "decoding cache keeps only the latest state: use greedy search, sampling or beam search."
        )
