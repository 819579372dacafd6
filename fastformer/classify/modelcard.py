# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Model cards for Fastformer checkpoints, built with `huggingface_hub.ModelCard`.

`build_model_card` writes the Hub metadata (library, pipeline tag, tags, datasets, licence, `model-index` results)
and a body saying what the checkpoint is, how it was trained, what it scored and how to load it with
`trust_remote_code=True` (the checkpoint carries its own code).
"""

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .reporting import markdown_table


# pipeline tag -> (Auto class that loads the checkpoint, a line that runs it)
_TASKS = {
    "text-classification": (
        "AutoModelForSequenceClassification",
        "model(**tokenizer(text, return_tensors='pt')).logits",
    ),
    "text-generation": ("AutoModelForCausalLM", "model.generate(**tokenizer(text, return_tensors='pt'))"),
    "summarization": ("AutoModelForSeq2SeqLM", "model.generate(**tokenizer(text, return_tensors='pt'))"),
    "feature-extraction": ("AutoModel", "model(**tokenizer(text, return_tensors='pt')).last_hidden_state"),
}


def build_model_card(
    *,
    repo_id: str,
    pipeline_tag: str = "text-classification",
    summary: str,
    dataset_name: str | None = None,
    dataset_id: str | None = None,
    dataset_split: str | None = None,
    results: dict[str, float] | None = None,
    hyperparameters: dict[str, object] | None = None,
    tags: list[str] | None = None,
    license: str = "apache-2.0",
    language: str | None = "en",
) -> ModelCard:
    """Builds the card of a Fastformer checkpoint.

    Args:
        repo_id: the checkpoint's Hub id (or local path), used as the model name and in the loading snippet.
        pipeline_tag: the Hub task; one of "text-classification", "text-generation", "summarization",
            "feature-extraction" (it picks the Auto class of the snippet).
        summary: one paragraph saying what the checkpoint is and how it was trained.
        dataset_name / dataset_id / dataset_split: the evaluation data, as shown and as a Hub dataset id (a
            free-form id is fine for data that is not on the Hub).
        results: metric name -> value on that split, e.g. `{"accuracy": 0.84, "f1": 0.84}`; written both as
            a table and as `model-index` entries.
        hyperparameters: name -> value, listed in the card.
        tags: extra tags (`fastformer` and `custom_code` are always added).
    """
    if pipeline_tag not in _TASKS:
        raise ValueError(f"Unknown pipeline_tag {pipeline_tag!r}; expected one of {sorted(_TASKS)}.")
    if results and not dataset_name:
        raise ValueError("`results` need the `dataset_name` they were measured on.")
    auto_class, call = _TASKS[pipeline_tag]
    eval_results = [
        EvalResult(
            task_type=pipeline_tag,
            dataset_type=dataset_id or dataset_name,
            dataset_name=dataset_name,
            dataset_split=dataset_split,
            metric_type=name,
            metric_name=name,
            metric_value=float(value),
        )
        for name, value in (results or {}).items()
    ]
    data = ModelCardData(
        model_name=repo_id,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        license=license,
        language=language,
        tags=["fastformer", "custom_code"] + [t for t in (tags or []) if t not in ("fastformer", "custom_code")],
        datasets=[dataset_id or dataset_name] if dataset_name else None,
        metrics=list(results) if results else None,
        eval_results=eval_results or None,
    )
    lines = [f"# {repo_id}", "", summary.strip(), ""]
    if results:
        split = f" ({dataset_split} split)" if dataset_split else ""
        lines += [
            f"## Results on {dataset_name}{split}",
            "",
            markdown_table(["metric", "value"], [[name, f"{value:.4f}"] for name, value in results.items()]),
            "",
        ]
    if hyperparameters:
        lines += ["## Training", "", markdown_table(["hyperparameter", "value"], list(hyperparameters.items())), ""]
    lines += [
        "## How to use",
        "",
        "The checkpoint carries its own code (the `auto_map` of its config and tokenizer config names the files), so",
        "it loads with `trust_remote_code=True` and no extra package:",
        "",
        "```python",
        f"from transformers import AutoTokenizer, {auto_class}",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True)',
        f'model = {auto_class}.from_pretrained("{repo_id}", trust_remote_code=True)',
        'text = "a long document ..."',
        call,
        "```",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


__all__ = ["build_model_card"]
