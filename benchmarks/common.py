"""What the benchmarks share: the machine's description, the timing of a call (`torch.utils.benchmark`) and the mean
and spread of repeated runs. (Peak memory and markdown tables: `fastformer.classify.reporting`, shared with the job.)"""

import os
import platform
import statistics

import torch
from torch.utils import benchmark
from torch.utils._python_dispatch import TorchDispatchMode


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


def mean_std(values: list[float], single: float = 0.0) -> tuple[float, float]:
    """The mean of `values` and their sample standard deviation (n - 1); `single` stands for the spread of one
    value (0.0, or e.g. `float("nan")` where one run should not read as no spread at all)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else single)


class CountOps(TorchDispatchMode):
    """Counts the aten ops dispatched inside the `with` block (`count`): every call, forward and backward."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))
