"""LoRA with PEFT on every Fastformer head, with the recipes of docs/peft.md (`fastformer.peft_utils`): the named
modules exist and are all adapted, training moves only the adapter and the head, the saved adapter reproduces the
model on a fresh base, and the merged model computes the same function."""

import pytest
import torch
from helpers import assert_far, causal_config, max_difference, randomize_, seq2seq_config, tiny_config
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn

from fastformer import (
    FastformerForCausalLM,
    FastformerForConditionalGeneration,
    FastformerForMaskedLM,
    FastformerForMultipleChoice,
    FastformerForQuestionAnswering,
    FastformerForSequenceClassification,
    FastformerForTokenClassification,
    FastformerModel,
)
from fastformer.peft_utils import lora_modules_to_save, lora_target_modules, unmatched_target_modules


LOGIT_LAYERS = ("query_att", "key_att")  # never targeted (docs/peft.md)


def adapted_modules(peft_model) -> set[str]:
    """The names (in the base model) of the modules PEFT wrapped with a LoRA adapter."""
    prefix = "base_model.model."
    return {name.removeprefix(prefix) for name, module in peft_model.named_modules() if isinstance(module, LoraLayer)}


def linear_modules(model: nn.Module, inside: tuple[str, ...]) -> set[str]:
    """The `nn.Linear` modules under a path component in `inside` (e.g. `.self.`), the logit layers left out."""
    return {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and any(part in f".{name}." for part in inside)
        and name.rsplit(".", 1)[-1] not in LOGIT_LAYERS
    }


# ---------------------------------------------------------------------------------------------------------------
# The target module names


def test_bert_recipe_adapts_query_alone_and_the_check_names_value():
    """Catches BERT's recipe `target_modules=["query", "value"]` on the default config (query-value sharing): PEFT
    accepts it without a word and adapts `query` alone, since there is no `value` module. `unmatched_target_modules`
    names `value`, and the Fastformer recipe adapts every projection of the attention."""
    model = FastformerForSequenceClassification(tiny_config(num_labels=2))
    bert_recipe = ["query", "value"]
    assert unmatched_target_modules(model, bert_recipe) == ["value"]
    wrapped = get_peft_model(
        FastformerForSequenceClassification(tiny_config(num_labels=2)), LoraConfig(r=4, target_modules=bert_recipe)
    )  # accepted without an error or a warning
    assert {name.rsplit(".", 1)[-1] for name in adapted_modules(wrapped)} == {"query"}

    recipe = lora_target_modules(model.config)
    assert recipe == ["query", "key", "transform"] and unmatched_target_modules(model, recipe) == []
    wrapped = get_peft_model(model, LoraConfig(r=4, target_modules=recipe))
    assert {name.rsplit(".", 1)[-1] for name in adapted_modules(wrapped)} == {"query", "key", "transform"}


ATTENTION_VARIANTS = {
    "encoder": lambda: FastformerModel(tiny_config()),
    "encoder_unshared_value": lambda: FastformerModel(tiny_config(share_query_value=False)),
    "per_head_logits_shared_layers": lambda: FastformerModel(
        tiny_config(attention_logit_layout="per_head", share_layer_parameters=True)
    ),
    "causal": lambda: FastformerForCausalLM(causal_config()),
    "causal_unshared_pre_ln": lambda: FastformerForCausalLM(
        causal_config(share_query_value=False, layer_norm_position="pre")
    ),
    "seq2seq_dot_product": lambda: FastformerForConditionalGeneration(seq2seq_config()),
    "seq2seq_additive": lambda: FastformerForConditionalGeneration(seq2seq_config(cross_attention_type="additive")),
    "seq2seq_additive_unshared": lambda: FastformerForConditionalGeneration(
        seq2seq_config(cross_attention_type="additive", share_query_value=False)
    ),
}


@pytest.mark.parametrize("feed_forward", [False, True], ids=["attention", "feed_forward"])
@pytest.mark.parametrize("variant", list(ATTENTION_VARIANTS))
def test_recipe_names_exist_and_adapt_every_projection(variant, feed_forward):
    """Catches a recipe naming a module the variant lacks (`value` under query-value sharing, which PEFT ignores
    silently) or missing one it has (the value projection of `share_query_value=False`, the dot-product
    cross-attention's `value`, the additive cross-attention's `transform`): every name matches a module, and PEFT
    adapts exactly the linear layers of every attention (`.self.`, the logit layers aside), and with
    `feed_forward=True` every linear layer of every Fastformer layer."""
    model = ATTENTION_VARIANTS[variant]()
    recipe = lora_target_modules(model.config, feed_forward=feed_forward)
    assert unmatched_target_modules(model, recipe) == []
    expected = linear_modules(model, (".encoder.layer.",) if feed_forward else (".self.",))
    assert expected  # the comparison below is not between two empty sets
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=recipe))
    assert adapted_modules(wrapped) == expected
    assert ("value" in recipe) == any(name.endswith(".value") for name in expected)


# ---------------------------------------------------------------------------------------------------------------
# Training, saving, reloading and merging, head by head


def batch(head: str, generator: torch.Generator) -> dict:
    """Inputs and labels for `head`: two sequences of 7 tokens (ids >= 3), the second one padded after 5."""
    input_ids = torch.randint(3, 99, (2, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if head == "multiple_choice":
        return {"input_ids": torch.randint(3, 99, (2, 3, 7), generator=generator), "labels": torch.tensor([0, 2])}
    if head == "question_answering":
        return {**inputs, "start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([3, 4])}
    if head == "sequence_classification":
        return {**inputs, "labels": torch.tensor([0, 2])}
    if head == "token_classification":
        return {
            **inputs,
            "labels": torch.randint(0, 3, (2, 7), generator=generator).masked_fill(attention_mask == 0, -100),
        }
    if head == "masked_lm":
        return {**inputs, "labels": input_ids.masked_fill(torch.arange(7) % 2 == 0, -100)}
    return {**inputs, "labels": input_ids.masked_fill(attention_mask == 0, -100)}  # causal LM, seq2seq


# head: (class, config, PEFT task type, the head modules to save in full)
HEADS = {
    "sequence_classification": (
        FastformerForSequenceClassification,
        tiny_config(num_labels=3, share_query_value=False),
        "SEQ_CLS",
        ["pooler", "classifier"],
    ),
    "token_classification": (FastformerForTokenClassification, tiny_config(num_labels=3), "TOKEN_CLS", ["classifier"]),
    "question_answering": (FastformerForQuestionAnswering, tiny_config(), "QUESTION_ANS", ["qa_outputs"]),
    # the mean pooler has no weights: only the classifier is new
    "multiple_choice": (FastformerForMultipleChoice, tiny_config(pooler_type="mean"), None, ["classifier"]),
    "masked_lm": (FastformerForMaskedLM, tiny_config(), None, []),
    "causal_lm": (FastformerForCausalLM, causal_config(), "CAUSAL_LM", []),
    "seq2seq": (FastformerForConditionalGeneration, seq2seq_config(), "SEQ_2_SEQ_LM", []),
}


def pretrained(head: str, head_seed: int) -> nn.Module:
    """The head model on a fixed "pretrained" Fastformer (seeded random weights, so that tokens mix), with its new
    head modules drawn from `head_seed`, as `from_pretrained` on a checkpoint without them would draw them."""
    cls, config, _, new_modules = HEADS[head]
    torch.manual_seed(0)
    model = randomize_(cls(config), seed=0)
    for offset, name in enumerate(new_modules):
        randomize_(getattr(model, name), seed=head_seed + offset)
    return model


def logits(model: nn.Module, inputs: dict) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        output = model(**inputs)
    if "start_logits" in output:
        return torch.stack([output.start_logits, output.end_logits])
    return output.logits


@pytest.mark.parametrize("head", list(HEADS))
def test_lora_recipe_trains_saves_reloads_and_merges(head, tmp_path):
    """Catches, per head, a recipe that adapts a module it does not name or names one that does not exist; a head
    module left out of `modules_to_save` (frozen at random values and missing from the adapter, so the reloaded model
    differs); training that moves a base weight; an adapter that does not reproduce the model on a fresh base (whose
    new head modules are drawn anew); and a merge that changes the function."""
    cls, _, task_type, new_modules = HEADS[head]
    model = pretrained(head, head_seed=1)
    assert lora_modules_to_save(model) == new_modules
    recipe = lora_target_modules(model.config, feed_forward=True)
    assert unmatched_target_modules(model, recipe) == []
    expected = linear_modules(model, (".encoder.layer.",))  # before PEFT wraps the model in place
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=4, lora_alpha=8, target_modules=recipe, modules_to_save=list(new_modules), task_type=task_type
        ),  # (PEFT extends the list it is given)
    )
    assert adapted_modules(peft_model) == expected

    frozen = {name: param.detach().clone() for name, param in peft_model.named_parameters() if not param.requires_grad}
    trainable = [name for name, param in peft_model.named_parameters() if param.requires_grad]
    assert trainable and all("lora_" in name or ".modules_to_save." in name for name in trainable)
    for name in new_modules:  # every parameter of a new head module is trained
        assert any(f"{name}.modules_to_save." in parameter for parameter in trainable)

    inputs = batch(head, torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW([param for param in peft_model.parameters() if param.requires_grad], lr=1e-2)
    peft_model.train()
    losses = []
    for _ in range(5):
        loss = peft_model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    for name, param in peft_model.named_parameters():
        if name in frozen:
            assert not param.requires_grad and torch.equal(param, frozen[name]), f"{name} moved"
    for name in new_modules:  # the trained copy left the base module's values
        saved = peft_model.base_model.model.get_submodule(name)
        assert_far(
            torch.cat([p.flatten() for p in saved.modules_to_save.default.parameters()]),
            torch.cat([p.flatten() for p in saved.original_module.parameters()]),
            atol=1e-5,
            factor=10,
        )

    trained = logits(peft_model, inputs)
    peft_model.save_pretrained(tmp_path / "adapter")
    fresh = pretrained(head, head_seed=2)
    assert_far(trained, logits(fresh, inputs), atol=1e-5)
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter")
    assert torch.equal(logits(reloaded, inputs), trained)

    merged = reloaded.merge_and_unload()
    assert type(merged) is cls and not any(isinstance(module, LoraLayer) for module in merged.modules())
    assert max_difference(logits(merged, inputs), trained) <= 1e-5 * max(1.0, trained.abs().max().item())


def test_attention_pooler_left_out_of_modules_to_save_is_lost_on_reload(tmp_path):
    """Catches the recipe that relies on PEFT's `task_type="SEQ_CLS"`, which saves `classifier` only: the attention
    pooler of `FastformerForSequenceClassification` (weights a backbone checkpoint does not hold) stays at its random
    values and is not in the adapter, so the adapter on a fresh base does not reproduce the model; with
    `lora_modules_to_save` it does (the test above)."""
    model = pretrained("sequence_classification", head_seed=1)
    assert "pooler" in lora_modules_to_save(model)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, target_modules=lora_target_modules(model.config), task_type="SEQ_CLS")
    )
    assert not any(param.requires_grad for param in peft_model.base_model.model.pooler.parameters())
    inputs = batch("sequence_classification", torch.Generator().manual_seed(0))
    trained = logits(peft_model, inputs)
    peft_model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(pretrained("sequence_classification", head_seed=2), tmp_path / "adapter")
    assert_far(logits(reloaded, inputs), trained, atol=1e-5)
