"""The notebooks in notebooks/: each executes top to bottom on its tiny settings, and none is committed with outputs.

Each notebook reads its size knobs from one parameters cell: `FASTFORMER_NOTEBOOK_SMOKE=1` selects tiny settings
(seconds per notebook), no variable the real demo. The kernel is the `python3` kernel of the interpreter running the
tests (jupyter_client starts a `python` kernelspec with `sys.executable`), which the test checks.
"""

import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell


NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = {
    "long_context_scaling.ipynb", "publishing.ipynb", "quickstart_classification.ipynb", "summarization.ipynb"
}
ENVIRONMENT_PROBE = "import sys\nprint(sys.prefix)"


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
    sets HF_HUB_OFFLINE and a temporary HF_HOME, which the kernel inherits); any cell error fails the test."""
    monkeypatch.setenv("FASTFORMER_NOTEBOOK_SMOKE", "1")
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(new_code_cell(ENVIRONMENT_PROBE))
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    probe = notebook.cells[-1].outputs
    assert probe and probe[0].text.strip() == sys.prefix, "the notebook ran in another Python environment"
