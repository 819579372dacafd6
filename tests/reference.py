"""Independent plain-torch computations of Fastformer, written from the official notebook
(`wuch15/Fastformer`, `Fastformer.ipynb`) and the paper's equations. They read weights from a state dict by name
and share no code with the `fastformer` package."""

import math

import torch
import torch.nn.functional as F


def _linear(sd, name, x):
    return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))


def official_self_attention(sd, prefix, x, attention_mask, num_heads):
    """Official `FastSelfAttention.forward`, with its additive (1 - m) * -10000 mask and its `repeat`."""
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
    return _linear(sd, f"{prefix}.transform", weighted_value) + mixed_query


def paper_self_attention(sd, prefix, x, attention_mask, num_heads, share_query_value=True):
    """The paper's equations 3-6 head by head, with one vector w_q, w_k per head and an explicit loop over heads."""
    batch, seq_len, hidden = x.shape
    d = hidden // num_heads
    keep = attention_mask.bool()
    q_all = _linear(sd, f"{prefix}.query", x)
    k_all = _linear(sd, f"{prefix}.key", x)
    v_all = q_all if share_query_value else _linear(sd, f"{prefix}.value", x)
    outputs = []
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
    u = torch.cat(outputs, dim=-1)
    return _linear(sd, f"{prefix}.transform", u) + q_all


def official_layer(sd, prefix, x, attention_mask, num_heads, eps, attention=official_self_attention):
    """Official `FastformerLayer`: attention, BertSelfOutput, BertIntermediate (GELU), BertOutput (eval mode)."""
    hidden = x.shape[-1]
    z = attention(sd, f"{prefix}.attention.self", x, attention_mask, num_heads)
    a = F.layer_norm(
        _linear(sd, f"{prefix}.attention.output.dense", z) + x,
        (hidden,),
        sd[f"{prefix}.attention.output.LayerNorm.weight"],
        sd[f"{prefix}.attention.output.LayerNorm.bias"],
        eps,
    )
    f = F.gelu(_linear(sd, f"{prefix}.intermediate.dense", a))
    return F.layer_norm(
        _linear(sd, f"{prefix}.output.dense", f) + a,
        (hidden,),
        sd[f"{prefix}.output.LayerNorm.weight"],
        sd[f"{prefix}.output.LayerNorm.bias"],
        eps,
    )


def official_classifier(sd, input_ids, attention_mask, num_heads, num_layers, eps, prefix="fastformer."):
    """Official `Model.forward` in eval mode: embeddings, encoder, `AttentionPooling` (exp, mask, +1e-8), dense."""
    hidden = sd[f"{prefix}embeddings.word_embeddings.weight"].shape[1]
    x = sd[f"{prefix}embeddings.word_embeddings.weight"][input_ids]
    x = x + sd[f"{prefix}embeddings.position_embeddings.weight"][: input_ids.shape[1]]
    x = F.layer_norm(
        x, (hidden,), sd[f"{prefix}embeddings.LayerNorm.weight"], sd[f"{prefix}embeddings.LayerNorm.bias"], eps
    )
    for i in range(num_layers):
        x = official_layer(sd, f"{prefix}encoder.layer.{i}", x, attention_mask, num_heads, eps)
    e = torch.tanh(_linear(sd, "pooler.att_fc1", x))
    alpha = torch.exp(_linear(sd, "pooler.att_fc2", e)) * attention_mask.unsqueeze(2)
    alpha = alpha / (alpha.sum(dim=1, keepdim=True) + 1e-8)
    pooled = torch.bmm(x.permute(0, 2, 1), alpha).squeeze(-1)
    return _linear(sd, "classifier", pooled)
