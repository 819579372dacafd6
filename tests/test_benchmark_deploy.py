"""`benchmarks/benchmark_deploy.py --smoke`: one run prints every part's table side by side (training step compiled
vs eager, decoding ms/token in five runners, the classifier in ONNX Runtime vs PyTorch, int8 vs float32), and the
compiled and ONNX Runtime runners compute what eager PyTorch computes."""

import importlib.util
import re
from pathlib import Path

from helpers import load_script


SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark_deploy.py"


def tables(text: str) -> dict[str, list[list[str]]]:
    """The markdown tables of `text` by the `###` heading above each: their rows' cells (header and rule left out)."""
    found, heading = {}, None
    for line in text.splitlines():
        if line.startswith("### "):
            heading = line[4:]
            found[heading] = []
        elif line.startswith("|") and heading is not None and not line.startswith("|---"):
            found[heading].append([cell.strip() for cell in line.strip("|").split("|")])
    return {heading: rows[1:] for heading, rows in found.items()}


def test_smoke_run_prints_every_table_with_equal_outputs(capsys):
    """Every part's table is there with its rows: the training step at the smoke length compiled into one graph;
    the five decoding runners, each one's last logits within 1e-4 of eager's, the compiled ones with one graph
    each; the ONNX classifier within 1e-4 of PyTorch; float32 and the int8 variants (torchao's when installed), the
    int8 one with embeddings under 0.4x float32's size on disk and in memory. Catches a part that is left out or
    crashes, a runner that decodes something else than eager, and an int8 row that does not shrink."""
    load_script(SCRIPT, "benchmark_deploy").main(["--smoke"])
    found = tables(capsys.readouterr().out)
    train = next(rows for heading, rows in found.items() if heading.startswith("Training step"))
    assert [row[0] for row in train] == ["40"] and train[0][-1] == "1"
    assert all(float(cell.replace(",", "")) > 0 for cell in train[0][2:4])

    decode = next(rows for heading, rows in found.items() if heading.startswith("Greedy decoding"))
    runners = [row[1] for row in decode]
    assert len(runners) == 5 and runners[0].startswith("eager") and runners[-1].startswith("ONNX Runtime")
    assert all(float(row[-1]) <= 1e-4 for row in decode), decode
    assert [row[4] for row in decode if row[1].startswith("torch.compile")] == ["1", "1"]

    onnx = next(rows for heading, rows in found.items() if heading.startswith("Classifier"))
    assert [row[0] for row in onnx] == ["24"] and float(onnx[0][-1]) <= 1e-4

    int8 = {row[0]: row for row in next(rows for heading, rows in found.items() if heading.startswith("int8"))}
    expected = 5 if importlib.util.find_spec("torchao") else 3
    assert len(int8) == expected and list(int8)[0] == "float32"
    quantized = int8["int8_dynamic, torch.ao (Linear + Embedding)"]
    for column in (-2, -1):  # on disk, in memory
        assert float(quantized[column]) < 0.4 * float(int8["float32"][column])
    assert all(re.fullmatch(r"0\.\d{4}|1\.0000", row[1]) for row in int8.values())
