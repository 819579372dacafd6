"""What the benchmarks share: the machine's description and the timing of a call (`torch.utils.benchmark`)."""

import os
import platform

import torch
from torch.utils import benchmark


def cpu_name() -> str:
    """The CPU's model name (`/proc/cpuinfo` on Linux, else what `platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line naming what a measurement ran on: CPU, cores, torch's threads and version."""
    return f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"


def seconds_per_call(function, repeats: int) -> float:
    """Mean wall-clock seconds of one `function()` over `repeats` timed calls, after two untimed warm-up calls
    (`torch.utils.benchmark.Timer.timeit`, run with torch's current thread count)."""
    timer = benchmark.Timer(stmt="function()", globals={"function": function}, num_threads=torch.get_num_threads())
    return timer.timeit(repeats).mean
