# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""PyTorch Fastformer (Wu et al., 2021, arXiv:2108.09084), laid out like the authors' official code.

Reading order: embeddings -> additive attention (encoder) -> causal attention -> cross-attention -> layer and
stack -> pretrained base -> model -> heads. Its siblings, each with one job:

- `pooling_fastformer.py`: the running softmax pool, the one primitive behind every attention and pooler;
- `cache_fastformer.py`: the decoding state (`FastformerCache`);
- `chunking_fastformer.py`: running a layer over sequence chunks (`config.sequence_chunk_size`);
- `inputs_fastformer.py`: the checks of inputs and labels, positions, packed-document boundaries;
- `sequence_parallel.py`: the collectives of sequence parallelism (and its user-facing helpers).

This file imports only torch, transformers, those siblings and `configuration_fastformer.py` (which import only
torch, transformers and each other), so that they can be copied alone into a checkpoint directory and loaded with
`trust_remote_code=True`.
"""

import copy
import math
from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.dynamic_module_utils import custom_object_save
from transformers.loss.loss_utils import ForMaskedLMLoss
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithPast,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    Seq2SeqLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, slice_logits_to_keep
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, auto_docstring, can_return_tuple, logging
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .cache_fastformer import (
    FastformerCache,
    FastformerCacheLayer,
    FastformerEncoderDecoderCache,
    FastformerGenerationMixin,
    cached_encoder_projections,
    renamed_cache_kwargs,
    split_cache,
)
from .chunking_fastformer import ChunkStates, run_chunk, split_sequence
from .configuration_fastformer import FastformerConfig
from .inputs_fastformer import (
    check_class_ids,
    check_encoder_inputs,
    check_mask_shape,
    check_multiple_choice_inputs,
    document_position_ids,
    document_starts,
    head_document_starts,
    question_answering_positions,
    refuse_packed_documents,
    resolve_position_ids,
    sequence_classification_labels,
    shift_tokens_right,
    token_loss_kwargs,
    validate_inputs,
)
from .pooling_fastformer import (
    Segments,
    SoftmaxPool,
    finalize,
    masked_softmax,
    merge_all,
    per_token,
    pool_weights,
    prefix_softmax_pool,
    softmax_pool,
)
from .sequence_parallel import sharded_first_or_mean, sharded_prefix_pools, sharded_softmax_pool


logger = logging.get_logger(__name__)


class FastformerEmbeddings(nn.Module):
    """Word embeddings + learned absolute positions (optional), then LayerNorm (post-LN layout only: the official
    one) and dropout."""

    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        if config.position_embedding_type == "absolute":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        else:
            self.position_embeddings = None
        post_ln = config.layer_norm_position == "post"
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if post_ln else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids=None, inputs_embeds=None, position_ids=None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (batch, seq, hidden)
        embeddings = inputs_embeds
        if self.position_embeddings is not None:
            embeddings = embeddings + self.position_embeddings(position_ids)  # (batch or 1, seq, hidden)
        if self.LayerNorm is not None:
            embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings)


class FastformerPerHeadLogits(nn.Module):
    """The paper's attention-logit layout: one vector `w^h` of size `head_dim` per head, no bias.

    `logits[b, i, h] = w^h . x[b, i, h*head_dim:(h+1)*head_dim]`. Computed as one `F.linear` against the
    block-diagonal `(heads, hidden)` matrix built from `w`, which avoids a `(batch, seq, hidden)` temporary.
    """

    def __init__(self, num_heads: int, head_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.weight = nn.Parameter(torch.empty(num_heads, head_dim))

    def dense_weight(self) -> torch.Tensor:
        """The equivalent `Linear(hidden -> heads)` weight: block-diagonal, `(heads, hidden)`."""
        eye = torch.eye(self.num_heads, device=self.weight.device, dtype=self.weight.dtype)
        return (eye.unsqueeze(-1) * self.weight.unsqueeze(0)).view(self.num_heads, -1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(hidden_states, self.dense_weight())  # (batch, seq, heads)


def attention_logit_layer(config: FastformerConfig, bias: bool = True) -> nn.Module:
    """`(batch, seq, hidden) -> (batch, seq, heads)` logits: `Linear(hidden -> heads)` (official `"dense"` layout)
    or one vector per head (paper, `"per_head"`, never a bias)."""
    if config.attention_logit_layout == "dense":
        return nn.Linear(config.hidden_size, config.num_attention_heads, bias=bias)
    return FastformerPerHeadLogits(config.num_attention_heads, config.head_dim)


class FastformerAdditiveProjections(nn.Module):
    r"""The weights of one additive attention, under the official code's names (so checkpoints map one-to-one):
    `query`, `key`, `value` (None under query-value sharing), the logit layers `query_att` / `key_att`
    (`attention_logit_layer`) and `transform`; shared by the self-attentions and the additive cross-attention,
    whose `forward`s differ only in how they pool. `output` is their common last step,

        out_i = W_T (g_i * v_i) + b_T + q_i,    v_i = q_i (query-value sharing) or W_V x_i + b_V,

    with `g` the pooled global key `(batch, 1 or seq, hidden)`; `prefix_pool` is their causal pool.
    """

    # A `torch.distributed` group over which the sequence is sharded (`sequence_parallel.py`); None: not sharded.
    sequence_parallel_group = None

    def __init__(self, config: FastformerConfig, key_logit_bias: bool = True):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.recompute_pool = config.recompute_causal_pool
        hidden = config.hidden_size
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = None if config.share_query_value else nn.Linear(hidden, hidden)
        self.query_att = attention_logit_layer(config)
        self.key_att = attention_logit_layer(config, bias=key_logit_bias)
        self.transform = nn.Linear(hidden, hidden)

    def output(self, global_key: torch.Tensor, hidden_states: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """`W_T (global_key * v) + b_T + q`, `(batch, seq, hidden)` (`global_key` cast to the values' dtype)."""
        value = query if self.value is None else self.value(hidden_states)  # (batch, seq, hidden)
        return self.transform(global_key.to(value.dtype) * value) + query

    def prefix_pool(self, logits, values, mask, cache, layer_idx: int, slot: str, segments=None) -> torch.Tensor:
        """The causal pool `G_t` (`prefix_softmax_pool`) of `values` `(batch, seq, hidden)` split into heads, with
        `logits * scale` `(batch, seq, heads)` and `mask` `(batch, seq, 1)`, continuing from (and updating, with the
        last states if it records them) the pool in `cache` slot `slot` of depth `layer_idx`; without a cache, from an
        empty prefix. Sequence parallelism: from the pool of the lower ranks' shards (`sharded_prefix_pools`; the cache
        gets the whole sequence's). `segments` (`Segments`, packed documents): each position pools its own document
        only. Returns `(batch, seq, hidden)` in the values' dtype."""
        batch, seq, hidden = values.shape
        logits, heads = logits * self.scale, values.view(batch, seq, self.num_heads, -1)
        keep = None if mask is None else mask.squeeze(-1)  # (batch, seq)
        state = None if cache is None else cache.read_state(layer_idx, slot)
        final, last = None, cache.states_to_record(layer_idx) if isinstance(cache, FastformerCache) else None
        if self.sequence_parallel_group is not None:
            state, final = sharded_prefix_pools(logits, heads, keep, state, self.sequence_parallel_group)
        pooled, state = prefix_softmax_pool(
            logits, heads, keep, state, recompute_in_backward=self.recompute_pool, segments=segments, last_states=last
        )
        if cache is not None:
            cache.write_state(layer_idx, slot, state if final is None else final)
        return pooled.reshape(batch, seq, hidden).to(values.dtype)


class FastformerAdditiveAttention(FastformerAdditiveProjections):
    r"""Fastformer's additive attention (paper eqs. 3-6; `FastSelfAttention` of the official code).

    Per head `h` with `d = head_dim`, for a sequence `x_1..x_N` and real-token mask `m`:

        q_i = W_Q x_i + b_Q,   k_i = W_K x_i + b_K,   v_i = q_i (query-value sharing) or W_V x_i + b_V
        alpha_i = softmax_i(w_q . q_i / sqrt(d))        over the real tokens
        q_glob  = sum_i alpha_i q_i                     (global query)
        p_i     = q_glob * k_i                          (element-wise)
        beta_i  = softmax_i(w_k . p_i / sqrt(d))
        k_glob  = sum_i beta_i p_i                      (global key)
        u_i     = k_glob * v_i
        out_i   = W_T u_i + b_T + q_i

    The logits `w . x` come from `attention_logit_layer`. The global vectors are `SoftmaxPool`s
    (`pooling_fastformer.py`, in at least float32), so they are computed for a whole sequence at once (`forward`)
    or as the merge of its chunks' pools (`chunked_global_key`), then applied (`attend`). Cost is O(seq * hidden)
    beyond the linear layers; the global vectors broadcast over the sequence and are never expanded.

    Returns `out` `(batch, seq, hidden)` and the attention weights `(batch, heads, 2, seq)`: `[:, :, 0]` is
    `alpha` (global query), `[:, :, 1]` is `beta` (global key); each sums to 1 over the real tokens (0 in a row
    without any, whose global vectors are 0).
    """

    def pool(self, logits: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None, segments=None):
        """`softmax_pool` per head of `values` `(batch, n, hidden)` with `logits * scale` `(batch, n, heads)` and
        `mask` `(batch, n, 1)` (one pool per document with `segments`); sharded: of the whole sequence
        (`sharded_softmax_pool`). Returns the pool and the unnormalised weights `(batch, n, heads)`."""
        if self.sequence_parallel_group is not None:
            return sharded_softmax_pool(logits * self.scale, values, mask, self.sequence_parallel_group)
        return softmax_pool(logits * self.scale, values, mask, segments)

    def query_pool(self, query: torch.Tensor, mask: torch.Tensor | None, segments=None):
        """The global query's pool over these tokens, from their queries `q_i` `(batch, n, hidden)`."""
        return self.pool(self.query_att(query), query, mask, segments)

    def key_pool(self, key: torch.Tensor, global_query: torch.Tensor, mask: torch.Tensor | None, segments=None):
        """The global key's pool over these tokens, from their keys `k_i` and the global query (`global_vector`)."""
        mixed = key * per_token(global_query, segments).to(key.dtype)  # p_i, (batch, n, hidden)
        return self.pool(self.key_att(mixed), mixed, mask, segments)

    @staticmethod
    def global_vector(pool: SoftmaxPool) -> torch.Tensor:
        """The pooled vector of a global query or key pool, heads concatenated: `(batch, 1, hidden)`, or `(batch,
        documents, hidden)` for the pools of `Segments`."""
        vector = finalize(pool)  # (batch, [documents,] heads, d)
        return vector.reshape(vector.shape[0], -1, vector.shape[-2] * vector.shape[-1])

    def attend(self, hidden_states: torch.Tensor, global_key: torch.Tensor, segments=None) -> torch.Tensor:
        """`out_i` of these tokens `(batch, n, hidden)`, given the global key (`global_vector`)."""
        return self.output(per_token(global_key, segments), hidden_states, self.query(hidden_states))

    def forward(self, hidden_states, mask=None, cache=None, layer_idx: int = 0, segments=None):
        """The whole sequence as one chunk. `cache`, `layer_idx`: unused (an encoder keeps no decoding state)."""
        query = self.query(hidden_states)  # (batch, seq, hidden)
        query_pool, alpha = self.query_pool(query, mask, segments)
        key_pool, beta = self.key_pool(self.key(hidden_states), self.global_vector(query_pool), mask, segments)
        output = self.output(per_token(self.global_vector(key_pool), segments), hidden_states, query)
        weights = torch.stack((pool_weights(query_pool, alpha, segments), pool_weights(key_pool, beta, segments)), -1)
        return output, weights.to(query.dtype).permute(0, 2, 3, 1)  # (batch, heads, 2, seq)

    def chunk_query_pool(self, piece: torch.Tensor, mask, read: Callable, segments=None) -> SoftmaxPool:
        """The global query's pool over the chunk `piece`, which the attention reads as `read(piece)`."""
        return self.query_pool(self.query(read(piece)), mask, segments)[0]

    def chunk_key_pool(self, piece, mask, read: Callable, global_query: torch.Tensor, segments=None) -> SoftmaxPool:
        """The global key's pool over the chunk `piece`, which the attention reads as `read(piece)`."""
        return self.key_pool(self.key(read(piece)), global_query, mask, segments)[0]

    def chunked_global_key(self, pieces, masks, parts, read: Callable) -> torch.Tensor:
        """The global key (`global_vector`) of a sequence given as consecutive chunks `pieces` with their `masks`
        `(batch, chunk, 1)` and `parts` (`Segments` of each chunk, or None), read by the attention as `read(piece)`
        (`x` or `LayerNorm(x)`): the merge of the chunks' pools, each chunk recomputed in the backward pass
        (`run_chunk`), so that only the chunks' inputs and `(batch, hidden)` pools are kept."""
        chunks = list(zip(pieces, masks, parts))
        query_pools = [run_chunk(self.chunk_query_pool, piece, mask, read, part) for piece, mask, part in chunks]
        global_query = self.global_vector(merge_all(query_pools))
        key_pools = [run_chunk(self.chunk_key_pool, *chunk[:2], read, global_query, chunk[2]) for chunk in chunks]
        return self.global_vector(merge_all(key_pools))


class FastformerCausalAdditiveAttention(FastformerAdditiveAttention):
    r"""Causal additive attention: position `t` pools only positions `<= t` (decoders).

    Same weights and equations as `FastformerAdditiveAttention`, with the two global vectors replaced by prefix
    softmax pools (`prefix_pool`), computed in parallel for training and carried as an `O(1)` state in the
    `"query"` and `"key"` slots of a `FastformerCache` for decoding:

        G^q_t = sum_{j<=t} e^{a_j} q_j / sum_{j<=t} e^{a_j},   a_j = w_q . q_j / sqrt(d)
        p_t   = G^q_t * k_t
        G^k_t = sum_{j<=t} e^{b_j} p_j / sum_{j<=t} e^{b_j},   b_j = w_k . p_j / sqrt(d)
        out_t = W_T (G^k_t * v_t) + b_T + q_t

    Note `p_j` uses `G^q_j` (the pool up to `j`), not `G^q_t`: this is what makes a constant-size state possible.
    Returns `out` `(batch, seq, hidden)` and no attention weights (`None`): each position has its own prefix
    distributions, which are never materialised.
    """

    def forward(
        self, hidden_states, mask=None, cache: FastformerCache | None = None, layer_idx: int = 0, segments=None
    ):
        query = self.query(hidden_states)  # (batch, seq, hidden)
        key = self.key(hidden_states)  # (batch, seq, hidden)
        global_query = self.prefix_pool(self.query_att(query), query, mask, cache, layer_idx, "query", segments)
        mixed = key * global_query  # p_t
        global_key = self.prefix_pool(self.key_att(mixed), mixed, mask, cache, layer_idx, "key", segments)  # G^k_t
        return self.output(global_key, hidden_states, query), None


def eager_attention_forward(module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0, **kwargs):
    """Plain softmax attention, `(batch, heads, q, d)` x `(batch, heads, k, d)` -> output `(batch, q, heads, d)`
    and weights `(batch, heads, q, k)`; `attention_mask` is an additive bias. The `"eager"` implementation."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.dropout(nn.functional.softmax(weights, dim=-1), p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class FastformerCrossAttention(nn.Module):
    r"""Standard multi-head cross-attention (`cross_attention_type="scaled_dot_product"`):
    `softmax(Q K^T / sqrt(d)) V` with `Q` from the decoder and `K, V` from the encoder output, dispatched through
    transformers' attention interface (`config._attn_implementation`: `"sdpa"` by default, or `"eager"`, which
    also returns the weights). Costs `O(dec_seq * enc_seq * hidden)`; in decoding, `O(enc_seq * hidden)` per
    token, with `K, V` computed once and kept in the cache. Returns the output `(batch, seq, hidden)` and the
    weights `(batch, heads, seq, enc_seq)` (None under `"sdpa"`). `mask` and `pool_cache` are unused (the additive
    cross-attention's signature)."""

    is_causal = False

    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)  # (batch, heads, seq, d)

    def project(self, encoder_hidden_states: torch.Tensor):
        """The encoder output's keys and values, `(batch, heads, enc_seq, d)` each."""
        return self.split_heads(self.key(encoder_hidden_states)), self.split_heads(self.value(encoder_hidden_states))

    def forward(
        self,
        hidden_states,
        encoder_hidden_states,
        encoder_mask=None,
        mask=None,
        cache=None,
        pool_cache=None,
        layer_idx: int = 0,
    ):
        batch, seq, hidden = hidden_states.shape
        query = self.split_heads(self.query(hidden_states))  # (batch, heads, seq, d)
        keys, values = cached_encoder_projections(cache, layer_idx, self.project, encoder_hidden_states)
        bias = None
        if encoder_mask is not None:  # (batch, 1, 1, enc_seq) additive bias, a finite minimum (never -inf)
            bias = torch.zeros(encoder_mask.shape, dtype=query.dtype, device=query.device)
            bias = bias.masked_fill(~encoder_mask.bool(), torch.finfo(query.dtype).min)[:, None, None, :]
        interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        attended, weights = interface(self, query, keys, values, bias, scaling=self.scaling, dropout=0.0)
        return attended.reshape(batch, seq, hidden), weights  # attended: (batch, seq, heads, d)


class FastformerAdditiveCrossAttention(FastformerAdditiveProjections):
    r"""Fastformer-style cross-attention (`cross_attention_type="additive"`): the decoder's prefix global query
    conditions an additive pooling of the encoder keys.

    With `q_t` the decoder's query, `G^q_t` its own causal prefix pool (`prefix_pool`, carried in the
    `"cross_query"` slot of the decoding state) and `k_j` the encoder keys:

        p_tj  = G^q_t * k_j
        beta_tj = softmax_j(w_k . p_tj / sqrt(d))   over the real encoder tokens
        K_t   = sum_j beta_tj p_tj = G^q_t * sum_j beta_tj k_j
        out_t = W_T (K_t * v_t) + b_T + q_t,        v_t = q_t (query-value sharing) or W_V x_t + b_V

    Since `w_k . (G^q_t * k_j) = (w_k * G^q_t) . k_j`, the pooling is one dot-product "probe" per head and decoder
    position against the encoder keys: `O(dec_seq * enc_seq * hidden)`, never a `(dec_seq, enc_seq, hidden)` tensor.
    With the `"dense"` logit layout each head's probe spans all features (official `key_att`); the bias of
    `key_att` would cancel in the softmax, so there is none. Returns the output `(batch, seq, hidden)` and `beta`
    `(batch, heads, seq, enc_seq)`.
    """

    def __init__(self, config: FastformerConfig):
        super().__init__(config, key_logit_bias=False)

    def key_logit_weight(self) -> torch.Tensor:
        """`(heads, hidden)`: row `h` maps `p` to head `h`'s key logit."""
        return self.key_att.weight if isinstance(self.key_att, nn.Linear) else self.key_att.dense_weight()

    def project(self, encoder_hidden_states: torch.Tensor):
        """The encoder keys `(batch, 1, enc_seq, hidden)` and per head `(batch, heads, enc_seq, d)`."""
        keys = self.key(encoder_hidden_states)  # (batch, enc_seq, hidden)
        per_head = keys.view(keys.shape[0], -1, self.num_heads, self.head_dim).transpose(1, 2).contiguous()
        return keys.unsqueeze(1), per_head

    def forward(
        self,
        hidden_states,
        encoder_hidden_states,
        encoder_mask=None,
        mask=None,
        cache=None,
        pool_cache=None,
        layer_idx: int = 0,
    ):
        """`mask` `(batch, seq, 1)`: the decoder's real tokens; `cache`: the encoder projections'
        (`EncoderDecoderCache`); `pool_cache`: the prefix pools' (`FastformerCache`)."""
        batch, seq, hidden = hidden_states.shape
        query = self.query(hidden_states)  # (batch, seq, hidden)
        global_query = self.prefix_pool(self.query_att(query), query, mask, pool_cache, layer_idx, "cross_query")
        keys, head_keys = cached_encoder_projections(cache, layer_idx, self.project, encoder_hidden_states)
        probe = global_query.unsqueeze(1) * self.key_logit_weight()[None, :, None, :]  # (batch, heads, seq, hidden)
        logits = (
            probe.view(batch, -1, hidden) @ keys.squeeze(1).transpose(1, 2) * self.scale
        )  # (batch, heads*seq, enc)
        logits = logits.view(batch, self.num_heads, seq, -1)  # (batch, heads, seq, enc_seq)
        encoder_keep = None if encoder_mask is None else encoder_mask.bool()[:, None, None, :]
        beta = masked_softmax(logits, encoder_keep, dim=-1).to(head_keys.dtype)
        pooled = (beta @ head_keys).transpose(1, 2).reshape(batch, seq, hidden)  # sum_j beta_tj k_j
        return self.output(global_query * pooled, hidden_states, query), beta


class FastformerSelfOutput(nn.Module):
    """A sub-block's residual output and its LayerNorm, `z` of width `input_size` (hidden for the attention
    sub-blocks, intermediate for the feed-forward block) computed by the sub-block from `sub_block_input(x)`.

    Post-LN (`config.layer_norm_position="post"`, BERT's and the official code's): the sub-block reads `x`, and
    `out = LayerNorm(x + dropout(Dense(z)))`. Pre-LN (`"pre"`, GPT-2's): it reads `LayerNorm(x)`, and
    `out = x + dropout(Dense(z))`."""

    def __init__(self, config: FastformerConfig, input_size: int | None = None):
        super().__init__()
        self.pre_ln = config.layer_norm_position == "pre"
        self.dense = nn.Linear(input_size or config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def sub_block_input(self, input_tensor: torch.Tensor) -> torch.Tensor:
        """What the sub-block reads of the residual stream `x`: `LayerNorm(x)` (pre-LN) or `x` (post-LN)."""
        return self.LayerNorm(input_tensor) if self.pre_ln else input_tensor

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        output = self.dropout(self.dense(hidden_states)) + input_tensor  # (batch, seq, hidden)
        return output if self.pre_ln else self.LayerNorm(output)


class FastformerAttention(nn.Module):
    """A self-attention module (`self`) and its residual self-output block (official `FastAttention`, post-LN; or
    pre-LN, `FastformerSelfOutput`). `mask` `(batch, seq, 1)` bool (False: padding) or None."""

    def __init__(self, config: FastformerConfig, attention_class: type[nn.Module]):
        super().__init__()
        self.self = attention_class(config)
        self.output = FastformerSelfOutput(config)

    def forward(self, hidden_states, mask=None, cache=None, layer_idx: int = 0, segments=None) -> torch.Tensor:
        attended, _ = self.self(self.output.sub_block_input(hidden_states), mask, cache, layer_idx, segments)
        return self.output(attended, hidden_states)

    def chunked_global_key(self, pieces, masks, parts) -> torch.Tensor:
        """The (encoder) attention's global key over consecutive chunks of the residual stream."""
        return self.self.chunked_global_key(pieces, masks, parts, self.output.sub_block_input)

    def attend(self, piece: torch.Tensor, global_key: torch.Tensor, segments=None) -> torch.Tensor:
        """The sub-block's output on the chunk `piece`, given the (encoder) attention's global key."""
        return self.output(self.self.attend(self.output.sub_block_input(piece), global_key, segments), piece)


class FastformerCrossAttentionBlock(FastformerAttention):
    """A cross-attention module (`self`) and its residual self-output block. `mask` `(batch, seq, 1)`: the decoder's
    real tokens; `cache`: the encoder projections' (`EncoderDecoderCache`); `pool_cache`: the prefix pools'."""

    def forward(
        self,
        hidden_states,
        encoder_hidden_states,
        encoder_mask=None,
        mask=None,
        cache=None,
        pool_cache=None,
        layer_idx: int = 0,
    ) -> torch.Tensor:
        attended, _ = self.self(
            self.output.sub_block_input(hidden_states),
            encoder_hidden_states,
            encoder_mask,
            mask,
            cache,
            pool_cache,
            layer_idx,
        )
        return self.output(attended, hidden_states)


class FastformerIntermediate(nn.Module):
    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))  # (batch, seq, intermediate)


class FastformerLayer(GradientCheckpointingLayer):
    """One Fastformer block (post-LN as the official code, or pre-LN: `config.layer_norm_position`): additive
    attention sub-block (causal in a decoder), then (decoders of an encoder-decoder) a cross-attention sub-block over
    the encoder output, then the BERT feed-forward sub-block (`chunk_size_feed_forward` positions at a time when set).
    `mask`: `(batch, seq, 1)` bool or None. With `config.sequence_chunk_size`, a longer sequence runs through the
    block that many positions at a time, each chunk recomputed in the backward pass: causal, the whole block per chunk,
    carrying the prefix pools (`ChunkStates.run`); encoder, the attention's `chunked_global_key`, then the rest of the
    block per chunk."""

    def __init__(self, config: FastformerConfig, causal: bool = False, cross_attention: bool = False):
        super().__init__()
        self.causal = causal
        self.chunk_size_feed_forward = config.chunk_size_feed_forward
        self.sequence_chunk_size = config.sequence_chunk_size
        self.attention = FastformerAttention(
            config, FastformerCausalAdditiveAttention if causal else FastformerAdditiveAttention
        )
        self.crossattention = None
        if cross_attention:
            additive = config.cross_attention_type == "additive"
            self.crossattention = FastformerCrossAttentionBlock(
                config, FastformerAdditiveCrossAttention if additive else FastformerCrossAttention
            )
        self.intermediate = FastformerIntermediate(config)
        self.output = FastformerSelfOutput(config, config.intermediate_size)

    def feed_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.output(self.intermediate(self.output.sub_block_input(hidden_states)), hidden_states)

    def chunked_feed_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The feed-forward block, `chunk_size_feed_forward` positions at a time when set (less activation memory; the
        last chunk may be shorter, unlike transformers' `apply_chunking_to_forward`)."""
        if not self.chunk_size_feed_forward or hidden_states.shape[1] <= self.chunk_size_feed_forward:
            return self.feed_forward(hidden_states)
        pieces = hidden_states.split(self.chunk_size_feed_forward, dim=1)
        return torch.cat([self.feed_forward(piece) for piece in pieces], dim=1)

    def forward(
        self,
        hidden_states,
        mask=None,
        encoder_hidden_states=None,
        encoder_mask=None,
        cache=None,
        layer_idx: int = 0,
        segments=None,
        **kwargs,
    ):
        chunk, inputs = self.sequence_chunk_size, (encoder_hidden_states, encoder_mask)
        if not chunk or hidden_states.shape[1] <= chunk:
            return self.whole_sequence(hidden_states, mask, segments, *inputs, cache, layer_idx)
        pieces, masks = split_sequence(hidden_states, mask, chunk, self.attention.self)
        parts = [None] * len(pieces) if segments is None else segments.split(chunk)
        if self.causal:
            return ChunkStates.run(self.causal_chunk, pieces, masks, parts, split_cache(cache)[0], layer_idx, *inputs)
        global_key = self.attention.chunked_global_key(pieces, masks, parts)
        return torch.cat([run_chunk(self.attend_chunk, *chunk, global_key) for chunk in zip(pieces, parts)], dim=1)

    def attend_chunk(self, piece: torch.Tensor, segments, global_key: torch.Tensor) -> torch.Tensor:
        """The encoder block on the chunk `piece`, given the attention's global key."""
        return self.chunked_feed_forward(self.attention.attend(piece, global_key, segments))

    def causal_chunk(self, piece, mask, segments, encoder_hidden_states, encoder_mask, layer_idx: int, *states):
        """The causal block on the chunk `piece` from the prefix pools `states`; its output and the pools after it."""
        carried = ChunkStates(dict(zip(FastformerCacheLayer.SLOTS, states)))
        out = self.whole_sequence(piece, mask, segments, encoder_hidden_states, encoder_mask, carried, layer_idx)
        return out, *(carried.read_state(layer_idx, slot) for slot in FastformerCacheLayer.SLOTS)

    def whole_sequence(
        self, hidden_states, mask, segments, encoder_hidden_states=None, encoder_mask=None, cache=None, layer_idx=0
    ):
        pool_cache, cross_cache = split_cache(cache)
        hidden_states = self.attention(hidden_states, mask, pool_cache, layer_idx, segments)
        if self.crossattention is not None:
            hidden_states = self.crossattention(
                hidden_states, encoder_hidden_states, encoder_mask, mask, cross_cache, pool_cache, layer_idx
            )
        return self.chunked_feed_forward(hidden_states)


class FastformerEncoder(nn.Module):
    """The stack of `num_layers` layers. With `share_layer_parameters` one layer's weights are applied at every
    depth; each depth keeps its own decoding state (`layer_idx`) also then."""

    def __init__(self, config: FastformerConfig, num_layers: int, causal: bool = False, cross_attention: bool = False):
        super().__init__()
        self.num_layers = num_layers
        num_distinct = 1 if config.share_layer_parameters else num_layers
        self.layer = nn.ModuleList([FastformerLayer(config, causal, cross_attention) for _ in range(num_distinct)])

    def forward(
        self, hidden_states, mask=None, encoder_hidden_states=None, encoder_mask=None, cache=None, segments=None
    ):
        for depth in range(self.num_layers):
            # Tensors that need gradients go positionally (re-entrant gradient checkpointing).
            hidden_states = self.layer[depth % len(self.layer)](
                hidden_states,
                mask,
                encoder_hidden_states,
                encoder_mask,
                cache=cache,
                layer_idx=depth,
                segments=segments,
            )
        return hidden_states


class FastformerPooler(nn.Module):
    r"""Turns `(batch, seq, hidden)` into one vector per sequence `(batch, hidden)`, or, given packed documents
    (`Segments`), one vector per document `(documents, hidden)`, the documents in batch order (row by row; a row's
    documents are its first one and one more per start).

    `"attention"` (the paper's additive attention pooling, official `AttentionPooling`):
        `e_i = tanh(W_1 x_i + b_1)`, `s_i = w_2 . e_i + b_2`, `pooled = sum_i softmax_i(s) x_i` over real tokens;
        computed as a max-subtracted masked softmax (the official code's `exp` without max-subtraction and
        `+1e-8` is the same function, but overflows for large logits).
    `"first"`: `x_1`.  `"mean"`: the mean over real tokens (zero for a row without any); per document, a
    `softmax_pool` of equal logits.
    """

    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.pooler_type = config.pooler_type
        if self.pooler_type == "attention":
            self.att_fc1 = nn.Linear(config.hidden_size, config.hidden_size)
            self.att_fc2 = nn.Linear(config.hidden_size, 1)

    # A `torch.distributed` group over which the sequence is sharded (`sequence_parallel.py`); None: not sharded.
    sequence_parallel_group = None

    def forward(self, hidden_states: torch.Tensor, attention_mask=None, segments: Segments | None = None):
        group = self.sequence_parallel_group
        mask = None if attention_mask is None else attention_mask.bool().unsqueeze(-1)  # (batch, seq, 1)
        if segments is not None:
            return self.per_document(hidden_states, mask, segments)
        if self.pooler_type == "attention":  # a `softmax_pool` with one head; sharded: of the whole sequence
            logits = self.att_fc2(torch.tanh(self.att_fc1(hidden_states)))  # (batch, seq, 1)
            pool = (
                softmax_pool(logits, hidden_states, mask)
                if group is None
                else (sharded_softmax_pool(logits, hidden_states, mask, group))
            )
            return finalize(pool[0]).squeeze(1).to(hidden_states.dtype)  # (batch, hidden)
        if group is not None:
            return sharded_first_or_mean(self.pooler_type, hidden_states, attention_mask, group)
        if self.pooler_type == "first":
            return hidden_states[:, 0]
        if self.pooler_type == "mean":
            if attention_mask is None:
                return hidden_states.mean(dim=1)
            weights = mask.to(hidden_states.dtype)  # (batch, seq, 1)
            return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def per_document(self, hidden_states: torch.Tensor, mask: torch.Tensor | None, segments: Segments):
        """`(documents, hidden)`: each document pooled on its own (`"first"`: its first position)."""
        if self.pooler_type == "first":
            return hidden_states[nn.functional.pad(segments.starts[:, 1:], (1, 0), value=True)]  # row by row
        if self.pooler_type == "attention":
            logits = self.att_fc2(torch.tanh(self.att_fc1(hidden_states)))  # (batch, seq, 1)
        else:  # "mean": equal weights
            logits = hidden_states.new_zeros(*hidden_states.shape[:2], 1)
        pooled = finalize(softmax_pool(logits, hidden_states, mask, segments)[0]).squeeze(2)  # (batch, count, hidden)
        present = torch.arange(segments.count, device=pooled.device) <= segments.ids[:, -1:]  # (batch, count)
        return pooled[present].to(hidden_states.dtype)  # row by row


@auto_docstring
class FastformerPreTrainedModel(PreTrainedModel):
    config: FastformerConfig
    base_model_prefix = "fastformer"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True
    _no_split_modules = ["FastformerEmbeddings", "FastformerLayer"]
    _can_record_outputs = {
        "hidden_states": FastformerLayer,
        "attentions": OutputRecorder(FastformerAdditiveAttention, index=1),
        "cross_attentions": [
            OutputRecorder(FastformerCrossAttention, index=1),
            OutputRecorder(FastformerAdditiveCrossAttention, index=1),
        ],
    }

    # Written into `config.auto_map` by `save_pretrained`, so that a checkpoint of any head also loads with the
    # other Auto classes under `trust_remote_code=True` (e.g. `AutoModel` on a classifier checkpoint).
    _fastformer_auto_map = {
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

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, refusing a checkpoint of the other `layer_norm_position` (e.g. a
        post-LN checkpoint with `layer_norm_position="pre"` passed as an override): the per-layer LayerNorms would
        load into other roles and change every output. The layouts' weights differ by name only in the embedding
        LayerNorm (post-LN) and the final LayerNorm (pre-LN), which the load then reports as missing/unexpected."""
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        layout = model.config.layer_norm_position
        other = "post" if layout == "pre" else "pre"
        only_in = {"post": "embeddings.LayerNorm.weight", "pre": "final_layer_norm.weight"}  # each layout's own norm

        def reported(kind: str, layout_name: str) -> bool:
            return any(key.endswith(only_in[layout_name]) for key in info.get(f"{kind}_keys", ()))

        if reported("missing", layout) and reported("unexpected", other):
            raise ValueError(
                f"This checkpoint was saved with `layer_norm_position='{other}'` but the model was built with "
                f"'{layout}': its LayerNorm weights would load into other roles and change every output. Load it "
                "without overriding `layer_norm_position` (the layout is part of the trained weights)."
            )
        return (model, info) if wants_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:  # the code files are saved beside the weights
            self.config.auto_map = {**self._fastformer_auto_map, **(getattr(self.config, "auto_map", None) or {})}
        wrapper = type(self)
        if self._auto_class is None or wrapper.__module__ == __name__:
            return super().save_pretrained(save_directory, *args, **kwargs)
        # FSDP2's `fully_shard` swaps the class for a generated `FSDP<Name>` that lives in torch: transformers would
        # copy torch's FSDP sources into the checkpoint and point `auto_map` there. Save the Fastformer code instead.
        own = next(cls for cls in wrapper.__mro__ if cls.__module__ == __name__)
        wrapper._auto_class = None
        try:
            result = super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            del wrapper._auto_class
        if self.should_save_on_this_rank(kwargs.get("is_main_process", True)):
            custom_object_save(own.__new__(own), save_directory)  # the file of `own` (and its relative imports)
        return result

    def init_parallel_plans(self) -> None:
        """transformers' plan merge (the config's plans on the base model, then the class's and the children's), less
        the rules that name nothing in this variant: no `value` under query-value sharing, no cross-attention outside
        the seq2seq decoder (docs/distributed.md)."""
        from transformers.distributed.parallel_utils import replace_layer_number_by_wildcard

        super().init_parallel_plans()
        names = {replace_layer_number_by_wildcard(name) for name, _ in self.named_modules()}
        for plan in (self._tp_plan, self._fsdp_plan):
            for key in [key for key in plan if key not in names]:
                del plan[key]

    @torch.no_grad()
    def _init_weights(self, module):
        """Normal(0, initializer_range) weights, zero biases, unit LayerNorms, zero padding embedding row."""
        super()._init_weights(module)
        if isinstance(module, FastformerPerHeadLogits):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)


@auto_docstring(
    custom_intro="""
    The bare Fastformer: embeddings -> `num_layers` Fastformer layers.

    As an encoder (default), `attentions` (with `output_attentions=True`) holds one `(batch, heads, 2, seq)` tensor
    per layer: `[:, :, 0]` the global-query weights `alpha`, `[:, :, 1]` the global-key weights `beta`.

    Causal (`config.is_decoder=True`, or `causal=True`), its `cache` is a `FastformerCache`, the constant-size state
    from which the next tokens continue; there are no attention maps (each position has its own prefix
    distributions, never materialised), so `attentions` is an empty tuple. With cross-attention as well (the
    decoder of `FastformerForConditionalGeneration`), every layer also attends to `encoder_hidden_states`, the
    cache is an `EncoderDecoderCache`, and `cross_attentions` holds `(batch, heads, seq, enc_seq)` maps (additive
    cross-attention, or `attn_implementation="eager"`).
    """
)
class FastformerModel(FastformerPreTrainedModel):
    def __init__(
        self,
        config: FastformerConfig,
        causal: bool | None = None,
        cross_attention: bool | None = None,
        num_layers: int | None = None,
    ):
        r"""
        causal (`bool`, *optional*): causal layers with a decoding cache; `config.is_decoder` if unset.
        cross_attention (`bool`, *optional*): layers also attend to an encoder output; `config.add_cross_attention`
            if unset.
        num_layers (`int`, *optional*): the depth; `config.num_hidden_layers` if unset.
        """
        super().__init__(config)
        self.causal = config.is_decoder if causal is None else causal
        self.cross_attention = config.add_cross_attention if cross_attention is None else cross_attention
        self.num_layers = num_layers or config.num_hidden_layers
        self.embeddings = FastformerEmbeddings(config)
        self.encoder = FastformerEncoder(config, self.num_layers, self.causal, self.cross_attention)
        # pre-LN layout: the residual stream is normalised once, after the last layer
        self.final_layer_norm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            if config.layer_norm_position == "pre"
            else None
        )
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def _decoding_cache(self, cache, use_cache: bool):
        """Check a given cache, or create an empty one when a causal model's `use_cache` asks for it."""
        if not self.causal:
            if cache is not None:
                raise ValueError("`cache` needs a causal model (`config.is_decoder=True`); this one is bidirectional.")
            return None
        if cache is not None and not isinstance(cache, Cache):
            raise ValueError(
                f"`cache` must be a `FastformerCache` (or a transformers `Cache`), got {type(cache).__name__}."
            )
        if cache is None or (cache.get_seq_length() == 0 and not isinstance(split_cache(cache)[0], FastformerCache)):
            # an empty cache of another type (e.g. generic code's `DynamicCache()`) is replaced by the model's own
            if cache is None and not use_cache:
                return None
            cache = FastformerCache(self.num_layers)
            return FastformerEncoderDecoderCache(cache, DynamicCache()) if self.cross_attention else cache
        if not isinstance(split_cache(cache)[0], FastformerCache) or (
            self.cross_attention and not isinstance(cache, EncoderDecoderCache)
        ):
            expected = (
                "an `EncoderDecoderCache` of a `FastformerCache`" if self.cross_attention else "a `FastformerCache`"
            )
            raise ValueError(f"`cache` must be {expected}, got {type(cache).__name__}.")
        return cache

    def _packed_documents(self, position_ids, attention_mask, kwargs: dict, shape, cache) -> Segments | None:
        """The `Segments` of a batch that packs several documents into a row (`document_starts`), or None; refused
        where the documents cannot be kept apart."""
        starts = document_starts(position_ids, attention_mask, kwargs, shape)
        if self.cross_attention or self.config.is_encoder_decoder:
            refuse_packed_documents("an encoder-decoder model", starts, "its cross-attention reads a whole row")
        if cache is not None:
            refuse_packed_documents("decoding from a cache", starts, "a cache continues one sequence per row")
        if self.encoder.layer[0].attention.self.sequence_parallel_group is not None:
            refuse_packed_documents("sequence parallelism", starts, "its collectives pool whole rows")
        return None if starts is None else Segments.from_starts(starts)

    @merge_with_config_defaults
    @capture_outputs
    @auto_docstring
    @renamed_cache_kwargs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: FastformerCache | EncoderDecoderCache | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        r"""
        attention_mask (`(batch, seq)`, *optional*): 1 for real tokens, 0 for padding. With a cache: `(batch,
            cached + seq)`, covering the cached tokens too.
        cache (*optional*, causal only): the state of the tokens before `input_ids`; `use_cache` (causal only,
            ignored by an encoder) returns the updated state.
        """
        given_cache, cache = cache, self._decoding_cache(cache, use_cache)
        check_encoder_inputs(self.cross_attention, encoder_hidden_states, encoder_attention_mask)
        past_length = 0 if cache is None else cache.get_seq_length()
        shape = validate_inputs(self.config, input_ids, attention_mask, inputs_embeds, past_length)
        segments = self._packed_documents(position_ids, attention_mask, kwargs, shape, given_cache)
        if segments is not None:  # each document numbered from 0 (as `DataCollatorWithFlattening` numbers them)
            cache, position_ids = (
                None,
                document_position_ids(segments.starts) if position_ids is None else position_ids,
            )
        device = (input_ids if input_ids is not None else inputs_embeds).device
        positions = resolve_position_ids(
            self.config, self.causal, shape, attention_mask, position_ids, past_length, device
        )
        mask = (
            None if attention_mask is None else attention_mask[:, past_length:].bool().unsqueeze(-1)
        )  # (batch, seq, 1)
        hidden_states = self.embeddings(input_ids=input_ids, inputs_embeds=inputs_embeds, position_ids=positions)
        hidden_states = self.encoder(
            hidden_states, mask, encoder_hidden_states, encoder_attention_mask, cache, segments
        )
        if self.final_layer_norm is not None:
            hidden_states = self.final_layer_norm(hidden_states)
        if cache is not None:
            split_cache(cache)[0].advance(shape[1])
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states, cache=cache)


def _lm_logits_and_loss(model: PreTrainedModel, hidden_states, labels, logits_to_keep, kwargs: dict):
    """The causal LM heads' last step: `model.lm_head` of the positions `logits_to_keep` selects (transformers'
    `slice_logits_to_keep`: the last ones, 0 for all, or position indices; generation asks for the last one only),
    and with `labels` `(batch, seq)` transformers' `ForCausalLMLoss`: the labels are shifted inside, unless `kwargs` has `shift_labels`
    (already shifted), which are then the scored targets; their count is `num_items_in_batch` by default."""
    logits = model.lm_head(slice_logits_to_keep(hidden_states, logits_to_keep))  # (batch, kept, vocab)
    if labels is None:
        return logits, None
    vocab_size = model.config.vocab_size
    labels = check_class_ids(labels, vocab_size, "labels", tuple(logits.shape[:2]))
    counted = kwargs.get("shift_labels")
    if counted is None:
        counted = labels[:, 1:]
    else:
        counted = check_class_ids(counted, vocab_size, "shift_labels", tuple(counted.shape))
        counted = kwargs["shift_labels"] = counted.contiguous()  # the loss flattens them with `view`
    return logits, model.loss_function(logits, labels, vocab_size, **token_loss_kwargs(counted, kwargs))


def _require_bidirectional(config: FastformerConfig, head: str):
    if config.is_decoder:
        raise ValueError(
            f"`{head}` reads every token in both directions: it needs `config.is_decoder=False` (got True). Use "
            "`FastformerForCausalLM` for a causal model."
        )


def _classifier_dropout(config: FastformerConfig) -> nn.Dropout:
    """BERT's classifier dropout: `config.classifier_dropout`, else `hidden_dropout_prob`."""
    return nn.Dropout(
        config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
    )


@auto_docstring(
    custom_intro="""
    Fastformer encoder + pooler (`config.pooler_type`) + dropout + linear classifier. The loss follows
    `config.problem_type` (transformers' `ForSequenceClassificationLoss`): mean-squared error for regression
    (`num_labels == 1`), cross-entropy for integer labels, binary cross-entropy for float multi-hot labels. A packed
    batch (several documents per row, see `DataCollatorForPackedSequenceClassification`) gets one row of logits, and
    takes one label, per document, the documents in batch order.
    """
)
class FastformerForSequenceClassification(FastformerPreTrainedModel):
    def __init__(self, config: FastformerConfig):  # a causal encoder pools its states like a bidirectional one
        super().__init__(config)
        self.num_labels = config.num_labels
        self.fastformer = FastformerModel(config)
        self.pooler = FastformerPooler(config)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    @auto_docstring
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        labels (*optional*): class ids `(batch,)` (`-100` ignores a row), or regression targets or multi-hot vectors
            `(batch, num_labels)`, as `config.problem_type` says (set from the first labels when unset); packed:
            `(documents,)` or `(documents, num_labels)`.
        """
        starts = head_document_starts(input_ids, inputs_embeds, attention_mask, kwargs)
        outputs = self.fastformer(
            input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
        )
        segments = None if starts is None else Segments.from_starts(starts)  # packed: one pool per document
        pooled = self.pooler(outputs.last_hidden_state, attention_mask, segments)  # (batch or documents, hidden)
        logits = self.classifier(self.dropout(pooled))  # (batch or documents, num_labels)
        loss = None
        if labels is not None:
            labels = sequence_classification_labels(self.config, labels.to(logits.device), logits)
            if self.config.problem_type == "single_label_classification":  # 0, not NaN, when every label is -100
                kwargs = token_loss_kwargs(labels, kwargs)
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config, **kwargs)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


@auto_docstring(
    custom_intro="""
    Causal Fastformer language model: `FastformerModel` with causal layers + a linear head tied to the input
    embeddings. `labels` are shifted inside (position `t` predicts token `t + 1`; `-100` is ignored).

    Generation keeps a `FastformerCache` whose size does not grow with the text: per layer and head, the running
    max, normaliser and weighted sum of the two prefix pools. Greedy search, sampling and beam search (the cache
    follows the beams), assisted and prompt-lookup decoding (the cache rolls back rejected tokens) run in `generate()`.
    """
)
class FastformerForCausalLM(FastformerPreTrainedModel, FastformerGenerationMixin):
    _tp_plan = {"lm_head": "colwise_gather_output"}  # vocabulary split like the embedding table
    _fsdp_plan = {"lm_head": "keep_full_weight"}
    _tied_weights_keys = {"lm_head.weight": "fastformer.embeddings.word_embeddings.weight"}
    accepts_loss_kwargs = True  # the Trainer passes `num_items_in_batch`

    def __init__(self, config: FastformerConfig):
        if config.is_encoder_decoder:
            raise ValueError(
                "`FastformerForCausalLM` got an encoder-decoder config (`is_encoder_decoder=True`, a "
                "`FastformerForConditionalGeneration` checkpoint): its decoder reads the encoder output at every layer "
                "and cannot run as a causal LM alone, and a causal LM would load the encoder's weights. Load it with "
                "`AutoModelForSeq2SeqLM` (`pipeline('text2text-generation')` or `('summarization')`)."
            )
        if not config.is_decoder:  # the model owns a causal copy; the caller's config is left as it was
            logger.warning("`FastformerForCausalLM` needs causal layers: using `is_decoder=True`.")
            config = copy.deepcopy(config)
            config.is_decoder = True
        super().__init__(config)
        self.fastformer = FastformerModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    @can_return_tuple
    @auto_docstring
    @renamed_cache_kwargs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: FastformerCache | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithPast:
        r"""
        cache (`FastformerCache`, *optional*): the state of the tokens before `input_ids`.
        labels (`(batch, seq)`, *optional*): the input ids themselves (shifted inside); `-100` is ignored. A
            `shift_labels` keyword (already shifted) takes precedence, as in transformers' `ForCausalLMLoss`.
        """
        outputs = self.fastformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            cache=cache,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        logits, loss = _lm_logits_and_loss(self, outputs.last_hidden_state, labels, logits_to_keep, kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


@auto_docstring(
    custom_intro="""
    Encoder-decoder Fastformer for summarization and other sequence-to-sequence tasks, laid out like BART, with one
    config that the encoder and the decoder both read:

    - `fastformer`: the bidirectional Fastformer encoder (`FastformerModel`, `num_hidden_layers` layers);
    - `decoder`: a causal `FastformerModel` (`num_decoder_layers` layers, `num_hidden_layers` if unset) whose
      layers add a cross-attention sub-block over the encoder output (`config.cross_attention_type`);
    - `lm_head`: a linear layer; the encoder and the decoder always read one embedding matrix (tied weights),
      which with `tie_word_embeddings` (default) is also the head's.

    `labels` are shifted right into the decoder inputs (`decoder_start_token_id` first). In `generate()`, the
    encoder runs once; the decoding state (an `EncoderDecoderCache`) holds the decoder's constant-size
    `FastformerCache` and the encoder output's cross-attention projections, and follows beam reordering.
    """
)
class FastformerForConditionalGeneration(FastformerPreTrainedModel, FastformerGenerationMixin):
    _tp_plan = {"lm_head": "colwise_gather_output"}  # vocabulary split like the embedding table
    _tied_weights_keys = {
        "lm_head.weight": "fastformer.embeddings.word_embeddings.weight",
        "decoder.embeddings.word_embeddings.weight": "fastformer.embeddings.word_embeddings.weight",
    }
    accepts_loss_kwargs = True  # the Trainer passes `num_items_in_batch`

    def __init__(self, config: FastformerConfig):
        if not config.is_encoder_decoder or config.is_decoder or config.add_cross_attention:
            # the model owns an encoder-decoder copy; the caller's config is left as it was
            config = copy.deepcopy(config)
            config.is_encoder_decoder, config.is_decoder, config.add_cross_attention = True, False, False
        super().__init__(config)
        self.fastformer = FastformerModel(config)
        self.decoder = FastformerModel(
            config, causal=True, cross_attention=True, num_layers=config.num_decoder_layers or config.num_hidden_layers
        )
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        """The decoder always reads the encoder's embedding table; `tie_word_embeddings` decides only whether the
        head shares it too (transformers drops every tie when it is False)."""
        tied = super().get_expanded_tied_weights_keys(all_submodels=all_submodels)
        decoder_table = "decoder.embeddings.word_embeddings.weight"
        tied.setdefault(decoder_table, self._tied_weights_keys[decoder_table])
        return tied

    def get_encoder(self, modality=None):
        return self.fastformer

    def get_decoder(self):
        return self.decoder

    def get_input_embeddings(self):
        return self.fastformer.get_input_embeddings()

    def set_input_embeddings(self, value):
        """The encoder and the decoder read one embedding table: both get `value`."""
        self.fastformer.set_input_embeddings(value)
        self.decoder.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def _reorder_cache(self, cache: EncoderDecoderCache, beam_idx: torch.LongTensor) -> EncoderDecoderCache:
        """Beam search: reorder the decoder's state only. `beam_idx` picks, for each batch item, among that item's
        own beams, whose cross-attention projections are identical copies of one encoder output (`generate()`
        repeats it per beam), so copying those `(batch * beams, ..., enc_seq, ...)` tensors at every step is skipped."""
        cache.self_attention_cache.reorder_cache(beam_idx)
        return cache

    @can_return_tuple
    @auto_docstring
    @renamed_cache_kwargs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: EncoderDecoderCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        r"""
        decoder_attention_mask (`(batch, dec_seq)`, *optional*): 1/0 mask of the decoder inputs (with a cache:
            covering the cached tokens too).
        cache (`EncoderDecoderCache`, *optional*): the decoding state of the decoder inputs before these.
        labels (`(batch, dec_seq)`, *optional*): target token ids; `-100` is ignored by the loss.
        """
        if labels is not None:  # token ids or -100 (the shape is checked against the logits below)
            check_class_ids(labels, self.config.vocab_size, "labels", tuple(labels.shape))
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        if encoder_outputs is None:
            encoder_outputs = self.fastformer(
                input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
            )
        elif not isinstance(encoder_outputs, ModelOutput):  # a tuple, e.g. from `return_dict=False`
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError("Pass `decoder_input_ids` (or `labels`, from which they are built).")
        decoder_inputs = decoder_input_ids if decoder_input_ids is not None else decoder_inputs_embeds
        check_mask_shape(  # checked here, by its name: the decoder itself would call it `attention_mask`
            decoder_attention_mask,
            "decoder_attention_mask",
            tuple(decoder_inputs.shape[:2]),
            cache.get_seq_length() if isinstance(cache, Cache) else 0,
        )
        decoder_outputs = self.decoder(
            decoder_input_ids,
            attention_mask=decoder_attention_mask,
            inputs_embeds=decoder_inputs_embeds,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=cache,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        # the labels are not shifted: they are the next tokens of the decoder inputs
        logits, loss = _lm_logits_and_loss(
            self, decoder_outputs.last_hidden_state, labels, logits_to_keep, {**kwargs, "shift_labels": labels}
        )
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class FastformerLMPredictionHead(nn.Module):
    """BERT's masked-LM head: `logits = W_E LayerNorm(act(W h + b)) + b_vocab`, `(batch, seq, hidden)` ->
    `(batch, seq, vocab)`, where the decoder weight `W_E` is the input embedding matrix (tied by the model)."""

    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))
        return self.decoder(hidden_states)


@auto_docstring(
    custom_intro="""
    Bidirectional Fastformer encoder + BERT's masked-LM head (dense -> activation -> LayerNorm -> decoder tied to
    the word embeddings, with its own bias), for pretraining with `DataCollatorForLanguageModeling` and for
    `pipeline("fill-mask")`. The loss is the cross-entropy of the tokens whose label is not `-100`, averaged over
    those tokens; it is 0 for a batch without any.
    """
)
class FastformerForMaskedLM(FastformerPreTrainedModel):
    _tp_plan = {"lm_head.decoder": "colwise_gather_output"}  # vocabulary split like the embedding table
    _fsdp_plan = {"lm_head.decoder": "keep_full_weight"}
    _tied_weights_keys = {"lm_head.decoder.weight": "fastformer.embeddings.word_embeddings.weight"}
    accepts_loss_kwargs = True  # the Trainer passes `num_items_in_batch`

    def __init__(self, config: FastformerConfig):
        _require_bidirectional(config, type(self).__name__)
        super().__init__(config)
        self.fastformer = FastformerModel(config)
        self.lm_head = FastformerLMPredictionHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    @auto_docstring
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""
        labels (`(batch, seq)`, *optional*): the original ids at the masked positions, `-100` elsewhere.
        """
        outputs = self.fastformer(
            input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (batch, seq, vocab)
        loss = None
        if labels is not None:
            vocab_size = self.config.vocab_size
            labels = check_class_ids(labels.to(logits.device), vocab_size, "labels", tuple(logits.shape[:2]))
            loss = self.loss_function(logits, labels, vocab_size, **token_loss_kwargs(labels, kwargs))
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


@auto_docstring(
    custom_intro="""
    Fastformer encoder + dropout + one linear classifier per token (`(batch, seq, hidden)` ->
    `(batch, seq, num_labels)`), e.g. for named-entity recognition. The loss is the cross-entropy over the tokens
    whose label is not `-100` (give padding and sub-word continuations -100).
    """
)
class FastformerForTokenClassification(FastformerPreTrainedModel):
    accepts_loss_kwargs = True  # the Trainer passes `num_items_in_batch`

    def __init__(self, config: FastformerConfig):
        _require_bidirectional(config, type(self).__name__)
        super().__init__(config)
        self.num_labels = config.num_labels
        self.fastformer = FastformerModel(config)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    @auto_docstring
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        r"""
        labels (`(batch, seq)`, *optional*): a class id per token, `-100` to ignore it.
        """
        outputs = self.fastformer(
            input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # (batch, seq, num_labels)
        loss = None
        if labels is not None:
            labels = check_class_ids(labels.to(logits.device), self.num_labels, "labels", tuple(logits.shape[:2]))
            loss = self.loss_function(logits, labels, self.config, **token_loss_kwargs(labels, kwargs))
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


@auto_docstring(
    custom_intro="""
    Fastformer encoder + a linear layer giving every token a span-start and a span-end logit (extractive question
    answering, SQuAD-style: the input is `[CLS] question [SEP] context [SEP]`). The loss is transformers'
    `ForQuestionAnsweringLoss`, `(CE(start_logits, start_positions) + CE(end_logits, end_positions)) / 2` over the
    examples whose start and end both lie in `[0, seq)`: an answer cut off by truncation, or a negative index such as
    -1 or -100, is ignored (transformers' own QA heads clamp a negative index to 0 and train it as the first token);
    0, not NaN, when every example is ignored.
    """
)
class FastformerForQuestionAnswering(FastformerPreTrainedModel):
    def __init__(self, config: FastformerConfig):
        _require_bidirectional(config, type(self).__name__)
        super().__init__(config)
        self.fastformer = FastformerModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    @auto_docstring
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> QuestionAnsweringModelOutput:
        outputs = self.fastformer(
            input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
        )
        logits = self.qa_outputs(outputs.last_hidden_state)  # (batch, seq, 2)
        start_logits, end_logits = (part.squeeze(-1).contiguous() for part in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None or end_positions is not None:
            start, end = question_answering_positions(start_positions, end_positions, *start_logits.shape)
            start, end = start.to(logits.device), end.to(logits.device)
            divisor = token_loss_kwargs(start, {}, ignore_index=start_logits.shape[1])
            loss = self.loss_function(start_logits.float(), end_logits.float(), start, end, **divisor)
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


@auto_docstring(
    custom_intro="""
    Fastformer encoder + pooler (`config.pooler_type`) + dropout + a linear layer giving one logit per choice. The
    `(batch, num_choices, seq)` inputs are flattened to `(batch * num_choices, seq)`, encoded and pooled
    independently; the logits `(batch, num_choices)` are scored against `labels`, the index of the right choice,
    with cross-entropy.
    """
)
class FastformerForMultipleChoice(FastformerPreTrainedModel):
    # transformers has no multiple-choice loss: the masked-LM loss is the same cross-entropy, over the choices
    _loss_function = staticmethod(ForMaskedLMLoss)

    def __init__(self, config: FastformerConfig):
        _require_bidirectional(config, type(self).__name__)
        super().__init__(config)
        self.fastformer = FastformerModel(config)
        self.pooler = FastformerPooler(config)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @can_return_tuple
    @auto_docstring
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MultipleChoiceModelOutput:
        r"""
        input_ids (`(batch, num_choices, seq)`): each choice's tokens (`inputs_embeds`: `(batch, num_choices, seq,
            hidden)`; `attention_mask`: `(batch, num_choices, seq)`).
        labels (`(batch,)`, *optional*): the index of the right choice, `-100` to ignore an example.
        """
        inputs = check_multiple_choice_inputs(input_ids, attention_mask, inputs_embeds)
        flat = [
            None if tensor is None else tensor.flatten(0, 1) for tensor in (input_ids, attention_mask, inputs_embeds)
        ]
        starts = head_document_starts(flat[0], flat[2], flat[1], kwargs)
        refuse_packed_documents(type(self).__name__, starts, "each choice is one row, scored as one sequence")
        outputs = self.fastformer(flat[0], attention_mask=flat[1], inputs_embeds=flat[2], return_dict=True, **kwargs)
        pooled = self.pooler(outputs.last_hidden_state, flat[1])  # (batch * num_choices, hidden)
        logits = self.classifier(self.dropout(pooled)).view(inputs.shape[:2])  # (batch, num_choices)
        loss = None
        if labels is not None:
            labels = check_class_ids(labels.to(logits.device), logits.shape[1], "labels", (logits.shape[0],))
            loss = self.loss_function(logits, labels, logits.shape[1], **token_loss_kwargs(labels, kwargs))
        return MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "FastformerCache",
    "FastformerForCausalLM",
    "FastformerForConditionalGeneration",
    "FastformerModel",
    "FastformerForMaskedLM",
    "FastformerForMultipleChoice",
    "FastformerForQuestionAnswering",
    "FastformerForSequenceClassification",
    "FastformerForTokenClassification",
    "FastformerPreTrainedModel",
]
