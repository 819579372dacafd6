"""The notebooks in notebooks/: each executes top to bottom on its tiny settings, and none is committed with outputs.

Each notebook reads its size knobs from one parameters cell: `FASTFORMER_NOTEBOOK_SMOKE=1` selects tiny settings
(seconds per notebook), no variable the real demo. The kernel is the `python3` kernel of the interpreter running the
tests (jupyter_client starts a `python` kernelspec with `sys.executable`), which the test checks.
"""

import math
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell


NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = {"long_context_scaling.ipynb", "publishing.ipynb", "quickstart_classification.ipynb", "summarization.ipynb"}
ENVIRONMENT_PROBE = "import sys\nprint(sys.prefix)"
# What each notebook must print (regular expressions over its whole text output), so that a notebook whose demo
# silently computes the wrong thing fails, not only one that raises.
EXPECTED_OUTPUT = {
    "long_context_scaling.ipynb": [
        r"fastformer: time ~ length\^(?P<exponent>-?[0-9.]+)",
        r"\| tokens \| fastformer s \|",
        r"encoder at 1,048,576 tokens: peak RSS [0-9.]+ GiB, gradients finite: True",
    ],
    "publishing.ipynb": [r"identical logits: True", r"model code: transformers_modules\."],
    "quickstart_classification.ipynb": [
        r"test accuracy (?P<accuracy>[0-9.]+) on [1-9][0-9]* documents",
        r"identical logits after reload: True",
    ],
    "summarization.ipynb": [r"validation loss (?P<loss>[0-9.]+)", r"identical beam-search output after reload: True"],
}


def text_output(notebook) -> str:
    """Everything the executed notebook's code cells printed or displayed as text."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif "data" in output and "text/plain" in output.data:
                parts.append(output.data["text/plain"])
    return "\n".join(parts)


def test_the_notebooks_are_there():
    assert EXPECTED <= {path.name for path in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_committed_notebook_has_no_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    stale = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not stale, f"{path.name}: cells {stale} carry outputs or execution counts; clear them before committing"
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    """Runs every cell in a fresh kernel with the tiny settings, in an empty working directory, offline (conftest
    sets HF_HUB_OFFLINE and a temporary HF_HOME, which the kernel inherits); any cell error fails the test, and so
    does a notebook that does not print its results (`EXPECTED_OUTPUT`): reloaded models that differ, an accuracy
    outside [0, 1], no scaling exponent."""
    monkeypatch.setenv("FASTFORMER_NOTEBOOK_SMOKE", "1")
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(new_code_cell(ENVIRONMENT_PROBE))
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    probe = notebook.cells[-1].outputs
    assert probe and probe[0].text.strip() == sys.prefix, "the notebook ran in another Python environment"
    printed = text_output(notebook)
    for pattern in EXPECTED_OUTPUT.get(path.name, []):
        match = re.search(pattern, printed)
        assert match, f"{path.name} did not print {pattern!r}:\n{printed[-2000:]}"
        for name, value in match.groupdict().items():  # the numbers are numbers in their range
            number = float(value)
            assert math.isfinite(number), (name, number)  # e.g. an exponent fitted through fewer than two lengths
            assert 0.0 <= number <= 1.0 if name == "accuracy" else True, (name, number)
            assert number > 0.0 if name == "loss" else True, (name, number)
