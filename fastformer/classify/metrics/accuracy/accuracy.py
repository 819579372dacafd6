# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Accuracy as an offline `evaluate` module (the Hub's `accuracy` metric, computed with scikit-learn)."""

import evaluate
from sklearn.metrics import accuracy_score

from fastformer.classify.metrics import label_metric_info


_DESCRIPTION = """
Accuracy = (number of correct predictions) / (number of predictions), or the count of correct predictions with
`normalize=False`; `sample_weight` weights each prediction. Computed by `sklearn.metrics.accuracy_score`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels.
    references (`list` of `int`): true labels.
    normalize (`bool`, defaults to `True`): return the fraction (`True`) or the number (`False`) of correct ones.
    sample_weight (`list` of `float`, *optional*): one weight per prediction.
Returns:
    accuracy (`float` or `int`).
Example:
    >>> from fastformer.classify import metrics
    >>> metrics.load("accuracy").compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return label_metric_info(
            _DESCRIPTION,
            _KWARGS_DESCRIPTION,
            "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html",
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        score = accuracy_score(references, predictions, normalize=normalize, sample_weight=sample_weight)
        return {"accuracy": float(score) if normalize or sample_weight is not None else int(score)}
