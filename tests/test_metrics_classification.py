"""The offline `evaluate` modules `accuracy` and `f1` give scikit-learn's numbers."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from fastformer.classify import metrics


pytest.importorskip("evaluate")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    references = rng.integers(0, 3, 200)
    predictions = np.where(rng.random(200) < 0.6, references, rng.integers(0, 3, 200))
    return predictions.tolist(), references.tolist(), rng.random(200).tolist()


def test_accuracy_equals_scikit_learn(data):
    predictions, references, weights = data
    accuracy = metrics.load("accuracy")
    assert accuracy.compute(predictions=predictions, references=references)["accuracy"] == pytest.approx(
        accuracy_score(references, predictions), abs=0
    )
    assert accuracy.compute(predictions=predictions, references=references, normalize=False)["accuracy"] == int(
        accuracy_score(references, predictions, normalize=False)
    )
    assert accuracy.compute(predictions=predictions, references=references, sample_weight=weights)[
        "accuracy"
    ] == pytest.approx(accuracy_score(references, predictions, sample_weight=weights), rel=1e-12)
    for start in range(0, 200, 50):  # streaming with add_batch gives the same number
        accuracy.add_batch(predictions=predictions[start : start + 50], references=references[start : start + 50])
    assert accuracy.compute()["accuracy"] == accuracy_score(references, predictions)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_f1_equals_scikit_learn(data, average):
    predictions, references, weights = data
    f1 = metrics.load("f1")
    got = f1.compute(predictions=predictions, references=references, average=average)["f1"]
    np.testing.assert_allclose(got, f1_score(references, predictions, average=average), rtol=1e-12)
    got = f1.compute(predictions=predictions, references=references, average=average, sample_weight=weights)["f1"]
    np.testing.assert_allclose(
        got, f1_score(references, predictions, average=average, sample_weight=weights), rtol=1e-12
    )


def test_binary_f1_and_combine(data):
    import evaluate

    predictions, references, _ = data
    predictions, references = [int(p > 0) for p in predictions], [int(r > 0) for r in references]
    f1 = metrics.load("f1")
    assert f1.compute(predictions=predictions, references=references)["f1"] == pytest.approx(
        f1_score(references, predictions), rel=1e-12
    )
    assert f1.compute(predictions=predictions, references=references, pos_label=0)["f1"] == pytest.approx(
        f1_score(references, predictions, pos_label=0), rel=1e-12
    )
    both = evaluate.combine([metrics.load("accuracy"), metrics.load("f1")])
    assert both.compute(predictions=predictions, references=references) == pytest.approx(
        {"accuracy": accuracy_score(references, predictions), "f1": f1_score(references, predictions)}
    )
