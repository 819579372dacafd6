# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""ROUGE as an offline `evaluate` module (the Hub's `rouge` metric, computed with Google's `rouge-score`)."""

import re

import datasets
import evaluate
from rouge_score import rouge_scorer


_DESCRIPTION = """
ROUGE F-measures (Lin, 2004) computed by Google's `rouge-score` package, as the Hub's `rouge` metric does:
`rouge1`/`rouge2` (unigram/bigram overlap), `rougeL` (longest common subsequence over the whole text) and
`rougeLsum` (summary-level LCS over newline-separated sentences). Two differences from the Hub module:

- the aggregate is the plain mean of the per-example F-measures (the Hub module reports the median of a random
  bootstrap resampling of that mean, which changes from run to run);
- `split_summaries=True` puts each sentence on its own line for `rougeLsum` with a regular expression (a break
  after `.`, `!` or `?` followed by whitespace) instead of `nltk.sent_tokenize`, whose `punkt` data is not
  available offline.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): generated summaries.
    references (`list` of `str`, or `list` of `list` of `str`): one reference (or several) per prediction; with
        several, each prediction scores against its best-matching reference (`rouge_score`'s `score_multi`).
    rouge_types (`list` of `str`, *optional*): any of `rouge1`..`rouge9`, `rougeL`, `rougeLsum`; defaults to
        `["rouge1", "rouge2", "rougeL", "rougeLsum"]`.
    use_aggregator (`bool`, defaults to `True`): return the mean F-measure per type (`True`) or the list of
        per-example F-measures (`False`).
    use_stemmer (`bool`, defaults to `False`): Porter-stem the tokens (nltk's stemmer, no data files needed).
    split_summaries (`bool`, defaults to `False`): split sentences with a regular expression before `rougeLsum`.
Returns:
    a dict `{rouge_type: float}` (or `{rouge_type: list[float]}` without the aggregator), F-measures in [0, 1].
Example:
    >>> from fastformer.classify import metrics
    >>> metrics.load("rouge").compute(predictions=["the cat sat"], references=["the cat sat down"])
    {'rouge1': 0.8571428571428571, 'rouge2': 0.8, 'rougeL': 0.8571428571428571, 'rougeLsum': 0.8571428571428571}
"""

_CITATION = """
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    publisher = "Association for Computational Linguistics",
    pages = "74--81",
}
"""

DEFAULT_ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence a line: a break after `.`, `!` or `?` followed by whitespace (what `rougeLsum` reads)."""
    return "\n".join(s for s in SENTENCE_BREAK.split(text.strip()) if s)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=["https://pypi.org/project/rouge-score/"],
        )

    def _compute(
        self, predictions, references, rouge_types=None, use_aggregator=True, use_stemmer=False, split_summaries=False
    ):
        rouge_types = list(DEFAULT_ROUGE_TYPES if rouge_types is None else rouge_types)
        if not rouge_types:
            raise ValueError("`rouge_types` is empty: name at least one of rouge1..rouge9, rougeL, rougeLsum.")
        scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer)
        prepare = split_sentences if split_summaries else (lambda text: text)
        per_type = {rouge_type: [] for rouge_type in rouge_types}
        for prediction, reference in zip(predictions, references):
            if isinstance(reference, str):
                scores = scorer.score(prepare(reference), prepare(prediction))
            else:
                scores = scorer.score_multi([prepare(r) for r in reference], prepare(prediction))
            for rouge_type in rouge_types:
                per_type[rouge_type].append(float(scores[rouge_type].fmeasure))
        if not use_aggregator:
            return per_type
        if not predictions:
            raise ValueError("No predictions to score: ROUGE needs at least one prediction/reference pair.")
        return {rouge_type: sum(values) / len(values) for rouge_type, values in per_type.items()}
