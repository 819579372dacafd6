#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""TF-IDF + logistic regression on exactly the main job's data and fixed stratified split (`fastformer-classify`'s
own `load_data`: Pang & Lee by default, 1,200 training / 300 test reviews), the bar a neural classifier trained on
1.2k documents has to clear. Everything is fitted on the training split only; the test split is scored once.

Two rows: scikit-learn's defaults (unigram TF-IDF, C = 1), and unigrams + bigrams with sublinear term frequency and C
chosen by 5-fold stratified cross-validation on the training split.

    python benchmarks/tfidf_baseline.py [--cache_dir DIR] [--test_size 0.2] [--split_seed 42] [--json rows.json]
"""

import argparse
import json
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline

from fastformer.classify import run_classification as job
from fastformer.classify.reporting import markdown_table


def models(seed: int = 0) -> dict:
    return {
        "TF-IDF (unigrams) + LR, C=1": make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000)),
        "TF-IDF (1-2-grams, sublinear tf, min_df 2) + LR, C by 5-fold CV on train": make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
            LogisticRegressionCV(
                Cs=np.logspace(-2, 3, 11).tolist(),
                cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                max_iter=2000,
            ),
        ),
    }


def run(data_args: "job.DataArguments") -> list[dict]:
    data = job.load_data(data_args)
    (train_texts, train_labels), (test_texts, test_labels) = data["train"], data["test"]
    rows = []
    for name, model in models().items():
        start = time.perf_counter()
        model.fit(train_texts, train_labels)  # the training split only
        predictions = model.predict(test_texts)
        rows.append(
            {
                "model": name,
                "train_docs": len(train_texts),
                "test_docs": len(test_texts),
                "accuracy": accuracy_score(test_labels, predictions),
                "macro_f1": f1_score(test_labels, predictions, average="macro"),
                "seconds": time.perf_counter() - start,
            }
        )
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="tfidf_baseline.py", description=__doc__.split("\n")[0])
    parser.add_argument("--cache_dir", default=None, help="Where the Pang & Lee copy is cached.")
    parser.add_argument("--test_size", type=float, default=0.2, help="The main job's --test_size.")
    parser.add_argument("--split_seed", type=int, default=42, help="The main job's --split_seed.")
    parser.add_argument("--json", default=None, help="Also write the rows to this JSON file.")
    args = parser.parse_args(argv)
    data_args = job.DataArguments(cache_dir=args.cache_dir, test_size=args.test_size, split_seed=args.split_seed)
    try:
        rows = run(data_args)
    except job.InputError as error:
        parser.exit(2, f"tfidf_baseline.py: error: {error}\n")
    print(
        markdown_table(
            ["model", "train docs", "test docs", "test accuracy", "macro-F1", "fit + predict s"],
            [
                [
                    r["model"],
                    r["train_docs"],
                    r["test_docs"],
                    f"{r['accuracy']:.4f}",
                    f"{r['macro_f1']:.4f}",
                    f"{r['seconds']:.1f}",
                ]
                for r in rows
            ],
            align="lrrrrr",
        )
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return rows


if __name__ == "__main__":
    main()
