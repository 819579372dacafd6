# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Trainer checkpoints and the run lock in the working directory of `fastformer-classify`.

- completeness and resume selection (`checkpoint_problem`, `last_complete_checkpoint`, `incomplete_checkpoints`): a
  `checkpoint-N` folder can be resumed from only when its `trainer_state.json` (the Trainer writes it last) parses
  and its weights are whole; one cut off by an interruption while it was saved is never named or accepted for
  `--resume_from_checkpoint`;
- the run lock (`LOCK_NAME`, `take_run_lock`, `run_alive`): the main process of a run holds an exclusive `fcntl` lock
  on `run.lock` in its working directory, so that a later run can tell the leftover of a run that ended from a run
  still going.

Standard library only. Nothing here deletes a checkpoint, logs or raises the job's errors: the job
(`run_classification`) decides what to remove or refuse, and says so.
"""

import json
import os
import re
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path


__all__ = [
    "LOCK_NAME",
    "checkpoint_problem",
    "incomplete_checkpoints",
    "last_complete_checkpoint",
    "run_alive",
    "take_run_lock",
]


def _safetensors_complete(path: Path) -> bool:
    """Whether a `.safetensors` file is whole: its header parses and the file is as long as the header says."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        return path.stat().st_size == 8 + length + end
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error):
        return False


def _weights_problem(checkpoint: Path) -> str | None:
    index = checkpoint / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return "its weight index model.safetensors.index.json is cut off"
        broken = sorted(name for name in shards if not _safetensors_complete(checkpoint / name))
        return f"its weight file {broken[0]} is missing or cut off" if broken else None
    if (checkpoint / "model.safetensors").is_file():
        return None if _safetensors_complete(checkpoint / "model.safetensors") else "model.safetensors is cut off"
    if (checkpoint / "pytorch_model.bin").is_file():
        return None if zipfile.is_zipfile(checkpoint / "pytorch_model.bin") else "pytorch_model.bin is cut off"
    return "it holds no model weights"


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None for a complete Trainer checkpoint: one whose
    `trainer_state.json` (the Trainer writes it last, after the weights, optimizer, scheduler and RNG states) parses,
    and whose weights are whole. A run killed while saving leaves a `checkpoint-N` without these."""
    checkpoint = Path(checkpoint)
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        if checkpoint.is_dir() and re.fullmatch(r"checkpoint-\d+", checkpoint.name):
            return "is incomplete (no trainer_state.json: the run was stopped while saving it)"
        return "is not a Trainer checkpoint (no trainer_state.json)"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return "is incomplete (its trainer_state.json is cut off)"
    weights = _weights_problem(checkpoint)
    return f"is incomplete ({weights})" if weights else None


def last_complete_checkpoint(directory: str | Path) -> Path | None:
    """The `checkpoint-N` with the highest N in `directory` that is complete (see `checkpoint_problem`); unlike
    `transformers.trainer_utils.get_last_checkpoint`, never one cut off by an interruption while it was saved."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    steps = [
        (int(match[1]), path)
        for path in directory.iterdir()
        if (match := re.fullmatch(r"checkpoint-(\d+)", path.name)) and path.is_dir()
    ]
    for _, path in sorted(steps, key=lambda pair: pair[0], reverse=True):
        if checkpoint_problem(path) is None:
            return path
    return None


def incomplete_checkpoints(directory: Path) -> Iterator[Path]:
    """The `checkpoint-N` folders of `directory` that an interruption cut off while they were saved (see
    `checkpoint_problem`), one at a time as they are found: they cannot be resumed from, and the Trainer would save
    into them again."""
    for path in directory.glob("checkpoint-*"):
        if path.is_dir() and re.fullmatch(r"checkpoint-\d+", path.name) and checkpoint_problem(path) is not None:
            yield path


LOCK_NAME = "run.lock"


def run_alive(tmp: Path) -> bool | None:
    """Whether the run that created the working directory `tmp` is still going: True while its main process holds
    the exclusive lock on `tmp/run.lock` (the operating system drops it when the process ends, even when it is
    killed), False once it is free, None when that cannot be told (no lock file: another version of the job, or a
    platform without `fcntl`). Probed with a shared lock, so the processes of one launch never disturb each other."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        descriptor = os.open(tmp / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(descriptor)  # also releases the shared lock
    return False


def take_run_lock(tmp: Path) -> int | None:
    """Locks `tmp/run.lock` for this process (see `run_alive`): the file is locked under another name first and
    then renamed into place, so a lock file that can be seen is never unlocked while its run is going."""
    try:
        import fcntl
    except ImportError:
        return None
    partial = tmp / f".{LOCK_NAME}.{os.getpid()}"
    descriptor = os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.replace(partial, tmp / LOCK_NAME)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor
