#!/usr/bin/env python
"""Speed and memory of two source trees of the `fastformer` package, measured before/after in one run.

Each tree is a directory holding a `fastformer/` package (`--before DIR`, `--after DIR`), or a commit of this
repository extracted to a temporary directory (`--before-commit SHA`, `--after-commit SHA`); `--after` defaults to
the repository's working tree. The benchmark scripts always come from this repository; only the `fastformer` package
comes from each tree: every worker runs with the tree prepended to `PYTHONPATH` (the `fastformer.__file__` each tree
resolves to is printed). The benchmarks import `peak_memory_mib` from `fastformer.classify.reporting`; a tree
without that module (e.g. release 6704586) runs from a temporary copy of its package with this repository's module
added (the model code stays the tree's own).

Measurements (`--only a b c`), each through the existing scripts' `--json` output, each (model, length) in a fresh
subprocess as those scripts run it:
  (a) the encoder training step at 8,192 tokens (`benchmark_encoder.py`: hidden 512, 2 layers, mean of `--repeats`
      steps after two warm-up steps, peak RSS above the pre-step baseline), with BERT (SDPA) at the same length
      measured once per round as the reference;
  (b) forward + backward of the encoder classifier and of the causal stack at 65,536 tokens
      (`benchmark_long_context.py`: hidden 256, 2 layers, one step after one warm-up step, peak RSS of the worker);
  (c) one training step of both on 1,048,576 tokens with the memory options of RESULTS.md, "A million tokens in one
      sequence" (`--lean-pool --sequence-chunk 16384 --ff-chunk 16384 --mmap-threshold 1048576`): peak RSS of the
      worker and its time, single step, no warm-up.
(a) and (b) run `--rounds` times (default 3), (c) `--million-rounds` times (default 1: it takes minutes), the two
trees interleaved (before, after, before, after, ...); the table gives each tree's median and range, the ratio of
the medians and the range of the per-round ratios.

Full comparison (release 6704586 against the working tree; about 30-45 minutes on the idle 2-core machine of
RESULTS.md, well over an hour under load):

    python benchmarks/compare_revisions.py --before-commit 6704586 --json compare.json

Smoke test (seconds per run; the numbers mean nothing at these sizes):

    python benchmarks/compare_revisions.py --before-commit 6704586 --rounds 2 --repeats 2 --encoder-length 256 \
        --long-length 512 --million-length 2048 --million-chunk 512
"""

import argparse
import filecmp
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from common import machine

from fastformer.classify.reporting import markdown_table


BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
REPORTING = Path("fastformer", "classify", "reporting.py")
SIDES = ("before", "after")
# config fields the benchmark scripts set (a tree whose FastformerConfig lacks one would silently ignore it)
OPTIONS = ("position_embedding_type", "sequence_chunk_size", "recompute_causal_pool", "chunk_size_feed_forward")
PROBE = """import inspect, json, torch, fastformer
fields = inspect.signature(fastformer.FastformerConfig).parameters
print(json.dumps({"file": fastformer.__file__, "threads": torch.get_num_threads(),
                  "missing": [name for name in %r if name not in fields]}))
"""


def git(*argv: str, text: bool = True):
    """Output of a read-only git command in this repository."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    done = subprocess.run(["git", "-C", str(REPO), *argv], check=True, capture_output=True, text=text, env=env)
    return done.stdout.strip() if text else done.stdout


def prepare_tree(side: str, directory: str | None, commit: str | None, tmp: Path) -> dict:
    """The tree of one side: its path (to prepend to PYTHONPATH), where it comes from, and notes."""
    notes = []
    if commit:
        try:
            sha = git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
        except subprocess.CalledProcessError:
            sys.exit(f"{side}: {commit!r} is not a commit of {REPO}")
        path = tmp / side
        path.mkdir()
        with tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", sha, "fastformer", text=False))) as tar:
            tar.extractall(path, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        origin = f"commit {sha[:10]} ({git('log', '-1', '--format=%s', sha)[:60]})"
    elif directory:
        path = Path(directory).resolve()
        origin = f"directory {path}"
    else:
        path = REPO
        changed = git("status", "--porcelain", "--", "fastformer")
        origin = f"working tree at {git('rev-parse', '--short=10', 'HEAD')}" + (
            " with uncommitted changes in fastformer/" if changed else ""
        )
    if not (path / "fastformer" / "__init__.py").is_file():
        sys.exit(f"{side}: {path} holds no fastformer/ package")
    if not (path / REPORTING).is_file():
        if path.parent != tmp:  # never write into a directory the caller gave
            shutil.copytree(
                path / "fastformer", tmp / side / "fastformer", ignore=shutil.ignore_patterns("__pycache__")
            )
            path = tmp / side
        (path / REPORTING).parent.mkdir(exist_ok=True)
        (path / REPORTING).with_name("__init__.py").touch()
        shutil.copy(REPO / REPORTING, path / REPORTING)
        notes.append(f"no {REPORTING.as_posix()} in the tree: this repository's copy added (in {path})")
    elif not filecmp.cmp(path / REPORTING, REPO / REPORTING, shallow=False):
        notes.append(f"its own {REPORTING.as_posix()} differs from this repository's: peak memory read with its own")
    return {"path": str(path), "origin": origin, "notes": notes}


def worker_env(tree: dict, threads: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tree["path"], env.get("PYTHONPATH")) if p)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def run_script(script: str, argv: list[str], env: dict, workdir: Path, timeout: int) -> dict:
    """Run a benchmark script with `--json` and return what it wrote, or {"error": ...}."""
    out = workdir / "out.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, str(BENCHMARKS / script), *argv, "--json", str(out)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"{script} timed out after {timeout}s"}
    if done.returncode != 0 or not out.is_file():
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"error": f"{script}: {last[:160]}"}
    return json.loads(out.read_text())


class Results:
    """Per (row, side) the value of each round; errors and warnings; the raw records (for `--json`)."""

    def __init__(self):
        self.values, self.errors, self.warnings, self.records = {}, [], [], []

    def add(self, group: str, side: str, rnd: int, name: str, result: dict, rows: dict) -> str:
        """Record `result` (one model@length of a script's JSON) under `rows` ({row key: value from a result})."""
        self.records.append({"measurement": group, "side": side, "round": rnd, "case": name, "result": result})
        if "error" in result:
            self.errors.append(f"({group}) {side}, round {rnd + 1}, {name}: {result['error']}")
            return f"{name} {result['error']}"
        if result.get("finite") is False:
            self.warnings.append(f"({group}) {side}, round {rnd + 1}, {name}: gradients NOT finite")
        for key, value in rows.items():
            self.values.setdefault((key, side), {})[rnd] = value(result)
        return name + " " + ", ".join(f"{key} {value(result):.3f}" for key, value in rows.items())


def spread(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def table(results: Results, rows: list[tuple[str, str, str]]) -> str:
    header = [
        "measurement",
        "runs",
        "before: median (min–max)",
        "after: median (min–max)",
        "after / before (per-round range)",
        "BERT, same run",
    ]
    lines = []
    for key, title, fmt in rows:
        before = results.values.get((key, "before"), {})
        after = results.values.get((key, "after"), {})
        ratio = "-"
        if before and after and statistics.median(before.values()) > 0:
            ratio = f"{statistics.median(after.values()) / statistics.median(before.values()):.3f}"
            paired = [after[r] / before[r] for r in sorted(before.keys() & after.keys()) if before[r] > 0]
            if len(paired) > 1:
                ratio += f" ({min(paired):.3f}–{max(paired):.3f})"
        bert = results.values.get((key, "bert"), {})
        lines.append(
            [
                title,
                f"{len(before)}/{len(after)}",
                spread(list(before.values()), fmt),
                spread(list(after.values()), fmt),
                ratio,
                spread(list(bert.values()), fmt) if bert else "",
            ]
        )
    return markdown_table(header, lines, "lrrrrr")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="DIR", help="a directory holding the `fastformer/` package before")
    parser.add_argument("--before-commit", metavar="SHA", help="or this commit of the repository")
    parser.add_argument("--after", metavar="DIR", help="the package after (default: the repository's working tree)")
    parser.add_argument("--after-commit", metavar="SHA", help="or this commit of the repository")
    parser.add_argument("--only", nargs="+", choices=("a", "b", "c"), default=["a", "b", "c"])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (a) and (b)")
    parser.add_argument("--million-rounds", type=int, default=1, help="rounds of (c)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per run of (a)")
    parser.add_argument("--encoder-length", type=int, default=8192, help="tokens of (a)")
    parser.add_argument("--long-length", type=int, default=65536, help="tokens of (b)")
    parser.add_argument("--million-length", type=int, default=1048576, help="tokens of (c)")
    parser.add_argument("--million-chunk", type=int, default=16384, help="sequence and feed-forward chunk of (c)")
    parser.add_argument("--no-bert", action="store_true", help="skip BERT's reference runs in (a)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the workers (default: torch's)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per (model, length) worker")
    parser.add_argument("--json", help="also write every run's result to this file (rewritten after each run)")
    args = parser.parse_args()
    if (args.before is None) == (args.before_commit is None):
        parser.error("give one of --before DIR and --before-commit SHA")
    if args.after and args.after_commit:
        parser.error("give at most one of --after DIR and --after-commit SHA")
    if args.threads:
        torch.set_num_threads(args.threads)

    n_a, n_b, n_c = args.encoder_length, args.long_length, args.million_length
    rows = []
    if "a" in args.only:
        rows += [
            ("a_s", f"(a) encoder step s, {n_a:,} tokens (mean of {args.repeats})", "{:.3f}"),
            ("a_mib", f"(a) encoder step peak MiB above baseline, {n_a:,} tokens", "{:.0f}"),
        ]
    for model in ("encoder", "causal") if "b" in args.only else ():
        rows += [
            (f"b_{model}_s", f"(b) {model} fwd+bwd s, {n_b:,} tokens", "{:.2f}"),
            (f"b_{model}_gib", f"(b) {model} peak RSS GiB, {n_b:,} tokens", "{:.3f}"),
        ]
    for model in ("encoder", "causal") if "c" in args.only else ():
        rows += [
            (f"c_{model}_gib", f"(c) {model} peak RSS GiB, {n_c:,} tokens, memory options", "{:.3f}"),
            (f"c_{model}_s", f"(c) {model} fwd+bwd s, {n_c:,} tokens, memory options", "{:.1f}"),
        ]
    timeout_a = args.timeout + 300
    timeout_bc = 2 * args.timeout + 300  # two workers per call
    long_argv = ["--models", "encoder", "causal", "--count-ops", "--timeout", str(args.timeout)]
    # the memory options of RESULTS.md, "A million tokens in one sequence"; they apply from --checkpoint-from on and
    # a step from --no-warmup-from on has no warm-up (at 1,048,576 tokens these equal the script's defaults)
    million_argv = long_argv + [
        "--lengths",
        str(n_c),
        "--lean-pool",
        "--sequence-chunk",
        str(args.million_chunk),
        "--ff-chunk",
        str(args.million_chunk),
        "--mmap-threshold",
        "1048576",
        "--checkpoint-from",
        str(min(n_c, 131072)),
        "--no-warmup-from",
        str(min(n_c, 131072)),
    ]

    started, load_start = time.monotonic(), os.getloadavg()
    results = Results()
    with tempfile.TemporaryDirectory(prefix="fastformer-compare-") as tmp:
        tmp = Path(tmp)
        trees = {
            "before": prepare_tree("before", args.before, args.before_commit, tmp),
            "after": prepare_tree("after", args.after, args.after_commit, tmp),
        }
        envs = {side: worker_env(trees[side], args.threads) for side in SIDES}
        workdir = tmp / "work"
        workdir.mkdir()
        print(f"Machine: {machine()}")
        for side in SIDES:
            done = subprocess.run(
                [sys.executable, "-c", PROBE % (OPTIONS,)], capture_output=True, text=True, env=envs[side], cwd=workdir
            )
            if done.returncode != 0:
                sys.exit(f"{side}: importing fastformer failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            probe = json.loads(done.stdout.strip().splitlines()[-1])
            trees[side].update(probe)
            print(f"{side}: {trees[side]['origin']}; fastformer.__file__ = {probe['file']}")
            print(f"{side}: workers run with {probe['threads']} torch threads")
            for note in trees[side]["notes"]:
                print(f"{side}: note: {note}")
            if probe["missing"]:
                results.warnings.append(
                    f"{side}: FastformerConfig lacks {probe['missing']}: the benchmarks' setting is ignored"
                )
                print(f"{side}: WARNING: FastformerConfig lacks {', '.join(probe['missing'])}")
        sys.stdout.flush()

        def save():
            if args.json:
                with open(args.json, "w") as f:
                    meta = {"machine": machine(), "trees": trees, "args": vars(args)}
                    json.dump({**meta, "runs": results.records}, f, indent=2)

        def log(group, side, rnd, rounds, text):
            minutes, seconds = divmod(int(time.monotonic() - started), 60)
            print(f"[{minutes:3d}:{seconds:02d}] ({group}) round {rnd + 1}/{rounds} {side}: {text}", file=sys.stderr)
            save()

        def encoder(side, rnd, model, env):
            argv = ["--lengths", str(n_a), "--models", model, "--repeats", str(args.repeats)]
            out = run_script("benchmark_encoder.py", argv + ["--timeout", str(args.timeout)], env, workdir, timeout_a)
            result = out.get(f"{model}@{n_a}", {"error": out.get("error", "no result")})
            found = {"a_s": lambda r: r["seconds"], "a_mib": lambda r: r["peak_mib"]}
            log("a", side, rnd, args.rounds, results.add("a", side, rnd, f"{model}@{n_a}", result, found))

        def long_context(group, side, rnd, rounds, argv, length):
            out = run_script("benchmark_long_context.py", argv, envs[side], workdir, timeout_bc)
            for model in ("encoder", "causal"):
                result = out.get("runs", {}).get(f"{model}@{length}", {"error": out.get("error", "no result")})
                found = {
                    f"{group}_{model}_s": lambda r: r["forward_s"] + r["backward_s"],
                    f"{group}_{model}_gib": lambda r: r["peak_gib"],
                }
                log(group, side, rnd, rounds, results.add(group, side, rnd, f"{model}@{length}", result, found))

        for rnd in range(args.rounds if {"a", "b"} & set(args.only) else 0):
            if "a" in args.only:
                for side in SIDES:
                    encoder(side, rnd, "fastformer", envs[side])
                if not args.no_bert:
                    encoder("bert", rnd, "bert", envs["after"])
            if "b" in args.only:
                for side in SIDES:
                    long_context("b", side, rnd, args.rounds, long_argv + ["--lengths", str(n_b)], n_b)
        for rnd in range(args.million_rounds if "c" in args.only else 0):
            for side in SIDES:
                long_context("c", side, rnd, args.million_rounds, million_argv, n_c)

    minutes = (time.monotonic() - started) / 60
    load_end = os.getloadavg()
    print(
        f"\nWall time {minutes:.1f} min; load average (1, 5, 15 min) at the start "
        + ", ".join(f"{x:.2f}" for x in load_start)
        + ", at the end "
        + ", ".join(f"{x:.2f}" for x in load_end)
        + "\n"
    )
    print(table(results, rows))
    bert = results.values.get(("a_s", "bert"), {})
    if bert:
        ratios = []
        for side in SIDES:
            own = results.values.get(("a_s", side), {})
            if own:
                ratios.append(f"{side} {statistics.median(own.values()) / statistics.median(bert.values()):.3f}")
        print(f"\n(a) Fastformer / BERT step time at {n_a:,} tokens (medians): " + ", ".join(ratios))
    print(
        "\nbefore/after: median (min–max) over the runs counted in `runs` (before/after); after / before: the ratio"
        " of the medians (the range of the per-round ratios, the trees measured back to back in each round)."
        " (a): benchmarks/benchmark_encoder.py; (b), (c): benchmarks/benchmark_long_context.py, peak RSS of the"
        f" whole worker; (c): --lean-pool --sequence-chunk {args.million_chunk} --ff-chunk {args.million_chunk}"
        " --mmap-threshold 1048576, one step without warm-up."
    )
    for line in results.warnings:
        print(f"WARNING: {line}")
    for line in results.errors:
        print(f"ERROR: {line}")


if __name__ == "__main__":
    main()
