"""Transformers' own common model tests, taken from the source distribution of the *installed* transformers.

The sdist on PyPI ships `tests/test_modeling_common.py` (`ModelTesterMixin`) and
`tests/test_configuration_common.py` (`ConfigTester`), but not the sub-packages they import. `load()` downloads the
sdist once (`pip download --no-binary :all: --no-deps transformers==<installed version>`), extracts the two files
into a package of their own under the cache directory (`$FASTFORMER_CONFORMANCE_CACHE`, default
`~/.cache/fastformer-conformance/<version>/`), writes minimal stand-ins for the omitted modules, and imports them.
Nothing of transformers' test code is copied into this repository.

Stand-ins (the sdist omits these modules; the real ones hold tests that need transformers' whole test tree):
- `.generation.test_utils.GenerationTesterMixin`: an empty class. No `generate()` tests run from here; the project's
  own tests cover generation (tests/test_causal_fastformer.py, tests/test_seq2seq_fastformer.py).
- `.exporters.test_export.ExportTesterMixin`: an empty class (the `torch.export` tests are not run).
- `.utils.test_configuration_utils.config_common_kwargs`: the common `PreTrainedConfig` keyword arguments, each with
  a non-default value, that `ConfigTester.check_config_arguments_init` checks a config stores.
"""

import fcntl
import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers


PACKAGE = "transformers_common_tests"
SDIST_TEST_FILES = ("test_modeling_common.py", "test_configuration_common.py")

# Every attribute `PreTrainedConfig.__init__` accepts for all models, set to a value different from its default.
CONFIG_COMMON_KWARGS = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["FastformerModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}

STAND_INS = {
    "__init__.py": '"""transformers\' common tests, extracted from the transformers sdist (see upstream.py)."""\n',
    "generation/__init__.py": "",
    "generation/test_utils.py": (
        '"""Stand-in: the transformers sdist does not ship tests/generation/."""\n\n\n'
        "class GenerationTesterMixin:\n"
        '    """Empty: no generate() tests run from here."""\n'
    ),
    "exporters/__init__.py": "",
    "exporters/test_export.py": (
        '"""Stand-in: the transformers sdist does not ship tests/exporters/."""\n\n\n'
        "class ExportTesterMixin:\n"
        '    """Empty: the torch.export tests are not run."""\n'
    ),
    "utils/__init__.py": "",
    "utils/test_configuration_utils.py": (
        '"""Stand-in: the transformers sdist does not ship tests/utils/."""\n\n'
        f"config_common_kwargs = {CONFIG_COMMON_KWARGS!r}\n"
    ),
}


def cache_dir(version: str) -> Path:
    root = os.environ.get("FASTFORMER_CONFORMANCE_CACHE") or Path.home() / ".cache" / "fastformer-conformance"
    return Path(root) / version


def download_sdist(version: str, destination: Path) -> Path:
    """`pip download` the transformers sdist of `version` into `destination`; return the archive's path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-binary",
        ":all:",
        "--no-deps",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "-d",
        str(destination),
        f"transformers=={version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    archives = sorted(destination.glob(f"transformers-{version}.tar.gz"))
    if result.returncode != 0 or not archives:
        raise RuntimeError(
            f"Could not download the transformers {version} source distribution, which holds the common model "
            f"tests (`{' '.join(command)}` exited with {result.returncode}):\n{result.stderr[-2000:]}"
        )
    return archives[0]


def extract_package(archive: Path, version: str, package_dir: Path):
    """Write the sdist's common test files and the stand-ins into `package_dir` (a Python package)."""
    with tarfile.open(archive) as tar:
        for name in SDIST_TEST_FILES:
            member = f"transformers-{version}/tests/{name}"
            try:
                source = tar.extractfile(member)
            except KeyError:
                source = None
            if source is None:
                raise RuntimeError(f"The transformers {version} sdist has no `{member}`.")
            (package_dir / name).write_bytes(source.read())
    for name, text in STAND_INS.items():
        path = package_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def prepare(version: str) -> Path:
    """The directory holding the `transformers_common_tests` package for `version`, built once and then reused.

    A file lock serialises concurrent test sessions; the package is built in a temporary directory and renamed
    into place, so a half-written cache is never used."""
    root = cache_dir(version)
    package_dir = root / PACKAGE
    if (package_dir / SDIST_TEST_FILES[0]).exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (package_dir / SDIST_TEST_FILES[0]).exists():
            with tempfile.TemporaryDirectory(dir=root) as scratch:
                scratch = Path(scratch)
                archive = download_sdist(version, scratch)
                staged = scratch / PACKAGE
                staged.mkdir()
                extract_package(archive, version, staged)
                shutil.rmtree(package_dir, ignore_errors=True)
                staged.rename(package_dir)
    return root


def load():
    """Import and return (`test_modeling_common`, `test_configuration_common`) of the installed transformers."""
    root = prepare(transformers.__version__)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
    configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    return modeling, configuration
