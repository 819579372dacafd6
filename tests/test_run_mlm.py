"""examples/run_mlm.py end to end on a tiny corpus: pretraining, reloading, resuming, and 2 processes."""

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import StopAfter, free_port
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, pipeline


pytest.importorskip("datasets")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
import run_mlm  # noqa: E402

from fastformer import FastformerForMaskedLM, FastformerTokenizer  # noqa: E402
from fastformer.classify import corpora  # noqa: E402


NOUNS = "cat dog bird fish horse cow duck goat".split()
VERBS = "sees likes chases feeds follows".split()
ADJECTIVES = "big small red old young".split()


def write_corpus(root: Path, lines: int = 400) -> Path:
    """A toy-grammar corpus and a word-level tokenizer for it (28 ids) in `root`."""
    rng = random.Random(0)
    text = []
    for _ in range(lines):
        a, b = rng.choice(NOUNS), rng.choice(NOUNS)
        adjective, verb, other = rng.choice(ADJECTIVES), rng.choice(VERBS), rng.choice(ADJECTIVES)
        text.append(f"the {adjective} {a} {verb} the {b} . the {b} is {other} .")
    (root / "train.txt").write_text("\n".join(text) + "\n")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", ".", "is"] + NOUNS + VERBS + ADJECTIVES
    FastformerTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(root / "tokenizer")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("mlm-data"))


def arguments(corpus, output_dir, **overrides):
    options = dict(
        output_dir=output_dir,
        train_file=corpus / "train.txt",
        tokenizer_name=corpus / "tokenizer",
        max_seq_length=32,
        max_train_samples=160,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_dropout_prob=0.0,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=2,
        learning_rate=1e-2,
        warmup_steps=0,
        max_steps=60,
        save_steps=30,
        logging_steps=10,
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        report_to="none",
    )
    options.update(overrides)
    return [f"--{key}={value}" for key, value in options.items()]


def final_weights(directory):
    return load_file(Path(directory) / "model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    """One single-process run of 60 steps (3 epochs of 20), checkpoints at steps 30 and 60."""
    output_dir = tmp_path_factory.mktemp("mlm-run") / "out"
    metrics = run_mlm.main(arguments(corpus, output_dir))
    return output_dir, metrics


def test_run_mlm_pretrains_and_the_checkpoint_reloads(corpus, uninterrupted):
    output_dir, metrics = uninterrupted
    assert metrics["epoch"] == 3  # the masks of several epochs
    assert metrics["eval_loss"] < 0.8 * math.log(28), metrics  # below chance (ln of the vocabulary)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert json.loads((output_dir / "all_results.json").read_text())["eval_loss"] == metrics["eval_loss"]
    model = AutoModelForMaskedLM.from_pretrained(output_dir).eval()
    assert type(model) is FastformerForMaskedLM
    assert model.lm_head.decoder.weight is model.fastformer.embeddings.word_embeddings.weight
    # The reloaded model scores the script's own held-out blocks (masked once) to its reported loss.
    model_args, data_args, training_args = run_mlm.parse_args(arguments(corpus, output_dir))
    tokenizer = run_mlm.load_tokenizer(model_args, data_args)
    _, held_out, _ = run_mlm.prepare_data(data_args, training_args, tokenizer)
    assert len(held_out) == 8
    with torch.no_grad():  # the Trainer's eval loss: the mean over batches (of 2) of each batch's token mean
        losses = [
            model(**{k: torch.tensor(held_out[i : i + 2][k]) for k in ("input_ids", "attention_mask", "labels")}).loss
            for i in range(0, 8, 2)
        ]
    assert torch.stack(losses).mean().item() == pytest.approx(metrics["eval_loss"], rel=1e-5)
    # The checkpoint carries its tokenizer: fill-mask straight from the directory ranks the model's predictions.
    fill = pipeline("fill-mask", model=str(output_dir))
    results = fill("the big cat [MASK] the dog .", top_k=3)
    encoded = tokenizer("the big cat [MASK] the dog .", return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0, encoded.input_ids[0].tolist().index(tokenizer.mask_token_id)]
    assert [r["token"] for r in results] == logits.topk(3).indices.tolist()


def test_resumed_run_ends_with_the_weights_of_the_uninterrupted_run(corpus, uninterrupted, tmp_path):
    output_dir = tmp_path / "out"
    run_mlm.main(arguments(corpus, output_dir), callbacks=[StopAfter(30)])  # stopped mid-epoch 2
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-30"]
    interrupted = final_weights(output_dir)
    metrics = run_mlm.main(arguments(corpus, output_dir, resume_from_checkpoint="last"))
    expected = final_weights(uninterrupted[0])
    assert any(not torch.equal(interrupted[name], expected[name]) for name in expected)  # it did stop early
    for name, tensor in expected.items():
        assert torch.equal(final_weights(output_dir)[name], tensor), name
    assert metrics["eval_loss"] == pytest.approx(uninterrupted[1]["eval_loss"], abs=1e-6)


def test_two_processes_match_one_process_with_the_same_global_batch(corpus, uninterrupted, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 ... --use_cpu`: two gloo processes of 4 blocks per step each
    see the same 8 blocks per step, masked the same way, as the single process of 8; the gradient is the token mean
    over all of them (`num_items_in_batch`). Evaluation too runs on the same global batches (1 block per process,
    2 in the single process). Only the float summation order differs."""
    output_dir = tmp_path / "out"
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(EXAMPLES)}
    result = subprocess.run(
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
            str(free_port()),
            str(EXAMPLES / "run_mlm.py"),
            *arguments(corpus, output_dir, per_device_train_batch_size=4, per_device_eval_batch_size=1),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output_dir / "all_results.json").read_text())
    assert metrics["num_processes"] == 2
    reference = uninterrupted[1]
    # Tolerance: float32 summation order only (the runs differ by ~1e-6 in weights); a wrong batch split, loss
    # normalisation or masking would move the loss by far more (runs with other seeds differ by ~1e-2).
    assert metrics["eval_loss"] == pytest.approx(reference["eval_loss"], abs=1e-4)
    # (the Trainer's `train_loss` averages over processes at each logging step only: 10 divides the 60 steps)
    assert metrics["train_loss"] == pytest.approx(reference["train_loss"], abs=1e-4)
    expected = final_weights(uninterrupted[0])
    for name, tensor in final_weights(output_dir).items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-4, msg=name)


def test_pretraining_helps_fine_tunes_the_classifier_from_the_mlm_checkpoint(corpus, uninterrupted, tmp_path):
    """`examples/pretraining_helps.py` on the toy grammar: the `pretrained` arm starts from every encoder weight of
    the run_mlm.py checkpoint (checked inside); `--arms pretrained` runs that arm alone, with the same result; a
    checkpoint of another shape is refused with the mismatch named."""
    import pretraining_helps

    rng = random.Random(1)
    rows = []
    for i in range(40):
        adjective = "big" if i % 2 else "small"
        rows.append((f"the {adjective} {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} .", i % 2))
    with open(tmp_path / "toy.csv", "w") as handle:
        handle.write("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    options = [
        "--train_file",
        str(tmp_path / "toy.csv"),
        "--tokenizer_name",
        str(corpus / "tokenizer"),
        "--hidden_size",
        "32",
        "--num_attention_heads",
        "4",
        "--intermediate_size",
        "37",
        "--max_seq_length",
        "32",
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--disable_tqdm",
        "true",
        "--use_cpu",
        "true",
    ]
    result = pretraining_helps.main(
        ["--pretrained", str(uninterrupted[0]), "--output_dir", str(tmp_path / "out"), *options]
    )
    assert [row["init"] for row in result["rows"]] == ["scratch", "pretrained"] and result["test_docs"] == 8
    assert json.loads((tmp_path / "out" / "results.json").read_text())["rows"] == result["rows"]
    only = pretraining_helps.main(
        [
            "--pretrained",
            str(uninterrupted[0]),
            "--output_dir",
            str(tmp_path / "only"),
            "--arms",
            "pretrained",
            *options,
        ]
    )
    same = [
        {key: row[key] for key in ("init", "accuracy", "macro_f1")} for row in (only["rows"][0], result["rows"][1])
    ]
    assert same[0] == same[1]  # the same run, deterministic on the CPU

    with pytest.raises(SystemExit, match=r"does not fit the classifier: hidden_size: checkpoint 32, classifier 16"):
        pretraining_helps.main(
            [
                "--pretrained",
                str(uninterrupted[0]),
                "--output_dir",
                str(tmp_path / "bad"),
                *options,
                "--hidden_size",
                "16",
                "--num_attention_heads",
                "4",
            ]
        )
    with pytest.raises(SystemExit, match="--arms takes a comma-separated subset of scratch,pretrained"):
        pretraining_helps.main(["--pretrained", str(uninterrupted[0]), "--arms", "both", *options])
    with pytest.raises(SystemExit, match="--arms needs a value"):
        pretraining_helps.main(["--pretrained", str(uninterrupted[0]), "--arms", *options])
    with pytest.raises(SystemExit, match="pass --pretrained DIR"):
        pretraining_helps.main(options)


def test_pang_lee_train_corpus_holds_the_main_jobs_training_reviews_and_no_test_review(tmp_path):
    """`--dataset_name pang-lee-train` is the main job's training split (its own loader and fixed split), so that a
    classifier fine-tuned from the pretraining is never tested on a review the pretraining read; it is derived
    anew from the job's cached copy on every run, never cached itself."""
    import csv

    from fastformer.classify import run_classification as job
    from fastformer.classify.corpora import CACHE_NAME

    with open(tmp_path / CACHE_NAME, "w", newline="") as handle:  # a stand-in for the 1,500 cached reviews
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((f"review {i} {random.Random(i).choice(NOUNS)}", i % 2) for i in range(1500))
    documents = run_mlm.load_corpus("pang-lee-train", tmp_path)
    data = job.load_data(job.DataArguments(cache_dir=str(tmp_path)))
    train, test = data["train"][0], data["test"][0]
    assert documents == train and len(documents) == 1200 and len(test) == 300
    assert not set(documents) & set(test) and len(set(documents) | set(test)) == 1500
    assert sorted(path.name for path in tmp_path.iterdir()) == [CACHE_NAME]  # nothing cached


def test_book_length_texts_are_cut_at_blank_lines_into_pieces_of_about_the_given_words():
    paragraphs = [" ".join(f"w{i}_{j}" for j in range(7 + i % 5)) for i in range(60)]  # 7-11 words each
    pieces = corpora.split_long_text("\r\n\r\n".join(paragraphs) + "\n\n\n\n", words_per_document=50)
    assert [p for piece in pieces for p in piece.split("\n\n")] == paragraphs  # every paragraph, in order, once
    sizes = [len(piece.split()) for piece in pieces]
    assert all(50 <= size < 50 + 11 for size in sizes[:-1]) and 0 < sizes[-1] < 50 + 11
    # a text without blank lines (Botchan's file) stays one document
    assert corpora.split_long_text("line one\nline two\nline three", words_per_document=2) == [
        "line one\nline two\nline three"
    ]


def test_every_registered_corpus_is_a_choice_and_loads_from_its_cache(tmp_path):
    assert set(run_mlm.CORPORA) == set(run_mlm.FETCHERS) | set(run_mlm.DERIVED)
    for name in ("jargon", "botchan"):
        (tmp_path / f"{name}.json").write_text(json.dumps([f"a {name} document", "another"]))
        assert run_mlm.load_corpus(name, tmp_path) == [f"a {name} document", "another"]  # cached: nothing fetched
