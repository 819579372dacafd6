"""examples/run_mlm.py end to end on a tiny corpus: pretraining, reloading, resuming, and 2 processes; with
`--packing`, documents as units: pieces, masking, a flattened batch equal to each piece alone, resuming."""

import json
import math
import os
import random
import shutil
import subprocess
import sys
from itertools import chain
from pathlib import Path

import pytest
import torch
from helpers import TINY_LM_RUN, StopAfter, assert_far, command_line, free_port, randomize_, tiny_config
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, pipeline


pytest.importorskip("datasets")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
import run_mlm  # noqa: E402

from fastformer import FastformerForMaskedLM, FastformerTokenizer  # noqa: E402
from fastformer.classify import corpora, language_modeling  # noqa: E402


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
        TINY_LM_RUN,
        output_dir=output_dir,
        train_file=corpus / "train.txt",
        tokenizer_name=corpus / "tokenizer",
        max_seq_length=32,
        max_train_samples=160,
        per_device_eval_batch_size=2,
    )
    return command_line({**options, **overrides})


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
    documents = language_modeling.load_corpus("pang-lee-train", tmp_path)
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
    assert set(language_modeling.CORPORA) == set(corpora.FETCHERS) | set(language_modeling.DERIVED)
    for name in ("jargon", "botchan"):
        (tmp_path / f"{name}.json").write_text(json.dumps([f"a {name} document", "another"]))
        # cached: nothing fetched
        assert language_modeling.load_corpus(name, tmp_path) == [f"a {name} document", "another"]


# ------------------------------------------------------------------------------------------------------ --packing


@pytest.fixture(scope="module")
def packed(corpus, tmp_path_factory):
    """One `--packing` run of 60 steps (3 epochs of 20 batches of 8 lines, each line one document and one piece),
    checkpoints at steps 30 and 60."""
    output_dir = tmp_path_factory.mktemp("mlm-packed") / "out"
    metrics = run_mlm.main(arguments(corpus, output_dir, packing=True))
    return output_dir, metrics


def prepared(corpus, **overrides):
    """`(train_set, held_out, collator, tokenizer)` as the script builds them for these options."""
    model_args, data_args, training_args = run_mlm.parse_args(arguments(corpus, "unused", **overrides))
    tokenizer = run_mlm.load_tokenizer(model_args, data_args)
    return (*run_mlm.prepare_data(data_args, training_args, tokenizer), tokenizer)


def prepared_args(corpus, **overrides):
    """`(data_args, training_args)` for these options."""
    _, data_args, training_args = run_mlm.parse_args(arguments(corpus, "unused", **overrides))
    return data_args, training_args


def test_packed_run_pretrains_and_is_measured_on_the_padded_runs_masked_tokens(corpus, packed):
    """The packed run learns (held-out loss well below chance), its checkpoint reloads, and its held-out set is the
    padded run's (same blocks, same masked tokens) with positions restarting at every document, on which the
    reloaded model gives the reported loss."""
    output_dir, metrics = packed
    assert metrics["epoch"] == 3 and metrics["train_samples"] == 160  # 160 one-piece documents
    assert metrics["eval_loss"] < 0.8 * math.log(28), metrics
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    model = AutoModelForMaskedLM.from_pretrained(output_dir).eval()
    assert type(model) is FastformerForMaskedLM
    _, held_out, _, tokenizer = prepared(corpus, packing=True)
    _, padded_held_out, _, _ = prepared(corpus)
    assert held_out["input_ids"] == padded_held_out["input_ids"] and held_out["labels"] == padded_held_out["labels"]
    for ids, labels, positions in zip(held_out["input_ids"], held_out["labels"], held_out["position_ids"]):
        original = [token if label == -100 else label for token, label in zip(ids, labels)]  # before masking
        starts = [i for i, token in enumerate(original) if i == 0 or token == tokenizer.cls_token_id]
        assert [i for i, position in enumerate(positions) if position == 0] == starts
        assert all(positions[i] == positions[i - 1] + 1 for i in range(1, len(ids)) if i not in starts)
    keys = ("input_ids", "attention_mask", "position_ids", "labels")
    with torch.no_grad():  # the Trainer's eval loss: the mean over batches (of 2) of each batch's token mean
        losses = [model(**{k: torch.tensor(held_out[i : i + 2][k]) for k in keys}).loss for i in range(0, 8, 2)]
    assert torch.stack(losses).mean().item() == pytest.approx(metrics["eval_loss"], rel=1e-5)


def test_packed_resumed_run_ends_with_the_weights_of_the_uninterrupted_packed_run(corpus, packed, tmp_path):
    """`--packing` keeps the resume guarantee: stopped at step 30 (mid-epoch 2) and resumed, a packed run ends with
    exactly the weights of the uninterrupted packed run (same pieces per batch, same masks)."""
    output_dir = tmp_path / "out"
    run_mlm.main(arguments(corpus, output_dir, packing=True), callbacks=[StopAfter(30)])
    interrupted = final_weights(output_dir)
    run_mlm.main(arguments(corpus, output_dir, packing=True, resume_from_checkpoint="last"))
    expected = final_weights(packed[0])
    assert any(not torch.equal(interrupted[name], expected[name]) for name in expected)  # it did stop early
    for name, tensor in expected.items():
        assert torch.equal(final_weights(output_dir)[name], tensor), name


def test_packing_cuts_long_documents_into_pieces_and_drops_no_token(corpus):
    """With `--max_seq_length 8` every 14-token line is cut into a piece of 8 and one of 6, in order: the pieces
    concatenated are exactly the tokenized training documents (nothing dropped); `block` numbers the pieces."""
    train_set, _, _, tokenizer = prepared(corpus, packing=True, max_seq_length=8, max_train_samples=None)
    data_args, training_args = prepared_args(corpus, packing=True, max_seq_length=8)
    lines = list(language_modeling.raw_datasets(data_args, training_args)["train"]["text"])
    documents = tokenizer(lines)["input_ids"]
    assert {len(ids) for ids in documents} == {14}  # each line: [CLS] 12 words [SEP]
    assert [len(ids) for ids in train_set["input_ids"]] == [8, 6] * len(documents)
    assert list(chain(*train_set["input_ids"])) == list(chain(*documents))
    assert train_set["block"] == list(range(len(train_set)))
    assert train_set.column_names == ["input_ids", "attention_mask", "special_tokens_mask", "block"]


def test_packed_batches_mask_only_real_tokens_and_equal_each_piece_alone(corpus):
    """The collator of `--packing` on every training piece (cut at 8 tokens, so that half of the pieces start inside
    a document): one row per batch with positions restarting at each piece; [CLS] and [SEP] are never masked;
    15% of the real tokens are masked, 80% of those to [MASK]; a piece is masked the same way whatever batch it is
    in; a piece starting inside a document keeps its first token's label. A randomized model's logits on a packed
    batch equal each piece run alone, and its loss that of the pieces padded one per row."""
    train_set, _, collator, tokenizer = prepared(corpus, packing=True, max_seq_length=8, max_train_samples=None)
    features = [train_set[i] for i in range(len(train_set))]
    real = masked = to_mask_token = first_token_labels = 0
    batches = []
    for i in range(0, len(features), 8):
        group = features[i : i + 8]
        batch = collator(group)
        batches.append((group, batch))
        assert set(batch) == {"input_ids", "labels", "position_ids"} and batch["input_ids"].shape[0] == 1
        original = torch.tensor(list(chain(*(f["input_ids"] for f in group))))
        special = torch.tensor(list(chain(*(f["special_tokens_mask"] for f in group)))).bool()
        ids, labels = batch["input_ids"][0], batch["labels"][0]
        expected_positions = list(chain(*(range(len(f["input_ids"])) for f in group)))
        assert batch["position_ids"][0].tolist() == expected_positions
        assert torch.equal(ids[special], original[special]) and (labels[special] == -100).all()
        chosen = labels != -100
        assert torch.equal(labels[chosen], original[chosen]) and torch.equal(ids[~chosen], original[~chosen])
        real += int((~special).sum())
        masked += int(chosen.sum())
        to_mask_token += int((ids[chosen] == tokenizer.mask_token_id).sum())
        first_token_labels += sum(
            int(labels[p] != -100) for p, position in enumerate(expected_positions) if not position
        )
    assert real > 4000 and abs(masked / real - 0.15) < 0.02, masked / real
    assert abs(to_mask_token / masked - 0.8) < 0.05, to_mask_token / masked
    assert first_token_labels > 0  # masked tokens at a piece's first position are trained on
    group, batch = batches[3]
    lengths = [len(f["input_ids"]) for f in group]
    alone = collator(group[2:3])  # the same piece in another batch: the same masks
    offset = sum(lengths[:2])
    assert torch.equal(alone["input_ids"][0], batch["input_ids"][0, offset : offset + lengths[2]])
    assert torch.equal(alone["labels"][0], batch["labels"][0, offset : offset + lengths[2]])

    model = randomize_(FastformerForMaskedLM(tiny_config(vocab_size=len(tokenizer)))).eval()
    pieces = batch["input_ids"][0].split(lengths)
    piece_labels = batch["labels"][0].split(lengths)
    with torch.no_grad():
        packed_out = model(**batch)
        expected = torch.cat([model(piece.unsqueeze(0)).logits for piece in pieces], dim=1)
        unsegmented = model(batch["input_ids"], position_ids=torch.arange(sum(lengths)).unsqueeze(0)).logits
        ids = torch.zeros(len(pieces), max(lengths), dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for row, (piece, label) in enumerate(zip(pieces, piece_labels)):
            ids[row, : len(piece)], mask[row, : len(piece)], labels[row, : len(piece)] = piece, 1, label
        padded_loss = model(ids, attention_mask=mask, labels=labels).loss
    assert_far(unsegmented, expected, atol=1e-4)
    torch.testing.assert_close(packed_out.logits, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(packed_out.loss, padded_loss, atol=1e-5, rtol=1e-5)
