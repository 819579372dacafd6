"""The offline ROUGE module (`fastformer.classify.metrics.load("rouge")`) against `rouge_score` called directly."""

import pytest


rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
pytest.importorskip("evaluate")

from fastformer.classify import metrics  # noqa: E402


PREDICTIONS = [
    "The cat sat on the mat. It was happy!",
    "Police arrested two men after a robbery in the city centre.",
    "Shares rose sharply",
]
REFERENCES = [
    "A cat was sitting on the mat. The cat looked happy.",
    "Two men have been arrested following an armed robbery in Cardiff city centre.",
    "Stock markets fell on Monday as shares dropped.",
]
TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


@pytest.fixture(scope="module")
def rouge():
    return metrics.load("rouge")


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_equals_rouge_score_mean_f_measure(rouge, use_stemmer):
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=use_stemmer)
    direct = [scorer.score(r, p) for p, r in zip(PREDICTIONS, REFERENCES)]
    result = rouge.compute(predictions=PREDICTIONS, references=REFERENCES, use_stemmer=use_stemmer)
    assert set(result) == set(TYPES)
    for rouge_type in TYPES:
        expected = sum(s[rouge_type].fmeasure for s in direct) / len(direct)
        assert result[rouge_type] == pytest.approx(expected, abs=1e-12)
    per_example = rouge.compute(
        predictions=PREDICTIONS, references=REFERENCES, use_stemmer=use_stemmer, use_aggregator=False
    )
    assert per_example["rouge2"] == pytest.approx([s["rouge2"].fmeasure for s in direct], abs=1e-12)


def test_rouge_lsum_splits_sentences_by_regex(rouge):
    scorer = rouge_scorer.RougeScorer(["rougeLsum"])
    prediction, reference = PREDICTIONS[0], REFERENCES[0]
    expected = scorer.score(
        "A cat was sitting on the mat.\nThe cat looked happy.", "The cat sat on the mat.\nIt was happy!"
    )["rougeLsum"].fmeasure
    kwargs = dict(predictions=[prediction], references=[reference], rouge_types=["rougeLsum"])
    split = rouge.compute(split_summaries=True, **kwargs)["rougeLsum"]
    assert split == pytest.approx(expected, abs=1e-12)
    assert split != pytest.approx(rouge.compute(**kwargs)["rougeLsum"])  # the split really changes the LCS units


def test_rouge_with_several_references_uses_the_best_one(rouge):
    scorer = rouge_scorer.RougeScorer(["rouge1"])
    references = [[r, "unrelated words entirely"] for r in REFERENCES]
    result = rouge.compute(predictions=PREDICTIONS, references=references, rouge_types=["rouge1"])
    expected = [scorer.score_multi(r, p)["rouge1"].fmeasure for p, r in zip(PREDICTIONS, references)]
    assert result["rouge1"] == pytest.approx(sum(expected) / len(expected), abs=1e-12)
    assert result["rouge1"] == pytest.approx(rouge.compute(predictions=PREDICTIONS, references=REFERENCES)["rouge1"])


def test_rouge_bad_input(rouge):
    with pytest.raises(ValueError, match="rouge_types"):
        rouge.compute(predictions=["a"], references=["a"], rouge_types=[])
    with pytest.raises(ValueError):
        rouge.compute(predictions=["a", "b"], references=["a"])
