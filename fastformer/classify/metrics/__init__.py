"""Offline `evaluate` metric modules shipped with the package.

`evaluate.load("accuracy")` fetches the metric's code from the Hub at run time, which fails offline. Each
sub-directory here holds one `evaluate.Metric` module (`<name>/<name>.py`) that computes its numbers with a local
library; `load(name)` loads it by absolute path, which `evaluate` resolves without any network access.
"""

from pathlib import Path


METRICS_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the metric modules shipped here."""
    return sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())


def load(name: str, **kwargs):
    """`evaluate.load` of the shipped module `name` (e.g. "accuracy", "f1", "rouge"), offline."""
    if name not in available():
        raise ValueError(f"Unknown offline metric {name!r}; shipped metrics: {available()}.")
    import evaluate  # imported lazily: `import evaluate` costs seconds

    return evaluate.load(str(METRICS_DIR / name), **kwargs)


def label_metric_info(description: str, inputs_description: str, reference_url: str):
    """The `evaluate.MetricInfo` of a metric over integer class labels (`predictions` and `references`, int32)."""
    import datasets
    import evaluate

    return evaluate.MetricInfo(
        description=description,
        citation="",
        inputs_description=inputs_description,
        features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
        reference_urls=[reference_url],
    )
