"""examples/run_clm.py end to end on a tiny corpus of documents of 1 to 4 sentences, padded (blocks) and `--packing`
(documents as units), and the loss of a packed batch: that of the same pieces padded, not that of one long row; bad
data and a one-process `accelerate launch --cpu` end in one line `run_clm.py: error: ...`."""

import math
import random
import sys
from itertools import chain
from pathlib import Path

import pytest
import torch
from helpers import TINY_LM_RUN, causal_config, command_line, randomize_
from transformers import AutoModelForCausalLM


pytest.importorskip("datasets")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
import run_clm  # noqa: E402

from fastformer import FastformerForCausalLM, FastformerTokenizer  # noqa: E402
from fastformer.classify import language_modeling  # noqa: E402


NOUNS = "cat dog bird fish horse cow duck goat".split()
VERBS = "sees likes chases feeds follows".split()
ADJECTIVES = "big small red old young".split()
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "."] + NOUNS + VERBS + ADJECTIVES


def write_corpus(root: Path, lines: int = 300) -> Path:
    """Toy-grammar documents of 1 to 4 sentences of 7 words (9 to 30 tokens with [CLS] and [SEP]), one a line, and a
    word-level tokenizer for them (26 ids) in `root`."""
    rng = random.Random(0)
    text = []
    for _ in range(lines):
        sentences = [
            f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} ."
            for _ in range(rng.randint(1, 4))
        ]
        text.append(" ".join(sentences))
    (root / "train.txt").write_text("\n".join(text) + "\n")
    FastformerTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(root / "tokenizer")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("clm-data"))


def arguments(corpus, output_dir, **overrides):
    options = dict(
        TINY_LM_RUN,
        output_dir=output_dir,
        train_file=corpus / "train.txt",
        tokenizer_name=corpus / "tokenizer",
        max_seq_length=16,
        per_device_eval_batch_size=4,
    )
    return command_line({**options, **overrides})


def prepared(corpus, **overrides):
    """`(train_set, held_out, collator, tokenizer)` as the script builds them for these options."""
    model_args, data_args, training_args = run_clm.parse_args(arguments(corpus, "unused", **overrides))
    tokenizer = language_modeling.load_tokenizer(model_args, data_args)
    return (*run_clm.prepare_data(data_args, training_args, tokenizer), tokenizer)


def held_out_loss(model, held_out, batch_size=4) -> float:
    """The `Trainer`'s eval loss: the mean over the held-out blocks of their batch's mean next-token loss (batches of
    `batch_size` blocks, the last one shorter)."""
    losses = []
    with torch.no_grad():
        for i in range(0, len(held_out), batch_size):
            rows = held_out[i : i + batch_size]
            inputs = {key: torch.tensor(rows[key]) for key in rows}
            if "labels" not in inputs:  # padded mode: the collator's labels are the input ids
                inputs["labels"] = inputs["input_ids"]
            losses += [model(**inputs).loss] * len(inputs["input_ids"])
    return torch.stack(losses).mean().item()


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_run_clm_trains_and_the_checkpoint_reloads(corpus, tmp_path, packing):
    """Both modes learn (held-out loss well below chance, ln 26); the checkpoint loads with `AutoModelForCausalLM`,
    gives the reported held-out loss on the script's own held-out blocks, and generates."""
    output_dir = tmp_path / "out"
    metrics = run_clm.main(arguments(corpus, output_dir, packing=packing))
    assert metrics["eval_loss"] < 0.8 * math.log(len(WORDS)), metrics
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    model = AutoModelForCausalLM.from_pretrained(output_dir).eval()
    assert type(model) is FastformerForCausalLM and model.config.is_decoder
    assert (model.config.bos_token_id, model.config.eos_token_id) == (2, 3)  # [CLS], [SEP]
    _, held_out, _, tokenizer = prepared(corpus, packing=packing)
    assert held_out_loss(model, held_out) == pytest.approx(metrics["eval_loss"], rel=1e-5)
    prompt = tokenizer("the big cat", add_special_tokens=False, return_tensors="pt").input_ids
    prompt = torch.cat([torch.tensor([[tokenizer.cls_token_id]]), prompt], dim=1)
    generated = model.generate(prompt, max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, 8) and torch.equal(generated[:, :4], prompt)


def test_packing_keeps_documents_whole_and_measures_the_padded_runs_held_out_tokens(corpus):
    """`--packing` trains on every token of every training document, in pieces of at most `--max_seq_length`; its
    held-out blocks are the padded run's, with positions restarting at each document and no label at a document's
    first token (the padded run predicts it from the previous document)."""
    train_set, held_out, _, tokenizer = prepared(corpus, packing=True)
    padded_train, padded_held_out, _, _ = prepared(corpus)
    model_args, data_args, training_args = run_clm.parse_args(arguments(corpus, "unused"))
    documents = tokenizer(list(language_modeling.raw_datasets(data_args, training_args)["train"]["text"]))["input_ids"]
    assert max(len(ids) for ids in documents) > 16  # some documents are cut
    assert list(chain(*train_set["input_ids"])) == list(chain(*documents))
    assert train_set.column_names == ["input_ids", "attention_mask"]
    expected = [len(ids[i : i + 16]) for ids in documents for i in range(0, len(ids), 16)]
    assert [len(ids) for ids in train_set["input_ids"]] == expected
    assert len(padded_train) == sum(expected) // 16  # the padded run: the same tokens in full blocks
    assert held_out["input_ids"] == padded_held_out["input_ids"]
    for ids, labels, positions in zip(held_out["input_ids"], held_out["labels"], held_out["position_ids"]):
        starts = [i for i, token in enumerate(ids) if token == tokenizer.cls_token_id]
        assert [i for i, position in enumerate(positions) if position == 0] == sorted({0, *starts})
        assert [i for i, label in enumerate(labels) if label == -100] == starts
        assert all(label == token for label, token in zip(labels, ids) if label != -100)


def test_packed_batch_loss_equals_the_padded_loss_and_not_one_long_rows(corpus):
    """The script's packed batches (as `DataCollatorWithFlattening` builds them) give a randomized model the loss of
    the same pieces padded one per row, to 1e-5, for every batch of the first epoch; the same row read as one
    sequence (positions 0..n-1, no restarts) gives a loss far from it."""
    train_set, _, collator, tokenizer = prepared(corpus, packing=True)
    model = randomize_(FastformerForCausalLM(causal_config(vocab_size=len(tokenizer)))).eval()
    tolerance, smallest_gap = 1e-5, math.inf
    for start in range(0, len(train_set), 8):
        features = [train_set[i] for i in range(start, min(start + 8, len(train_set)))]
        batch = collator(features)
        lengths = [len(feature["input_ids"]) for feature in features]
        assert set(batch) == {"input_ids", "labels", "position_ids"} and batch["input_ids"].shape == (1, sum(lengths))
        ids = torch.zeros(len(features), max(lengths), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, feature in enumerate(features):
            ids[row, : lengths[row]], mask[row, : lengths[row]] = torch.tensor(feature["input_ids"]), 1
        with torch.no_grad():
            packed = model(**batch).loss
            padded = model(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            one_row = model(
                batch["input_ids"], position_ids=torch.arange(sum(lengths)).unsqueeze(0), labels=batch["labels"]
            ).loss
        torch.testing.assert_close(packed, padded, atol=tolerance, rtol=0)
        smallest_gap = min(smallest_gap, abs(one_row.item() - padded.item()))
    assert smallest_gap > 100 * tolerance, smallest_gap


def test_bad_data_and_a_one_process_cpu_launch_end_in_one_line_naming_run_clm(corpus, tmp_path, monkeypatch):
    """The shared data side's errors reach the command line as `run_clm.py: error: ...`: an unknown corpus (the
    choices include `pang-lee-train`), a missing file, and `accelerate launch --cpu` without MPI, which would train
    on one process (refused before the options are read)."""
    unknown = r"^run_clm\.py: error: unknown corpus 'nope' in --dataset_name; choose from \(.*'pang-lee-train'\)$"
    with pytest.raises(SystemExit, match=unknown):
        run_clm.main(arguments(corpus, tmp_path / "out", train_file=None, dataset_name="nope"))
    with pytest.raises(SystemExit, match=r"^run_clm\.py: error: data file .*missing\.txt does not exist$"):
        run_clm.main(arguments(corpus, tmp_path / "out", train_file=tmp_path / "missing.txt"))
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    for name in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit, match=r"^run_clm\.py: error: `accelerate launch --cpu .* examples/run_clm\.py "):
        run_clm.main(arguments(corpus, tmp_path / "out"))
    assert not (tmp_path / "out").exists()
