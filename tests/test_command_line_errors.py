"""Every bad option of the training scripts ends in one line `PROG: error: ...` with exit status 2 (issue #13,
item 11): `fastformer-classify`, `examples/run_mlm.py`, `examples/run_clm.py` and `examples/run_summarization.py`."""

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import load_script


pytest.importorskip("datasets")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BAD_OPTIONS = {
    # option -> what the one line must say
    ("--no_such_flag", "1"): "unrecognized arguments: --no_such_flag 1",
    ("--learning_rate", "-1"): "invalid optimizer setting: Invalid learning rate: -1.0",
    ("--adam_beta1", "2"): "invalid optimizer setting: Invalid beta parameter at index 0: 2.0",
    ("--warmup_steps", "-1"): "warmup_steps >= 0",  # refused by TrainingArguments.__post_init__
    ("--save_strategy", "bogus"): "invalid choice: 'bogus'",  # refused by argparse itself
    ("--hidden_size", "abc"): "invalid int value: 'abc'",
}


def _example(name):
    return load_script(EXAMPLES / f"{name}.py", f"{name}_for_errors")


def _classify_main():
    from fastformer.classify import run_classification

    return run_classification.main


SCRIPTS = {
    "fastformer-classify": _classify_main,
    "run_mlm.py": lambda: _example("run_mlm").main,
    "run_clm.py": lambda: _example("run_clm").main,
    "run_summarization.py": lambda: _example("run_summarization").main,
}


@pytest.mark.parametrize("prog", sorted(SCRIPTS))
def test_every_bad_option_is_one_line_with_exit_status_2(prog, tmp_path, capsys):
    """Catches an unknown flag or a value only the optimizer checks (`--learning_rate -1`) ending in a traceback
    (`ValueError: Some specified arguments are not used by the HfArgumentParser`, `Invalid learning rate`) once the
    data is loaded, and argparse's page of usage in front of its own errors."""
    main = SCRIPTS[prog]()
    for option, message in BAD_OPTIONS.items():
        with pytest.raises(SystemExit) as failure:
            main(["--output_dir", str(tmp_path / "out"), *option])
        assert failure.value.code == 2, option
        out, err = capsys.readouterr()
        assert err.splitlines() == [err.strip()] and err.startswith(f"{prog}: error: "), (option, err)
        assert message in err, (option, err)
    assert not (tmp_path / "out").exists()


def test_the_console_command_and_a_json_file_with_an_unknown_key(tmp_path):
    """Catches the installed `fastformer-classify` (or a JSON options file, parsed by another HfArgumentParser path)
    still printing a traceback for an unknown option."""
    options = tmp_path / "options.json"
    options.write_text('{"output_dir": "out", "no_such_key": 1}')
    for args in (["--output_dir", str(tmp_path / "out"), "--learning_rate", "-1"], [str(options)]):
        result = subprocess.run(
            [sys.executable, "-m", "fastformer.classify.run_classification", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2, result.stderr[-2000:]
        lines = [line for line in result.stderr.splitlines() if "Warning" not in line and line.strip()]
        assert len(lines) == 1 and lines[0].startswith("fastformer-classify: error: "), result.stderr[-2000:]
    assert "no_such_key" in lines[0]


def test_bad_data_found_after_parsing_is_one_line_with_exit_status_2(tmp_path):
    """Catches the console command ending bad data found once the options are parsed (here an empty CSV) with exit
    status 1 and a line that hid the cause ("DatasetGenerationError: An error occurred while generating the
    dataset"), unlike a bad option's status 2; nothing is left next to `--output_dir`."""
    (tmp_path / "empty.csv").write_bytes(b"")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastformer.classify.run_classification",
            "--output_dir",
            str(tmp_path / "out"),
            "--train_file",
            str(tmp_path / "empty.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"fastformer-classify: error: data file {tmp_path / 'empty.csv'} is empty", lines
    assert "Traceback" not in result.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv"]
