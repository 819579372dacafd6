# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""What the job, its model card and the scripts around it report: the process's peak memory and markdown tables.

Standard library only, so that a benchmark can import it without loading the job (and its memory).
"""

import sys


def peak_memory_mib() -> float | None:
    """This process's peak resident memory so far in MiB (Python, torch, data and model); None where the platform
    does not report it (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def markdown_table(header: list[str], rows: list[list], align: str = "") -> str:
    """A markdown table: the header, its rule and one line per row (cells as `str` gives them, already formatted).
    `align` has one letter per column, `l` (the default for every column it does not name) or `r` (`---:`)."""
    rule = "".join("---:|" if letter == "r" else "---|" for letter in align.ljust(len(header), "l"))
    lines = ["| " + " | ".join(header) + " |", "|" + rule]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
