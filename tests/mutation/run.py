"""Mutation check: does the test suite notice plausible one-line bugs?

    python tests/mutation/run.py            # every mutant of tests/mutation/mutants.py
    python tests/mutation/run.py --fast     # the small subset (also run by tests/test_mutation_subset.py)
    python tests/mutation/run.py --only enc-no-scale cache-never-read
    python tests/mutation/run.py --list
    python tests/mutation/run.py --check-anchors   # only check that every mutant can be applied (no tests run)

The repository's files (`git ls-files` plus untracked files git does not ignore) are copied once to a temporary
directory. Each mutant replaces its `original` snippet by its `replacement` in that copy, runs its pytest selection
there (`python -m pytest -x -q -p no:cacheprovider ...`, working directory and `PYTHONPATH` = the copy, so the copy's
package is imported, never the editable install: checked before any mutant runs), and restores the file.

Anchoring: a mutant names the `function` its snippet lives in, a qualified name found through the syntax tree
wherever the definition is in the file (`FastformerAdditiveAttention.forward`, `FastformerLayer.sequence_chunked.
global_vector`, a module-level function, a class, a name assigned at module or class level, or "<module>" for the
whole file). The snippet must occur exactly once inside that definition, compared as tokens (`lex`, `normalised`): line
breaks, indentation, spacing, comments, quote style, implicit string concatenation and magic trailing commas do not
matter, so a reformat or a moved function keeps the anchor. Where the tokens do not occur at all, a snippet that is a
complete expression or run of statements is looked for by its syntax tree (`_tree_matches`: e.g. parentheses a
formatter put around a long right-hand side). The replacement is written over the range found, re-indented to its
place; the mutated file must parse. An entry without `function` uses the former anchor: the exact snippet, once in
the whole file.

Outcomes:

- killed:   the selected tests fail (pytest exit code 1), or cannot even be collected (2) under the mutant;
- survived: they pass (0): the suite does not notice the bug;
- error:    the function or snippet is missing or ambiguous, or the mutated file does not parse (the code moved:
            re-anchor the mutant), no test was selected (5), pytest crashed (3, 4), or the selection already fails
            on the unmutated code (baseline). Errors are never counted as kills.

Prints one line per mutant, the kill rate (killed / (killed + survived)), every survivor and every error; exits 0
only when every mutant is killed and none errs.
"""

import argparse
import ast
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
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
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
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
        cwd=copy,
        env=environment(copy),
        capture_output=True,
        text=True,
    )
    location = Path(imported.stdout.strip() or "?").resolve()
    if imported.returncode != 0 or copy.resolve() not in location.parents:
        sys.exit(
            f"mutation: error: `import fastformer` in the copy gives {location}, not the copy {copy} "
            f"({imported.stderr.strip()[-500:]})"
        )


def run_pytest(copy: Path, selection: list[str], timeout: int) -> tuple[int, str]:
    try:
        result = subprocess.run(
            PYTEST + selection, cwd=copy, env=environment(copy), capture_output=True, text=True, timeout=timeout
        )
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


# ------------------------------------------------------------------------------------------------- anchoring


class AnchorError(Exception):
    """The mutant cannot be applied: its function or its snippet is missing or ambiguous (re-anchor it)."""


MODULE = "<module>"  # `function=MODULE`: the snippet is looked for in the whole file

# A small Python lexer for snippets (fragments such as `self.layer[depth % len(self.layer)](` must lex) and for the
# definitions they are looked for in: whitespace, line breaks and backslash continuations separate tokens; comments
# and string literals (any prefix, triple-quoted or not) are one token each; numbers lex as words and dots. The same
# on every Python version (the `tokenize` module refuses many fragments, differently from version to version).
_TOKEN = re.compile(
    r"""
    (?P<space>(?:\s|\\\r?\n)+)
  | (?P<comment>\#[^\r\n]*)
  | (?P<string>(?:[rRbBuUfF]{1,2})?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^\\'\r\n])*'
                                    |"(?:\\.|[^\\"\r\n])*"))
  | (?P<word>\w+)
  | (?P<op>\*\*=|//=|>>=|<<=|\.\.\.|->|:=|==|!=|<=|>=|\*\*|//|<<|>>|[-+*/%&|^@]=|[^\s\w])
""",
    re.VERBOSE | re.DOTALL,
)
_CLOSERS = {")", "]", "}"}


def lex(text: str) -> list[tuple[str, str, int, int]]:
    """`(kind, text, start, end)` for every token of `text` but whitespace; kind: comment, string, word or op."""
    tokens, position = [], 0
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found.lastgroup != "space":
            tokens.append((found.lastgroup, found.group(), found.start(), found.end()))
        position = found.end()
    return tokens


def _string_value(literal: str):
    try:
        return ast.literal_eval(literal)
    except (ValueError, SyntaxError):  # an f-string: compared as written
        return None


def normalised(tokens: list[tuple[str, str, int, int]]) -> list[tuple[object, int, int]]:
    """The tokens that matching compares, as `(key, start, end)`: comments dropped; adjacent string literals merged
    into one and compared by value (quote style, prefixes such as `r` and implicit concatenation do not matter);
    a comma right before a closing bracket (a "magic trailing comma") marked optional by the key None."""
    code = [token for token in tokens if token[0] != "comment"]
    keys = []
    for index, (kind, text, start, end) in enumerate(code):
        value = _string_value(text) if kind == "string" else None
        previous = keys[-1][0] if keys else None
        if (
            value is not None
            and isinstance(previous, tuple)
            and previous[0] == "string"
            and type(previous[1]) is type(value)
        ):
            keys[-1] = (("string", previous[1] + value), keys[-1][1], end)
        elif value is not None:
            keys.append((("string", value), start, end))
        elif text == "," and index + 1 < len(code) and code[index + 1][1] in _CLOSERS:
            keys.append((None, start, end))
        else:
            keys.append((text, start, end))
    return keys


def _match_at(source: list, at: int, snippet: list) -> int | None:
    """The index past the last source token when `snippet` matches `source` from `at` on, else None. An optional
    comma (key None) may be missing on the other side; a snippet's final comma matches an optional one."""
    i, j = at, 0
    while j < len(snippet):
        have, want = (source[i][0] if i < len(source) else ()), snippet[j][0]
        if have == want or (have is None and want == ","):
            i, j = i + 1, j + 1
        elif have is None and i > at:
            i += 1
        elif want is None:
            j += 1
        else:
            return None
    return i


def _token_matches(text: str, start: int, end: int, snippet: str) -> list[tuple[int, int]]:
    """Character ranges, within text[start:end], whose tokens equal the snippet's."""
    wanted = normalised(lex(snippet))
    source = normalised(lex(text[start:end]))
    ranges = []
    for at in range(len(source) if wanted else 0):
        past = _match_at(source, at, wanted)
        if past is not None:
            ranges.append((start + source[at][1], start + source[past - 1][2]))
    return ranges


def _offset(lines: list[str], offsets: list[int], line: int, column: int) -> int:
    """The character offset of an AST position (1-based line, column in UTF-8 bytes)."""
    return offsets[line - 1] + len(lines[line - 1].encode()[:column].decode())


def _tree_matches(text: str, anchor: ast.AST, snippet: str) -> list[tuple[int, int]]:
    """Character ranges, inside the definition `anchor`, of the code whose syntax tree equals the snippet's: the
    same expression, or the same run of consecutive statements. Empty when the snippet is no complete expression
    or run of statements. Finds what a reformat hid from the tokens, e.g. parentheses `ruff format` added around a
    long right-hand side."""
    try:
        wanted = ast.parse(textwrap.dedent(snippet).strip("\n")).body
    except SyntaxError:
        return []
    if not wanted:
        return []
    lines, offsets = text.splitlines(keepends=True), _line_offsets(text)
    found = []
    if len(wanted) == 1 and isinstance(wanted[0], ast.Expr):
        kind, dump = type(wanted[0].value), ast.dump(wanted[0].value)
        found = [(node, node) for node in ast.walk(anchor) if type(node) is kind and ast.dump(node) == dump]
    else:
        dumps = [ast.dump(statement) for statement in wanted]
        runs = [[anchor]] if isinstance(anchor, ast.stmt) else []
        for node in ast.walk(anchor):
            for field in ("body", "orelse", "finalbody"):
                block = getattr(node, field, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    runs.append(block)
        for block in runs:
            for at in range(len(block) - len(dumps) + 1):
                if (
                    type(block[at]) is type(wanted[0])
                    and [ast.dump(statement) for statement in block[at : at + len(dumps)]] == dumps
                ):
                    found.append((block[at], block[at + len(dumps) - 1]))
    return [
        (
            _offset(lines, offsets, first.lineno, first.col_offset),
            _offset(lines, offsets, last.end_lineno, last.end_col_offset),
        )
        for first, last in found
    ]


@functools.lru_cache(maxsize=8)
def parse(text: str) -> ast.Module:
    """The syntax tree of a file's contents (cached: every mutant of a file parses the same text)."""
    return ast.parse(text)


def definitions(tree: ast.Module) -> dict[str, list[ast.AST]]:
    """Qualified name -> the nodes that define it: classes and functions at any depth (`Class.method`,
    `function.inner`), and names assigned at module or class level (`_CONFIG_COPIED`, `Class.attribute`)."""
    found = {}

    def visit(node, prefix, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.setdefault(prefix + child.name, []).append(child)
                visit(child, prefix + child.name + ".", in_function or not isinstance(child, ast.ClassDef))
            elif isinstance(child, (ast.Assign, ast.AnnAssign)) and not in_function:
                for target in child.targets if isinstance(child, ast.Assign) else [child.target]:
                    if isinstance(target, ast.Name):
                        found.setdefault(prefix + target.id, []).append(child)
            elif isinstance(child, ast.stmt):
                visit(child, prefix, in_function)  # if/try/with/for blocks: the same scope

    visit(tree, "", False)
    return found


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def _anchor(text: str, tree: ast.Module, name: str, file: str, found: dict | None = None):
    """`(node, start, end)`: the definition called `name` and the character range of its whole lines (decorators
    included); the module and the whole file for MODULE."""
    if name == MODULE:
        return tree, 0, len(text)
    nodes = (definitions(tree) if found is None else found).get(name.replace(".<locals>", ""), [])
    if len(nodes) != 1:
        raise AnchorError(f"`{name}` is defined {len(nodes)} times in {file}, not once (re-anchor the mutant)")
    node = nodes[0]
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    offsets = _line_offsets(text)
    return node, offsets[first - 1], offsets[node.end_lineno]


def _occurrences(text: str, anchor: tuple, snippet: str) -> list[tuple[int, int]]:
    """Where the snippet occurs in the anchor's definition: where its tokens occur, or, only where they do not
    occur at all, where its syntax tree does."""
    node, start, end = anchor
    return _token_matches(text, start, end, snippet) or _tree_matches(text, node, snippet)


def locate(text: str, mutant: dict) -> tuple[int, int]:
    """The character range of `text` (the file's contents) that the mutant replaces: the one occurrence of its
    snippet inside its `function` (a trailing comment of the snippet takes the source's along). Raises AnchorError
    unless there is exactly one."""
    snippet, file = mutant["original"], mutant["file"]
    if "function" not in mutant:  # the whole-file form: the exact snippet, once in the file
        count = text.count(snippet)
        if count != 1:
            raise AnchorError(f"the snippet occurs {count} times in {file}, not once (re-anchor the mutant)")
        start = text.index(snippet)
        return start, start + len(snippet)
    if not normalised(lex(snippet)):
        raise AnchorError("the snippet has no code")
    tree = parse(text)
    ranges = _occurrences(text, _anchor(text, tree, mutant["function"], file), snippet)
    where = f"{file}:{mutant['function']}"
    if len(ranges) > 1:
        lines = ", ".join(str(text.count("\n", 0, first) + 1) for first, _ in ranges)
        raise AnchorError(f"the snippet occurs {len(ranges)} times in {where} (lines {lines}), not once (lengthen it)")
    if not ranges:
        found = definitions(tree)
        elsewhere = [
            name
            for name, nodes in found.items()
            if len(nodes) == 1 and _occurrences(text, _anchor(text, tree, name, file, found), snippet)
        ]
        innermost = [name for name in elsewhere if not any(other.startswith(name + ".") for other in elsewhere)]
        hint = f"; it occurs in {', '.join(innermost)}" if innermost else ""
        raise AnchorError(f"the snippet does not occur in {where} (re-anchor the mutant{hint})")
    first, last = ranges[0]
    if lex(snippet)[-1][0] == "comment":  # the snippet ends with a comment: replace the source's, too
        line_end = text.find("\n", last)
        following = lex(text[last : len(text) if line_end < 0 else line_end])
        if following and following[0][0] == "comment":
            last += following[0][3]
    return first, last


def replacement_text(text: str, start: int, mutant: dict) -> str:
    """The mutant's replacement, for a range starting at `start` (at its first token): the replacement's leading
    and trailing whitespace dropped, its later lines re-indented by the difference between the column of `start`
    and that of the replacement's first line (lines inside a string literal left as they are)."""
    replacement = mutant["replacement"].rstrip()
    body = replacement.lstrip(" \t\r\n")
    column = len(replacement[: len(replacement) - len(body)].rsplit("\n", 1)[-1])
    shift = (start - (text.rfind("\n", 0, start) + 1)) - column
    strings = [(first, last) for kind, _, first, last in lex(body) if kind == "string"]
    lines, offset = [], 0
    for index, line in enumerate(body.split("\n")):
        if index and line.strip() and not any(first < offset < last for first, last in strings):
            indent = len(line) - len(line.lstrip(" "))
            lines.append(" " * max(0, indent + shift) + line.lstrip(" "))
        else:
            lines.append(line)
        offset += len(line) + 1
    return "\n".join(lines)


def mutate(text: str, mutant: dict) -> str:
    """`text` (the mutant's file) with the mutant applied. Raises AnchorError when it cannot be anchored, or when
    the mutated Python file does not parse (a syntax error would be "killed" by any test)."""
    if "function" in mutant or mutant["file"].endswith(".py"):
        try:
            parse(text)
        except SyntaxError as error:
            raise AnchorError(f"{mutant['file']} does not parse: {error}") from None
    start, end = locate(text, mutant)
    replacement = replacement_text(text, start, mutant) if "function" in mutant else mutant["replacement"]
    mutated = text[:start] + replacement + text[end:]
    if mutant["file"].endswith(".py"):
        try:
            ast.parse(mutated)
        except SyntaxError as error:
            raise AnchorError(f"the mutated {mutant['file']} does not parse: {error}") from None
    return mutated


def anchor_problem(text: str, mutant: dict) -> str | None:
    """Why the mutant cannot be applied to `text` (its file's contents), or None when it can."""
    try:
        mutate(text, mutant)
    except AnchorError as error:
        return str(error)
    return None


def anchored(text: str, mutant: dict) -> bool:
    """Whether the mutant can be applied to `text`, its file's contents: its snippet occurs exactly once in its
    `function` (for an entry without `function`: exactly once in the file, as written)."""
    return anchor_problem(text, mutant) is None


def apply(copy: Path, mutant: dict) -> str:
    """Write the mutated file into the copy; return the original text. Raises AnchorError when the mutant cannot be
    anchored."""
    path = copy / mutant["file"]
    if not path.is_file():
        raise AnchorError(f"{mutant['file']} does not exist")
    text = path.read_text()
    path.write_text(mutate(text, mutant))
    return text


def check_anchors(root: Path, mutants: list[dict]) -> list[tuple[dict, str]]:
    """`(mutant, why)` for every mutant that cannot be applied to the files under `root`."""
    problems, texts = [], {}
    for mutant in mutants:
        path = root / mutant["file"]
        if not path.is_file():
            problems.append((mutant, f"{mutant['file']} does not exist"))
            continue
        text = texts.setdefault(mutant["file"], path.read_text())
        why = anchor_problem(text, mutant)
        if why is None and mutant["original"] == mutant["replacement"]:
            why = "the replacement equals the snippet"
        if why is not None:
            problems.append((mutant, why))
    return problems


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
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip running each selection on the unmutated code first"
    )
    parser.add_argument("--timeout", type=int, default=900, help="seconds per pytest run (default 900)")
    parser.add_argument(
        "--check-anchors",
        action="store_true",
        help="only check that every selected mutant can be applied (no copy, no tests); exit 1 if not",
    )
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
            where = m["file"] + (f":{m['function']}" if "function" in m else "")
            print(f"{m['id']:28s} {where:72s} {'fast ' if m.get('fast') else ''}{m['description']}")
        return 0
    if args.check_anchors:
        problems = check_anchors(REPO, selected)
        for m, why in problems:
            print(f"ERROR    {m['id']}: {why}")
        print(f"{len(selected) - len(problems)} of {len(selected)} mutants anchored")
        return 1 if problems else 0

    with tempfile.TemporaryDirectory(prefix="fastformer-mutation-") as tmp:
        copy = Path(tmp) / "repo"
        copy_repository(REPO, copy)
        check_imports_from(copy)
        print(f"{len(selected)} mutants; copy of {REPO} at {copy}; pytest with PYTHONPATH={copy}", flush=True)

        baseline = {} if args.no_baseline else run_baseline(copy, {tuple(m["tests"]) for m in selected}, args.timeout)

        results = []
        for m in selected:
            start = time.monotonic()
            base = baseline.get(tuple(m["tests"]), (0, ""))
            if base[0] != 0:
                status, detail = "error", f"selection fails on the unmutated code: {base[1]}"
            else:
                try:
                    original_text = apply(copy, m)
                except AnchorError as error:
                    status, detail, original_text = "error", str(error), None
                if original_text is not None:
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
