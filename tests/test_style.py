"""The code style: ``ruff check`` and ``ruff format --check`` with pyproject.toml's settings (transformers' rules,
line length 119) pass on the whole repository."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def ruff(*args: str) -> subprocess.CompletedProcess:
    command = [shutil.which("ruff")] if shutil.which("ruff") else [sys.executable, "-m", "ruff"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module", autouse=True)
def ruff_installed():
    if ruff("--version").returncode != 0:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff(command):
    result = ruff(*command)
    assert result.returncode == 0, result.stdout + result.stderr
