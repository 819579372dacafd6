# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Packing documents with one label each for `FastformerForSequenceClassification`.

transformers' `DataCollatorWithFlattening` packs a batch into one row with `position_ids` restarting at 0 for each
document, but it turns `labels` into per-token targets (a classifier's one label per document does not fit). This
collator packs with it and keeps the labels as they are, one per document: the classifier pools each document of
the row on its own and returns one row of logits per document, in the order of the features.
"""

from dataclasses import dataclass

import torch
from transformers import DataCollatorWithFlattening


@dataclass
class DataCollatorForPackedSequenceClassification:
    """Packs `features` (dicts with `input_ids` and, optionally, a `labels` or `label` per document) into one row:
    `input_ids` `(1, total)`, `position_ids` `(1, total)` restarting at 0 per document (and `seq_idx` `(1, total)`
    with `return_seq_idx`), `labels` `(documents,)` (class ids as int64, floats as float32) or `(documents,
    num_labels)` for multi-hot or several regression targets.

    No padding is added and none may be given: a feature whose `attention_mask` has a 0 (an already padded example)
    is refused, as is an empty document (the flattening collator would drop it silently and shift the labels), a
    batch that labels only some documents, and keys other than `input_ids`, the labels, `attention_mask` (all ones)
    and `token_type_ids` (all zeros; Fastformer has no token types).
    """

    return_seq_idx: bool = False

    def __call__(self, features: list[dict]) -> dict:
        if not features:
            raise ValueError("DataCollatorForPackedSequenceClassification received an empty batch.")
        labelled = ["labels" in f or "label" in f for f in features]
        if any(labelled) and not all(labelled):
            raise ValueError("Some documents of the batch have a label and some do not: label every document or none.")
        for index, feature in enumerate(features):
            self._check(index, feature)
        packed = DataCollatorWithFlattening(return_seq_idx=self.return_seq_idx)(
            [{"input_ids": feature["input_ids"]} for feature in features]
        )
        del packed["labels"]  # the flattening collator's per-token targets
        if all(labelled):
            labels = torch.tensor([f["labels"] if "labels" in f else f["label"] for f in features])
            packed["labels"] = labels.float() if labels.is_floating_point() else labels
        return packed

    @staticmethod
    def _check(index: int, feature: dict):
        known = {"input_ids", "labels", "label", "attention_mask", "token_type_ids"}
        if set(feature) - known:
            raise ValueError(
                f"Document {index} has keys {sorted(set(feature) - known)} that a packed row cannot carry (it keeps "
                f"{sorted(known)})."
            )
        if len(feature["input_ids"]) == 0:
            raise ValueError(f"Document {index} has no tokens: a packed row cannot hold an empty document.")
        mask = feature.get("attention_mask")
        if mask is not None and not bool(torch.as_tensor(mask).bool().all()):
            raise ValueError(
                f"Document {index} is padded (its `attention_mask` has zeros): pack unpadded documents, the packed row "
                "needs no padding."
            )
        types = feature.get("token_type_ids")
        if types is not None and bool(torch.as_tensor(types).any()):
            raise ValueError(f"Document {index} has non-zero `token_type_ids`, which Fastformer does not use.")
