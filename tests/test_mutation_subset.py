"""The fast subset of the mutation check (`tests/mutation/run.py --fast`) runs with the suite: each of its mutants
(encoder attention scale, returned alpha/beta swapped, converter dropping `hidden_act`) must be killed by the tests
named for it. The full check (`python tests/mutation/run.py`) is too slow for every run."""

import subprocess
import sys
from pathlib import Path

from helpers import load_script

RUN = Path(__file__).resolve().parent / "mutation" / "run.py"


def test_the_fast_mutants_are_all_killed():
    """Fails when a test that should notice one of these bugs stops noticing it (a weakened comparison, a
    tolerance grown too large), or when the code moved under a mutant's snippet (reported as an error)."""
    listing = subprocess.run([sys.executable, str(RUN), "--fast", "--list"], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert len(listing) == 3, listing
    # The baseline (the same selections on the real code) is the rest of the suite.
    result = subprocess.run([sys.executable, str(RUN), "--fast", "--no-baseline", "--timeout", "300"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "kill rate: 3/3 = 100% (3 mutants, 0 errors)" in result.stdout, result.stdout[-3000:]


def test_every_mutant_snippet_occurs_once():
    """The full check is run by hand; this keeps its mutants anchored in between: each snippet must occur exactly
    once in its file (code that moved under a mutant fails here, in CI, instead of as an error of the next full run),
    and each replacement must change it."""
    run = load_script(RUN, "mutation_run")
    drifted = [m["id"] for m in run.MUTANTS if not run.anchored((run.REPO / m["file"]).read_text(), m)]
    assert drifted == [], f"mutants whose snippet does not occur exactly once: {drifted}"
    assert all(m["original"] != m["replacement"] for m in run.MUTANTS)
    assert run.duplicate_ids(run.MUTANTS) == []
