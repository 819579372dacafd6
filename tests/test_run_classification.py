"""The main job (`fastformer-classify`, `examples/run_classification.py`) end to end on tiny local data, and its
errors for bad input: one line each, and never a checkpoint left behind."""

import contextlib
import csv
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from helpers import free_port
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

from fastformer import FastformerForSequenceClassification, FastformerTokenizer
from fastformer.classify import run_classification as job
from fastformer.classify.checkpoints import LOCK_NAME
from fastformer.classify.corpora import CACHE_NAME


pytest.importorskip("datasets")
pytest.importorskip("evaluate")

TINY = [
    "--hidden_size",
    "16",
    "--num_attention_heads",
    "2",
    "--intermediate_size",
    "32",
    "--num_hidden_layers",
    "1",
    "--max_seq_length",
    "48",
    "--num_train_epochs",
    "2",
    "--per_device_train_batch_size",
    "8",
    "--learning_rate",
    "5e-3",
    "--logging_steps",
    "2",
    "--disable_tqdm",
    "true",
    "--seed",
    "0",
]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILLER = "the film story actor scene plot director camera music end".split()


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def reviews(n=48, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ["neg", "pos"][i % 2]
        words = rng.choices(FILLER, k=rng.randint(10, 70))  # some longer than --max_seq_length: cut
        cue = ["dull", "awful"] if label == "neg" else ["superb", "moving"]
        for _ in range(3):
            words.insert(rng.randrange(len(words)), rng.choice(cue))
        rows.append((" ".join(words), label))
    return rows


def launch_two_processes(*job_args, timeout):
    """`accelerate launch --multi_gpu --num_processes 2 examples/run_classification.py JOB_ARGS` (gloo with
    `--use_cpu`) on a free port, one thread a process; returns the finished `CompletedProcess` with its output
    captured."""
    port = free_port()
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    return subprocess.run(
        [
            accelerate,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(port),
            str(EXAMPLES / "run_classification.py"),
            *job_args,
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def no_leftovers(parent):
    return [p.name for p in parent.iterdir() if ".partial-" in p.name]


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["fastformer"] = None  # only the checkpoint's own code can be used
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    checkpoint, texts = sys.argv[1], json.load(open(sys.argv[2]))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    print(json.dumps({"tokenizer": type(tokenizer).__name__, "input_ids": batch["input_ids"].tolist(),
                      "logits": logits.tolist()}))
    """
)


def test_job_end_to_end_on_a_local_csv(tmp_path):
    train_file = write_csv(tmp_path / "reviews.csv", reviews())
    output_dir = tmp_path / "checkpoint"
    row = job.main(["--output_dir", str(output_dir), "--train_file", train_file, "--test_size", "0.25", *TINY])
    assert (row["train_docs"], row["test_docs"]) == (36, 12)
    # The reported peak is this process's peak resident memory in MiB: at least what it holds now, at most the peak
    # the OS reports after the job (catches KiB or bytes reported as MiB, or another process's number).
    resident_now = psutil.Process().memory_info().rss / 2**20
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux
    assert 0.5 * resident_now <= row["peak_memory_mib"] <= peak_after + 1
    assert not no_leftovers(tmp_path)
    for name in (
        "config.json",
        "model.safetensors",
        "modeling_fastformer.py",
        "configuration_fastformer.py",
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenization_fastformer.py",
        "README.md",
        "all_results.json",
    ):
        assert (output_dir / name).is_file(), name
    config = json.loads((output_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["max_position_embeddings"] == 48
    assert config["tokenizer_class"] == "FastformerTokenizer"
    assert json.loads((output_dir / "all_results.json").read_text())["accuracy"] == row["accuracy"]
    card = (output_dir / "README.md").read_text()
    assert "library_name: transformers" in card and "pipeline_tag: text-classification" in card
    assert f"value: {row['accuracy']}" in card and "trust_remote_code=True" in card
    assert (
        "evaluated on 12 held-out documents (a fixed stratified split: 25% of the rows, drawn with --split_seed 42)"
    ) in card
    assert "## Results on reviews.csv (test split)" in card
    assert "| training_steps | 10 |" in card and "| epochs | 2.0 |" in card  # 36 documents, 8 a step: 5 a epoch

    # The checkpoint loads through the Auto classes and reproduces the reported test metrics.
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    assert type(tokenizer) is FastformerTokenizer and type(model) is FastformerForSequenceClassification
    assert tokenizer.model_max_length == 48
    data = job.load_data(job.DataArguments(train_file=train_file, test_size=0.25))
    texts, labels = data["test"]
    uncut = FastformerTokenizer()(data["train"][0] + texts)["input_ids"]
    assert row["cut_docs"] == sum(len(ids) > 48 for ids in uncut) > 0
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    predictions = logits.argmax(-1).numpy()
    accuracy = float(np.mean(predictions == np.array(labels)))
    assert accuracy == pytest.approx(row["accuracy"], abs=1e-9)

    # ... and gives the same predictions with only its own code (the package cannot be imported).
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    (tmp_path / "load.py").write_text(REMOTE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-P", str(tmp_path / "load.py"), str(output_dir), str(tmp_path / "texts.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["tokenizer"] == "FastformerTokenizer"
    assert remote["input_ids"] == batch["input_ids"].tolist()
    torch.testing.assert_close(torch.tensor(remote["logits"]), logits)


def test_bert_model_type_trains_on_the_same_data(tmp_path):
    train_file = write_csv(tmp_path / "reviews.csv", reviews(24))
    row = job.main(
        [
            "--output_dir",
            str(tmp_path / "bert"),
            "--train_file",
            train_file,
            "--model_type",
            "bert",
            *TINY,
            "--num_train_epochs",
            "1",
        ]
    )
    assert row["model_type"] == "bert"
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "bert")
    assert type(model).__name__ == "BertForSequenceClassification"
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.max_position_embeddings) == (
        16,
        1,
        48,
    )


def test_packing_trains_the_weights_of_the_padded_run(tmp_path):
    """`--packing` batches the same documents in the same order, one row per batch without padding; the model keeps
    the documents apart, so (without dropout) it trains to the padded run's weights and test metrics, on fewer
    positions."""
    train_file = write_csv(tmp_path / "reviews.csv", reviews())
    common = ["--train_file", train_file, *TINY, "--hidden_dropout_prob", "0", "--pooler_type", "attention"]
    padded = job.main(["--output_dir", str(tmp_path / "padded"), *common])
    packed = job.main(["--output_dir", str(tmp_path / "packed"), *common, "--packing", "true"])
    assert (packed["packing"], padded["packing"]) == (True, False)
    assert packed["accuracy"] == padded["accuracy"] and packed["train_loss"] == pytest.approx(padded["train_loss"])
    weights = [AutoModelForSequenceClassification.from_pretrained(tmp_path / name).state_dict() for name in SIDES]
    moved = AutoModelForSequenceClassification.from_config(
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "padded").config
    ).state_dict()
    for name in weights[0]:
        if name == "pooler.att_fc2.bias":  # shifts every softmax logit alike: its gradient is 0 up to rounding,
            continue  # which Adam scales to full-size steps in both runs
        torch.testing.assert_close(weights[1][name], weights[0][name], atol=1e-4, rtol=1e-4, msg=name)
    assert max((weights[0][name] - moved[name]).abs().max() for name in moved) > 1e-2  # training moved them
    with pytest.raises(SystemExit):
        job.main(["--output_dir", str(tmp_path / "bert"), *common, "--packing", "true", "--model_type", "bert"])


SIDES = ("padded", "packed")


def error_line(argv):
    """Runs the job expecting a clean failure: exit status 2 and, as the last line on stderr, the only
    `fastformer-classify: error: ...` line (no traceback). Returns that line."""
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as failure, contextlib.redirect_stderr(stderr):
        job.main(argv)
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    assert failure.value.code == 2 and lines, (failure.value.code, stderr.getvalue()[-2000:])
    assert lines[-1].startswith("fastformer-classify: error: "), stderr.getvalue()[-2000:]
    assert sum("error:" in line for line in lines) == 1 and "Traceback" not in stderr.getvalue(), lines
    return lines[-1]


def test_model_card_states_the_test_file_and_the_steps_actually_run(tmp_path):
    """Catches the card saying what the defaults would have done: "a fixed stratified split" and "Results on
    train.csv (test split)" for a run evaluated on `--test_file test.csv`, and the `--num_train_epochs` value (2)
    as the epochs of a run that `--max_steps 2` stopped after 2 steps (2/3 of an epoch)."""
    train_file = write_csv(tmp_path / "train.csv", reviews(24))
    test_file = write_csv(tmp_path / "test.csv", reviews(8, seed=1))
    row = job.main(
        [
            "--output_dir",
            str(tmp_path / "out"),
            "--train_file",
            train_file,
            "--test_file",
            test_file,
            *TINY,
            "--max_steps",
            "2",
        ]
    )
    card = (tmp_path / "out" / "README.md").read_text()
    assert (row["train_docs"], row["test_docs"]) == (24, 8)
    assert "stratified" not in card and "train.csv (test split)" not in card
    assert "evaluated on 8 held-out documents (the separate test file test.csv, --test_file)" in card
    assert "## Results on test.csv\n" in card and "name: test.csv" in card  # body and model-index
    assert "for 2 optimizer steps (0.67 epochs)" in card
    assert "| training_steps | 2 |" in card and "| epochs | 0.67 |" in card and "| max_steps | 2 |" in card
    assert "| epochs | 2 |" not in card


def write_pang_lee_stand_in(cache_dir):
    """1,500 reviews sorted by label like the real cached copy (750 positive, then 750 negative)."""
    cache_dir.mkdir()
    rows = [(f"review {i} {'superb moving' if i < 750 else 'dull awful'} film", int(i < 750)) for i in range(1500)]
    write_csv(cache_dir / CACHE_NAME, rows)
    return str(cache_dir)


def test_max_train_samples_keeps_the_class_balance(tmp_path, monkeypatch):
    """Catches `--max_train_samples N` keeping the first N training rows: the Pang & Lee copy is sorted by label and
    the split keeps that order, so for N <= 600 the job trained on positive reviews only. The subset is stratified
    (drawn with --split_seed), the test split does not change, and the job trains on exactly that subset."""
    cache_dir = write_pang_lee_stand_in(tmp_path / "cache")
    full = job.load_data(job.DataArguments(cache_dir=cache_dir))
    data = job.load_data(job.DataArguments(cache_dir=cache_dir, max_train_samples=20))
    texts, labels = data["train"]
    assert len(texts) == 20 and sorted(labels) == [0] * 10 + [1] * 10
    assert set(texts) <= set(full["train"][0]) and data["test"] == full["test"]
    assert data["train"] == job.load_data(job.DataArguments(cache_dir=cache_dir, max_train_samples=20))["train"]
    other_seed = job.load_data(job.DataArguments(cache_dir=cache_dir, max_train_samples=20, split_seed=1))
    assert sorted(other_seed["train"][1]) == sorted(labels) and other_seed["train"] != data["train"]
    assert sorted(job.load_data(job.DataArguments(cache_dir=cache_dir, max_train_samples=7))["train"][1]) in (
        [0] * 3 + [1] * 4,
        [0] * 4 + [1] * 3,
    )

    seen = {}
    tokenize = job.tokenize

    def recording_tokenize(tokenizer, texts, labels, max_length, where):
        seen[where] = list(labels)
        return tokenize(tokenizer, texts, labels, max_length, where)

    monkeypatch.setattr(job, "tokenize", recording_tokenize)
    row = job.main(
        [
            "--output_dir",
            str(tmp_path / "out"),
            "--cache_dir",
            cache_dir,
            "--max_train_samples",
            "20",
            *TINY,
            "--max_steps",
            "1",
        ]
    )
    assert row["train_docs"] == 20 and seen["train"] == labels and len(seen["test"]) == 300
    card = (tmp_path / "out" / "README.md").read_text()
    assert "--max_train_samples 20: a stratified random subset (seed 42) of the 1200 training documents" in card
    (tmp_path / "refused").mkdir()
    assert "--max_train_samples must be at least 1, got 0" in run_error(
        tmp_path / "refused", "--cache_dir", cache_dir, "--max_train_samples", "0"
    )


def run_error(tmp_path, *args):
    """Runs the job expecting a clean failure; returns the message, checking that no checkpoint was left."""
    output_dir = tmp_path / "out"
    message = error_line(["--output_dir", str(output_dir), *TINY, *args])
    assert not output_dir.exists() and not no_leftovers(tmp_path)
    return message


HUB_CARD = """---
dataset_info:
  features:
  - name: text
    dtype: string
  - name: label
    dtype:
      class_label:
        names:
          '0': neg
          '1': pos
---
"""


def test_dataset_directory_with_class_labels_and_splits(tmp_path):
    """`--dataset_name` goes through `datasets.load_dataset`: here a local dataset repository laid out as on the
    Hub (README features with a ClassLabel, train/test files), so its label names and test split are used."""
    repo = tmp_path / "dataset"
    repo.mkdir()
    (repo / "README.md").write_text(HUB_CARD)
    write_csv(repo / "train.csv", [("a good film", 1), ("a bad film", 0), ("superb", 1)])
    write_csv(repo / "test.csv", [("nice", 1), ("awful", 0)])
    data = job.load_data(job.DataArguments(dataset_name=str(repo), cache_dir=str(tmp_path / "cache")))
    assert data["label_names"] == ["neg", "pos"]
    assert data["train"] == (["a good film", "a bad film", "superb"], [1, 0, 1])
    assert data["test"] == (["nice", "awful"], [1, 0])
    write_csv(repo / "test.csv", [("nice", 1), ("unlabelled", -1)])  # e.g. GLUE's hidden test labels
    with pytest.raises(job.InputError, match=r"\(test\), row 1: label -1 is outside the declared label set"):
        job.load_data(job.DataArguments(dataset_name=str(repo), cache_dir=str(tmp_path / "cache2")))


def test_unknown_dataset(tmp_path):
    message = run_error(tmp_path, "--dataset_name", "no-such-user/no-such-dataset")
    assert "cannot load dataset 'no-such-user/no-such-dataset'" in message


def test_file_without_text_or_label_columns(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [("a good film", "pos")], header=("review", "label"))
    assert "has no column 'text'" in run_error(tmp_path, "--train_file", path)
    path = write_csv(tmp_path / "bad2.csv", [("a good film", "pos")], header=("text", "sentiment"))
    assert "has no column 'label'" in run_error(tmp_path, "--train_file", path)
    missing = str(tmp_path / "missing.csv")
    assert f"data file {missing} does not exist" in run_error(tmp_path, "--train_file", missing)


def test_labels_outside_the_declared_set(tmp_path):
    rows = reviews(12) + [("an odd film", "meh")]
    path = write_csv(tmp_path / "reviews.csv", rows)
    assert "row 12: label 'meh' is outside the declared label set ['neg', 'pos']" in run_error(
        tmp_path, "--train_file", path, "--label_set", "neg,pos"
    )
    train = write_csv(tmp_path / "train.csv", reviews(12))
    test = write_csv(tmp_path / "test.csv", [("a fine film", "pos"), ("a film", "neutral")])
    assert "test.csv, row 1: label 'neutral' is outside the declared label set ['neg', 'pos']" in run_error(
        tmp_path, "--train_file", train, "--test_file", test
    )


def test_unreadable_or_corrupt_cache(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / CACHE_NAME).write_bytes(b"\xff\xfe not utf-8 \x00")
    assert "is unreadable" in run_error(tmp_path, "--cache_dir", str(cache))
    write_csv(cache / CACHE_NAME, [("a good film", 1)])
    assert "is corrupt (expected 1500 non-empty reviews" in run_error(tmp_path, "--cache_dir", str(cache))


def test_failure_after_training_leaves_no_checkpoint(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(job, "write_model_card", fail)
    path = write_csv(tmp_path / "reviews.csv", reviews(16))
    with pytest.raises(OSError, match="disk full"):
        job.main(["--output_dir", str(tmp_path / "out"), "--train_file", path, *TINY, "--max_steps", "1"])
    assert not (tmp_path / "out").exists() and not no_leftovers(tmp_path)


def test_bad_options(tmp_path):
    assert "--model_type must be one of ('fastformer', 'bert'), got 'gpt'" in run_error(
        tmp_path, "--model_type", "gpt"
    )
    path = write_csv(tmp_path / "reviews.csv", reviews(8))
    assert "--test_size must lie in (0, 1), got 1.5" in run_error(tmp_path, "--train_file", path, "--test_size", "1.5")
    assert "invalid model settings: `hidden_size` (16) must be divisible by `num_attention_heads` (3)" in run_error(
        tmp_path, "--train_file", path, "--num_attention_heads", "3"
    )


def test_empty_header_only_and_non_utf8_files(tmp_path):
    """Catches an empty CSV and a non-UTF-8 one (Latin-1 `é`) ending in the generic line "cannot read ... as csv:
    DatasetGenerationError: An error occurred while generating the dataset", which hides the cause, and a header
    without rows in `ValueError: Instruction "train" corresponds to no data!`."""
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert f"data file {empty} is empty" in run_error(tmp_path, "--train_file", str(empty))
    header = write_csv(tmp_path / "header.csv", [])
    assert f"data file {header} has a header line but no rows" in run_error(tmp_path, "--train_file", header)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("text,label\na good film,pos\na caf\u00e9 film,neg\n".encode("latin-1"))
    assert (
        f"data file {latin1} is not UTF-8 text: byte 0xe9 at offset 32 (line 3) cannot be decoded; save the file "
        "as UTF-8"
    ) in run_error(tmp_path, "--train_file", str(latin1))
    train = write_csv(tmp_path / "train.csv", reviews(12))
    assert f"data file {latin1} is not UTF-8 text" in run_error(
        tmp_path, "--train_file", train, "--test_file", str(latin1)
    )
    empty_json = tmp_path / "rows.json"
    empty_json.write_text("[]")
    assert f"data file {empty_json} has no rows" in run_error(tmp_path, "--train_file", str(empty_json))


def test_unwritable_output_location(tmp_path):
    """Catches an output directory that cannot be created ending in a traceback (`NotADirectoryError`,
    `PermissionError`) instead of the one-line error; the paths lie under a regular file, which no user, root
    included, can create directories in. An output path that is itself a file is named as such."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = write_csv(tmp_path / "reviews.csv", reviews(8))
    for output_dir in (blocker / "out", blocker / "deeper" / "out"):
        message = error_line(["--output_dir", str(output_dir), "--train_file", path, *TINY])
        assert f"cannot create the working directory {output_dir.parent / '.out.partial-run'}" in message
        assert f"({blocker} is not a directory); choose a writable --output_dir" in message
    message = error_line(["--output_dir", str(blocker), "--train_file", path, *TINY])
    assert f"output directory {blocker} exists and is a file" in message
    assert blocker.read_text() == "not a directory" and not no_leftovers(tmp_path)


def test_too_long_max_seq_length_is_refused_before_anything_is_built(tmp_path):
    """Catches `--max_seq_length 2000000000` going on to allocate a 2e9-row position table (128 GB at hidden size
    16) and ending in a `DefaultCPUAllocator` traceback: the limit is checked first, before the data is read (the
    missing data file would otherwise be the error), and the longest allowed length passes that check."""
    message = run_error(tmp_path, "--train_file", "missing.csv", "--max_seq_length", "2000000000")
    assert f"--max_seq_length must lie between 8 and {job.MAX_SEQ_LENGTH}" in message and "got 2000000000" in message
    assert "got 7" in run_error(tmp_path, "--train_file", "missing.csv", "--max_seq_length", "7")
    message = run_error(tmp_path, "--train_file", "missing.csv", "--max_seq_length", str(job.MAX_SEQ_LENGTH))
    assert "data file missing.csv does not exist" in message


def test_existing_output_is_never_overwritten(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert "exists and is not empty" in error_line(
        ["--output_dir", str(tmp_path / "out"), "--train_file", "x.csv", *TINY]
    )
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------------------- resuming, several processes


class PowerCut(RuntimeError):
    pass


def interrupted_trainer(after_step):
    """A `Trainer` whose run dies at the end of step `after_step`, before that step's checkpoint is saved."""

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == after_step:
                raise PowerCut(f"interrupted after step {after_step}")

    class InterruptedTrainer(job.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, callbacks=[Interrupt()], **kwargs)

    return InterruptedTrainer


def test_interrupted_job_resumes_from_its_checkpoint_to_the_weights_of_the_uninterrupted_run(tmp_path, monkeypatch):
    """With dropout and `--save_steps 3`: a run killed during step 5 keeps its step-3 checkpoint (and nothing at
    `--output_dir`); `--resume_from_checkpoint` then ends bit-identical to the run that was never interrupted.
    (`--train_sampling_strategy random`: transformers' length-grouped sampler cannot be resumed exactly.)"""
    path = write_csv(tmp_path / "reviews.csv", reviews(32))
    options = [
        "--train_file",
        path,
        *TINY,
        "--train_sampling_strategy",
        "random",
        "--save_strategy",
        "steps",
        "--save_steps",
        "3",
        "--hidden_dropout_prob",
        "0.2",
    ]
    expected = job.main(["--output_dir", str(tmp_path / "uninterrupted"), *options])
    assert not list((tmp_path / "uninterrupted").glob("checkpoint-*"))  # intermediate checkpoints are dropped

    with monkeypatch.context() as patch:
        patch.setattr(job, "Trainer", interrupted_trainer(after_step=5))
        with pytest.raises(PowerCut):
            job.main(["--output_dir", str(tmp_path / "out"), *options])
    kept = tmp_path / ".out.partial-run"
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in kept.glob("checkpoint-*")) == ["checkpoint-3"]

    resumed = job.main(
        ["--output_dir", str(tmp_path / "out"), *options, "--resume_from_checkpoint", str(kept / "checkpoint-3")]
    )
    assert not no_leftovers(tmp_path) and not kept.exists()
    # (`train_loss` is not compared: the Trainer averages it over the steps of the resumed process only)
    assert resumed["accuracy"] == expected["accuracy"]
    reference = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    for name, tensor in load_file(tmp_path / "out" / "model.safetensors").items():
        assert torch.equal(tensor, reference[name]), name


def test_resume_from_something_that_is_not_a_checkpoint(tmp_path):
    assert "is not a Trainer checkpoint (no trainer_state.json)" in run_error(
        tmp_path, "--train_file", "x.csv", "--resume_from_checkpoint", str(tmp_path)
    )


def interrupted_while_saving(step):
    """A `Trainer` whose run dies while it saves the checkpoint of `step`: after the weights and optimizer, before
    the RNG states and `trainer_state.json` (written last)."""

    class InterruptedTrainer(job.Trainer):
        def _save_rng_state(self, output_dir):
            if self.state.global_step == step:
                raise PowerCut(f"interrupted while saving step {step}")
            super()._save_rng_state(output_dir)

    return InterruptedTrainer


def test_resume_advice_names_only_a_complete_checkpoint(tmp_path, monkeypatch, caplog):
    """Catches the advice after an interrupted run naming the newest `checkpoint-N` even when its saving was cut off
    (`checkpoint-6` without `trainer_state.json`; with it but a truncated `model.safetensors`), which the job then
    refused or failed to load. Advice and refusals name the last complete checkpoint, and resuming from it succeeds
    with the cut-off checkpoints still lying next to it."""
    path = write_csv(tmp_path / "reviews.csv", reviews(32))
    options = [
        "--output_dir",
        str(tmp_path / "out"),
        "--train_file",
        path,
        *TINY,
        "--train_sampling_strategy",
        "random",
        "--save_strategy",
        "steps",
        "--save_steps",
        "3",
    ]
    kept = tmp_path / ".out.partial-run"
    with monkeypatch.context() as patch, caplog.at_level("ERROR"):
        patch.setattr(job, "Trainer", interrupted_while_saving(step=6))
        with pytest.raises(PowerCut):
            job.main(options)
    assert f"--resume_from_checkpoint {kept / 'checkpoint-3'} " in caplog.text
    assert "checkpoint-6" not in caplog.text and not (tmp_path / "out").exists()

    # A run killed outright (no clean-up) leaves checkpoints cut off while saving: one without trainer_state.json,
    # one whose weights file is truncated.
    shutil.copytree(kept / "checkpoint-3", kept / "checkpoint-6")
    (kept / "checkpoint-6" / "trainer_state.json").unlink()
    shutil.copytree(kept / "checkpoint-3", kept / "checkpoint-7")
    weights = kept / "checkpoint-7" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert job.checkpoint_problem(kept / "checkpoint-7") == "is incomplete (model.safetensors is cut off)"
    assert job.last_complete_checkpoint(kept) == kept / "checkpoint-3"

    message = error_line(options)
    assert message.endswith(f"delete it, or resume with --resume_from_checkpoint {kept / 'checkpoint-3'}")
    for step in (6, 7):
        message = error_line([*options, "--resume_from_checkpoint", str(kept / f"checkpoint-{step}")])
        assert f"checkpoint-{step} is incomplete" in message
        assert message.endswith(f"; the last complete checkpoint there is {kept / 'checkpoint-3'}")

    row = job.main([*options, "--resume_from_checkpoint", str(kept / "checkpoint-3")])
    assert not no_leftovers(tmp_path) and json.loads((tmp_path / "out" / "all_results.json").read_text()) == row
    assert "| training_steps | 8 |" in (tmp_path / "out" / "README.md").read_text()


KILLED_WHILE_SAVING = textwrap.dedent(
    """
    import os, signal, sys
    from fastformer.classify import run_classification as job

    class KilledTrainer(job.Trainer):
        def _save_rng_state(self, output_dir):  # after the weights, before trainer_state.json
            os.kill(os.getpid(), signal.SIGKILL)

    job.Trainer = KilledTrainer
    job.main(sys.argv[1:])
    """
)


def test_run_stopped_while_saving_its_first_checkpoint_can_be_run_again(tmp_path, monkeypatch):
    """Catches a rerun refused after an interruption while the first checkpoint was saved: the run kept its working
    directory for the cut-off `checkpoint-3` (and advised resuming from it, which the job refused), and one killed
    outright (SIGKILL: no clean-up) left the directory behind. The same command now runs again, to the end."""
    path = write_csv(tmp_path / "reviews.csv", reviews(32))
    options = [
        "--output_dir",
        str(tmp_path / "out"),
        "--train_file",
        path,
        *TINY,
        "--save_strategy",
        "steps",
        "--save_steps",
        "3",
    ]
    with monkeypatch.context() as patch:
        patch.setattr(job, "Trainer", interrupted_while_saving(step=3))
        with pytest.raises(PowerCut):
            job.main(options)
    assert not no_leftovers(tmp_path) and not (tmp_path / "out").exists()

    (tmp_path / "killed.py").write_text(KILLED_WHILE_SAVING)
    killed = subprocess.run(
        [sys.executable, str(tmp_path / "killed.py"), *options],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    leftover = tmp_path / ".out.partial-run"
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert job.checkpoint_problem(leftover / "checkpoint-3").startswith("is incomplete (no trainer_state.json")
    row = job.main(options)
    assert not no_leftovers(tmp_path) and row["train_docs"] == 25
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if "checkpoint" in p.name or "lock" in p.name) == []


def test_working_directory_of_a_run_still_going_is_never_replaced(tmp_path):
    """While the run that owns `.out.partial-run` holds its lock, the directory is refused and left alone even
    when it holds no complete checkpoint (only a run that has ended, killed before its first complete checkpoint,
    has its directory replaced)."""
    fcntl = pytest.importorskip("fcntl")
    tmp = tmp_path / ".out.partial-run"
    (tmp / "checkpoint-3").mkdir(parents=True)
    (tmp / "checkpoint-3" / "model.safetensors").write_text("being written")
    with open(tmp / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        message = error_line(["--output_dir", str(tmp_path / "out"), "--train_file", "x.csv", *TINY])
    assert message.endswith(
        f"working directory {tmp} exists: another run into {tmp_path / 'out'} is going on; "
        "wait for it to end, or choose another --output_dir"
    )
    assert (tmp / "checkpoint-3" / "model.safetensors").read_text() == "being written"


def test_working_directory_of_another_run_is_never_reused(tmp_path):
    """A leftover `.out.partial-run` (a killed run, or one still going) is refused, not deleted or shared."""
    (tmp_path / ".out.partial-run").mkdir()
    (tmp_path / ".out.partial-run" / "model.safetensors").write_text("another run's")
    message = error_line(["--output_dir", str(tmp_path / "out"), "--train_file", "x.csv", *TINY])
    assert f"working directory {tmp_path / '.out.partial-run'} exists: another run" in message
    assert message.endswith("delete it, or it holds no complete checkpoint to resume from")
    assert (tmp_path / ".out.partial-run" / "model.safetensors").read_text() == "another run's"


def test_two_processes_give_the_metrics_and_weights_of_one_process(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 examples/run_classification.py ... --use_cpu` (gloo): two
    processes of 4 documents per step see the same 8 documents per step as one process of 8 (random sampler, no
    dropout, 32 training documents: no uneven last batch), and the evaluation gathers all test documents once. Only
    the float summation order differs; one checkpoint is written, by the main process."""
    path = write_csv(tmp_path / "reviews.csv", reviews(40))
    options = [
        "--train_file",
        path,
        *TINY,
        "--train_sampling_strategy",
        "random",
        "--hidden_dropout_prob",
        "0",
        "--use_cpu",
        "true",
    ]
    single = job.main(["--output_dir", str(tmp_path / "one"), *options, "--per_device_train_batch_size", "8"])
    result = launch_two_processes(
        "--output_dir", str(tmp_path / "two"), *options, "--per_device_train_batch_size", "4", timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not no_leftovers(tmp_path)
    two = json.loads((tmp_path / "two" / "all_results.json").read_text())
    assert (two["num_processes"], single["num_processes"]) == (2, 1)
    assert (two["train_docs"], two["test_docs"]) == (single["train_docs"], single["test_docs"]) == (32, 8)
    # The weights agree to 1e-4 only, so a test document near the boundary may flip: at most one of the 8.
    assert abs(two["accuracy"] - single["accuracy"]) <= 1 / 8 + 1e-9
    assert two["train_loss"] == pytest.approx(single["train_loss"], abs=1e-4)
    reference = load_file(tmp_path / "one" / "model.safetensors")
    for name, tensor in load_file(tmp_path / "two" / "model.safetensors").items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=1e-4, msg=name)


def test_two_processes_both_refuse_an_occupied_working_directory(tmp_path):
    """Every process of an `accelerate launch` run sees the leftover `.out.partial-run` and exits with the error
    line; none is left waiting at a barrier for a main process that has already failed, and nothing is deleted."""
    (tmp_path / ".out.partial-run").mkdir()
    (tmp_path / ".out.partial-run" / "model.safetensors").write_text("another run's")
    result = launch_two_processes(
        "--output_dir", str(tmp_path / "out"), "--train_file", "x.csv", *TINY, "--use_cpu", "true", timeout=120
    )
    assert result.returncode != 0
    assert result.stderr.count("fastformer-classify: error: working directory") == 2, result.stderr[-3000:]
    assert (tmp_path / ".out.partial-run" / "model.safetensors").read_text() == "another run's"
