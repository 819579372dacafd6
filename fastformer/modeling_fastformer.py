# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""PyTorch Fastformer (Wu et al., 2021, arXiv:2108.09084), laid out like the authors' official code.

This file only imports torch, transformers and its sibling `configuration_fastformer.py`, so that both can be
copied alone into a checkpoint directory and loaded with `trust_remote_code=True`.
"""

import math

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput
from transformers.utils import can_return_tuple

from .configuration_fastformer import FastformerConfig


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    """Softmax of `logits` along `dim` in float32, ignoring positions where `mask` is False.

    Masked logits are replaced by the most negative finite float32, so the weights of masked positions are exactly
    zero whenever the row has a real position, and a row without any real position gets uniform (finite) weights
    instead of the NaN of `0 / 0`. Returns float32 weights of the shape of `logits`.
    """
    logits = logits.float()
    if mask is not None:
        logits = logits.masked_fill(~mask, torch.finfo(torch.float32).min)
    return torch.softmax(logits, dim=dim)


class FastformerEmbeddings(nn.Module):
    """Word embeddings + learned absolute positions (optional), then LayerNorm and dropout (official layout)."""

    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        if config.position_embedding_type == "absolute":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        else:
            self.position_embeddings = None
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (batch, seq, hidden)
        embeddings = inputs_embeds
        if self.position_embeddings is not None:
            seq_length = inputs_embeds.shape[1]
            position_ids = torch.arange(seq_length, device=inputs_embeds.device)
            embeddings = embeddings + self.position_embeddings(position_ids)  # broadcast over batch
        return self.dropout(self.LayerNorm(embeddings))


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

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.num_heads, device=self.weight.device, dtype=self.weight.dtype)
        block_diagonal = (eye.unsqueeze(-1) * self.weight.unsqueeze(0)).view(self.num_heads, -1)  # (heads, hidden)
        return nn.functional.linear(hidden_states, block_diagonal)  # (batch, seq, heads)


class FastformerAdditiveAttention(nn.Module):
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

    The logits `w . x` come from `Linear(hidden -> heads)` (official, `attention_logit_layout="dense"`) or one
    vector per head (paper, `"per_head"`). Softmaxes run in float32. Cost is O(seq * hidden) beyond the linear
    layers; the global vectors broadcast over the sequence and are never expanded.

    Returns `out` `(batch, seq, hidden)`, `alpha` and `beta` `(batch, heads, seq)`.
    """

    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scale = 1.0 / math.sqrt(self.head_dim)
        hidden = config.hidden_size
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = None if config.share_query_value else nn.Linear(hidden, hidden)
        if config.attention_logit_layout == "dense":
            self.query_att = nn.Linear(hidden, self.num_heads)
            self.key_att = nn.Linear(hidden, self.num_heads)
        else:
            self.query_att = FastformerPerHeadLogits(self.num_heads, self.head_dim)
            self.key_att = FastformerPerHeadLogits(self.num_heads, self.head_dim)
        self.transform = nn.Linear(hidden, hidden)

    def pool(self, logits: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None):
        """Softmax-pool `values` `(batch, seq, hidden)` per head with `logits` `(batch, seq, heads)`.

        Returns the pooled vector `(batch, 1, hidden)` (heads concatenated) and the weights `(batch, seq, heads)`.
        The pooling is one `bmm` of every head's weights against all features, `(batch, heads, hidden)`, of which
        the head-diagonal blocks are kept: `heads` times the minimal flops of this (small) product, but no
        permuted copy of `values` in the forward or the backward pass.
        """
        batch = values.shape[0]
        weights = masked_softmax(logits * self.scale, mask, dim=1).to(values.dtype)  # (batch, seq, heads)
        pooled = torch.bmm(weights.transpose(1, 2), values)  # (batch, heads, hidden)
        pooled = pooled.view(batch, self.num_heads, self.num_heads, self.head_dim).diagonal(dim1=1, dim2=2)
        return pooled.transpose(1, 2).reshape(batch, 1, -1), weights  # (batch, 1, hidden)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None):
        query = self.query(hidden_states)  # (batch, seq, hidden)
        key = self.key(hidden_states)  # (batch, seq, hidden)
        global_query, alpha = self.pool(self.query_att(query), query, mask)  # (batch, 1, hidden)
        mixed = key * global_query  # p_i, (batch, seq, hidden)
        global_key, beta = self.pool(self.key_att(mixed), mixed, mask)  # (batch, 1, hidden)
        value = query if self.value is None else self.value(hidden_states)
        output = self.transform(global_key * value) + query  # (batch, seq, hidden)
        return output, alpha.transpose(1, 2), beta.transpose(1, 2)


class FastformerSelfOutput(nn.Module):
    """BERT's self-output: `LayerNorm(dropout(Dense(z)) + x)` (post-LN residual around the attention)."""

    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class FastformerAttention(nn.Module):
    """Additive attention followed by the self-output block (official `FastAttention`)."""

    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.self = FastformerAdditiveAttention(config)
        self.output = FastformerSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None):
        attended, alpha, beta = self.self(hidden_states, mask)
        return self.output(attended, hidden_states), alpha, beta


class FastformerIntermediate(nn.Module):
    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))  # (batch, seq, intermediate)


class FastformerOutput(nn.Module):
    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class FastformerLayer(GradientCheckpointingLayer):
    """One post-LN Fastformer block: additive attention sub-block, then the BERT feed-forward sub-block."""

    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.attention = FastformerAttention(config)
        self.intermediate = FastformerIntermediate(config)
        self.output = FastformerOutput(config)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None):
        attention_output, alpha, beta = self.attention(hidden_states, mask)
        layer_output = self.output(self.intermediate(attention_output), attention_output)
        return layer_output, alpha, beta


class FastformerEncoder(nn.Module):
    """The stack of layers. With `share_layer_parameters` one layer's weights are applied at every depth."""

    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.num_hidden_layers = config.num_hidden_layers
        num_distinct = 1 if config.share_layer_parameters else config.num_hidden_layers
        self.layer = nn.ModuleList([FastformerLayer(config) for _ in range(num_distinct)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for depth in range(self.num_hidden_layers):
            layer = self.layer[depth % len(self.layer)]
            hidden_states, alpha, beta = layer(hidden_states, mask)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += ((alpha, beta),)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


class FastformerPooler(nn.Module):
    r"""Turns `(batch, seq, hidden)` into one vector per sequence `(batch, hidden)`.

    `"attention"` (the paper's additive attention pooling, official `AttentionPooling`):
        `e_i = tanh(W_1 x_i + b_1)`, `s_i = w_2 . e_i + b_2`, `pooled = sum_i softmax_i(s) x_i` over real tokens;
        computed as a max-subtracted masked softmax (the official code's `exp` without max-subtraction and
        `+1e-8` is the same function, but overflows for large logits).
    `"first"`: `x_1`.  `"mean"`: the mean over real tokens (zero for a row without any).
    """

    def __init__(self, config: FastformerConfig):
        super().__init__()
        self.pooler_type = config.pooler_type
        if self.pooler_type == "attention":
            self.att_fc1 = nn.Linear(config.hidden_size, config.hidden_size)
            self.att_fc2 = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pooler_type == "first":
            return hidden_states[:, 0]
        if self.pooler_type == "mean":
            if attention_mask is None:
                return hidden_states.mean(dim=1)
            weights = attention_mask.to(hidden_states.dtype).unsqueeze(-1)  # (batch, seq, 1)
            return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        logits = self.att_fc2(torch.tanh(self.att_fc1(hidden_states)))  # (batch, seq, 1)
        mask = None if attention_mask is None else attention_mask.bool().unsqueeze(-1)
        weights = masked_softmax(logits, mask, dim=1).to(hidden_states.dtype)  # (batch, seq, 1)
        return torch.einsum("bn,bnd->bd", weights.squeeze(-1), hidden_states)  # (batch, hidden)


class FastformerPreTrainedModel(PreTrainedModel):
    config_class = FastformerConfig
    config: FastformerConfig
    base_model_prefix = "fastformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["FastformerEmbeddings", "FastformerLayer"]

    # Written into `config.auto_map` by `save_pretrained`, so that a checkpoint of any head also loads with the
    # other Auto classes under `trust_remote_code=True` (e.g. `AutoModel` on a classifier checkpoint).
    _fastformer_auto_map = {
        "AutoConfig": "configuration_fastformer.FastformerConfig",
        "AutoModel": "modeling_fastformer.FastformerModel",
        "AutoModelForSequenceClassification": "modeling_fastformer.FastformerForSequenceClassification",
    }

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:  # the code files are saved beside the weights
            self.config.auto_map = {**self._fastformer_auto_map, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module):
        """Normal(0, initializer_range) weights, zero biases, unit LayerNorms, zero padding embedding row."""
        super()._init_weights(module)
        if isinstance(module, FastformerPerHeadLogits):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)


def _validate_inputs(config, input_ids, attention_mask, inputs_embeds) -> tuple[int, int]:
    """Raise a `ValueError` naming the problem for inputs the model cannot process; return (batch, seq)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Specify exactly one of `input_ids` or `inputs_embeds`.")
    if input_ids is not None:
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (batch, seq), got {tuple(input_ids.shape)}.")
        shape = tuple(input_ids.shape)
    else:
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.hidden_size:
            raise ValueError(
                f"`inputs_embeds` must have shape (batch, seq, {config.hidden_size}), got {tuple(inputs_embeds.shape)}."
            )
        shape = tuple(inputs_embeds.shape[:2])
    if shape[1] == 0:
        raise ValueError("The input sequence is empty (seq length 0).")
    if config.position_embedding_type == "absolute" and shape[1] > config.max_position_embeddings:
        raise ValueError(
            f"Sequence length {shape[1]} exceeds `max_position_embeddings` ({config.max_position_embeddings}); "
            "truncate the input or use a config with a larger position table."
        )
    if attention_mask is not None and tuple(attention_mask.shape) != shape:
        raise ValueError(
            f"`attention_mask` has shape {tuple(attention_mask.shape)} but the input has shape {shape} (batch, seq)."
        )
    if input_ids is not None and not torch.compiler.is_compiling():
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= config.vocab_size:
            raise ValueError(
                f"`input_ids` contains ids outside the vocabulary [0, {config.vocab_size}): min {low}, max {high}."
            )
    return shape


class FastformerModel(FastformerPreTrainedModel):
    """The bare Fastformer encoder: embeddings -> `num_hidden_layers` Fastformer layers -> `BaseModelOutput`.

    `attentions`, when requested, holds one `(alpha, beta)` pair per layer, each `(batch, heads, seq)`: the
    additive-attention weights of the global query and the global key.
    """

    def __init__(self, config: FastformerConfig):
        super().__init__(config)
        self.embeddings = FastformerEmbeddings(config)
        self.encoder = FastformerEncoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput:
        r"""
        input_ids (`(batch, seq)`): token ids in `[0, vocab_size)`.
        attention_mask (`(batch, seq)`, *optional*): 1 for real tokens, 0 for padding.
        inputs_embeds (`(batch, seq, hidden)`, *optional*): used instead of `input_ids`.
        """
        _validate_inputs(self.config, input_ids, attention_mask, inputs_embeds)
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        mask = None if attention_mask is None else attention_mask.bool().unsqueeze(-1)  # (batch, seq, 1)
        hidden_states = self.embeddings(input_ids=input_ids, inputs_embeds=inputs_embeds)
        return self.encoder(
            hidden_states, mask, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )


class FastformerForSequenceClassification(FastformerPreTrainedModel):
    """Fastformer encoder + pooler (`config.pooler_type`) + dropout + linear classifier.

    The loss follows `config.problem_type`: mean-squared error for regression (`num_labels == 1`), cross-entropy
    for single-label classification (integer labels), binary cross-entropy with logits for multi-label
    classification (float multi-hot labels).
    """

    def __init__(self, config: FastformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.fastformer = FastformerModel(config)
        self.pooler = FastformerPooler(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput:
        r"""
        labels (`(batch,)` or `(batch, num_labels)`, *optional*): class ids, regression targets or multi-hot
            vectors, according to `config.problem_type`.
        """
        outputs = self.fastformer(
            input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        pooled = self.pooler(outputs.last_hidden_state, attention_mask)  # (batch, hidden)
        logits = self.classifier(self.dropout(pooled))  # (batch, num_labels)
        loss = None if labels is None else self.loss(logits, labels)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.to(logits.device)
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            if self.num_labels == 1:
                return MSELoss()(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
            return MSELoss()(logits, labels.to(logits.dtype))
        if self.config.problem_type == "single_label_classification":
            flat = labels.view(-1)
            if not torch.compiler.is_compiling():
                valid = (flat == -100) | ((flat >= 0) & (flat < self.num_labels))
                if not bool(valid.all()):
                    raise ValueError(
                        f"`labels` must be class ids in [0, {self.num_labels}) (or -100 to ignore); got "
                        f"{flat[~valid].unique().tolist()}."
                    )
            return CrossEntropyLoss()(logits.view(-1, self.num_labels), flat)
        if labels.shape != logits.shape:
            raise ValueError(
                f"Multi-label `labels` must have shape {tuple(logits.shape)} (batch, num_labels), got "
                f"{tuple(labels.shape)}."
            )
        return BCEWithLogitsLoss()(logits, labels.to(logits.dtype))


__all__ = [
    "FastformerModel",
    "FastformerForSequenceClassification",
    "FastformerPreTrainedModel",
]
