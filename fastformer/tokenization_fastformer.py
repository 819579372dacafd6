# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Fastformer tokenizer: an uncased WordPiece tokenizer backed by the `tokenizers` library."""

from pathlib import Path

from transformers.models.bert.tokenization_bert import BertTokenizer


# The shipped default vocabulary (bert-base-uncased's 30,522 WordPieces, Apache-2.0; see data/NOTICE.md). It exists
# only next to the installed package: a checkpoint always carries its own vocabulary in tokenizer.json.
DEFAULT_VOCAB_FILE = Path(__file__).resolve().parent / "data" / "vocab.txt"
# The longest input of a tokenizer built without `model_max_length`: `FastformerConfig`'s default
# `max_position_embeddings` (256, the official code's position table). transformers' own default (1e30, "no limit")
# would let `truncation=True` return more ids than a model's position table holds.
DEFAULT_MODEL_MAX_LENGTH = 256


def load_vocab(vocab_file: str | Path) -> dict[str, int]:
    """Reads a WordPiece `vocab.txt` (one token a line; the line number is the id) into `{token: id}`. Windows files
    read like Unix ones: `\\r\\n` line ends leave no `\\r` in a token, and a UTF-8 byte-order mark is dropped."""
    # Text mode reads "\r\n" (and "\r") as "\n"; "utf-8-sig" drops the byte-order mark some Windows editors write,
    # which "utf-8" would keep at the start of the first token ("\ufeff[PAD]").
    tokens = Path(vocab_file).read_text(encoding="utf-8-sig").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    vocab = {}
    for index, token in enumerate(tokens):
        if token in vocab:
            raise ValueError(
                f"{vocab_file}: token {token!r} appears twice (lines {vocab[token] + 1} and {index + 1})."
            )
        vocab[token] = index
    return vocab


class FastformerTokenizer(BertTokenizer):
    r"""
    Fast WordPiece tokenizer for Fastformer: transformers' `BertTokenizer` (`BertNormalizer` (lower-casing, accent
    stripping, control-character cleaning) → `BertPreTokenizer` (whitespace and punctuation) → WordPiece with `##`
    continuations → `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]`) with the shipped vocabulary, no segment ids and a
    length limit.

    With no `vocab`, it uses the vocabulary shipped with the package: bert-base-uncased's 30,522 WordPieces
    (`[PAD]`=0, `[UNK]`=100, `[CLS]`=101, `[SEP]`=102, `[MASK]`=103), which matches the default
    `FastformerConfig(vocab_size=30522, pad_token_id=0)`. To build a vocabulary for your own corpus, use the
    inherited `train_new_from_iterator`, which keeps this pipeline and the special tokens:

    ```python
    >>> from fastformer import FastformerTokenizer
    >>> tokenizer = FastformerTokenizer().train_new_from_iterator(batches_of_texts, vocab_size=8000)
    >>> tokenizer.save_pretrained("my-tokenizer")  # then AutoTokenizer.from_pretrained("my-tokenizer")
    ```

    The model reads `input_ids` and `attention_mask` only (no segment ids) and padding is on the right.
    `model_max_length` (what `truncation=True` and pipelines cut to) must not exceed the model's
    `max_position_embeddings`: it defaults to 256, `FastformerConfig`'s default, and the training scripts set it to
    the length they train on before saving the tokenizer beside the model. A tokenizer saved with a model of another
    length must be given it: `FastformerTokenizer(model_max_length=config.max_position_embeddings)`.

    Args:
        vocab (`str` or `dict[str, int]`, *optional*): a `vocab.txt` path or a `{token: id}` map; the shipped
            vocabulary if unset.
        do_lower_case (`bool`, defaults to `True`): lower-case and strip accents (the shipped vocabulary is
            uncased).
        unk_token, sep_token, pad_token, cls_token, mask_token (`str`): the special tokens, BERT's by default.
        model_max_length (`int`, defaults to 256): the longest input in tokens, with `[CLS]`/`[SEP]`.
    """

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"

    def __init__(
        self,
        vocab: str | dict[str, int] | None = None,
        do_lower_case: bool = True,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        **kwargs,
    ):
        # A serialized backend (`from_pretrained` with remote code, `train_new_from_iterator`) replaces the pipeline
        # the parent builds; otherwise the pipeline is built from `vocab`, the shipped one by default.
        serialized = kwargs.get("tokenizer_object") is not None or kwargs.get("tokenizer_file") is not None
        if vocab is None and not serialized:
            if not DEFAULT_VOCAB_FILE.is_file():
                raise ValueError(
                    f"No `vocab` given and the default vocabulary {DEFAULT_VOCAB_FILE} is missing: pass `vocab=` "
                    "or load a saved tokenizer with `from_pretrained`."
                )
            vocab = DEFAULT_VOCAB_FILE
        if isinstance(vocab, (str, Path)):
            vocab = load_vocab(vocab)
        for name, token in (
            ("unk_token", unk_token),
            ("sep_token", sep_token),
            ("pad_token", pad_token),
            ("cls_token", cls_token),
            ("mask_token", mask_token),
        ):
            if vocab is not None and str(token) not in vocab:
                raise ValueError(f"`{name}` {str(token)!r} is not in the vocabulary.")
        kwargs.setdefault("model_max_length", DEFAULT_MODEL_MAX_LENGTH)  # a saved tokenizer passes its own
        super().__init__(
            vocab=vocab,
            do_lower_case=do_lower_case,
            unk_token=unk_token,
            sep_token=sep_token,
            pad_token=pad_token,
            cls_token=cls_token,
            mask_token=mask_token,
            **kwargs,
        )


# transformers 5 has one tokenizer class per model, backed by `tokenizers`, and keeps the `...TokenizerFast` name as an
# alias of it (`BertTokenizerFast = BertTokenizer`): the same for Fastformer.
FastformerTokenizerFast = FastformerTokenizer


__all__ = ["FastformerTokenizer", "FastformerTokenizerFast"]
