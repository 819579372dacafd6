"""The main job (`fastformer-classify`, `examples/run_classification.py`) end to end on tiny local data, and its
errors for bad input: one line each, and never a checkpoint left behind."""

import csv
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
from fastformer.classify.pang_lee import CACHE_NAME


pytest.importorskip("datasets")
pytest.importorskip("evaluate")

TINY = ["--hidden_size", "16", "--num_attention_heads", "2", "--intermediate_size", "32", "--num_hidden_layers", "1",
        "--max_seq_length", "48", "--num_train_epochs", "2", "--per_device_train_batch_size", "8",
        "--learning_rate", "5e-3", "--logging_steps", "2", "--disable_tqdm", "true", "--seed", "0"]
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
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--main_process_port", str(port), str(EXAMPLES / "run_classification.py"),
         *job_args],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=timeout,
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
    for name in ("config.json", "model.safetensors", "modeling_fastformer.py", "configuration_fastformer.py",
                 "tokenizer.json", "tokenizer_config.json", "tokenization_fastformer.py", "README.md",
                 "all_results.json"):
        assert (output_dir / name).is_file(), name
    config = json.loads((output_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["max_position_embeddings"] == 48
    assert config["tokenizer_class"] == "FastformerTokenizer"
    assert json.loads((output_dir / "all_results.json").read_text())["accuracy"] == row["accuracy"]
    card = (output_dir / "README.md").read_text()
    assert "library_name: transformers" in card and "pipeline_tag: text-classification" in card
    assert f"value: {row['accuracy']}" in card and "trust_remote_code=True" in card

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
    result = subprocess.run([sys.executable, "-P", str(tmp_path / "load.py"), str(output_dir),
                             str(tmp_path / "texts.json")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["tokenizer"] == "FastformerTokenizer"
    assert remote["input_ids"] == batch["input_ids"].tolist()
    torch.testing.assert_close(torch.tensor(remote["logits"]), logits)


def test_bert_model_type_trains_on_the_same_data(tmp_path):
    train_file = write_csv(tmp_path / "reviews.csv", reviews(24))
    row = job.main(["--output_dir", str(tmp_path / "bert"), "--train_file", train_file, "--model_type", "bert",
                    *TINY, "--num_train_epochs", "1"])
    assert row["model_type"] == "bert"
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "bert")
    assert type(model).__name__ == "BertForSequenceClassification"
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.max_position_embeddings) == (
        16, 1, 48)


def run_error(tmp_path, *args):
    """Runs the job expecting a clean failure; returns the message, checking that no checkpoint was left."""
    output_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as failure:
        job.main(["--output_dir", str(output_dir), *TINY, *args])
    message = str(failure.value.code)
    assert message.startswith("fastformer-classify: error: ") and "\n" not in message, message
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
        tmp_path, "--train_file", path, "--label_set", "neg,pos")
    train = write_csv(tmp_path / "train.csv", reviews(12))
    test = write_csv(tmp_path / "test.csv", [("a fine film", "pos"), ("a film", "neutral")])
    assert "test.csv, row 1: label 'neutral' is outside the declared label set ['neg', 'pos']" in run_error(
        tmp_path, "--train_file", train, "--test_file", test)


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
    assert "--model_type must be one of ('fastformer', 'bert'), got 'gpt'" in run_error(tmp_path, "--model_type", "gpt")
    path = write_csv(tmp_path / "reviews.csv", reviews(8))
    assert "--test_size must lie in (0, 1), got 1.5" in run_error(tmp_path, "--train_file", path, "--test_size", "1.5")
    assert "invalid model settings: `hidden_size` (16) must be divisible by `num_attention_heads` (3)" in run_error(
        tmp_path, "--train_file", path, "--num_attention_heads", "3")


def test_existing_output_is_never_overwritten(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="exists and is not empty"):
        job.main(["--output_dir", str(tmp_path / "out"), "--train_file", "x.csv", *TINY])
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
    options = ["--train_file", path, *TINY, "--train_sampling_strategy", "random", "--save_strategy", "steps",
               "--save_steps", "3", "--hidden_dropout_prob", "0.2"]
    expected = job.main(["--output_dir", str(tmp_path / "uninterrupted"), *options])
    assert not list((tmp_path / "uninterrupted").glob("checkpoint-*"))  # intermediate checkpoints are dropped

    with monkeypatch.context() as patch:
        patch.setattr(job, "Trainer", interrupted_trainer(after_step=5))
        with pytest.raises(PowerCut):
            job.main(["--output_dir", str(tmp_path / "out"), *options])
    kept = tmp_path / ".out.partial-run"
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in kept.glob("checkpoint-*")) == ["checkpoint-3"]

    resumed = job.main(["--output_dir", str(tmp_path / "out"), *options,
                        "--resume_from_checkpoint", str(kept / "checkpoint-3")])
    assert not no_leftovers(tmp_path) and not kept.exists()
    # (`train_loss` is not compared: the Trainer averages it over the steps of the resumed process only)
    assert resumed["accuracy"] == expected["accuracy"]
    reference = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    for name, tensor in load_file(tmp_path / "out" / "model.safetensors").items():
        assert torch.equal(tensor, reference[name]), name


def test_resume_from_something_that_is_not_a_checkpoint(tmp_path):
    assert "is not a Trainer checkpoint (no trainer_state.json)" in run_error(
        tmp_path, "--train_file", "x.csv", "--resume_from_checkpoint", str(tmp_path))


def test_working_directory_of_another_run_is_never_reused(tmp_path):
    """A leftover `.out.partial-run` (a killed run, or one still going) is refused, not deleted or shared."""
    (tmp_path / ".out.partial-run").mkdir()
    (tmp_path / ".out.partial-run" / "model.safetensors").write_text("another run's")
    with pytest.raises(SystemExit, match=r"working directory .*\.out\.partial-run exists: another run"):
        job.main(["--output_dir", str(tmp_path / "out"), "--train_file", "x.csv", *TINY])
    assert (tmp_path / ".out.partial-run" / "model.safetensors").read_text() == "another run's"


def test_two_processes_give_the_metrics_and_weights_of_one_process(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 examples/run_classification.py ... --use_cpu` (gloo): two
    processes of 4 documents per step see the same 8 documents per step as one process of 8 (random sampler, no
    dropout, 32 training documents: no uneven last batch), and the evaluation gathers all test documents once. Only
    the float summation order differs; one checkpoint is written, by the main process."""
    path = write_csv(tmp_path / "reviews.csv", reviews(40))
    options = ["--train_file", path, *TINY, "--train_sampling_strategy", "random", "--hidden_dropout_prob", "0",
               "--use_cpu", "true"]
    single = job.main(["--output_dir", str(tmp_path / "one"), *options, "--per_device_train_batch_size", "8"])
    result = launch_two_processes("--output_dir", str(tmp_path / "two"), *options,
                                  "--per_device_train_batch_size", "4", timeout=300)
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
    result = launch_two_processes("--output_dir", str(tmp_path / "out"), "--train_file", "x.csv", *TINY,
                                  "--use_cpu", "true", timeout=120)
    assert result.returncode != 0
    assert result.stderr.count("fastformer-classify: error: working directory") == 2, result.stderr[-3000:]
    assert (tmp_path / ".out.partial-run" / "model.safetensors").read_text() == "another run's"
