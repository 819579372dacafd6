#!/usr/bin/env python
"""A GPU check ready to run: the CUDA-relevant correctness checks and the benchmarks that only mean something on a
GPU, in one run of under 8 minutes on one device, every table written as it grows.

Sections (`--sections`, in this order; each gets a share of the time left, see `SHARES`):

- `checks` ("CUDA checks"): small models (hidden 64, 4 heads, FFN 128, 2 layers, vocabulary 99) whose weights are
  redrawn (`tests/helpers.py` `randomize_`, std 0.3) so that tokens mix, run on the device:
  * forward + backward in float32, bfloat16 and float16 (autocast over float32 weights, and the weights themselves
    in that dtype), masked LM and causal LM with their losses, against a float64 CPU reference of the same weights:
    relative error `||a - r||_2 / ||r||_2` of the logits and of all parameter gradients (one vector), and every
    value finite;
  * the decoding state: the causal LM's logits fed one token at a time through its cache (after a prefill) against
    its parallel forward, in each precision;
  * `generate()` (greedy, batch 2, the second prompt left-padded) against the argmax of the same model's full
    forward, token by token, on the device: the fraction of new tokens that differ;
  * `sequence_chunk_size` (and, causal, with `recompute_causal_pool` and `chunk_size_feed_forward`) against the
    unchunked model: logits and gradients;
  * padding: the real tokens of a right-padded (masked LM) or left-padded (causal LM) row against the row alone.
  Each check prints its errors, its tolerances (`TOLERANCES`, output and gradients, by precision, times
  `--tolerance_scale`) and the same output error without the property under test (another model's weights, every
  token alone, chunks that pool only themselves, the padding not masked, another prompt): it passes when the errors
  are within the tolerances, every value is finite, and that control lies at least `CONTROL_FACTOR` times the output
  tolerance away (so the check can fail). A check that raises fails; the others still run.
- `encoder`: one training step (forward + backward, batch 1) of the long-context models of
  `benchmark_long_context.py` (hidden 256, 16 heads, FFN 1024, 2 layers, vocabulary 30,522: the encoder classifier,
  the causal stack, BERT with SDPA) at 4k to 64k tokens: tokens/s, BERT's time over the encoder's, peak memory.
- `clm`: causal LM training steps (forward, backward, AdamW) of the equal-budget LMs of `lm_equal_budget.py`
  (hidden 256, 4 heads, 4 layers, FFN 1024, vocabulary 8,192), Fastformer against GPT-2 with SDPA, the same number of
  tokens per step at every context: tokens/s and their ratio.
- `decode`: ms per new token, greedy one-token steps from a decoding state of the context's length, Fastformer's
  constant-size state against GPT-2's key/value cache (the models and states of `benchmark_generation.py`: hidden
  512, 8 heads, 4 layers, FFN 2048, vocabulary 50,257, float32, GPT-2's cache filled with random keys and values).
- `longest`: the longest power-of-two sequence one training step (forward + backward) runs on, with the memory
  options of the million-token run (`sequence_chunk_size`, `chunk_size_feed_forward`, and `recompute_causal_pool`
  for the causal stack), for the encoder classifier, the causal stack and BERT (SDPA, no option), doubling from
  `--longest_from` until out of memory, out of time or `--longest_max`.

Benchmarks run in `--dtype` (default: bfloat16 autocast on a GPU, what training there uses; float32 on a CPU, whose
bfloat16 is slow; decoding stays float32, as its CPU table). Times (`measure`): warm-up calls, then the mean of as
many calls as fit in about a second (at most `max_repeats`), timed between `torch.cuda.synchronize()` calls; peak
memory is `torch.cuda.max_memory_allocated` over those calls (model included), "-" on a CPU. Out of memory
(`torch.OutOfMemoryError`) prints "OOM" in the cell and frees the memory. On a GPU, `PYTORCH_CUDA_ALLOC_CONF`
defaults to `expandable_segments:True` (less fragmentation around the longest steps; printed with the machine).

Time budget: `--budget_s` seconds for the whole run, counted from the process's start (imports and CUDA start
included). Each section gets the time left times its share over the shares of the sections still to run; a case
whose time, guessed from the last case of its model, does not fit in what its section has left is not started
("skipped: budget"); a timer stops a case that overruns (SIGALRM, seen at the next Python statement); and should
one operation run on past the budget by `GRACE_S`, a watchdog thread ends the process (exit status 3). Every line
goes to stdout and to `--output_dir/gpu_check.md` (flushed line by line), every row also to `gpu_check.json`
(rewritten after each row), so a killed run leaves what it had measured. Exit status: 0 when every check passed and
no section failed, 1 otherwise.

`--smoke` runs every section on the CPU at tiny lengths (`SMOKE`, the same models and code paths) in well under a
minute of CPU time; `tests/test_gpu_check.py` runs it.

    python benchmarks/gpu_check.py --output_dir outputs/gpu-check          # on the GPU machine, < 8 minutes
    python benchmarks/gpu_check.py --smoke --output_dir outputs/gpu-check-smoke   # CPU, tiny lengths (the tests)
"""

import argparse
import contextlib
import copy
import gc
import json
import os
import platform
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import benchmark_generation
import benchmark_long_context
import lm_equal_budget
import torch
import transformers
from common import machine

from fastformer import FastformerConfig, FastformerForCausalLM, FastformerForMaskedLM
from fastformer.classify.reporting import markdown_table


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import randomize_  # noqa: E402  (one definition of "weights large enough that tokens mix")


SECTIONS = ("checks", "encoder", "clm", "decode", "longest")
TITLES = {
    "checks": "CUDA checks",
    "encoder": "Encoder training step against BERT (SDPA)",
    "clm": "Causal LM training against GPT-2 (SDPA)",
    "decode": "Decoding against GPT-2 with its key/value cache",
    "longest": "Longest sequence one device trains on",
}
SHARES = {"checks": 0.2, "encoder": 0.18, "clm": 0.12, "decode": 0.18, "longest": 0.32}
MIN_SECTION_S = 3.0  # a section with less time than this left is skipped whole
GRACE_S = 20.0  # past the budget by this much (one operation overran its timer), the run stops and exits 3

# The sizes of a run on the device, and of the `--smoke` run on a CPU (the same code paths at tiny lengths).
FULL = dict(
    check_seq=1024,
    check_chunk=128,
    generate_tokens=48,
    encoder_lengths=[4096, 8192, 16384, 32768, 65536],
    clm_contexts=[512, 2048, 8192, 32768],
    clm_tokens=32768,
    decode_contexts=[1024, 4096, 16384, 32768],
    decode_batches=[1, 8],
    decode_steps=32,
    longest_from=131072,
    longest_max=2**24,
    sequence_chunk=65536,
    target_s=1.0,
    max_repeats=20,
    budget_s=450.0,
)
SMOKE = dict(
    check_seq=96,
    check_chunk=32,
    generate_tokens=8,
    encoder_lengths=[64, 128],
    clm_contexts=[32, 64],
    clm_tokens=128,
    decode_contexts=[16, 64],
    decode_batches=[1, 2],
    decode_steps=2,
    longest_from=128,
    longest_max=256,
    sequence_chunk=64,
    target_s=0.02,
    max_repeats=2,
    budget_s=240.0,
)

# ---------------------------------------------------------------------------------------------- checks: settings

CHECK_CONFIG = dict(
    vocab_size=99,
    hidden_size=64,
    num_attention_heads=4,
    intermediate_size=128,
    num_hidden_layers=2,
    hidden_dropout_prob=0.0,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
# Precisions: (autocast dtype or None, weight dtype).
PRECISIONS = {
    "float32": (None, torch.float32),
    "bfloat16 autocast": (torch.bfloat16, torch.float32),
    "float16 autocast": (torch.float16, torch.float32),
    "bfloat16 weights": (None, torch.bfloat16),
    "float16 weights": (None, torch.float16),
}
# Tolerances of the relative errors (output, gradients) by precision. Measured on a CPU against float64 (seeds 0 to
# 2, 128 to 1,024 tokens): float32 <= 4e-6; bfloat16 outputs <= 0.038, gradients <= 0.088 under autocast and <= 0.131
# with bfloat16 weights (whose gradients are themselves rounded to bfloat16); float16 outputs <= 0.005, gradients
# <= 0.011. Another model's weights lie 1.2 to 1.4 away.
TOLERANCES = {
    "float32": (1e-4, 1e-4),
    "bfloat16 autocast": (0.1, 0.15),
    "float16 autocast": (0.02, 0.04),
    "bfloat16 weights": (0.1, 0.25),
    "float16 weights": (0.02, 0.04),
}
CONTROL_FACTOR = 4.0


class OutOfBudget(Exception):
    """A section's time ran out (raised by the `deadline` timer, or before starting a case that would not fit)."""


# ------------------------------------------------------------------------------------------------ the report


class Report:
    """Every line to stdout and to `gpu_check.md`, flushed at once; every table row also into `gpu_check.json`
    (rewritten whole after each row, through a temporary file, so a killed run leaves a readable file)."""

    def __init__(self, output_dir: Path):
        output_dir.mkdir(parents=True, exist_ok=True)
        self.markdown = open(output_dir / "gpu_check.md", "w")
        self.json_path = output_dir / "gpu_check.json"
        self.data = {"machine": None, "sections": {}}
        self.section = None
        self.lock = threading.RLock()  # the watchdog (`start_watchdog`) writes its last line from another thread

    def line(self, text: str = ""):
        with self.lock:
            print(text, flush=True)
            self.markdown.write(text + "\n")
            self.markdown.flush()

    def open_section(self, name: str):
        with self.lock:
            self.section = name
            self.data["sections"][name] = {"title": TITLES[name], "status": "running", "tables": {}, "notes": []}
            self.line(f"\n## {TITLES[name]}\n")
            self.save()

    def note(self, text: str):
        with self.lock:
            self.data["sections"][self.section]["notes"].append(text)
            self.line(text)
            self.save()

    def table(self, key: str, columns: list[str], align: str = ""):
        """Print a table's header; its rows follow one by one (`row`)."""
        with self.lock:
            self.data["sections"][self.section]["tables"][key] = {"columns": columns, "rows": []}
            self.line(markdown_table(columns, [], align))
            self.save()

    def row(self, key: str, cells: list, values: dict | None = None):
        """One row: its printed cells, and in the JSON the cells by column plus the raw `values`."""
        with self.lock:
            table = self.data["sections"][self.section]["tables"][key]
            table["rows"].append({"cells": dict(zip(table["columns"], map(str, cells))), "values": values or {}})
            self.line("| " + " | ".join(str(cell) for cell in cells) + " |")
            self.save()

    def close_section(self, status: str):
        with self.lock:
            self.data["sections"][self.section]["status"] = status
            self.save()

    def save(self):
        with self.lock:
            temporary = self.json_path.with_suffix(".json.tmp")
            with open(temporary, "w") as f:
                json.dump(self.data, f, indent=1, default=str)
            os.replace(temporary, self.json_path)


# ------------------------------------------------------------------------------------------ time and memory


class Budget:
    """The run's deadline (`total_s` from `start`) and each section's share of what is left when it opens."""

    def __init__(self, total_s: float, sections, start: float):
        self.end = start + total_s
        self.waiting = {name: SHARES[name] for name in sections}

    def left(self) -> float:
        return self.end - time.monotonic()

    def open(self, name: str) -> float:
        """The section's deadline: now + (time left) x its share / (shares of the sections not yet opened)."""
        share = self.waiting[name] / sum(self.waiting.values())
        del self.waiting[name]
        return time.monotonic() + max(self.left(), 0.0) * share


def start_watchdog(report: Report, until: float) -> threading.Timer:
    """The last resort: at `until` (monotonic), from a thread of its own (it runs while the main thread waits in a
    long operation that no Python timer can interrupt), print why and end the process with status 3. Everything
    measured so far is already in the report's files."""

    def stop():
        report.line(f"\nstopped: the run passed its budget by {GRACE_S:.0f} s (one operation overran its timer).")
        with report.lock:
            report.data["summary"] = {"stopped": "over budget"}
            report.save()
        os._exit(3)

    timer = threading.Timer(max(until - time.monotonic(), 0.0), stop)
    timer.daemon = True
    timer.start()
    return timer


@contextlib.contextmanager
def deadline(until: float):
    """Raise `OutOfBudget` in the block once `time.monotonic()` passes `until` (SIGALRM; the main thread sees it at
    its next Python statement, e.g. after a CUDA synchronize returns)."""
    seconds = until - time.monotonic()
    if seconds <= 0:
        raise OutOfBudget

    def ring(signum, frame):
        raise OutOfBudget

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def allocated(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def free(device: torch.device, before: int | None = None):
    """Give the device back what the last case held: Python's reference cycles (a full `gc.collect()`, ~0.5 s with
    transformers loaded, so only when more is allocated than `before` the case, or always when `before` is None),
    then the CUDA allocator's cached blocks. On a CPU, reference counting has freed it all already."""
    if device.type != "cuda":
        return
    torch.cuda.synchronize(device)
    if before is None or torch.cuda.memory_allocated(device) > before:
        gc.collect()
    torch.cuda.empty_cache()


def reset_peak(device: torch.device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    """`torch.cuda.max_memory_allocated` since the last `reset_peak`, in MiB; None on a CPU."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def attempt(run, until: float, case):
    """`case()` under a `deadline(until)`: its result, or "OOM" (out of device memory, memory freed) or
    "skipped: budget"."""
    before = allocated(run.device)
    try:
        with deadline(until):
            return case()
    except torch.OutOfMemoryError:
        return "OOM"
    except OutOfBudget:
        return "skipped: budget"
    finally:
        free(run.device, before)


def measure(run, step, until: float) -> dict:
    """Time `step()`: a cold warm-up call; when it took less than `target_s`, a second, timed warm-up call, from
    which `repeats` calls fit in `target_s` (1 to `max_repeats`, fewer when `until` is near); their mean, timed
    between two `synchronize()` calls. Returns seconds per call, the calls timed (0: only the cold call fitted, its
    time is given) and the peak memory in MiB over all the calls (None on a CPU)."""
    device, sizes = run.device, run.sizes

    def timed(calls: int) -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            step()
        sync(device)
        return (time.perf_counter() - start) / calls

    reset_peak(device)
    cold = timed(1)
    warm = timed(1) if cold < sizes["target_s"] and time.monotonic() + 2 * cold < until else cold
    repeats = max(1, min(sizes["max_repeats"], int(sizes["target_s"] / max(warm, 1e-9))))
    repeats = min(repeats, int(0.8 * (until - time.monotonic()) / max(warm, 1e-9)))
    if repeats < 1:
        return {"seconds": cold, "calls": 0, "peak_mib": peak_mib(device)}
    return {"seconds": timed(repeats), "calls": repeats, "peak_mib": peak_mib(device)}


def autocast(run, dtype=None):
    """`torch.autocast` on the run's device to `dtype` (the benchmarks' `--dtype` if None); off for float32."""
    dtype = dtype or run.dtype
    return torch.autocast(run.device.type, dtype=dtype, enabled=dtype != torch.float32)


class Estimate:
    """Whether a case may start: its time guessed from the last measured case of the same model, scaled by
    `(length / last length) ** power` (1: linear; 2: quadratic attention), times `calls` (its calls, with some room
    for the build), must end before `until`. A model not measured yet may always start."""

    def __init__(self):
        self.last = {}

    def record(self, model: str, length: int, seconds: float):
        self.last[model] = (length, seconds)

    def fits(self, model: str, length: int, power: float, calls: int, until: float) -> bool:
        if model not in self.last:
            return True
        last_length, seconds = self.last[model]
        guess = seconds * (length / last_length) ** power * calls
        return time.monotonic() + guess < until


def milliseconds(result) -> str:
    """A table cell from a measurement: its time in ms, or its status (OOM, skipped)."""
    return result if isinstance(result, str) else f"{result['seconds'] * 1e3:.2f}"


def tokens_per_s(result, tokens: int) -> str:
    if isinstance(result, str):
        return result
    star = "" if result["calls"] else " (1 call)"
    return f"{tokens / result['seconds']:,.0f}{star}"


def cold_note(report, cold: bool):
    if cold:
        report.note("\n(1 call): only the warm-up call fitted in the budget; its time is the cold one.")


def mib(result) -> str:
    if isinstance(result, str) or result.get("peak_mib") is None:
        return "-"
    return f"{result['peak_mib']:,.0f}"


def ratio(numerator, denominator, fmt="{:.2f}x") -> str:
    if isinstance(numerator, str) or isinstance(denominator, str):
        return "-"
    return fmt.format(numerator["seconds"] / denominator["seconds"])


# ---------------------------------------------------------------------------------------------------- checks


def relative_error(actual: torch.Tensor, reference: torch.Tensor) -> float:
    """`||actual - reference||_2 / ||reference||_2` over all elements, in float64 on the CPU."""
    actual, reference = actual.detach().double().cpu(), reference.detach().double().cpu()
    return ((actual - reference).norm() / reference.norm()).item()


def check_model(kind: str, seq: int, seed: int = 0, **options):
    """A masked LM (`kind="encoder"`) or causal LM (`"causal"`) of `CHECK_CONFIG` on the CPU in float32, its weights
    redrawn by `randomize_(seed)` (the same weights for every `options`, which change no parameter)."""
    model_class = FastformerForCausalLM if kind == "causal" else FastformerForMaskedLM
    config = FastformerConfig(**CHECK_CONFIG, max_position_embeddings=seq + 64, is_decoder=kind == "causal", **options)
    return randomize_(model_class(config), seed=seed)


def check_batch(seq: int, device) -> dict:
    """Two seeded rows of `seq` token ids `(2, seq)`, and as labels the ids themselves (the causal LM shifts them
    inside; the masked LM scores every position: more terms in the loss than a 15% masking, so the gradients'
    rounding errors average down as in a long training batch)."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, CHECK_CONFIG["vocab_size"], (2, seq), generator=generator).to(device)
    return {"input_ids": input_ids, "labels": input_ids.clone()}


def precision(device, autocast_dtype):
    """The autocast context of a precision of `PRECISIONS` (`autocast_dtype` None: off)."""
    return torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None)


def forward_backward(model, batch: dict, context) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The logits `(batch, seq, vocab)` of the model's forward under `context` and all its parameter gradients of
    its own loss, concatenated into one vector; and whether every one of them (and the loss) is finite."""
    model.zero_grad(set_to_none=True)
    with context:
        out = model(**batch)
    out.loss.backward()
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    finite = bool(torch.isfinite(out.loss)) and bool(torch.isfinite(out.logits).all()) and bool(grads.isfinite().all())
    return out.logits.detach(), grads, finite


def precision_errors(model, batch: dict, reference: tuple, context) -> dict:
    """`model`'s logits and gradients under `context` against `reference` (logits, gradients): relative errors."""
    logits, grads, finite = forward_backward(model, batch, context)
    return {
        "error": relative_error(logits, reference[0]),
        "gradient_error": relative_error(grads, reference[1]),
        "finite": finite,
    }


@torch.no_grad()
def decoding_errors(model, input_ids, context) -> dict:
    """The logits of `input_ids` `(batch, seq)` fed through the cache (a prefill of half the tokens, then one token
    at a time) against the parallel forward's; control: every token run alone (no context)."""
    with context:
        full = model(input_ids, use_cache=False).logits
        prefill = input_ids.shape[1] // 2
        out = model(input_ids[:, :prefill], use_cache=True)
        logits, cache = [out.logits], out.cache
        for t in range(prefill, input_ids.shape[1]):
            out = model(input_ids[:, t : t + 1], cache=cache, use_cache=True)
            logits.append(out.logits)
            cache = out.cache
        incremental = torch.cat(logits, dim=1)
        alone = model(input_ids.reshape(-1, 1), use_cache=False).logits.view(*input_ids.shape, -1)
    return {
        "error": relative_error(incremental, full),
        "control": relative_error(alone, full),
        "finite": bool(torch.isfinite(incremental).all()),
    }


@torch.no_grad()
def greedy_by_full_forward(model, prompt, attention_mask, new_tokens: int) -> torch.Tensor:
    """Greedy continuation computed without a cache: each new token is the argmax of the full forward's last
    logits over the prompt and the tokens so far."""
    sequence, mask = prompt, attention_mask
    for _ in range(new_tokens):
        logits = model(sequence, attention_mask=mask, use_cache=False).logits[:, -1]
        sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return sequence


def generate_errors(model, prompt, attention_mask, new_tokens: int) -> dict:
    """`generate()` (greedy, with its cache) against `greedy_by_full_forward`: the fraction of the new tokens that
    differ; control: the fraction that differ when the fifth prompt token changes."""
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    generated = model.generate(prompt, attention_mask=attention_mask, **kwargs)
    expected = greedy_by_full_forward(model, prompt, attention_mask, new_tokens)
    other_prompt = prompt.clone()
    other_prompt[:, 4] = 3 + (other_prompt[:, 4] - 2) % (CHECK_CONFIG["vocab_size"] - 3)
    other = model.generate(other_prompt, attention_mask=attention_mask, **kwargs)
    start = prompt.shape[1]
    return {
        "error": (generated[:, start:] != expected[:, start:]).float().mean().item(),
        "control": (other[:, start:] != generated[:, start:]).float().mean().item(),
    }


def chunking_errors(default, chunked, batch: dict, chunk: int, context_of) -> dict:
    """The chunked model's logits and gradients against the unchunked model's (the same weights), each forward under
    `context_of()`; control: every `chunk` positions run alone (chunks that exchanged nothing)."""
    logits, grads, finite = forward_backward(default, batch, context_of())
    chunk_logits, chunk_grads, chunk_finite = forward_backward(chunked, batch, context_of())
    ids = batch["input_ids"]
    with torch.no_grad(), context_of():
        local = torch.cat([default(input_ids=ids[:, i : i + chunk]).logits for i in range(0, ids.shape[1], chunk)], 1)
    return {
        "error": relative_error(chunk_logits, logits),
        "gradient_error": relative_error(chunk_grads, grads),
        "control": relative_error(local, logits),
        "finite": finite and chunk_finite,
    }


@torch.no_grad()
def padding_errors(model, input_ids, causal: bool, context) -> dict:
    """Row 1 of `input_ids` `(2, seq)` keeps its last (causal: left padding) or first (encoder: right padding) two
    thirds and is padded to `seq`: the logits of its real tokens in the padded batch against the row alone;
    control: the padded row run without its attention mask."""
    seq = input_ids.shape[1]
    real = seq - seq // 3
    pad = slice(0, seq - real) if causal else slice(real, seq)
    keep = slice(seq - real, seq) if causal else slice(0, real)
    padded, mask = input_ids.clone(), torch.ones_like(input_ids)
    padded[1, pad], mask[1, pad] = CHECK_CONFIG["pad_token_id"], 0
    with context:
        in_batch = model(input_ids=padded, attention_mask=mask).logits[1, keep]
        alone = model(input_ids=padded[1:, keep]).logits[0]
        unmasked = model(input_ids=padded).logits[1, keep]
    return {
        "error": relative_error(in_batch, alone),
        "control": relative_error(unmasked, alone),
        "finite": bool(torch.isfinite(in_batch).all()),
    }


class Checks:
    """One printed row per check, and the count of passes, failures and checks not run."""

    columns = ["check", "model", "precision", "output error", "gradient error", "tolerance", "control", "result", "s"]

    def __init__(self, report: Report, tolerance_scale: float):
        self.report, self.scale = report, tolerance_scale
        self.passed = self.failed = self.not_run = 0

    @staticmethod
    def verdict(values: dict, tolerance: float, gradient_tolerance: float | None = None) -> str:
        """PASS when every value is finite, `values["error"]` (and `["gradient_error"]`) lies within its tolerance,
        and the control (the same output error without the property under test) lies above 0 and at least
        `CONTROL_FACTOR` times the output tolerance away: a check that could not tell the property from its absence
        fails."""
        within = values["error"] <= tolerance
        if "gradient_error" in values:
            within = within and values["gradient_error"] <= gradient_tolerance
        telling = values["control"] > 0 and values["control"] >= CONTROL_FACTOR * tolerance
        return "PASS" if values.get("finite", True) and within and telling else "FAIL"

    def record(self, check: str, model: str, precision_name: str, values: dict, tolerances: tuple, seconds: float):
        """Print and count one check; `tolerances` = (output, gradient), scaled by `--tolerance_scale`."""
        tolerance, gradient_tolerance = (t * self.scale for t in tolerances)
        result = self.verdict(values, tolerance, gradient_tolerance)
        self.passed += result == "PASS"
        self.failed += result == "FAIL"
        gradient = values.get("gradient_error")
        shown = f"{tolerance:.1e}" + (f" / {gradient_tolerance:.1e}" if gradient is not None else "")
        cells = [
            check,
            model,
            precision_name,
            f"{values['error']:.2e}",
            "-" if gradient is None else f"{gradient:.2e}",
        ]
        cells += [shown, f"{values['control']:.2e}", result + ("" if values.get("finite", True) else " (not finite)")]
        values = {**values, "tolerance": tolerance, "gradient_tolerance": gradient_tolerance, "result": result}
        self.report.row("checks", cells + [f"{seconds:.1f}"], values)

    def run(self, run, until: float, check: str, model: str, precision_name: str, tolerances: tuple, measure_check):
        """`measure_check()` (returning the values of `record`) under the section's deadline: a crash is a failure
        (printed, the other checks still run), out of memory or out of time a check not run."""
        outcome, start = "skipped: budget", time.monotonic()
        if start < until:
            try:
                outcome = attempt(run, until, measure_check)
            except Exception as error:
                traceback.print_exc()
                outcome = f"FAIL ({type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]})"
        seconds = time.monotonic() - start
        if isinstance(outcome, dict):
            self.record(check, model, precision_name, outcome, tolerances, seconds)
            return
        self.failed += outcome.startswith("FAIL")
        self.not_run += not outcome.startswith("FAIL")
        cells = [check, model, precision_name, "-", "-", "-", "-", outcome, f"{seconds:.1f}"]
        self.report.row("checks", cells, {"result": outcome})


def run_checks(run, until: float):
    report, sizes, device = run.report, run.sizes, run.device
    seq, chunk = sizes["check_seq"], sizes["check_chunk"]
    report.note(
        f"Models: hidden {CHECK_CONFIG['hidden_size']}, {CHECK_CONFIG['num_attention_heads']} heads, FFN "
        f"{CHECK_CONFIG['intermediate_size']}, {CHECK_CONFIG['num_hidden_layers']} layers, vocabulary "
        f"{CHECK_CONFIG['vocab_size']}, weights redrawn (std 0.3), batch 2 x {seq} tokens, on {device}. Errors: "
        f"relative L2 `||a - r|| / ||r||` (generate: the fraction of new tokens that differ); tolerance: output "
        f"[/ gradients]; control: the same output error without the property under test. PASS: errors within the "
        f"tolerances, values finite, control >= {CONTROL_FACTOR:g} x the output tolerance.\n"
    )
    report.table("checks", Checks.columns, "lllrrrrlr")
    checks, batch = run.checks, check_batch(seq, device)

    def on_device(model, weight_dtype=torch.float32, train=True):
        return copy.deepcopy(model).to(device=device, dtype=weight_dtype).train(train)

    for kind in ("encoder", "causal"):
        model, cpu_batch = check_model(kind, seq), check_batch(seq, "cpu")
        no_autocast = contextlib.nullcontext()
        reference = forward_backward(copy.deepcopy(model).double().train(), cpu_batch, no_autocast)[:2]
        other = forward_backward(check_model(kind, seq, seed=1).double().train(), cpu_batch, no_autocast)[:2]
        control = relative_error(other[0], reference[0])
        for name, (autocast_dtype, weight_dtype) in PRECISIONS.items():
            checks.run(
                run,
                until,
                "forward+backward vs float64 CPU",
                kind,
                name,
                TOLERANCES[name],
                lambda a=autocast_dtype, w=weight_dtype: {
                    **precision_errors(on_device(model, w), batch, reference, precision(device, a)),
                    "control": control,
                },
            )

    causal = check_model("causal", seq)
    for name in ("float32", "bfloat16 autocast", "bfloat16 weights", "float16 weights"):
        autocast_dtype, weight_dtype = PRECISIONS[name]
        checks.run(
            run,
            until,
            "decoding state (prefill, then 1 token at a time) vs full forward",
            "causal",
            name,
            TOLERANCES[name],
            lambda a=autocast_dtype, w=weight_dtype: decoding_errors(
                on_device(causal, w, train=False), batch["input_ids"], precision(device, a)
            ),
        )

    def generate_check():
        prompt = batch["input_ids"][:, :16].clone()
        mask = torch.ones_like(prompt)
        prompt[1, :4], mask[1, :4] = CHECK_CONFIG["pad_token_id"], 0  # the second prompt left-padded
        return generate_errors(on_device(causal, train=False), prompt, mask, sizes["generate_tokens"])

    checks.run(
        run, until, "generate() greedy vs argmax of the full forward", "causal", "float32", (0.0, 0.0), generate_check
    )

    memory_options = {
        "encoder": {"sequence_chunk_size": chunk},
        "causal": {"sequence_chunk_size": chunk},
        "causal, all options": {
            "sequence_chunk_size": chunk,
            "recompute_causal_pool": True,
            "chunk_size_feed_forward": chunk // 2,
        },
    }
    for label, options in memory_options.items():
        kind = label.split(",")[0]
        default, chunked = check_model(kind, seq), check_model(kind, seq, **options)
        for name in ("float32", "bfloat16 autocast"):
            autocast_dtype = PRECISIONS[name][0]
            checks.run(
                run,
                until,
                "sequence_chunk_size vs unchunked",
                label,
                name,
                TOLERANCES[name],
                lambda a=autocast_dtype, d=default, c=chunked: chunking_errors(
                    on_device(d), on_device(c), batch, chunk, lambda: precision(device, a)
                ),
            )

    for kind in ("encoder", "causal"):
        model = check_model(kind, seq)
        for name in ("float32", "bfloat16 autocast"):
            autocast_dtype = PRECISIONS[name][0]
            checks.run(
                run,
                until,
                "padded row vs the row alone",
                kind,
                name,
                TOLERANCES[name],
                lambda a=autocast_dtype, m=model, k=kind: padding_errors(
                    on_device(m, train=False), batch["input_ids"], k == "causal", precision(device, a)
                ),
            )

    report.line()
    report.note(f"checks: {checks.passed} passed, {checks.failed} failed, {checks.not_run} not run")


# ------------------------------------------------------------------------------------------------ benchmarks


def long_context_step(run, name: str, length: int, memory_options: bool):
    """One training step (forward under autocast, then backward) of `benchmark_long_context.build(name, length)`,
    built on the device; with `memory_options`, the million-token run's (`sequence_chunk_size`,
    `chunk_size_feed_forward`, `recompute_causal_pool` for the causal stack). Returns (step, model)."""
    chunk = run.sizes["sequence_chunk"]
    with torch.device(run.device):
        model, loss = benchmark_long_context.build(name, length, memory_options, chunk, chunk, name == "causal")

    def step():
        model.zero_grad(set_to_none=True)
        with autocast(run):
            value = loss()
        value.backward()

    return step, model


def run_encoder(run, until: float):
    report, lengths = run.report, run.sizes["encoder_lengths"]
    lc = benchmark_long_context
    report.note(
        f"Models of benchmark_long_context.py: hidden {lc.HIDDEN}, {lc.HEADS} heads, FFN {lc.FFN}, {lc.LAYERS} "
        f"layers, vocabulary {lc.VOCAB}, batch 1, no memory option; encoder classifier and causal stack (no position "
        f"table), BERT classifier with SDPA. One step = forward under {run.dtype_name} + backward. Peak: "
        f"max_memory_allocated over the timed calls, model included.\n"
    )
    models = ("encoder", "causal", "bert")
    columns = ["tokens"] + [f"{m} tokens/s" for m in models] + ["BERT time / encoder time"]
    columns += [f"{m} peak MiB" for m in models]
    report.table("encoder", columns, "r" * len(columns))
    estimate, cold = run.estimate, False  # shared with the longest-sequence section (the same models)
    for length in lengths:
        results = {}
        for name in models:
            if not estimate.fits(name, length, 2 if name == "bert" else 1, 4, until):
                results[name] = "skipped: budget"
                continue

            def case(name=name, length=length):
                step, _ = long_context_step(run, name, length, memory_options=False)
                return measure(run, step, until)

            results[name] = attempt(run, until, case)
            if not isinstance(results[name], str):
                estimate.record(name, length, results[name]["seconds"])
                cold |= results[name]["calls"] == 0
        report.row(
            "encoder",
            [f"{length:,}"]
            + [tokens_per_s(results[m], length) for m in models]
            + [ratio(results["bert"], results["encoder"])]
            + [mib(results[m]) for m in models],
            {"length": length, **results},
        )
    cold_note(report, cold)


def equal_budget_lm(run, arm: str, context: int):
    """The equal-budget LM `arm` ("fastformer" or "gpt2", with SDPA) of `lm_equal_budget.py`, at that script's
    default sizes, with `context` positions, built on the device."""
    args = lm_equal_budget_defaults()
    args.context = context
    with torch.device(run.device):
        model = lm_equal_budget.build_causal_model(arm, args, args.vocab_size, 0)
    if arm == "gpt2" and model.config._attn_implementation != "sdpa":
        model.set_attn_implementation("sdpa")
    return model.train()


def lm_equal_budget_defaults():
    """`lm_equal_budget.py`'s default settings (hidden 256, 4 heads, 4 layers, FFN 1,024, vocabulary 8,192, no
    dropout, no ablation)."""
    return lm_equal_budget.parse_args(["--output_dir", "unused"])


def run_clm(run, until: float):
    report, device, sizes = run.report, run.device, run.sizes
    lm = lm_equal_budget_defaults()
    report.note(
        f"Models of lm_equal_budget.py: hidden {lm.hidden_size}, {lm.heads} heads, {lm.layers} layers, FFN {lm.ffn}, "
        f"vocabulary {lm.vocab_size}, dropout {lm.dropout:g}; GPT-2 with SDPA. One step = forward under "
        f"{run.dtype_name}, next-token cross-entropy, backward, AdamW; {sizes['clm_tokens']:,} tokens per step at "
        f"every context.\n"
    )
    arms = ("fastformer", "gpt2")
    columns = ["context", "batch", "Fastformer tokens/s", "GPT-2 tokens/s", "Fastformer / GPT-2 tokens/s"]
    columns += ["Fastformer peak MiB", "GPT-2 peak MiB"]
    report.table("clm", columns, "r" * len(columns))
    estimate, cold = Estimate(), False
    for context in sizes["clm_contexts"]:
        batch = max(1, sizes["clm_tokens"] // context)
        results = {}
        for arm in arms:
            if not estimate.fits(arm, context, 1, 4, until):
                results[arm] = "skipped: budget"
                continue

            def case(arm=arm, context=context, batch=batch):
                model = equal_budget_lm(run, arm, context)
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
                ids = torch.randint(3, lm.vocab_size, (batch, context), device=device)

                def step():
                    optimizer.zero_grad(set_to_none=True)
                    with autocast(run):
                        loss = lm_equal_budget.next_token_loss(model, ids)
                    loss.backward()
                    optimizer.step()

                return measure(run, step, until)

            results[arm] = attempt(run, until, case)
            if not isinstance(results[arm], str):
                estimate.record(arm, context, results[arm]["seconds"])
                cold |= results[arm]["calls"] == 0
        tokens = batch * context
        report.row(
            "clm",
            [f"{context:,}", batch, tokens_per_s(results["fastformer"], tokens), tokens_per_s(results["gpt2"], tokens)]
            + [ratio(results["gpt2"], results["fastformer"])]
            + [mib(results[a]) for a in arms],
            {"context": context, "batch": batch, **results},
        )
    cold_note(report, cold)


def decoding_models(run, positions: int):
    """Fastformer and GPT-2 (SDPA) at `benchmark_generation.py`'s size, float32, eval mode, on the device."""
    g = benchmark_generation
    with torch.device(run.device):
        fastformer, gpt2 = g.build_models(g.VOCAB, g.HIDDEN, g.HEADS, g.LAYERS, g.FFN, positions, "sdpa")
    return {"fastformer": fastformer, "gpt2": gpt2}


def time_decoding(run, model, state, batch: int, until: float) -> dict:
    """Seconds per greedy one-token step: a warm-up run, then runs of `decode_steps` steps, each from a copy of
    `state` (copied outside the timing), as many as fit in `target_s` (1 to `max_repeats`); the median run."""
    steps, device = run.sizes["decode_steps"], run.device
    timings = []
    runs = 1 + run.sizes["max_repeats"]
    with torch.no_grad():
        for index in range(runs):
            cache = copy.deepcopy(state)
            token = torch.full((batch, 1), 5, device=device)
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                token = model(token, cache=cache, use_cache=True).logits[:, -1:].argmax(-1)
            sync(device)
            elapsed = time.perf_counter() - start
            if index:
                timings.append(elapsed / steps)
            spent = sum(timings) * steps
            if index and (spent >= run.sizes["target_s"] or time.monotonic() + 2 * elapsed > until):
                break
            del cache
    timings.sort()
    return {"seconds": timings[len(timings) // 2], "calls": len(timings), "peak_mib": peak_mib(device)}


def run_decode(run, until: float):
    report, device, sizes = run.report, run.device, run.sizes
    g = benchmark_generation
    report.note(
        f"Models of benchmark_generation.py: hidden {g.HIDDEN}, {g.HEADS} heads, {g.LAYERS} layers, FFN {g.FFN}, "
        f"vocabulary {g.VOCAB}, float32, no_grad; {sizes['decode_steps']} greedy steps per run, median run. "
        f"Fastformer's state from a real prefill of the context, GPT-2's cache filled with random keys/values. "
        f"Peak: max_memory_allocated during the runs, both models included.\n"
    )
    columns = ["batch", "context", "Fastformer ms/token", "GPT-2 ms/token", "GPT-2 / Fastformer"]
    columns += ["Fastformer state", "GPT-2 cache", "peak MiB"]
    report.table("decode", columns, "r" * len(columns))
    positions = max(sizes["decode_contexts"]) + sizes["decode_steps"] + 2
    models = attempt(run, until, lambda: decoding_models(run, positions))
    if isinstance(models, str):
        report.note(f"models not built: {models}")
        return
    makers = {"fastformer": g.fastformer_state, "gpt2": g.gpt2_state}
    estimate = Estimate()
    for batch in sizes["decode_batches"]:
        for context in sizes["decode_contexts"]:
            results, sizes_bytes = {}, {}
            for name, model in models.items():
                if not estimate.fits(f"{name}@{batch}", context, 1, 1, until):
                    results[name] = "skipped: budget"
                    continue

                def case(name=name, model=model, batch=batch, context=context):
                    reset_peak(device)
                    with torch.no_grad(), torch.device(device):
                        state = makers[name](model, batch, context)
                    sizes_bytes[name] = g.cache_bytes(state)
                    return time_decoding(run, model, state, batch, until)

                results[name] = attempt(run, until, case)
                if not isinstance(results[name], str):
                    estimate.record(f"{name}@{batch}", context, results[name]["seconds"] * 3 * sizes["decode_steps"])
            peaks = [r["peak_mib"] for r in results.values() if not isinstance(r, str) and r["peak_mib"] is not None]
            report.row(
                "decode",
                [
                    batch,
                    f"{context:,}",
                    milliseconds(results["fastformer"]),
                    milliseconds(results["gpt2"]),
                    ratio(results["gpt2"], results["fastformer"], "{:.1f}x"),
                    f"{sizes_bytes['fastformer'] / 1024:.1f} KiB" if "fastformer" in sizes_bytes else "-",
                    f"{sizes_bytes['gpt2'] / 2**20:.1f} MiB" if "gpt2" in sizes_bytes else "-",
                    f"{max(peaks):,.0f}" if peaks else "-",
                ],
                {"batch": batch, "context": context, **results, "state_bytes": sizes_bytes},
            )


def one_long_step(run, name: str, length: int) -> dict:
    """One training step at `length` tokens (fresh model), timed once with no warm-up as the long-context
    benchmark does at these lengths: seconds, peak MiB, whether every gradient is finite."""
    step, model = long_context_step(run, name, length, memory_options=name != "bert")
    reset_peak(run.device)
    sync(run.device)
    start = time.perf_counter()
    step()
    sync(run.device)
    seconds = time.perf_counter() - start
    finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    return {"seconds": seconds, "calls": 1, "peak_mib": peak_mib(run.device), "finite": finite}


def run_longest(run, until: float):
    report, sizes = run.report, run.sizes
    chunk = sizes["sequence_chunk"]
    options = {
        "encoder": f"sequence_chunk_size={chunk}, chunk_size_feed_forward={chunk}",
        "causal": f"sequence_chunk_size={chunk}, chunk_size_feed_forward={chunk}, recompute_causal_pool",
        "bert": "none (SDPA)",
    }
    report.note(
        f"Models as in the encoder section; one step (forward under {run.dtype_name} + backward, no warm-up) per "
        f"length, doubling from {sizes['longest_from']:,} to at most {sizes['longest_max']:,} tokens. Each model "
        f"gets an equal part of the section's time left when it starts.\n"
    )
    columns = ["model", "tokens", "fwd+bwd s", "tokens/s", "peak MiB", "gradients finite"]
    report.table("attempts", columns, "lrrrrl")
    longest = {}
    names = list(options)
    for index, name in enumerate(names):
        model_until = time.monotonic() + (until - time.monotonic()) / (len(names) - index)
        length, best, stop = sizes["longest_from"], None, "max length"
        while length <= sizes["longest_max"]:
            # Guessed from the last step of this model, here or in the encoder section (the memory options'
            # recomputation and the build: x2).
            if not run.estimate.fits(name, length, 2 if name == "bert" else 1, 2, model_until):
                report.row("attempts", [name, f"{length:,}", "skipped: budget", "-", "-", "-"], {"model": name})
                stop = f"budget (next: {length:,})"
                break
            result = attempt(run, model_until, lambda: one_long_step(run, name, length))
            if isinstance(result, str):
                report.row("attempts", [name, f"{length:,}", result, "-", "-", "-"], {"model": name, "length": length})
                stop = f"{'OOM' if result == 'OOM' else 'budget'} at {length:,}"
                break
            report.row(
                "attempts",
                [
                    name,
                    f"{length:,}",
                    f"{result['seconds']:.2f}",
                    f"{length / result['seconds']:,.0f}",
                    mib(result),
                    "yes" if result["finite"] else "NO",
                ],
                {"model": name, "length": length, **result},
            )
            if not result["finite"]:
                stop = f"non-finite gradients at {length:,}"
                break
            best = (length, result)
            run.estimate.record(name, length, result["seconds"])
            length *= 2
        longest[name] = (best, stop)
    report.line()
    columns = ["model", "memory options", "longest trained", "fwd+bwd s", "peak GiB", "stopped by"]
    report.table("longest", columns, "llrrrl")
    for name, (best, stop) in longest.items():
        length, result = best if best else (None, None)
        peak = result["peak_mib"] if result else None
        report.row(
            "longest",
            [
                name,
                options[name],
                f"{length:,}" if length else "none",
                f"{result['seconds']:.2f}" if result else "-",
                f"{peak / 1024:.2f}" if peak is not None else "-",
                stop,
            ],
            {"model": name, "length": length, "stop": stop, **(result or {})},
        )


RUNNERS = {"checks": run_checks, "encoder": run_encoder, "clm": run_clm, "decode": run_decode, "longest": run_longest}


# ------------------------------------------------------------------------------------------------------ main


def machine_lines(device: torch.device) -> list[str]:
    lines = [f"Machine: {machine()}, transformers {transformers.__version__}, Python {platform.python_version()}"]
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        tf32 = "on" if torch.backends.cuda.matmul.allow_tf32 else "off"
        lines.append(
            f"GPU: {torch.cuda.get_device_name(device)}, {properties.total_memory / 2**30:.1f} GiB, compute "
            f"capability {properties.major}.{properties.minor}, CUDA {torch.version.cuda}, cuDNN "
            f"{torch.backends.cudnn.version()}, TF32 matmul {tf32}, "
            f"PYTORCH_CUDA_ALLOC_CONF={os.environ.get('PYTORCH_CUDA_ALLOC_CONF', '')}"
        )
    else:
        lines.append(f"GPU: none (device {device})")
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="default: cuda where available, else cpu")
    parser.add_argument("--smoke", action="store_true", help="on the CPU at tiny lengths (the test suite's run)")
    parser.add_argument("--budget_s", type=float, help="seconds for the whole run (default 450; --smoke 240)")
    parser.add_argument("--output_dir", default="outputs/gpu-check", help="gpu_check.md and gpu_check.json")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--dtype",
        choices=("bfloat16", "float16", "float32"),
        help="autocast of the benchmarks (default: bfloat16 on a GPU, float32 on a CPU, whose bfloat16 is slow)",
    )
    parser.add_argument(
        "--tolerance_scale", type=float, default=1.0, help="multiplies every check's tolerance (0: see checks fail)"
    )
    for name in ("encoder_lengths", "clm_contexts", "decode_contexts", "decode_batches"):
        parser.add_argument(f"--{name}", type=int, nargs="+", help=f"default {FULL[name]} (--smoke {SMOKE[name]})")
    for name in ("clm_tokens", "decode_steps", "longest_from", "longest_max", "sequence_chunk", "check_seq"):
        parser.add_argument(f"--{name}", type=int, help=f"default {FULL[name]} (--smoke {SMOKE[name]})")
    args = parser.parse_args(argv)
    args.sections = [name for name in SECTIONS if name in args.sections]  # always in this order, each once
    if args.smoke and args.device not in (None, "cpu"):
        parser.error("--smoke runs on the CPU; leave --device out")
    args.device = "cpu" if args.smoke else args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available (torch.cuda.is_available() is False)")
    args.dtype = args.dtype or ("bfloat16" if torch.device(args.device).type == "cuda" else "float32")
    sizes = dict(SMOKE if args.smoke else FULL)
    for name in list(sizes):
        if getattr(args, name, None) is not None:
            sizes[name] = getattr(args, name)
    if args.budget_s is not None:
        sizes["budget_s"] = args.budget_s
    for name, value in sizes.items():
        if any(v <= 0 for v in (value if isinstance(value, list) else [value])):
            parser.error(f"--{name} must be positive, got {value}")
    if sizes["check_seq"] < 2 * sizes["check_chunk"]:
        parser.error(f"--check_seq must be at least {2 * sizes['check_chunk']} (two chunks of the chunking check)")
    if sizes["longest_from"] > sizes["longest_max"]:
        parser.error("--longest_from must not exceed --longest_max")
    args.sizes = sizes
    return args


def seconds_since_process_start() -> float:
    """Wall-clock seconds since this process started (Linux `/proc`; 0 where unknown): the budget counts the
    imports too."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks after boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def main(argv=None, as_script: bool = False) -> int:
    """Run the sections; the exit status (0: every check passed and no section failed, else 1). `as_script`: the
    budget counts from the process's start (imports included) and the watchdog (`start_watchdog`) may end the
    process."""
    start = time.monotonic() - (seconds_since_process_start() if as_script else 0.0)
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        # Fewer fragmented blocks after the long steps and their out-of-memory failures (read when CUDA starts).
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
        torch.cuda.init()
    run = SimpleNamespace(
        device=device,
        sizes=args.sizes,
        dtype=getattr(torch, args.dtype),
        dtype_name=f"{args.dtype} autocast" if args.dtype != "float32" else "float32",
        report=Report(Path(args.output_dir)),
        estimate=Estimate(),
    )
    run.checks = Checks(run.report, args.tolerance_scale)
    report = run.report
    report.line(f"# GPU check{' (smoke run on the CPU)' if args.smoke else ''}\n")
    lines = machine_lines(device)
    report.data["machine"] = lines
    report.data["sizes"] = args.sizes
    for line in lines:
        report.line(line)
    report.line(f"Budget: {args.sizes['budget_s']:.0f} s in all; sections: {', '.join(args.sections)}")
    budget = Budget(args.sizes["budget_s"], args.sections, start)
    watchdog = start_watchdog(report, budget.end + GRACE_S) if as_script else None
    errors = []
    for name in args.sections:
        until = budget.open(name)
        report.open_section(name)
        if until - time.monotonic() < MIN_SECTION_S:
            report.note("skipped: budget")
            report.close_section("skipped: budget")
            continue
        began = time.monotonic()
        try:
            RUNNERS[name](run, until)
            status = "done"
        except OutOfBudget:
            status = "skipped: budget"
            report.note("skipped: budget (the section ran out of time)")
        except Exception as error:  # a section's failure must not cost the others their minutes
            traceback.print_exc()
            status = f"error: {type(error).__name__}: {str(error)[:300]}"
            errors.append(name)
            report.note(status)
        free(device)
        report.line(f"\n({TITLES[name]}: {time.monotonic() - began:.1f} s, {status})")
        report.close_section(status)
    checks = run.checks
    total = time.monotonic() - start
    summary = (
        f"\nSummary: {checks.passed} checks passed, {checks.failed} failed, {checks.not_run} not run; "
        f"sections with errors: {', '.join(errors) or 'none'}; {total:.1f} s in all."
    )
    report.data["summary"] = {
        "passed": checks.passed,
        "failed": checks.failed,
        "not_run": checks.not_run,
        "errors": errors,
        "seconds": total,
    }
    if watchdog:
        watchdog.cancel()
    report.save()
    report.line(summary)
    report.markdown.close()
    return 1 if checks.failed or errors else 0


if __name__ == "__main__":
    sys.exit(main(as_script=True))
