#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Train a Fastformer (or same-size BERT) text classifier on long documents; see `fastformer/classify/run_classification.py`.

The same job as the console command `fastformer-classify` (installed with the package):

    python examples/run_classification.py --output_dir outputs/pang-lee-fastformer
    python examples/run_classification.py --output_dir outputs/pang-lee-bert --model_type bert
    python examples/run_classification.py --output_dir outputs/mine --train_file train.csv --max_seq_length 1024
    python examples/run_classification.py --help      # every option, including all of `TrainingArguments`
"""

from fastformer.classify.run_classification import main


if __name__ == "__main__":
    main()
