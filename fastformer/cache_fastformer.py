# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""The decoding state of a causal Fastformer: one `SoftmaxPool` per prefix pool and depth, constant in the length.

`FastformerCache` is a transformers `Cache` of `FastformerCacheLayer`s (built on `LinearAttentionLayer`, from which
beam reordering, reset and offloading come); the `[S, m, Z]` tensor layout in which a layer stores a pool is known
only to `FastformerCacheLayer.pack` / `unpack`. `split_cache` unwraps the `EncoderDecoderCache` of a decoder with
cross-attention, `cached_encoder_projections` keeps the cross-attention's projections of the encoder output in it,
`renamed_cache_kwargs` accepts the cache under transformers' other names, and `FastformerGenerationMixin` tells
`generate()` how to treat the state.

Rollback (assisted and prompt-lookup decoding): after `activate_past_recording(recurrent_states_to_keep=k)` each
layer keeps, per slot, the states before each of the last `k` tokens (a multi-token forward hands them over from
`prefix_softmax_pool(..., last_states=k + 1)`, which computes every prefix's pool anyway), and `crop(-r)` restores
the state of `r <= k` tokens back. Memory: at most `k` more `(batch, heads, head_dim + 2)` states per slot and layer.
`generate()` switches recording on for assisted and prompt-lookup decoding (`FastformerGenerationMixin`), with `k`
the draft length; `FastformerEncoderDecoderCache` rolls back a seq2seq decoder's state.

This file imports only torch, transformers and its sibling `pooling_fastformer.py`: it is copied beside
`modeling_fastformer.py` into checkpoints (Hub custom code).
"""

from collections.abc import Callable

import torch
from transformers import GenerationMixin
from transformers.cache_utils import Cache, EncoderDecoderCache, LinearAttentionLayer
from transformers.generation.utils import GenerationMode
from transformers.utils.deprecation import deprecate_kwarg

from .pooling_fastformer import SoftmaxPool


class FastformerCacheLayer(LinearAttentionLayer):
    """One depth's decoding state: one `SoftmaxPool` per prefix pool, stored as one `(batch, heads, head_dim + 2)`
    tensor `[S, m, Z]` (`pack`), in named slots (`SLOTS`): the causal self-attention's global `"query"` and `"key"`,
    and the additive cross-attention's own global query `"cross_query"`. A slot is allocated on its first write, so
    unused slots cost nothing; the size is constant in the length.

    Rollback, with transformers' `LinearAttentionLayer` interface (`activate_past_recording`, `record_past`,
    `recurrent_states_to_keep`, `recurrent_states_history`, `crop`) but kept per slot and bounded: while recording,
    `recurrent_states_history[slot][-i]` is the state before the `i`-th last token (None: before the first token),
    for `i <= recurrent_states_to_keep`."""

    SLOTS = ("query", "key", "cross_query")

    def __init__(self):
        super().__init__(number_of_states=len(self.SLOTS))
        self.recurrent_states_to_keep = 0
        self.recurrent_states_history = {slot: [] for slot in range(self.number_of_states)}
        self.final_only = set()  # slots written without their earlier states since the last `end_forward`

    @staticmethod
    def pack(pool: SoftmaxPool) -> torch.Tensor:
        """`pool` as the stored `(batch, heads, head_dim + 2)` tensor `[S, m, Z]` (a position axis before the last
        one, if `pool` has one, is kept)."""
        return torch.cat([pool.s, pool.m.unsqueeze(-1), pool.z.unsqueeze(-1)], dim=-1)

    @staticmethod
    def unpack(state: torch.Tensor | None) -> SoftmaxPool | None:
        """The `SoftmaxPool` of a stored `[S, m, Z]` tensor (None stays None)."""
        if state is None:
            return None
        return SoftmaxPool(state[..., -2], torch.cat([state[..., :-2], state[..., -1:]], dim=-1))

    def current(self, slot: int) -> torch.Tensor | None:
        """The state of slot `slot` after the last token, None before its first write."""
        return self.recurrent_states[slot] if self.has_previous_state[slot] else None

    def update_recurrent_state(
        self, recurrent_states: torch.Tensor | list[torch.Tensor], state_idx: int = 0, **kwargs
    ) -> torch.Tensor:
        """Store the new state of slot `state_idx`: a tensor (the state after the last token), or, as transformers'
        `LinearAttentionLayer` takes it, a list of the states after each of a forward's last tokens, oldest first,
        the last being the new state. While recording, the old state and the list's other states join
        `recurrent_states_history[state_idx]`, of which the last `recurrent_states_to_keep` are kept; a tensor alone
        records only the old state, which is right for a one-token forward only (`end_forward` checks it). Not
        recording (transformers sets `record_past = False` when it hands a cache back), the history is dropped.

        The new state replaces the old tensor instead of being copied into it (the parent's in-place update): a
        forward that continues from this state can then be differentiated back through the forward that wrote it
        (training over a long stream in segments), since no tensor that autograd saved is ever modified. (The parent
        copies to keep a static address for CUDA graphs; `FastformerCache` is not compileable, so nothing needs
        one.)"""
        states = [recurrent_states] if isinstance(recurrent_states, torch.Tensor) else list(recurrent_states)
        if self.record_past:
            history = self.recurrent_states_history[state_idx]
            history.append(self.current(state_idx))
            history.extend(states[:-1])
            del history[: max(0, len(history) - self.recurrent_states_to_keep)]
            if isinstance(recurrent_states, torch.Tensor):
                self.final_only.add(state_idx)
        else:  # recording switched off: what was recorded no longer leads up to the new state
            self.recurrent_states_history[state_idx].clear()
        self.recurrent_states[state_idx] = states[-1]
        self.is_recurrent_states_initialized[state_idx] = True
        self.has_previous_state[state_idx] = True
        return states[-1]

    def end_forward(self, num_tokens: int):
        """Called after each forward of `num_tokens` tokens: a slot that was given only its final state over more
        than one token (a forward under `sequence_chunk_size` or sequence parallelism) has no record of the states
        in between, so its history is dropped and `crop` refuses to roll it back."""
        for slot in self.final_only:
            if num_tokens > 1:
                self.recurrent_states_history[slot].clear()
        self.final_only.clear()

    def activate_past_recording(self, recurrent_states_to_keep: int | None = None):
        """From now on keep the states before each of the last `recurrent_states_to_keep` tokens (a positive int), so
        that `crop` can roll back up to that many tokens; what is already recorded stays (trimmed to the new bound).
        Memory: at most `recurrent_states_to_keep` more states per slot."""
        if not isinstance(recurrent_states_to_keep, int) or recurrent_states_to_keep < 1:
            raise ValueError(
                "`recurrent_states_to_keep` must be a positive int (how many tokens `crop` may roll back), got "
                f"{recurrent_states_to_keep!r}."
            )
        self.record_past = True
        self.recurrent_states_to_keep = recurrent_states_to_keep
        for history in self.recurrent_states_history.values():
            del history[: max(0, len(history) - recurrent_states_to_keep)]

    def rollback_limit(self) -> int:
        """How many tokens `crop` can roll back: the shortest history among the slots in use."""
        in_use = [slot for slot in range(self.number_of_states) if self.has_previous_state[slot]]
        return min((len(self.recurrent_states_history[slot]) for slot in in_use), default=0)

    def crop(self, tokens_to_remove: int):
        """Roll the state back by `-tokens_to_remove` tokens (transformers' convention: 0 or negative), to a recorded
        state (`FastformerCache.crop` checks the count first); the states before it stay recorded."""
        removed = -tokens_to_remove
        if removed == 0:
            return
        for slot in range(self.number_of_states):
            if not self.has_previous_state[slot]:
                continue
            history = self.recurrent_states_history[slot]
            state = history[-removed]
            del history[-removed:]
            self.recurrent_states[slot] = state
            self.is_recurrent_states_initialized[slot] = self.has_previous_state[slot] = state is not None

    def reorder_cache(self, beam_idx: torch.LongTensor):
        """Reorder the batch (beam search), the recorded states too."""
        super().reorder_cache(beam_idx)
        for history in self.recurrent_states_history.values():
            history[:] = [None if state is None else state.index_select(0, beam_idx) for state in history]

    def reset(self):
        super().reset()
        for history in self.recurrent_states_history.values():
            history.clear()
        self.final_only.clear()


class FastformerCache(Cache):
    """Generation state of a causal Fastformer: a `FastformerCacheLayer` per depth, built on transformers'
    `LinearAttentionLayer` (beam reordering, reset, offloading come from there), plus the count of tokens seen so
    far, which `generate()` reads through `get_seq_length()`. Its memory does not depend on the text's length.

    It can roll back: after `activate_past_recording(recurrent_states_to_keep=k)`, `crop(-r)` restores the state of
    `r <= k` tokens back (`generate()` does both for assisted and prompt-lookup decoding). Recording adds at most `k`
    states per slot and layer (`memory_bytes`).

    A decoder with cross-attention keeps it inside a `FastformerEncoderDecoderCache`, beside a `DynamicCache` holding
    the cross-attention projections of the encoder output (computed once per generation); `split_cache` unwraps it."""

    def __init__(self, num_layers: int):
        super().__init__(layers=[FastformerCacheLayer() for _ in range(num_layers)])
        self._seen_tokens = 0

    def read_state(self, layer_idx: int, slot: str) -> SoftmaxPool | None:
        """The pool of prefix pool `slot` at depth `layer_idx`, or None before its first write."""
        return FastformerCacheLayer.unpack(self.get_recurrent_state(layer_idx, FastformerCacheLayer.SLOTS.index(slot)))

    def states_to_record(self, layer_idx: int) -> int | None:
        """How many of a forward's last per-token pools `write_state` takes at depth `layer_idx` (the
        `last_states` of `prefix_softmax_pool`): `recurrent_states_to_keep + 1` while recording, else None (the final
        pool only)."""
        layer = self.layers[layer_idx]
        return layer.recurrent_states_to_keep + 1 if layer.record_past else None

    def write_state(self, layer_idx: int, slot: str, pool: SoftmaxPool):
        """Store `pool` as the state of prefix pool `slot` at depth `layer_idx`: the pool after the last token (`m`
        `(batch, heads)`), or the pools after each of the last tokens, oldest first (`m` `(batch, heads, k)`, from
        `states_to_record`), of which the last is the new state and the others are recorded."""
        packed = FastformerCacheLayer.pack(pool)
        if pool.m.dim() == 3:
            packed = [packed[:, :, position].clone() for position in range(packed.shape[2])]
        self.update_recurrent_state(packed, layer_idx, FastformerCacheLayer.SLOTS.index(slot))

    def advance(self, num_tokens: int):
        """Count `num_tokens` more tokens as seen (called once per forward, after every layer has run)."""
        self._seen_tokens += num_tokens
        for layer in self.layers:
            layer.end_forward(num_tokens)

    def crop(self, tokens_to_remove: int):
        """Roll back the last `-tokens_to_remove` tokens (transformers' convention: a negative count of tokens to
        remove; 0 does nothing), restoring the recorded states (`activate_past_recording`) and the token count."""
        if isinstance(tokens_to_remove, bool) or not isinstance(tokens_to_remove, int) or tokens_to_remove > 0:
            raise ValueError(
                "`crop` takes the number of tokens to remove as a negative int (transformers' convention), got "
                f"{tokens_to_remove!r}."
            )
        removed = -tokens_to_remove
        if removed == 0:
            return
        if not any(layer.record_past for layer in self.layers):
            raise ValueError(
                f"Cannot roll back {removed} tokens: the cache does not record past states. Call "
                "`cache.activate_past_recording(recurrent_states_to_keep=k)` before the forwards to roll back."
            )
        limit = min(min(layer.rollback_limit() for layer in self.layers), self._seen_tokens)
        if removed > limit:
            raise ValueError(
                f"Cannot roll back {removed} tokens: the cache recorded the states of the last {limit} only "
                f"(`recurrent_states_to_keep={self.get_recurrent_states_to_keep()}`; a forward under "
                "`sequence_chunk_size` or sequence parallelism records none)."
            )
        super().crop(tokens_to_remove)
        self._seen_tokens -= removed

    def memory_bytes(self) -> int:
        """Bytes held by the states, the recorded ones included."""
        tensors = []
        for layer in self.layers:
            tensors += [layer.current(slot) for slot in range(layer.number_of_states)]
            for history in layer.recurrent_states_history.values():
                tensors += history
        return sum(tensor.numel() * tensor.element_size() for tensor in tensors if tensor is not None)

    @property
    def is_compileable(self) -> bool:
        # There are no key/value tensors for `generate()` to build static 4D masks for.
        return False

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._seen_tokens

    def reset(self):
        super().reset()
        self._seen_tokens = 0


class FastformerEncoderDecoderCache(EncoderDecoderCache):
    """The state of a decoder with cross-attention: the decoder's `FastformerCache` and a `DynamicCache` of the
    encoder output's cross-attention projections. `crop` rolls back the decoder's state only (the projections do not
    depend on the decoded tokens); transformers' `EncoderDecoderCache.crop` accepts `DynamicCache`s only."""

    def crop(self, tokens_to_remove: int):
        self.self_attention_cache.crop(tokens_to_remove)


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
    """`generate()` for the causal heads, whose decoding state is a constant-size `FastformerCache` (inside a
    `FastformerEncoderDecoderCache` for seq2seq) that `forward` creates on the first step. Assisted and prompt-lookup
    decoding roll it back to the last accepted token (`FastformerCache.crop`)."""

    _is_stateful = True  # a recurrent state, rolled back from recorded states rather than by cutting a sequence

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # `generate()` must not build a `DynamicCache` for it

    def _prepare_cache_for_generation(
        self, generation_config, model_kwargs: dict, generation_mode, batch_size: int, max_cache_length: int
    ):
        """transformers' preparation; besides, where `generate()` rolls the state back, the model's own empty cache
        before the first forward: assisted decoding (a draft model or prompt lookup) switches its recording on, and
        a draft model's cache records the states of the tokens it drafts in this call (`max_new_tokens`), since
        transformers switches recording on only in the caches it builds itself."""
        super()._prepare_cache_for_generation(
            generation_config, model_kwargs, generation_mode, batch_size, max_cache_length
        )
        drafting = bool(generation_config.is_assistant)
        if generation_config.use_cache is False or not (
            drafting or generation_mode == GenerationMode.ASSISTED_GENERATION
        ):
            return
        cache = self.get_decoder()._decoding_cache(model_kwargs.get("cache"), use_cache=True)
        if type(cache) is EncoderDecoderCache:  # a user's: the decoder state is rolled back on its own
            cache = FastformerEncoderDecoderCache(cache.self_attention_cache, cache.cross_attention_cache)
        model_kwargs["cache"] = cache
        if drafting:
            drafted = generation_config.max_new_tokens or generation_config.num_assistant_tokens
            cache.activate_past_recording(recurrent_states_to_keep=max(drafted, cache.get_recurrent_states_to_keep()))

    def _prefill(self, input_ids, generation_config, model_kwargs: dict, is_first_iteration: bool = True):
        """transformers' first forward of a `generate()` call. A seq2seq draft model is handed the whole decoded text
        in every round, with no decoder mask from which transformers would tell the tokens its state has already
        seen: the mask length it reads instead is set to the text's, so that only the unseen tokens are fed."""
        if self.config.is_encoder_decoder and generation_config.is_assistant:
            if model_kwargs.get("decoder_attention_mask") is None:
                generation_config._mask_length = input_ids.shape[1]
        return super()._prefill(input_ids, generation_config, model_kwargs, is_first_iteration)

    def prepare_inputs_for_generation(
        self, input_ids, next_sequence_length: int | None = None, cache=None, is_first_iteration=False, **kwargs
    ):
        """transformers' inputs of the next forward. When a recording cache continues with several tokens after its
        first forward (assisted decoding verifying a draft and the token before it), it is made to keep the states to
        roll back all but the first of them, since a draft may grow during generation
        (`num_assistant_tokens_schedule="heuristic"`); a prefill never raises the bound."""
        if cache is not None and next_sequence_length is not None and not is_first_iteration:
            keep = cache.get_recurrent_states_to_keep()
            if 0 < keep < next_sequence_length - 1 and cache.get_seq_length() > 0:
                cache.activate_past_recording(recurrent_states_to_keep=next_sequence_length - 1)
        return super().prepare_inputs_for_generation(
            input_ids,
            next_sequence_length=next_sequence_length,
            cache=cache,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )
