"""Fastformer (Wu et al., 2021) for Hugging Face Transformers.

Importing the package registers the config and models with the Auto classes, and marks them for
`register_for_auto_class` so that `save_pretrained` writes `auto_map` and the code files: a checkpoint then loads
with `AutoModel...from_pretrained(path, trust_remote_code=True)` where this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from .configuration_fastformer import FastformerConfig
from .data_collator import DataCollatorForPackedSequenceClassification
from .modeling_fastformer import (
    FastformerCache,
    FastformerForCausalLM,
    FastformerForConditionalGeneration,
    FastformerForMaskedLM,
    FastformerForMultipleChoice,
    FastformerForQuestionAnswering,
    FastformerForSequenceClassification,
    FastformerForTokenClassification,
    FastformerModel,
    FastformerPreTrainedModel,
)
from .tokenization_fastformer import FastformerTokenizer, FastformerTokenizerFast


__version__ = "0.1.0"

AutoConfig.register(FastformerConfig.model_type, FastformerConfig, exist_ok=True)
FastformerConfig.register_for_auto_class()
for _auto, _model in (
    (AutoModel, FastformerModel),
    (AutoModelForSequenceClassification, FastformerForSequenceClassification),
    (AutoModelForCausalLM, FastformerForCausalLM),
    (AutoModelForSeq2SeqLM, FastformerForConditionalGeneration),
    (AutoModelForMaskedLM, FastformerForMaskedLM),
    (AutoModelForTokenClassification, FastformerForTokenClassification),
    (AutoModelForQuestionAnswering, FastformerForQuestionAnswering),
    (AutoModelForMultipleChoice, FastformerForMultipleChoice),
):
    _auto.register(FastformerConfig, _model, exist_ok=True)
    _model.register_for_auto_class(_auto.__name__)
AutoTokenizer.register(FastformerConfig, tokenizer_class=FastformerTokenizer, exist_ok=True)
FastformerTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = [
    "DataCollatorForPackedSequenceClassification",
    "FastformerCache",
    "FastformerConfig",
    "FastformerForCausalLM",
    "FastformerForConditionalGeneration",
    "FastformerForMaskedLM",
    "FastformerForMultipleChoice",
    "FastformerForQuestionAnswering",
    "FastformerForSequenceClassification",
    "FastformerForTokenClassification",
    "FastformerModel",
    "FastformerPreTrainedModel",
    "FastformerTokenizer",
    "FastformerTokenizerFast",
]
