"""Independent plain-torch computations of Fastformer, written from the official notebook
(`wuch15/Fastformer`, `Fastformer.ipynb`) and the paper's equations. They read weights from a state dict by name
and share no code with the `fastformer` package."""

import math

import torch
import torch.nn.functional as F


# BERT's `hidden_act` names, written out (transformers' ACT2FN is not used).
ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))),
    "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
    "relu": lambda x: x.clamp(min=0),
    "silu": lambda x: x * torch.sigmoid(x),
}


def _linear(sd, name, x):
    return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))


def official_self_attention(sd, prefix, x, attention_mask, num_heads, return_weights=False):
    """Official `FastSelfAttention.forward`, with its additive (1 - m) * -10000 mask and its `repeat`. With
    `return_weights`, also the global query's and key's weights `alpha`, `beta` `(batch, heads, seq)`."""
    batch, seq_len, hidden = x.shape
    head = hidden // num_heads
    mask = (1.0 - attention_mask[:, None, :].to(x.dtype)) * -10000.0  # (batch, 1, seq)
    mixed_query = _linear(sd, f"{prefix}.query", x)
    mixed_key = _linear(sd, f"{prefix}.key", x)
    query_for_score = _linear(sd, f"{prefix}.query_att", mixed_query).transpose(1, 2) / head**0.5 + mask
    query_weight = torch.softmax(query_for_score, dim=-1).unsqueeze(2)  # (batch, heads, 1, seq)
    query_layer = mixed_query.view(batch, seq_len, num_heads, head).permute(0, 2, 1, 3)
    pooled_query = torch.matmul(query_weight, query_layer).transpose(1, 2).reshape(-1, 1, hidden)
    mixed_query_key = mixed_key * pooled_query.repeat(1, seq_len, 1)
    query_key_score = (_linear(sd, f"{prefix}.key_att", mixed_query_key) / head**0.5).transpose(1, 2) + mask
    query_key_weight = torch.softmax(query_key_score, dim=-1).unsqueeze(2)
    key_layer = mixed_query_key.view(batch, seq_len, num_heads, head).permute(0, 2, 1, 3)
    pooled_key = torch.matmul(query_key_weight, key_layer)  # (batch, heads, 1, head)
    weighted_value = (pooled_key * query_layer).transpose(1, 2).reshape(batch, seq_len, hidden)
    out = _linear(sd, f"{prefix}.transform", weighted_value) + mixed_query
    if return_weights:
        return out, query_weight.squeeze(2), query_key_weight.squeeze(2)
    return out


def paper_self_attention(sd, prefix, x, attention_mask, num_heads, share_query_value=True, return_weights=False):
    """The paper's equations 3-6 head by head, with one vector w_q, w_k per head and an explicit loop over heads.
    With `return_weights`, also `alpha`, `beta` `(batch, heads, seq)`."""
    batch, seq_len, hidden = x.shape
    d = hidden // num_heads
    keep = attention_mask.bool()
    q_all = _linear(sd, f"{prefix}.query", x)
    k_all = _linear(sd, f"{prefix}.key", x)
    v_all = q_all if share_query_value else _linear(sd, f"{prefix}.value", x)
    outputs, alphas, betas = [], [], []
    for h in range(num_heads):
        q, k, v = (t[..., h * d : (h + 1) * d] for t in (q_all, k_all, v_all))
        w_q = sd[f"{prefix}.query_att.weight"][h]
        w_k = sd[f"{prefix}.key_att.weight"][h]
        a = (q @ w_q) / math.sqrt(d)
        alpha = torch.softmax(a.masked_fill(~keep, -math.inf), dim=-1)
        global_q = (alpha.unsqueeze(-1) * q).sum(1, keepdim=True)
        p = global_q * k
        b = (p @ w_k) / math.sqrt(d)
        beta = torch.softmax(b.masked_fill(~keep, -math.inf), dim=-1)
        global_k = (beta.unsqueeze(-1) * p).sum(1, keepdim=True)
        outputs.append(global_k * v)
        alphas.append(alpha)
        betas.append(beta)
    u = torch.cat(outputs, dim=-1)
    out = _linear(sd, f"{prefix}.transform", u) + q_all
    if return_weights:
        return out, torch.stack(alphas, dim=1), torch.stack(betas, dim=1)
    return out


def official_layer(sd, prefix, x, attention_mask, num_heads, eps, attention=official_self_attention, act="gelu"):
    """Official `FastformerLayer`: attention, BertSelfOutput, BertIntermediate (`act`, BERT's `hidden_act`),
    BertOutput (eval mode)."""
    hidden = x.shape[-1]
    z = attention(sd, f"{prefix}.attention.self", x, attention_mask, num_heads)
    a = F.layer_norm(
        _linear(sd, f"{prefix}.attention.output.dense", z) + x,
        (hidden,),
        sd[f"{prefix}.attention.output.LayerNorm.weight"],
        sd[f"{prefix}.attention.output.LayerNorm.bias"],
        eps,
    )
    f = ACTIVATIONS[act](_linear(sd, f"{prefix}.intermediate.dense", a))
    return F.layer_norm(
        _linear(sd, f"{prefix}.output.dense", f) + a,
        (hidden,),
        sd[f"{prefix}.output.LayerNorm.weight"],
        sd[f"{prefix}.output.LayerNorm.bias"],
        eps,
    )


def official_classifier(sd, input_ids, attention_mask, num_heads, num_layers, eps, prefix="fastformer.", act="gelu"):
    """Official `Model.forward` in eval mode: embeddings, encoder, `AttentionPooling` (exp, mask, +1e-8), dense."""
    hidden = sd[f"{prefix}embeddings.word_embeddings.weight"].shape[1]
    x = sd[f"{prefix}embeddings.word_embeddings.weight"][input_ids]
    x = x + sd[f"{prefix}embeddings.position_embeddings.weight"][: input_ids.shape[1]]
    x = F.layer_norm(
        x, (hidden,), sd[f"{prefix}embeddings.LayerNorm.weight"], sd[f"{prefix}embeddings.LayerNorm.bias"], eps
    )
    for i in range(num_layers):
        x = official_layer(sd, f"{prefix}encoder.layer.{i}", x, attention_mask, num_heads, eps, act=act)
    e = torch.tanh(_linear(sd, "pooler.att_fc1", x))
    alpha = torch.exp(_linear(sd, "pooler.att_fc2", e)) * attention_mask.unsqueeze(2)
    alpha = alpha / (alpha.sum(dim=1, keepdim=True) + 1e-8)
    pooled = torch.bmm(x.permute(0, 2, 1), alpha).squeeze(-1)
    return _linear(sd, "classifier", pooled)


# ------------------------------------------------------------------------ causal and encoder-decoder models
# Written from the equations of docs/architecture.md (causal layer, additive cross-attention), token by token in
# float64, reading the state dict by name. A per-head logit layout is recognised by its `(heads, head_dim)` weight.


def _layer_norm(sd, name, x, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def _head_logits(sd, name, x, num_heads):
    """`(…, hidden)` -> `(…, heads)`: a dense `Linear(hidden, heads)`, or one vector per head on its own slice."""
    weight = sd[f"{name}.weight"]
    hidden = x.shape[-1]
    if weight.shape[1] == hidden:
        return _linear(sd, name, x)
    d = hidden // num_heads
    return torch.stack([x[..., h * d : (h + 1) * d] @ weight[h] for h in range(num_heads)], dim=-1)


def naive_prefix_pool(logits, values, keep):
    """Per prefix `t`, an explicit softmax over the real tokens `j <= t` (float64, O(seq^2)); 0 before any.
    `logits` `(batch, seq, heads)`, `values` `(batch, seq, heads, d)`, `keep` `(batch, seq)` bool."""
    batch, seq, heads = logits.shape
    out = torch.zeros(batch, seq, heads, values.shape[-1], dtype=torch.float64)
    for t in range(seq):
        a = logits[:, : t + 1].double().masked_fill(~keep[:, : t + 1, None], -math.inf)  # (batch, t+1, heads)
        weights = torch.softmax(a, dim=1).nan_to_num(0.0)  # rows without a real token: all -inf -> 0
        out[:, t] = torch.einsum("bjh,bjhd->bhd", weights, values[:, : t + 1].double())
    return out


def _prefix_pool_hidden(logits, values, keep, num_heads):
    """`naive_prefix_pool` on `(batch, seq, hidden)` values, heads concatenated."""
    batch, seq, hidden = values.shape
    pooled = naive_prefix_pool(logits, values.view(batch, seq, num_heads, hidden // num_heads), keep)
    return pooled.reshape(batch, seq, hidden)


def additive_self_attention(sd, prefix, x, attention_mask, num_heads):
    """Equations 3-6 in any layout (dense or per-head logits, with or without a `value` projection), head by head:
    returns `out` `(batch, seq, hidden)` and `alpha`, `beta` `(batch, heads, seq)` (zero on padding)."""
    d = x.shape[-1] // num_heads
    keep = attention_mask.bool()[:, :, None]  # (batch, seq, 1)
    q, k = _linear(sd, f"{prefix}.query", x), _linear(sd, f"{prefix}.key", x)
    v = _linear(sd, f"{prefix}.value", x) if f"{prefix}.value.weight" in sd else q

    def pool(logits, values):  # logits (batch, seq, heads) -> weights, pooled (batch, 1, hidden)
        weights = torch.softmax(logits.masked_fill(~keep, -math.inf), dim=1)
        pooled = torch.cat(
            [
                (weights[..., h : h + 1] * values[..., h * d : (h + 1) * d]).sum(1, keepdim=True)
                for h in range(num_heads)
            ],
            dim=-1,
        )
        return weights.transpose(1, 2), pooled

    alpha, global_query = pool(_head_logits(sd, f"{prefix}.query_att", q, num_heads) / math.sqrt(d), q)
    p = global_query * k
    beta, global_key = pool(_head_logits(sd, f"{prefix}.key_att", p, num_heads) / math.sqrt(d), p)
    return _linear(sd, f"{prefix}.transform", global_key * v) + q, alpha, beta


def causal_self_attention(sd, prefix, x, keep, num_heads):
    """`G^q_t` = prefix pool of `q` (logits `w_q . q / sqrt(d)`), `p_t = G^q_t * k_t`, `G^k_t` = prefix pool of `p`,
    `out_t = W_T (G^k_t * v_t) + b_T + q_t` (`v = q` without a `value` projection)."""
    d = x.shape[-1] // num_heads
    q, k = _linear(sd, f"{prefix}.query", x), _linear(sd, f"{prefix}.key", x)
    v = _linear(sd, f"{prefix}.value", x) if f"{prefix}.value.weight" in sd else q
    global_query = _prefix_pool_hidden(
        _head_logits(sd, f"{prefix}.query_att", q, num_heads) / math.sqrt(d), q, keep, num_heads
    )
    p = global_query * k
    global_key = _prefix_pool_hidden(
        _head_logits(sd, f"{prefix}.key_att", p, num_heads) / math.sqrt(d), p, keep, num_heads
    )
    return _linear(sd, f"{prefix}.transform", global_key * v) + q


def dot_product_cross_attention(sd, prefix, x, memory, memory_mask, num_heads):
    """`softmax_j(q_t . k_j / sqrt(d))` over the real encoder tokens, then `sum_j w_tj v_j`, head by head."""
    batch, seq, hidden = x.shape
    d = hidden // num_heads
    q, k, v = (
        _linear(sd, f"{prefix}.query", x),
        _linear(sd, f"{prefix}.key", memory),
        _linear(sd, f"{prefix}.value", memory),
    )
    out = torch.zeros_like(q)
    for b in range(batch):
        real = memory_mask[b].bool()
        for h in range(num_heads):
            cols = slice(h * d, (h + 1) * d)
            weights = torch.softmax(q[b, :, cols] @ k[b, real, cols].T / math.sqrt(d), dim=-1)  # (seq, real)
            out[b, :, cols] = weights @ v[b, real, cols]
    return out


def additive_cross_attention(sd, prefix, x, keep, memory, memory_mask, num_heads):
    """Section 8.3 token by token: `G^q_t` the decoder's prefix pool of `q` over its real tokens,
    `p_tj = G^q_t * k_j`, `beta_tj = softmax_j(w_k^h . p_tj / sqrt(d))` over the real encoder tokens (`w_k^h` a row
    of a dense `(heads, hidden)` weight spanning all features, or head `h`'s own vector), `K_t = sum_j beta_tj p_tj`
    per head, `out_t = W_T (K_t * v_t) + b_T + q_t`."""
    batch, seq, hidden = x.shape
    d = hidden // num_heads
    q, k = _linear(sd, f"{prefix}.query", x), _linear(sd, f"{prefix}.key", memory)
    v = _linear(sd, f"{prefix}.value", x) if f"{prefix}.value.weight" in sd else q
    global_query = _prefix_pool_hidden(
        _head_logits(sd, f"{prefix}.query_att", q, num_heads) / math.sqrt(d), q, keep, num_heads
    )
    global_key = torch.zeros_like(q)
    for b in range(batch):
        real = memory_mask[b].bool()
        for t in range(seq):
            p = global_query[b, t] * k[b, real]  # (real, hidden)
            logits = _head_logits(sd, f"{prefix}.key_att", p, num_heads) / math.sqrt(d)  # (real, heads)
            beta = torch.softmax(logits, dim=0)
            for h in range(num_heads):
                cols = slice(h * d, (h + 1) * d)
                global_key[b, t, cols] = beta[:, h] @ p[:, cols]
    return _linear(sd, f"{prefix}.transform", global_key * v) + q


def _embed(sd, prefix, input_ids, position_ids, eps, pre_ln=False):
    """Token + position embeddings, LayerNorm-ed in the post-LN layout only.
    (An encoder-decoder's decoder reads the encoder's table, whether or not it is stored twice.)"""
    table = sd.get(
        f"{prefix}embeddings.word_embeddings.weight", sd.get("fastformer.embeddings.word_embeddings.weight")
    )
    x = table[input_ids]
    if f"{prefix}embeddings.position_embeddings.weight" in sd:
        x = x + sd[f"{prefix}embeddings.position_embeddings.weight"][position_ids]
    return x if pre_ln else _layer_norm(sd, f"{prefix}embeddings.LayerNorm", x, eps)


def _stored_layers(sd, prefix):
    """How many distinct layers the state dict holds (1 when the weights are shared across depths)."""
    start = f"{prefix}encoder.layer."
    return len({k[len(start) :].split(".")[0] for k in sd if k.startswith(start)})


def _sublayer(sd, name, sub_block, x, eps, pre_ln=False):
    """A sub-block (a function of its input) with its self-output `name`: post-LN (BERT's)
    `LayerNorm(x + dense(sub_block(x)))`, pre-LN (GPT-2's) `x + dense(sub_block(LayerNorm(x)))`."""
    if pre_ln:
        return x + _linear(sd, f"{name}.dense", sub_block(_layer_norm(sd, f"{name}.LayerNorm", x, eps)))
    return _layer_norm(sd, f"{name}.LayerNorm", _linear(sd, f"{name}.dense", sub_block(x)) + x, eps)


def _final(sd, prefix, x, eps, pre_ln):
    """The pre-LN layout's LayerNorm after the last layer (none in the post-LN layout)."""
    return _layer_norm(sd, f"{prefix}final_layer_norm", x, eps) if pre_ln else x


def causal_stack(
    sd, config, input_ids, attention_mask=None, prefix="fastformer.", memory=None, memory_mask=None, num_layers=None
):
    """A causal Fastformer (`is_decoder`), float64: embeddings (positions = real tokens before each one), per layer
    causal additive attention + self-output, [cross-attention + its self-output], feed-forward; the last hidden
    states `(batch, seq, hidden)`. Shared layer weights (one stored layer) are applied at every depth."""
    sd = {k: v.double() for k, v in sd.items()}
    heads, eps, act = config.num_attention_heads, config.layer_norm_eps, ACTIVATIONS[config.hidden_act]
    num_layers = num_layers or config.num_hidden_layers
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    keep = attention_mask.bool()
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    pre_ln = config.layer_norm_position == "pre"
    x = _embed(sd, prefix, input_ids, positions, eps, pre_ln)
    stored = _stored_layers(sd, prefix)
    for depth in range(num_layers):
        layer = f"{prefix}encoder.layer.{depth % stored}"
        x = _sublayer(
            sd,
            f"{layer}.attention.output",
            lambda h: causal_self_attention(sd, f"{layer}.attention.self", h, keep, heads),
            x,
            eps,
            pre_ln,
        )
        if memory is not None:
            cross = f"{layer}.crossattention.self"
            if f"{cross}.query_att.weight" in sd:
                attend = lambda h: additive_cross_attention(sd, cross, h, keep, memory, memory_mask, heads)  # noqa
            else:
                attend = lambda h: dot_product_cross_attention(sd, cross, h, memory, memory_mask, heads)  # noqa
            x = _sublayer(sd, f"{layer}.crossattention.output", attend, x, eps, pre_ln)
        x = _sublayer(
            sd, f"{layer}.output", lambda h: act(_linear(sd, f"{layer}.intermediate.dense", h)), x, eps, pre_ln
        )
    return _final(sd, prefix, x, eps, pre_ln)


def encoder_stack(sd, config, input_ids, attention_mask, prefix="fastformer."):
    """The bidirectional Fastformer (paper equations, per-head loop), float64: last hidden states."""
    sd = {k: v.double() for k, v in sd.items()}
    heads, eps, act = config.num_attention_heads, config.layer_norm_eps, ACTIVATIONS[config.hidden_act]
    pre_ln = config.layer_norm_position == "pre"
    x = _embed(sd, prefix, input_ids, torch.arange(input_ids.shape[1]), eps, pre_ln)
    stored = _stored_layers(sd, prefix)
    for depth in range(config.num_hidden_layers):
        layer = f"{prefix}encoder.layer.{depth % stored}"
        x = _sublayer(
            sd,
            f"{layer}.attention.output",
            lambda h: additive_self_attention(sd, f"{layer}.attention.self", h, attention_mask, heads)[0],
            x,
            eps,
            pre_ln,
        )
        x = _sublayer(
            sd, f"{layer}.output", lambda h: act(_linear(sd, f"{layer}.intermediate.dense", h)), x, eps, pre_ln
        )
    return _final(sd, prefix, x, eps, pre_ln)


def causal_lm_logits(sd, config, input_ids, attention_mask=None):
    """`FastformerForCausalLM`: the causal stack, then `lm_head` (float64)."""
    hidden = causal_stack(sd, config, input_ids, attention_mask)
    return _linear({k: v.double() for k, v in sd.items()}, "lm_head", hidden)


def seq2seq_logits(sd, config, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask=None):
    """`FastformerForConditionalGeneration`: encoder on the source, decoder (causal stack with cross-attention on
    the encoder output under `decoder.`), `lm_head` (float64)."""
    memory = encoder_stack(sd, config, input_ids, attention_mask)
    hidden = causal_stack(
        sd,
        config,
        decoder_input_ids,
        decoder_attention_mask,
        prefix="decoder.",
        memory=memory,
        memory_mask=attention_mask,
        num_layers=config.num_decoder_layers,
    )
    return _linear({k: v.double() for k, v in sd.items()}, "lm_head", hidden)
