# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""What the training scripts (`fastformer-classify`, `examples/run_mlm.py`, `examples/run_clm.py`,
`examples/run_summarization.py`) share on their command line: the size of a model built from scratch, and a parser
whose every bad option ends in one line `PROG: error: ...` with exit status 2 (argparse's convention), never a
traceback or a page of usage."""

import json
import os
import sys
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, Trainer, TrainingArguments


@dataclass
class ModelSizeArguments:
    """The size of a model built from scratch, with the same meaning for Fastformer, BERT and BART. Each script
    chooses its own defaults with `parser.set_defaults`; these are the main job's."""

    hidden_size: int = field(default=128, metadata={"help": "Model width (new model only)."})
    num_hidden_layers: int = field(
        default=2, metadata={"help": "Number of layers; the encoder's of an encoder-decoder (new model only)."}
    )
    num_attention_heads: int = field(default=8, metadata={"help": "Attention heads (new model only)."})
    intermediate_size: int = field(default=256, metadata={"help": "Feed-forward width (new model only)."})
    hidden_dropout_prob: float = field(
        default=0.3, metadata={"help": "Dropout on embeddings and after every sub-block (new model only)."}
    )

    def size(self) -> dict:
        """The size as `FastformerConfig` / `BertConfig` keyword arguments."""
        return {
            name: getattr(self, name)
            for name in (
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "hidden_dropout_prob",
            )
        }


class ScriptArgumentParser(HfArgumentParser):
    """`HfArgumentParser` whose errors are one line, `PROG: error: MESSAGE`, exit status 2 (argparse prints the
    usage first, which for `TrainingArguments` is a hundred lines that hide the message)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def parse_command_line(parser: ScriptArgumentParser, argv: list[str] | None = None) -> tuple:
    """The parser's dataclasses from `argv` (default: `sys.argv[1:]`, or the one JSON file named there).

    Every bad option ends in `parser.error`: an unknown flag or JSON key, a value a dataclass's `__post_init__`
    rejects (`TrainingArguments` checks its strategies, warm-up and more), and a value the optimizer would reject
    only when training starts (e.g. a negative `--learning_rate`)."""
    try:
        if argv is None and len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
            arguments = parser.parse_json_file(os.path.abspath(sys.argv[1]))
        else:
            *arguments, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
            if unknown:
                parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except (ValueError, OSError, json.JSONDecodeError) as error:
        parser.error(str(error))
    for value in arguments:
        if isinstance(value, TrainingArguments):
            check_optimizer_arguments(parser, value)
    return tuple(arguments)


def check_optimizer_arguments(parser: ScriptArgumentParser, training_args: TrainingArguments):
    """Builds the optimizer the `Trainer` will build, on one dummy parameter, so that the values it refuses (learning
    rate, betas, epsilon, weight decay) are reported now instead of as a traceback once the data is loaded. An
    optimizer that cannot be built here for another reason (e.g. one that needs a GPU) is left to the `Trainer`."""
    try:
        optimizer_class, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args)
        optimizer_class([torch.nn.Parameter(torch.zeros(1))], **optimizer_kwargs)
    except ValueError as error:
        parser.error(f"invalid optimizer setting: {error}")
    except Exception:  # noqa: BLE001 - not a bad value: the Trainer reports it with its own message
        pass
