"""Helpers shared by the test files: tiny configs, weights large enough that tokens mix, and the checks that a
comparison can fail at all.

(They live here, not in `conftest.py`, because test modules import them by name: a nested `conftest.py`, e.g.
under `tests/conformance/`, would shadow a top-level `import conftest`.)

Why `randomize_`: at the default initialisation (std 0.02) one token barely moves another (a causal LM's logits
with full context vs. every token alone differ by < 1e-4), so a model that mixes nothing passes every whole-model
comparison. Every such test therefore randomizes the weights and first asserts, with `assert_far`, that the output
moves by at least 100x the tolerance without the property under test.
"""

import importlib.util
import socket
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import TrainerCallback

from fastformer import FastformerConfig


def tiny_config(**kwargs) -> FastformerConfig:
    """A bidirectional encoder: hidden 32, 4 heads of 8, 2 layers, no dropout, 64 positions, vocabulary 99."""
    defaults = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_dropout_prob=0.0,
        max_position_embeddings=64,
    )
    defaults.update(kwargs)
    return FastformerConfig(**defaults)


def causal_config(**kwargs) -> FastformerConfig:
    """`tiny_config` made causal (`is_decoder`), 512 positions, pad/bos/eos = 0/1/2."""
    defaults = dict(max_position_embeddings=512, is_decoder=True, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    defaults.update(kwargs)
    return tiny_config(**defaults)


def seq2seq_config(**kwargs) -> FastformerConfig:
    """`tiny_config` as an encoder-decoder: 2 + 2 layers, 128 positions, decoder start = bos = 1."""
    defaults = dict(
        num_decoder_layers=2,
        max_position_embeddings=128,
        is_encoder_decoder=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    defaults.update(kwargs)
    return tiny_config(**defaults)


@torch.no_grad()
def randomize_(model: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """Re-draw every parameter of `model` in place (seeded) so that tokens mix and no parameter has a value that
    hides its loss: matrices ~ N(0, std) (embedding tables ~ N(0, 1)), biases ~ N(0, 0.2), LayerNorm weights
    ~ 1 + N(0, 0.2), LayerNorm biases ~ N(0, 0.2). Shared (tied) parameters are drawn once. Returns `model`."""
    generator = torch.Generator().manual_seed(seed)

    def draw(param, mean, scale):
        param.copy_(mean + scale * torch.randn(param.shape, generator=generator, dtype=torch.float64))

    seen = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, nn.LayerNorm):
                draw(param, 1.0 if name == "weight" else 0.0, 0.2)
            elif isinstance(module, nn.Embedding):
                draw(param, 0.0, 1.0)
            elif name == "bias" or param.dim() < 2:
                draw(param, 0.0, 0.2)
            else:
                draw(param, 0.0, std)
    return model


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def assert_far(actual: torch.Tensor, baseline: torch.Tensor, atol: float, factor: float = 100.0):
    """The comparison under test can fail: `actual` differs from `baseline` (the output without the property under
    test, e.g. with no context, no source, another model) by at least `factor * atol` somewhere."""
    difference = max_difference(actual, baseline)
    assert difference >= factor * atol, (
        f"the test cannot tell the property from its absence: max difference {difference:.3g} < {factor} x {atol:g}"
    )


class StopAfter(TrainerCallback):
    """Interrupts training after a given step (its checkpoint has been written by then)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it), for `accelerate launch --main_process_port`: fixed ports
    collide when two test runs (or two tests) launch at the same time."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_script(path: Path, name: str):
    """The module of a script that is not a package (`examples/`, `benchmarks/`), imported from its file as `name`,
    with its folder importable while it loads, as when Python runs it (`benchmarks/common.py`)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    folder = str(Path(path).resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


# The training options the language-modelling example tests share: a tiny model, 60 CPU steps, checkpoints every 30.
TINY_LM_RUN = dict(
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=37,
    hidden_dropout_prob=0.0,
    per_device_train_batch_size=8,
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


def command_line(options: dict) -> list[str]:
    """`--key=value` for every option, leaving out those set to None (the script's default)."""
    return [f"--{key}={value}" for key, value in options.items() if value is not None]


class CountOps(TorchDispatchMode):
    """Counts the aten ops dispatched inside the `with` block (`count`): every call, forward and backward."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))
