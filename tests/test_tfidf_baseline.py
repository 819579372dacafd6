"""`benchmarks/tfidf_baseline.py`: TF-IDF + logistic regression on the main job's own split, fitted on the training
split only."""

import csv
import json
import random
from pathlib import Path

import pytest
from helpers import load_script

from fastformer.classify import run_classification as job
from fastformer.classify.corpora import CACHE_NAME


pytest.importorskip("sklearn")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "tfidf_baseline.py"


def load():
    return load_script(SCRIPT, "tfidf_baseline")


def test_fits_on_the_main_jobs_training_split_only_and_scores_its_test_split(tmp_path, monkeypatch, capsys):
    rng = random.Random(0)
    filler = "the film story actor scene plot director camera music end".split()
    with open(tmp_path / CACHE_NAME, "w", newline="") as handle:  # a stand-in for the 1,500 cached reviews
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(1500):
            words = rng.choices(filler, k=30) + [("great" if i % 2 else "awful")] * 2 + [f"review{i}"]
            writer.writerow([" ".join(rng.sample(words, len(words))), i % 2])
    module = load()
    fitted = []
    real_models = module.models

    def spying_models(seed=0):
        pipelines = real_models(seed)
        for pipeline in pipelines.values():
            fit = pipeline.fit
            pipeline.fit = lambda texts, labels, fit=fit: (fitted.append(list(texts)), fit(texts, labels))[1]
        return pipelines

    monkeypatch.setattr(module, "models", spying_models)
    rows = module.main(["--cache_dir", str(tmp_path), "--json", str(tmp_path / "rows.json")])
    data = job.load_data(job.DataArguments(cache_dir=str(tmp_path)))
    assert fitted == [data["train"][0]] * 2 and not set(fitted[0]) & set(data["test"][0])
    assert [(r["train_docs"], r["test_docs"]) for r in rows] == [(1200, 300)] * 2
    assert all(r["accuracy"] == 1.0 and r["macro_f1"] == 1.0 for r in rows)  # the label word decides
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    assert "| TF-IDF (unigrams) + LR, C=1 | 1200 | 300 | 1.0000 | 1.0000 |" in capsys.readouterr().out
