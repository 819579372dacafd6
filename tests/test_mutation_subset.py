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
    listing = subprocess.run(
        [sys.executable, str(RUN), "--fast", "--list"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(listing) == 3, listing
    # The baseline (the same selections on the real code) is the rest of the suite.
    result = subprocess.run(
        [sys.executable, str(RUN), "--fast", "--no-baseline", "--timeout", "300"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "kill rate: 3/3 = 100% (3 mutants, 0 errors)" in result.stdout, result.stdout[-3000:]


def test_every_mutant_snippet_occurs_once_in_its_function():
    """The full check is run by hand; this keeps its mutants anchored in between: each snippet must occur exactly
    once in the function (class, module-level name, or module) its entry names (an entry without `function`: once in
    its file, as written), and the mutated file must parse. Code changed under a mutant, or moved out of its function,
    fails here, in CI, instead of as an error of the next full run; each replacement must change the snippet."""
    run = load_script(RUN, "mutation_run")
    problems = run.check_anchors(run.REPO, run.MUTANTS)
    assert problems == [], "mutants that cannot be applied:\n" + "\n".join(f"{m['id']}: {why}" for m, why in problems)
    assert run.duplicate_ids(run.MUTANTS) == []


SOURCE = '''"""A module."""

WORDS = ("alpha", "beta",
         "gamma")


class Pool:
    def forward(self, x, mask=None):
        weights = softmax(x * self.scale, mask, dim=1)  # (batch, seq)
        if mask is not None:
            weights = weights * mask
        return weights


def helper(x, mask=None):
    weights = softmax(x * 2, mask, dim=1)
    return weights
'''

# SOURCE laid out as another formatter configuration may write it, with `helper` moved above the class: indented
# by 2, single quotes, lines joined and split, magic trailing commas, a right-hand side put in parentheses.
REFORMATTED = '''"""A module."""

WORDS = ('alpha', 'beta', 'gamma')


def helper(x, mask=None):
  weights = softmax(x * 2, mask, dim=1)
  return weights


class Pool:
  def forward(self, x, mask=None):
    weights = (
      softmax(
        x * self.scale,
        mask,
        dim=1,
      )
    )  # (batch, seq)
    if mask is not None:
      weights = weights * mask
    return weights
'''

MUTANTS = [
    dict(
        id="no-scale",
        file="m.py",
        function="Pool.forward",
        original="        weights = softmax(x * self.scale, mask, dim=1)",
        replacement="        weights = softmax(x, mask, dim=1)",
    ),
    dict(
        id="mask-ignored",
        file="m.py",
        function="Pool.forward",
        original="        if mask is not None:\n            weights = weights * mask",
        replacement="        if False:\n            weights = weights * mask",
    ),
    dict(
        id="fragment", file="m.py", function="Pool.forward", original="x * self.scale, mask,", replacement="x, mask,"
    ),
    dict(id="words", file="m.py", function="WORDS", original='"beta", "gamma"', replacement='"gamma", "beta"'),
]


def test_anchors_survive_a_reformat_and_a_moved_function():
    """Matching compares tokens (whitespace, line breaks, quotes and magic trailing commas aside), then syntax trees
    (parentheses a formatter added): every mutant applies to both layouts and makes the same change there, while
    an exact-text anchor would lose all four."""
    import ast

    run = load_script(RUN, "mutation_run")
    for mutant in MUTANTS:
        assert mutant["original"] not in REFORMATTED
        mutated, reformatted = run.mutate(SOURCE, mutant), run.mutate(REFORMATTED, mutant)
        assert ast.dump(ast.parse(mutated)) != ast.dump(ast.parse(SOURCE))
        tree = {f.name: ast.dump(f) for f in ast.parse(mutated).body if hasattr(f, "name")}
        assert tree == {f.name: ast.dump(f) for f in ast.parse(reformatted).body if hasattr(f, "name")}, mutant["id"]
        assert ast.dump(ast.parse(mutated).body[1]) == ast.dump(ast.parse(reformatted).body[1])  # WORDS
    # the replacement is re-indented where the real code is; a trailing comment of the source stays
    assert "\n    if False:\n        weights = weights * mask\n    return" in run.mutate(REFORMATTED, MUTANTS[1])
    assert "weights = softmax(x, mask, dim=1)  # (batch, seq)" in run.mutate(REFORMATTED, MUTANTS[0])


def test_an_anchor_that_changed_moved_or_is_ambiguous_is_refused():
    run = load_script(RUN, "mutation_run")
    changed = SOURCE.replace("x * self.scale", "self.scale * x")
    assert "does not occur in m.py:Pool.forward" in run.anchor_problem(changed, MUTANTS[0])
    moved = SOURCE.replace("softmax(x * 2,", "softmax(x * self.scale,").replace(
        "weights = softmax(x * self.scale, mask, dim=1)  # (batch, seq)", "weights = softmax(x, mask, dim=1)"
    )
    assert "it occurs in helper" in run.anchor_problem(moved, MUTANTS[0])
    renamed = SOURCE.replace("def forward(", "def pool(")
    assert "`Pool.forward` is defined 0 times" in run.anchor_problem(renamed, MUTANTS[0])
    twice = dict(MUTANTS[0], function="<module>", original="mask, dim=1)", replacement="None, dim=1)")
    assert "occurs 2 times in m.py:<module>" in run.anchor_problem(SOURCE, twice)
    assert run.anchored(SOURCE, dict(twice, function="helper"))
    # an entry without `function`: the exact text, once in the file (the former form)
    legacy = {k: v for k, v in MUTANTS[0].items() if k != "function"}
    assert run.mutate(SOURCE, legacy) == SOURCE.replace(legacy["original"], legacy["replacement"])
    assert not run.anchored(REFORMATTED, legacy)
    # a replacement that would not parse is refused, never run (a syntax error would be "killed" by any test)
    broken = dict(MUTANTS[0], replacement="        weights = softmax(x, mask, dim=1")
    assert "does not parse" in run.anchor_problem(SOURCE, broken)
