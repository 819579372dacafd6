# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""LoRA recipes for Fastformer with PEFT (docs/peft.md): which modules to adapt and which head modules to train and
save in full. PEFT has no default `target_modules` for `model_type="fastformer"`, and BERT's `["query", "value"]`
adapts only `query` under the default query-value sharing (there is no `value` projection). This module does not
import `peft`.

```python
>>> from peft import LoraConfig, get_peft_model
>>> from fastformer.peft_utils import lora_modules_to_save, lora_target_modules
>>> lora = LoraConfig(r=8, lora_alpha=16, target_modules=lora_target_modules(model.config),
...                   modules_to_save=lora_modules_to_save(model))
>>> model = get_peft_model(model, lora)
```
"""

from torch import nn

from .configuration_fastformer import FastformerConfig


# Head modules that a Fastformer checkpoint (masked LM, causal LM, encoder-decoder, bare encoder) does not hold: a head
# model loaded from one draws them at random, so they must be trained in full and saved with the adapter.
# `FastformerForMaskedLM`, `FastformerForCausalLM` and `FastformerForConditionalGeneration` load their LM heads from
# their own checkpoints (the output matrices are the tied input embeddings) and need none.
_NEW_HEAD_MODULES = {
    "FastformerForSequenceClassification": ("pooler", "classifier"),
    "FastformerForMultipleChoice": ("pooler", "classifier"),
    "FastformerForTokenClassification": ("classifier",),
    "FastformerForQuestionAnswering": ("qa_outputs",),
}


def lora_target_modules(config: FastformerConfig, feed_forward: bool = False) -> list[str]:
    """The `LoraConfig(target_modules=...)` names of the linear projections of every attention in a model built from
    `config` (pass `model.config`): each name matches at least one `nn.Linear` of that model, as a suffix of its
    module name (PEFT's rule for a list).

    - `"query"`, `"key"`, `"transform"`: the additive self-attention (and the additive cross-attention);
    - `"value"`: only where a value projection exists, i.e. with `share_query_value=False` (self-attention and
      additive cross-attention) or in the decoder of an encoder-decoder with `cross_attention_type=
      "scaled_dot_product"` (its cross-attention is `query`, `key`, `value`). Under the default query-value
      sharing the query projection *is* the value, and `"value"` would match nothing in an encoder or causal LM;
    - with `feed_forward=True`, also `"intermediate.dense"` and `"output.dense"`, which matches the output projection
      of every sub-block: the feed-forward's, the attention's (`attention.output.dense`) and the cross-attention's.

    Never listed: the attention-logit layers `query_att` / `key_att` (`Linear(hidden -> heads)` in the `"dense"`
    layout, too small for a low-rank update; not a `nn.Linear` in the `"per_head"` layout, which LoRA cannot wrap).
    """
    cross_attention = config.is_encoder_decoder or config.add_cross_attention
    names = ["query", "key", "transform"]
    if not config.share_query_value or (cross_attention and config.cross_attention_type == "scaled_dot_product"):
        names.insert(2, "value")
    if feed_forward:
        names += ["intermediate.dense", "output.dense"]
    return names


def lora_modules_to_save(model: nn.Module) -> list[str]:
    """The `LoraConfig(modules_to_save=...)` names of `model`'s head: the modules its pretrained checkpoint does not
    hold (a classifier, the attention pooler, `qa_outputs`), trained in full and saved with the adapter. Without them
    in `modules_to_save` they stay frozen at their random initial values and a reloaded adapter does not reproduce
    the fine-tuned model. PEFT's `task_type="SEQ_CLS"` saves only `classifier`: Fastformer's attention pooler
    (`pooler_type="attention"`, the default) has weights too. An empty list for the language-model heads."""
    names = _NEW_HEAD_MODULES.get(type(model).__name__, ())
    return [name for name in names if any(True for _ in getattr(model, name).parameters())]


def unmatched_target_modules(model: nn.Module, target_modules: list[str]) -> list[str]:
    """The names in `target_modules` that match no module of `model` (PEFT's rule for a list: the whole module name,
    or a suffix after a `.`). PEFT raises only when *no* name matches: a recipe such as BERT's `["query", "value"]`
    on a model under query-value sharing silently adapts `query` alone, and this returns `["value"]`."""
    module_names = [name for name, _ in model.named_modules()]
    return [
        target
        for target in target_modules
        if not any(name == target or name.endswith("." + target) for name in module_names)
    ]


__all__ = ["lora_modules_to_save", "lora_target_modules", "unmatched_target_modules"]
