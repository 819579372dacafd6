"""The classification job (`fastformer-classify`), kept apart from the model package.

- `run_classification`: the job itself (data, training, evaluation, checkpoint, model card, `--push_to_hub`);
- `checkpoints`: which Trainer checkpoints of an interrupted run are complete enough to resume from, and the lock that
  tells a run still going from the leftover of one that ended;
- `corpora`: the data sets fetched from package registries at run time and cached: the job's default (the Pang &
  Lee movie-review polarity set) and the texts of the example scripts and benchmarks (`run_mlm.py`, XSum);
- `modelcard`: `build_model_card`, the Hub metadata and body of a checkpoint's `README.md`;
- `reporting`: `peak_memory_mib` and `markdown_table`, shared by the job, the example scripts and the benchmarks;
- `arguments`: the command-line parsing shared by the job and the example scripts;
- `language_modeling`: what the language-modelling examples (`run_mlm.py`, `run_clm.py`) share: their data options,
  texts and corpora (with `pang-lee-train`), blocks and `--packing` pieces, checkpoints, training and error lines;
- `metrics`: offline `evaluate` modules (accuracy, F1, ROUGE) loaded by path, so no metric code is fetched.

`import fastformer` never imports this package: the model, config and tokenizer do not need `datasets`,
`evaluate` or scikit-learn.
"""
