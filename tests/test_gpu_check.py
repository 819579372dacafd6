"""`benchmarks/gpu_check.py`, the check that waits for a GPU, runs in the suite so that it cannot rot: its `--smoke`
run on the CPU prints every section's table and passes every check, writes its files, and its checks can fail."""

import copy
import json
import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import torch


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


CHECKS = 25  # the rows of the checks table: 10 precision, 4 decoding, 1 generate, 6 chunking, 4 padding


def rows(report: dict, section: str, table: str) -> list[dict]:
    return report["sections"][section]["tables"][table]["rows"]


def test_smoke_run_prints_every_section_and_passes_every_check(tmp_path):
    """The script as the suite runs it: exit status 0, every section's heading and table on stdout and in the
    markdown file, every row measured (nothing skipped, out of memory or failed), all checks PASS."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--smoke", "--output_dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert markdown.splitlines() == done.stdout.splitlines()  # the file holds exactly what was printed
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["machine"][1] == "GPU: none (device cpu)"
    assert report["summary"] == {**report["summary"], "passed": CHECKS, "failed": 0, "not_run": 0, "errors": []}
    expected_tables = {
        "checks": ["checks"],
        "encoder": ["encoder"],
        "clm": ["clm"],
        "decode": ["decode"],
        "longest": ["attempts", "longest"],
    }
    for section, tables in expected_tables.items():
        assert f"## {gpu_check.TITLES[section]}" in done.stdout
        assert report["sections"][section]["status"] == "done"
        assert list(report["sections"][section]["tables"]) == tables
        for table in tables:
            header = "| " + " | ".join(report["sections"][section]["tables"][table]["columns"]) + " |"
            assert header in done.stdout
            assert rows(report, section, table), f"{section}/{table}: no row"
            for row in rows(report, section, table):
                for cell in row["cells"].values():
                    assert not cell.startswith(("skipped", "OOM", "error", "FAIL")), (section, row["cells"])
    results = [row["cells"]["result"] for row in rows(report, "checks", "checks")]
    assert results == ["PASS"] * CHECKS
    assert len(rows(report, "encoder", "encoder")) == len(gpu_check.SMOKE["encoder_lengths"])
    assert len(rows(report, "clm", "clm")) == len(gpu_check.SMOKE["clm_contexts"])
    decode = gpu_check.SMOKE["decode_contexts"], gpu_check.SMOKE["decode_batches"]
    assert len(rows(report, "decode", "decode")) == len(decode[0]) * len(decode[1])
    longest = rows(report, "longest", "longest")
    assert [row["cells"]["longest trained"] for row in longest] == [f"{gpu_check.SMOKE['longest_max']:,}"] * 3


def test_checks_held_to_zero_tolerance_fail_and_the_run_exits_1(tmp_path):
    """With every tolerance scaled to 0, each check whose error is not exactly 0 prints FAIL, all the others still
    run and print, and the run's status is 1 (as the script's exit status)."""
    status = gpu_check.main(
        [
            "--smoke",
            "--sections",
            "checks",
            "--check_seq",
            "64",
            "--tolerance_scale",
            "0",
            "--output_dir",
            str(tmp_path),
        ]
    )
    assert status == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    checks = rows(report, "checks", "checks")
    assert len(checks) == CHECKS
    for row in checks:
        values = row["values"]
        nonzero = values["error"] > 0 or (values.get("gradient_error") or 0) > 0
        assert values["result"] == ("FAIL" if nonzero else "PASS"), row["cells"]
    assert report["summary"]["failed"] == sum(row["values"]["result"] == "FAIL" for row in checks) > 0
    assert "| FAIL |" in (tmp_path / "gpu_check.md").read_text()


def test_a_perturbed_model_fails_the_precision_check():
    """The float32 forward+backward check at the real tolerances: the same weights pass, and one query matrix
    scaled by 1.01 moves the logits and gradients by far more than the tolerance and fails."""
    model = gpu_check.check_model("causal", 64)
    batch = gpu_check.check_batch(64, "cpu")
    reference = gpu_check.forward_backward(copy.deepcopy(model).double().train(), batch, nullcontext())[:2]
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.fastformer.encoder.layer[0].attention.self.query.weight.mul_(1.01)
    tolerances = gpu_check.TOLERANCES["float32"]
    same = {**gpu_check.precision_errors(model.train(), batch, reference, nullcontext()), "control": 1.0}
    other = {**gpu_check.precision_errors(perturbed.train(), batch, reference, nullcontext()), "control": 1.0}
    assert gpu_check.Checks.verdict(same, *tolerances) == "PASS"
    assert min(other["error"], other["gradient_error"]) > 10 * max(tolerances)
    assert gpu_check.Checks.verdict(other, *tolerances) == "FAIL"
    # ... and a check whose control lies within the tolerance cannot tell, so it fails too.
    assert gpu_check.Checks.verdict({**same, "control": 2 * tolerances[0]}, *tolerances) == "FAIL"
