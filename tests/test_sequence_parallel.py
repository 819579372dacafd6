"""Sequence parallelism (`fastformer/sequence_parallel.py`, issue #16 item 3) on 2 gloo processes.

One launch of `sequence_parallel_worker.py` per process (rendezvous through a file: no port) runs every case; each
test reads its numbers. Every case compares the sharded model with the same model run alone on the whole batch:
outputs (gathered over the shards), the loss, and every parameter's gradient summed over the processes, each as the
largest difference relative to max(1, the largest reference value), within `TOLERANCE`. `without_collectives` (each
process pooling its own shard only) must differ by at least 100x that: the comparison can fail (`helpers.assert_far`'s
rule; the weights are randomized so that tokens mix).
"""

import json
import os
import subprocess
import sys

import pytest

TOLERANCE = 1e-5
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sequence_parallel_worker.py")
CASES = {
    "encoder": ("output", "attention_weights", "gradients"),  # padding in the middle, at the end; a shard all padding
    "encoder_no_mask": ("output", "attention_weights", "gradients"),  # 12 tokens, no mask, no padding added
    "classifier_attention": ("output", "loss", "gradients"),
    "classifier_first": ("output", "loss", "gradients"),
    "classifier_mean": ("output", "loss", "gradients"),
    "classifier_device_mesh": ("output", "loss", "gradients"),  # the group given as a 1-D DeviceMesh
    "masked_lm": ("output", "loss", "gradients"),  # token labels sliced, counted over the whole batch
    "causal_lm": ("output", "loss", "gradients"),  # left padding: positions count the real tokens
    "causal_lm_no_positions": ("output", "loss", "gradients"),  # position_embedding_type="none", shard of padding
    "causal_lm_checkpointing": ("output", "loss", "gradients"),  # gradient checkpointing replays the collectives
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sequence_parallel")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, WORKER, str(rank), "2", str(directory / "rendezvous"), str(directory)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        for rank in range(2)
    ]
    logs = []
    for process in processes:
        try:
            logs.append(process.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
    for rank, (process, log) in enumerate(zip(processes, logs)):
        assert process.returncode == 0, f"rank {rank} failed:\n{log[-4000:]}"
    return [json.loads((directory / f"rank{rank}.json").read_text()) for rank in range(2)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_sharded_equals_whole_sequence(results, case):
    for rank, per_rank in enumerate(results):
        numbers = per_rank[case]
        for quantity in CASES[case]:
            assert numbers[quantity] <= TOLERANCE, f"rank {rank} {case} {quantity}: {numbers[quantity]:.3g}"
        assert numbers["without_collectives"] >= 100 * TOLERANCE, (
            f"rank {rank} {case}: without the collectives the output moves by only {numbers['without_collectives']:.3g}"
        )
