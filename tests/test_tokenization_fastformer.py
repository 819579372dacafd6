"""FastformerTokenizer: the shipped vocabulary, special tokens, padding, save/load, AutoTokenizer, new vocabularies."""

import json

import pytest
from transformers import AutoTokenizer

from fastformer import FastformerConfig, FastformerTokenizer
from fastformer.tokenization_fastformer import DEFAULT_VOCAB_FILE, load_vocab


TEXT = "films adapted from comic books have had plenty of success , whether they're about superheroes ."


@pytest.fixture(scope="module")
def tokenizer():
    return FastformerTokenizer()


def test_shipped_vocabulary_is_bert_base_uncased(tokenizer):
    assert len(tokenizer) == 30522 == FastformerConfig().vocab_size
    assert tokenizer("i like strawberries")["input_ids"] == [101, 1045, 2066, 13137, 20968, 102]
    assert (
        tokenizer.pad_token_id,
        tokenizer.unk_token_id,
        tokenizer.cls_token_id,
        tokenizer.sep_token_id,
        tokenizer.mask_token_id,
    ) == (0, 100, 101, 102, 103)
    assert tokenizer.pad_token_id == FastformerConfig().pad_token_id
    assert tokenizer.model_input_names == ["input_ids", "attention_mask"]


def test_round_trip_of_a_text(tokenizer):
    ids = tokenizer(TEXT)["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in ids
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert tokenizer(decoded)["input_ids"] == ids  # decoding loses only spaces around punctuation
    assert decoded.replace(" ", "") == TEXT.replace(" ", "")
    plain = "an unexpectedly moving portrait of strawberries and superheroes"
    assert tokenizer.decode(tokenizer(plain)["input_ids"], skip_special_tokens=True) == plain
    # Upper case and accents are normalised away (uncased vocabulary).
    assert tokenizer("Café SUCCESS")["input_ids"] == tokenizer("cafe success")["input_ids"]
    # A character outside the vocabulary becomes [UNK] instead of disappearing.
    assert tokenizer("a \u2603 b")["input_ids"] == [101, 1037, 100, 1038, 102]


def test_special_tokens_pairs_padding_and_truncation(tokenizer):
    pair = tokenizer("a good film", "a bad film")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(pair) == [
        "[CLS]",
        "a",
        "good",
        "film",
        "[SEP]",
        "a",
        "bad",
        "film",
        "[SEP]",
    ]
    batch = tokenizer(["a good film", "bad"], padding=True)
    assert tokenizer.padding_side == "right"
    assert batch["input_ids"][1] == [101, 2919, 102, 0, 0]
    assert batch["attention_mask"] == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    fixed = tokenizer(["a good film"], padding="max_length", max_length=8, return_tensors="pt")
    assert fixed["input_ids"].shape == (1, 8) and fixed["attention_mask"].sum() == 5
    short = tokenizer(TEXT, truncation=True, max_length=6)["input_ids"]
    assert len(short) == 6 and short[-1] == tokenizer.sep_token_id
    special = tokenizer("a [MASK] film")["input_ids"]
    assert special[2] == tokenizer.mask_token_id


def test_save_load_round_trip_and_auto_tokenizer(tmp_path, tokenizer):
    default, tokenizer.model_max_length = tokenizer.model_max_length, 2048
    try:
        tokenizer.save_pretrained(tmp_path)
    finally:
        tokenizer.model_max_length = default
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "FastformerTokenizer"
    assert saved["auto_map"]["AutoTokenizer"][0] == "tokenization_fastformer.FastformerTokenizer"
    assert (tmp_path / "tokenization_fastformer.py").is_file() and (tmp_path / "tokenizer.json").is_file()
    for loaded in (FastformerTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert type(loaded) is FastformerTokenizer
        assert loaded.model_max_length == 2048
        assert loaded(TEXT)["input_ids"] == tokenizer(TEXT)["input_ids"]
        assert loaded.all_special_tokens == tokenizer.all_special_tokens
        assert loaded.all_special_ids == tokenizer.all_special_ids


def test_auto_tokenizer_resolves_from_a_fastformer_config(tmp_path, tokenizer):
    """A directory holding only a Fastformer config.json and the vocabulary resolves through the config's type."""
    FastformerConfig().save_pretrained(tmp_path)
    tokenizer.backend_tokenizer.save(str(tmp_path / "tokenizer.json"))
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is FastformerTokenizer
    assert loaded("i like strawberries")["input_ids"] == [101, 1045, 2066, 13137, 20968, 102]


def test_train_new_vocabulary_from_an_iterator(tmp_path, tokenizer):
    texts = ["the plot is thin but the acting is superb", "a dull , joyless remake", "superb acting , thin plot"] * 5
    new = tokenizer.train_new_from_iterator(([t] for t in texts), vocab_size=120)
    assert type(new) is FastformerTokenizer and len(new) <= 120
    assert set(new.all_special_tokens) == set(tokenizer.all_special_tokens)
    ids = new("The acting is SUPERB")["input_ids"]
    assert new.convert_ids_to_tokens(ids) == ["[CLS]", "the", "acting", "is", "superb", "[SEP]"]
    assert new("superb \u2603")["input_ids"][2] == new.unk_token_id
    assert new(["superb", "a dull remake"], padding=True)["input_ids"][0][-1] == new.pad_token_id
    new.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)("thin plot")["input_ids"] == new("thin plot")["input_ids"]


def test_vocab_argument_and_bad_vocabularies(tmp_path):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "film", "##s"]
    tokenizer = FastformerTokenizer(vocab={word: i for i, word in enumerate(words)})
    assert tokenizer.convert_ids_to_tokens(tokenizer("good films")["input_ids"]) == [
        "[CLS]",
        "good",
        "film",
        "##s",
        "[SEP]",
    ]
    with pytest.raises(ValueError, match="`mask_token` '\\[MASK\\]' is not in the vocabulary"):
        FastformerTokenizer(vocab={word: i for i, word in enumerate(words[:4])})
    duplicated = tmp_path / "vocab.txt"
    duplicated.write_text("\n".join(words + ["good"]) + "\n")
    with pytest.raises(ValueError, match="appears twice"):
        FastformerTokenizer(vocab=str(duplicated))
    assert DEFAULT_VOCAB_FILE.is_file()


# ---------------------------------------------------------------------------------------------------------------
# The length limit (issue #13, item 6)


def test_default_length_limit_is_the_default_position_table_and_pipelines_truncate_to_it(tmp_path):
    """Catches a tokenizer without a length limit (transformers' 1e30): `truncation=True` then returned 402 ids for a
    model whose position table holds 256, and `pipeline("text-classification")(..., truncation=True)` crashed."""
    from transformers import pipeline

    from fastformer import FastformerForSequenceClassification

    long_text = " ".join([TEXT] * 20)
    tokenizer = FastformerTokenizer()
    assert len(tokenizer(long_text)["input_ids"]) > 256  # without the limit the input would not fit
    assert tokenizer.model_max_length == 256 == FastformerConfig().max_position_embeddings
    assert len(tokenizer(long_text, truncation=True)["input_ids"]) == 256
    assert FastformerTokenizer(model_max_length=64).model_max_length == 64  # an explicit limit wins

    config = FastformerConfig(hidden_size=16, num_attention_heads=2, intermediate_size=32, num_hidden_layers=1)
    FastformerForSequenceClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["model_max_length"] == 256
    assert AutoTokenizer.from_pretrained(tmp_path).model_max_length == 256
    classify = pipeline("text-classification", model=str(tmp_path), device="cpu")
    (result,) = classify(long_text, truncation=True)
    assert result["label"] in config.id2label.values() and 0 < result["score"] <= 1


# ---------------------------------------------------------------------------------------------------------------
# transformers' `...TokenizerFast` name; vocabulary files written on Windows


def test_fast_tokenizer_name_is_the_tokenizer(tmp_path, tokenizer):
    """Catches `from fastformer import FastformerTokenizerFast` failing with ImportError: transformers 5 has one
    `tokenizers`-backed class per model and keeps the `...TokenizerFast` name as its alias (`BertTokenizerFast is
    BertTokenizer`). The alias is exported by the package and its module, and a `tokenizer_config.json` naming it
    loads as a `FastformerTokenizer`."""
    from transformers import BertTokenizer, BertTokenizerFast

    import fastformer
    from fastformer import FastformerTokenizerFast
    from fastformer.tokenization_fastformer import FastformerTokenizerFast as module_alias

    assert BertTokenizerFast is BertTokenizer  # the convention followed
    assert FastformerTokenizerFast is module_alias is FastformerTokenizer
    assert "FastformerTokenizerFast" in fastformer.__all__
    assert FastformerTokenizerFast()("i like strawberries")["input_ids"] == [101, 1045, 2066, 13137, 20968, 102]
    tokenizer.save_pretrained(tmp_path)
    config_file = tmp_path / "tokenizer_config.json"
    saved = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**saved, "tokenizer_class": "FastformerTokenizerFast"}))
    for loaded in (AutoTokenizer.from_pretrained(tmp_path), FastformerTokenizerFast.from_pretrained(tmp_path)):
        assert type(loaded) is FastformerTokenizer
        assert loaded(TEXT)["input_ids"] == tokenizer(TEXT)["input_ids"]


@pytest.mark.parametrize("layout", ["crlf", "bom", "bom_crlf"])
def test_vocabulary_file_written_on_windows_reads_like_a_unix_one(tmp_path, layout):
    """Catches a `vocab.txt` saved by a Windows editor read differently from the same file with Unix line ends: the
    UTF-8 byte-order mark stayed on the first token (`'\\ufeff[PAD]'`, so the tokenizer refused the file: `[PAD]`
    "is not in the vocabulary"); `\\r\\n` line ends must leave no `\\r` on a token (`'good\\r'` would never match)."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "film", "##s"]
    unix, windows = tmp_path / "unix.txt", tmp_path / f"{layout}.txt"
    unix.write_bytes(("\n".join(words) + "\n").encode("utf-8"))
    newline = "\r\n" if "crlf" in layout else "\n"
    windows.write_bytes((("\ufeff" if "bom" in layout else "") + newline.join(words) + newline).encode("utf-8"))
    assert windows.read_bytes() != unix.read_bytes()
    assert load_vocab(windows) == load_vocab(unix) == {word: i for i, word in enumerate(words)}
    tokenizer = FastformerTokenizer(vocab=str(windows))
    ids = tokenizer("good films")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "good", "film", "##s", "[SEP]"]
    assert ids == FastformerTokenizer(vocab=str(unix))("good films")["input_ids"] == [2, 5, 6, 7, 3]
    assert tokenizer.pad_token_id == 0
