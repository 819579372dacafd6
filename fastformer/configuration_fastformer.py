# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Fastformer model configuration."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


ATTENTION_LOGIT_LAYOUTS = ("dense", "per_head")
POSITION_EMBEDDING_TYPES = ("absolute", "none")
POOLER_TYPES = ("attention", "first", "mean")
CROSS_ATTENTION_TYPES = ("scaled_dot_product", "additive")
LAYER_NORM_POSITIONS = ("post", "pre")


@strict
class FastformerConfig(PreTrainedConfig):
    r"""
    Configuration of a Fastformer model (Wu et al., 2021, "Fastformer: Additive Attention Can Be All You Need",
    arXiv:2108.09084). The defaults reproduce the authors' official PyTorch code (`wuch15/Fastformer`,
    `fastformer.json`): hidden 256, 16 heads of size 16, 2 layers, FFN 256, GELU, dropout 0.2, 256 learned
    absolute positions, LayerNorm eps 1e-12, value = query, `query_att`/`key_att` as `Linear(hidden -> heads)`
    with bias, no layer-wise sharing, additive-attention pooler.

    Args:
        vocab_size (`int`, defaults to 30522): number of token ids.
        hidden_size (`int`, defaults to 256): width `d_model`; must be divisible by `num_attention_heads`.
        num_hidden_layers (`int`, defaults to 2): number of Fastformer layers.
        num_attention_heads (`int`, defaults to 16): heads of the additive attention.
        intermediate_size (`int`, defaults to 256): width of the feed-forward block (the official code does
            not expand it 4x).
        hidden_act (`str`, defaults to `"gelu"`): activation of the feed-forward block (a key of `ACT2FN`).
        hidden_dropout_prob (`float`, defaults to 0.2): dropout on embeddings and after every sub-block.
        classifier_dropout (`float`, *optional*): dropout before the classifier; `hidden_dropout_prob` if unset.
        max_position_embeddings (`int`, defaults to 256): longest sequence the learned position table covers.
            With `position_embedding_type="none"` it is not a limit.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation of weights.
        layer_norm_eps (`float`, defaults to 1e-12): LayerNorm epsilon.
        layer_norm_position (`str`, defaults to `"post"`): where each sub-block's LayerNorm sits. `"post"` is the
            official code (BERT's layout; official checkpoints use it): the embeddings are normalised, and every
            sub-block `f` (attention, cross-attention, feed-forward) computes `x <- LayerNorm(x + dropout(W f(x) + b))`.
            `"pre"` is GPT-2's layout: `x <- x + dropout(W f(LayerNorm(x)) + b)`, the embeddings are not normalised
            and one more LayerNorm (`final_layer_norm`) follows the last layer, in place of the embeddings' one (the
            same number of parameters). A checkpoint loads only into its own layout. For a causal LM trained from
            scratch: `"post"` when the learning-rate warm-up can be ~100 steps or more, `"pre"` when it must be short
            (benchmarks/RESULTS.md, "Equal-budget causal language modelling").
        pad_token_id (`int`, defaults to 0): padding id; its embedding row is initialised to zero.
        share_query_value (`bool`, defaults to `True`): query-value sharing. `True` is the official code: there
            is no value projection and the (biased) query projection is the value, `u_i = k * q_i`. `False` adds
            a separate value projection `W_V` (the paper's "w/o sharing" ablation).
        attention_logit_layout (`str`, defaults to `"dense"`): how the additive-attention logits are computed.
            `"dense"` is the official code: `Linear(hidden -> heads)` with bias, each head's logit reading all
            heads' features. `"per_head"` is the paper's equation: one vector `w in R^{head_dim}` per head,
            `a_i^h = w^h . q_i^h / sqrt(head_dim)`, no bias.
        share_layer_parameters (`bool`, defaults to `False`): layer-wise parameter sharing (the paper's final
            model, ALBERT-style: one set of layer weights applied `num_hidden_layers` times). The official code
            does not share.
        position_embedding_type (`str`, defaults to `"absolute"`): `"absolute"` (learned, official) or `"none"`.
        pooler_type (`str`, defaults to `"attention"`): sequence pooling for classification. `"attention"` is
            the paper's additive-attention pooler (`softmax_i(w_2 . tanh(W_1 x_i + b_1) + b_2)`, masked),
            `"first"` takes the first token, `"mean"` averages the real tokens.
        is_decoder (`bool`, defaults to `False`): causal layers (each position pools only itself and earlier
            positions), as used by `FastformerForCausalLM`, with a constant-size decoding state.
        add_cross_attention (`bool`, defaults to `False`): causal layers also attend to an encoder's output (set
            for the decoder of `FastformerForConditionalGeneration`).
        cross_attention_type (`str`, defaults to `"scaled_dot_product"`): the decoder's cross-attention. Standard
            multi-head `"scaled_dot_product"` attention, or `"additive"`: the decoder's causal global query conditions
            an additive pooling of the encoder keys (`FastformerAdditiveCrossAttention`).
        num_decoder_layers (`int`, *optional*): decoder depth of the encoder-decoder (`num_hidden_layers` if unset;
            `num_hidden_layers` is the encoder depth).
        decoder_start_token_id (`int`, *optional*): first decoder input of the encoder-decoder.
        use_cache (`bool`, defaults to `True`): causal models return their decoding state (`FastformerCache`).
        sequence_chunk_size (`int`, defaults to 0): memory option for long sequences. When positive, every layer
            runs `sequence_chunk_size` positions at a time, the chunks exchanging only what the attention carries
            along the sequence (the encoder's two global vectors, after a softmax over all positions' logits; the
            decoder's prefix-pool states), and, while gradients are recorded, each chunk keeps only its input for
            the backward pass and is recomputed there: a layer's activation memory is `O(sequence_chunk_size)`
            instead of `O(seq)` (the layer inputs, `seq x hidden`, are kept). Same function up to float rounding
            (dropout draws its masks chunk by chunk); `output_attentions` is not recorded by chunked encoder
            layers. Whole-layer gradient checkpointing is not needed on top (it would recompute once more).
            0 (default): the whole sequence at once.
        recompute_causal_pool (`bool`, defaults to `False`): memory option of causal layers: the prefix pools
            (`prefix_softmax_pool`) keep only their inputs for the backward pass and run again there (their scan
            would otherwise keep `O(seq * heads * (head_dim + 16))` floats per pool). Same results, one more pool
            forward.
        tie_word_embeddings (`bool`, defaults to `True`): language-model heads share the input embedding matrix.
        bos_token_id / eos_token_id (`int`, *optional*): special tokens for generation.

    Parallel plans (class attributes, read by transformers' native `from_pretrained(..., distributed_config=...)`):
    `base_model_fsdp_plan` makes every `FastformerLayer` and the word-embedding table an FSDP2 unit;
    `base_model_tp_plan` splits the vocabulary of the embeddings and LM heads, the feed-forward block
    column-then-row, and the attention projections column-wise with gathered outputs (the official dense
    `query_att`/`key_att` read all heads' features). No `base_model_pp_plan`: transformers 5.25's pipeline split
    looks for Llama's module names. Details and what was run: docs/distributed.md.

    Example:

    ```python
    >>> from fastformer import FastformerConfig, FastformerModel
    >>> config = FastformerConfig(share_layer_parameters=True, attention_logit_layout="per_head")
    >>> model = FastformerModel(config)
    ```
    """

    model_type = "fastformer"
    # Parallel plans of the base model `FastformerModel` for transformers' native distributed loading
    # (`from_pretrained(..., distributed_config=DistributedConfig(...))`); the heads add their own rules (`_tp_plan`,
    # `_fsdp_plan` in modeling_fastformer.py) and rules that name nothing in a variant are dropped. Why each layer is
    # split the way it is: docs/distributed.md.
    base_model_fsdp_plan = {
        "embeddings.word_embeddings": "free_full_weight",  # kept gathered (`keep_full_weight`) when an LM head shares it
        "encoder.layer.*": "free_full_weight",  # one FSDP2 unit per FastformerLayer
    }
    base_model_tp_plan = {
        "embeddings.word_embeddings": "embedding_rowwise",  # vocabulary split, partial sums all-reduced
        # The dense logit layers `query_att`/`key_att` (and the pools, `key * global_query`, the residual `+ query`)
        # read every head's features: the attention projections shard their weights but gather their outputs.
        "encoder.layer.*.attention.self.query": "colwise_rep",
        "encoder.layer.*.attention.self.key": "colwise_rep",
        "encoder.layer.*.attention.self.value": "colwise_rep",
        "encoder.layer.*.attention.self.transform": "colwise_rep",
        "encoder.layer.*.attention.output.dense": "colwise_rep",
        "encoder.layer.*.crossattention.self.query": "colwise_rep",
        "encoder.layer.*.crossattention.self.key": "colwise_rep",
        "encoder.layer.*.crossattention.self.value": "colwise_rep",
        "encoder.layer.*.crossattention.self.transform": "colwise_rep",
        "encoder.layer.*.crossattention.output.dense": "colwise_rep",
        # The feed-forward block is the Megatron pair: its activation stays split, one all-reduce at the end.
        "encoder.layer.*.intermediate.dense": "colwise",
        "encoder.layer.*.output.dense": "rowwise",
    }

    vocab_size: int = 30522
    hidden_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 16
    intermediate_size: int = 256
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.2
    classifier_dropout: float | int | None = None
    max_position_embeddings: int = 256
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    layer_norm_position: str = "post"
    pad_token_id: int | None = 0
    share_query_value: bool = True
    attention_logit_layout: str = "dense"
    share_layer_parameters: bool = False
    position_embedding_type: str = "absolute"
    pooler_type: str = "attention"
    is_decoder: bool = False
    add_cross_attention: bool = False
    cross_attention_type: str = "scaled_dot_product"
    num_decoder_layers: int | None = None
    decoder_start_token_id: int | None = None
    use_cache: bool = True
    sequence_chunk_size: int = 0
    recompute_causal_pool: bool = False
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        # Checked here rather than in a `validate_*` hook so that a bad value raises a plain `ValueError` at
        # construction (and on `from_pretrained` of a bad config.json).
        if kwargs.get("model_type", self.model_type) != self.model_type:
            # transformers only warns; a config.json of another (or misspelt) model_type is refused here
            raise ValueError(
                f"The configuration has model_type={kwargs['model_type']!r}, but FastformerConfig reads only "
                f"model_type={self.model_type!r}: this config.json belongs to another architecture or is misspelt."
            )
        self._check_values()
        super().__post_init__(**kwargs)

    def _check_values(self):
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        for name in positive + ("max_position_embeddings", "num_decoder_layers"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.sequence_chunk_size < 0:
            raise ValueError(f"`sequence_chunk_size` must be 0 (off) or positive, got {self.sequence_chunk_size}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads})."
            )
        for name, allowed in (
            ("attention_logit_layout", ATTENTION_LOGIT_LAYOUTS),
            ("position_embedding_type", POSITION_EMBEDDING_TYPES),
            ("pooler_type", POOLER_TYPES),
            ("cross_attention_type", CROSS_ATTENTION_TYPES),
            ("layer_norm_position", LAYER_NORM_POSITIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(self, name)!r}.")
        for name in ("hidden_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must lie in [0, 1), got {value}.")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"`layer_norm_eps` must be positive, got {self.layer_norm_eps}.")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"`pad_token_id` ({self.pad_token_id}) must lie in [0, vocab_size={self.vocab_size}).")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


__all__ = ["FastformerConfig"]
