"""Mutation check: does the test suite notice plausible one-line bugs?

    python tests/mutation/run.py            # every mutant of tests/mutation/mutants.py
    python tests/mutation/run.py --fast     # the small subset (also run by tests/test_mutation_subset.py)
    python tests/mutation/run.py --only enc-scale cache-never-read
    python tests/mutation/run.py --list

The repository's files (`git ls-files` plus untracked files git does not ignore) are copied once to a temporary
directory. Each mutant replaces its `original` snippet, which must occur exactly once in its file, by its
`replacement` in that copy, runs its pytest selection there (`python -m pytest -x -q -p no:cacheprovider ...`,
working directory and `PYTHONPATH` = the copy, so the copy's package is imported, never the editable install:
checked before any mutant runs), and restores the file. Outcomes:

- killed:   the selected tests fail (pytest exit code 1), or cannot even be collected (2) under the mutant;
- survived: they pass (0): the suite does not notice the bug;
- error:    the snippet is missing or ambiguous (the code moved: re-anchor the mutant), no test was selected (5),
            pytest crashed (3, 4), or the selection already fails on the unmutated code (baseline). Errors are
            never counted as kills.

Prints one line per mutant, the kill rate (killed / (killed + survived)), every survivor and every error; exits 0
only when every mutant is killed and none errs.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from mutants import MUTANTS  # noqa: E402

PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]


def repository_files(root: Path) -> list[str]:
    """Tracked files plus untracked ones git does not ignore (the working tree as a fresh clone would see it)."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout
    return [name for name in listing.split("\0") if name and (root / name).is_file()]


def copy_repository(root: Path, target: Path):
    for name in repository_files(root):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, destination)


def environment(copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(copy), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def check_imports_from(copy: Path):
    """The copy's `fastformer` must be the one imported (an editable install could shadow it)."""
    imported = subprocess.run(
        [sys.executable, "-c", "import fastformer; print(fastformer.__file__)"],
        cwd=copy, env=environment(copy), capture_output=True, text=True,
    )
    location = Path(imported.stdout.strip() or "?").resolve()
    if imported.returncode != 0 or copy.resolve() not in location.parents:
        sys.exit(f"mutation: error: `import fastformer` in the copy gives {location}, not the copy {copy} "
                 f"({imported.stderr.strip()[-500:]})")


def run_pytest(copy: Path, selection: list[str], timeout: int) -> tuple[int, str]:
    try:
        result = subprocess.run(PYTEST + selection, cwd=copy, env=environment(copy), capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout} s"
    lines = (result.stdout + result.stderr).strip().splitlines()
    return result.returncode, lines[-1] if lines else ""


def run_baseline(copy: Path, selections: set[tuple[str, ...]], timeout: int) -> dict:
    """Run every selection on the unmutated copy; returns `{selection: (exit code, last line)}`. Selections of the
    form `FILE` or `FILE -k EXPR` are merged per file into one run (`-k "(EXPR1) or (EXPR2)"`), which saves a
    pytest start-up per selection; when a merged run fails, every selection of that file counts as failing."""
    by_file, results = {}, {}
    for selection in selections:
        if len(selection) == 1 or (len(selection) == 3 and selection[1] == "-k"):
            by_file.setdefault(selection[0], []).append(selection)
        else:
            results[selection] = run_pytest(copy, list(selection), timeout)
    for path, group in sorted(by_file.items()):
        expressions = [s[2] for s in group if len(s) == 3]
        merged = [path] if len(expressions) < len(group) else [path, "-k", " or ".join(f"({e})" for e in expressions)]
        outcome = run_pytest(copy, merged, timeout)
        for selection in group:
            results[selection] = outcome
    for selection, (code, last) in sorted(results.items()):
        print(f"baseline {'ok' if code == 0 else 'FAILS':5s} {' '.join(selection)}: {last}", flush=True)
    return results


def duplicate_ids(mutants: list[dict]) -> list[str]:
    ids = [m["id"] for m in mutants]
    return sorted({i for i in ids if ids.count(i) > 1})


def anchored(text: str, mutant: dict) -> bool:
    """Whether the mutant's snippet occurs exactly once in `text` (its file's contents), so it can be applied."""
    return text.count(mutant["original"]) == 1


def apply(copy: Path, mutant: dict) -> str | None:
    """Write the mutated file into the copy; return the original text, or None when the snippet is not unique."""
    path = copy / mutant["file"]
    if not path.is_file():
        return None
    text = path.read_text()
    if not anchored(text, mutant):
        return None
    path.write_text(text.replace(mutant["original"], mutant["replacement"]))
    return text


def outcome(code: int) -> str:
    if code == 1 or code == 2:
        return "killed"
    if code == 0:
        return "survived"
    if code == -1:
        return "killed"  # a mutant that makes the tests hang is noticed, too
    return "error"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these mutants only")
    parser.add_argument("--fast", action="store_true", help="run the small, fast subset (marked fast=True)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip running each selection on the unmutated code first")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per pytest run (default 900)")
    args = parser.parse_args(argv)

    ids = [m["id"] for m in MUTANTS]
    duplicates = duplicate_ids(MUTANTS)
    if duplicates:
        sys.exit(f"mutation: error: duplicate mutant ids {duplicates}")
    selected = MUTANTS
    if args.only:
        unknown = sorted(set(args.only) - set(ids))
        if unknown:
            sys.exit(f"mutation: error: unknown mutant ids {unknown} (see --list)")
        selected = [m for m in MUTANTS if m["id"] in args.only]
    if args.fast:
        selected = [m for m in selected if m.get("fast")]
    if args.list:
        for m in selected:
            print(f"{m['id']:28s} {m['file']:42s} {'fast ' if m.get('fast') else ''}{m['description']}")
        return 0

    with tempfile.TemporaryDirectory(prefix="fastformer-mutation-") as tmp:
        copy = Path(tmp) / "repo"
        copy_repository(REPO, copy)
        check_imports_from(copy)
        print(f"{len(selected)} mutants; copy of {REPO} at {copy}; pytest with PYTHONPATH={copy}", flush=True)

        baseline = {} if args.no_baseline else run_baseline(copy, {tuple(m["tests"]) for m in selected},
                                                              args.timeout)

        results = []
        for m in selected:
            start = time.monotonic()
            base = baseline.get(tuple(m["tests"]), (0, ""))
            if base[0] != 0:
                status, detail = "error", f"selection fails on the unmutated code: {base[1]}"
            else:
                original_text = apply(copy, m)
                if original_text is None:
                    status, detail = "error", f"snippet not found exactly once in {m['file']} (re-anchor it)"
                else:
                    try:
                        code, detail = run_pytest(copy, m["tests"], args.timeout)
                    finally:
                        (copy / m["file"]).write_text(original_text)
                    status = outcome(code)
                    if status == "error":
                        detail = f"pytest exit code {code}: {detail}"
            results.append((m, status, detail))
            print(f"{status:8s} {m['id']:28s} {time.monotonic() - start:6.1f} s  {detail}", flush=True)

    killed = sum(status == "killed" for _, status, _ in results)
    survived = [(m, d) for m, status, d in results if status == "survived"]
    errors = [(m, d) for m, status, d in results if status == "error"]
    counted = killed + len(survived)
    rate = f"{killed}/{counted} = {100.0 * killed / counted:.0f}%" if counted else "n/a"
    print(f"\nkill rate: {rate} ({len(results)} mutants, {len(errors)} errors)")
    for m, detail in survived:
        print(f"SURVIVED {m['id']}: {m['description']} ({m['file']}; tests: {' '.join(m['tests'])})")
    for m, detail in errors:
        print(f"ERROR    {m['id']}: {detail}")
    return 0 if not survived and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
