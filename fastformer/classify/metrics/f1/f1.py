# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""F1 as an offline `evaluate` module (the Hub's `f1` metric, computed with scikit-learn)."""

import evaluate
from sklearn.metrics import f1_score

from fastformer.classify.metrics import label_metric_info


_DESCRIPTION = """
F1 = 2 * precision * recall / (precision + recall), per class; `average` says how classes are combined:
"binary" (the `pos_label` class only), "macro" (unweighted mean over classes), "micro" (global counts),
"weighted" (mean weighted by support) or None (one score per class). Computed by `sklearn.metrics.f1_score`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels.
    references (`list` of `int`): true labels.
    labels (`list` of `int`, *optional*): the classes to include (all classes seen if unset).
    pos_label (`int`, defaults to 1): the positive class of `average="binary"`.
    average (`str` or `None`, defaults to `"binary"`): "binary", "macro", "micro", "weighted" or None.
    sample_weight (`list` of `float`, *optional*): one weight per prediction.
    zero_division (`"warn"`, 0, 1 or `nan`, defaults to `"warn"`): the value of an undefined F1.
Returns:
    f1 (`float`, or `list` of `float` with `average=None`).
Example:
    >>> from fastformer.classify import metrics
    >>> metrics.load("f1").compute(predictions=[0, 1, 1], references=[0, 1, 0], average="macro")
    {'f1': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return label_metric_info(
            _DESCRIPTION,
            _KWARGS_DESCRIPTION,
            "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html",
        )

    def _compute(
        self,
        predictions,
        references,
        labels=None,
        pos_label=1,
        average="binary",
        sample_weight=None,
        zero_division="warn",
    ):
        score = f1_score(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        return {"f1": score.tolist() if average is None else float(score)}
