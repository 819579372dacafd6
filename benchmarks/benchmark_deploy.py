#!/usr/bin/env python
"""Serving and training Fastformer on a CPU, the options side by side in one run: `torch.compile` vs eager PyTorch,
ONNX Runtime vs PyTorch, int8 vs float32.

Parts (`--parts`, all by default), each printed as one markdown table:

- `train`: one training step (forward, loss, backward; no optimizer step) of the main job's classifier (hidden 128,
  8 heads, 2 layers, FFN 256, the shipped 30,522-word vocabulary, mean pooler, dropout 0.3: `fastformer-classify`'s
  defaults) on `--train_batch` sequences of each of `--train_lengths` tokens: eager vs `torch.compile(step,
  fullgraph=True)` with static shapes (compiled once per length; its compile seconds and graph count are shown).
  Tokens per second = batch x length / median step time.
- `decode`: greedy decoding, ms per token, of a causal LM of the equal-budget size (hidden 256, 4 heads, 4 layers,
  FFN 1024, vocabulary 8,192) after a prompt of each of `--contexts` tokens (the prompt's forward, untimed, leaves the
  state; `--steps` one-token steps are timed from a copy of it, median of `--repeats` runs after a warm-up run that
  also compiles). Rows: eager `model(token, cache=...)`; the same with `model.forward = torch.compile(model.forward,
  dynamic=True)` (docs/deploy.md's recipe for `generate()`); the explicit-state step module
  (`fastformer.export_fastformer.CausalLMDecodeStep`: token, position, state tensor in; logits, state out) eager,
  compiled, and exported to ONNX and run by ONNX Runtime. Each row's logits after the timed steps are compared with
  eager's (`max |Δ logits|`).
- `onnx`: the classifier (`--model_dir`'s, else the main job's size with random weights) on one document of each of
  `--onnx_lengths` tokens: eager PyTorch vs the ONNX model of `export_fastformer.EncoderHead` in ONNX Runtime
  (median latency, `max |Δ logits|`).
- `int8`: the classifier of `--model_dir` (the main job's checkpoint: `fastformer-classify --output_dir
  outputs/deploy-fp32`) in float32 and quantized, on the main job's test split (the same 300 reviews, cut at the
  model's position table, batches of 16 in the split's order, padded to the longest like the job's evaluation):
  accuracy, predictions that differ from float32's, ms per review, size on disk (`torch.save` of the state dict, the
  same serializer for every row) and in memory (the bytes of its tensors). Rows: float32; `int8_dynamic`
  (`torch.ao.quantization.quantize_dynamic`: every `Linear` int8 weights with activations quantized per batch at run
  time, every `Embedding` int8 rows with a float scale and offset each); the same with the `Linear` layers only; and,
  where the `torchao` package is installed, its `Int8DynamicActivationInt8WeightConfig` and its int8 weight-only
  configs (`Linear` and `Embedding`).

Every part runs in this process, with torch's current thread count (`--threads` sets it; ONNX Runtime gets the
same); compiled parts use `--backend` (default inductor). `--smoke` runs every part on tiny models and data in
seconds (the `eager` backend, no code generation), for the tests.

    python benchmarks/benchmark_deploy.py --model_dir outputs/deploy-fp32 --threads 1
    python benchmarks/benchmark_deploy.py --parts decode --contexts 384 4096 --steps 100
"""

import argparse
import copy
import importlib.util
import io
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import machine
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

from fastformer import FastformerConfig, FastformerForCausalLM, FastformerForSequenceClassification
from fastformer.classify.reporting import markdown_table
from fastformer.classify.run_classification import DataArguments, ModelArguments, load_data
from fastformer.tokenization_fastformer import FastformerTokenizer


PARTS = ("train", "decode", "onnx", "int8")
MAIN_JOB_VOCAB = 30522  # the shipped bert-base-uncased WordPiece vocabulary
DECODER_SIZE = dict(hidden_size=256, num_attention_heads=4, num_hidden_layers=4, intermediate_size=1024)
DECODER_VOCAB = 8192
SMOKE_SIZE = dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=1, intermediate_size=48)
SMOKE_VOCAB = 500


def median_seconds(function, repeats: int) -> float:
    """Median wall-clock seconds of `function()` over `repeats` calls, after one untimed call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def main_job_classifier(max_length: int, smoke: bool) -> FastformerForSequenceClassification:
    """A new classifier of the main job's size and settings (random weights), with `max_length` positions."""
    model_args = ModelArguments()
    size = {**model_args.size(), **SMOKE_SIZE} if smoke else model_args.size()  # the job's dropout either way
    config = FastformerConfig(
        vocab_size=SMOKE_VOCAB if smoke else MAIN_JOB_VOCAB,
        **size,
        pooler_type=model_args.pooler_type,
        max_position_embeddings=max_length,
        num_labels=2,
        pad_token_id=0,
        problem_type="single_label_classification",
    )
    return FastformerForSequenceClassification(config)


def random_tokens(vocab_size: int, *shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, vocab_size, shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------------
# train: compiled vs eager training steps


def classifier_loss(model, input_ids, attention_mask, labels):
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss


def training_rows(args) -> list[list]:
    """Per length: eager and compiled tokens/s of a training step, their ratio, compile seconds, graphs."""
    rows = []
    for length in args.train_lengths:
        model = main_job_classifier(length, args.smoke).train()
        batch = dict(
            input_ids=random_tokens(model.config.vocab_size, args.train_batch, length),
            attention_mask=torch.ones(args.train_batch, length, dtype=torch.long),
            labels=torch.arange(args.train_batch) % 2,
        )

        def step(loss_function):
            loss_function(model, **batch).backward()
            model.zero_grad(set_to_none=True)

        eager = median_seconds(lambda: step(classifier_loss), args.repeats)
        torch._dynamo.reset()
        counter = CompileCounterWithBackend(args.backend)
        compiled_loss = torch.compile(classifier_loss, fullgraph=True, dynamic=False, backend=counter)
        start = time.perf_counter()
        step(compiled_loss)  # compiles
        compile_seconds = time.perf_counter() - start
        compiled = median_seconds(lambda: step(compiled_loss), args.repeats)
        tokens = args.train_batch * length
        rows.append(
            [
                f"{length:,}",
                args.train_batch,
                fmt(tokens / eager, 0),
                fmt(tokens / compiled, 0),
                f"{eager / compiled:.2f}x",
                fmt(compile_seconds, 1),
                counter.frame_count,
            ]
        )
        torch._dynamo.reset()
    return rows


# ---------------------------------------------------------------------------------------------------------------
# decode: ms per token, eager / compiled / ONNX Runtime


def causal_lm(max_positions: int, smoke: bool) -> FastformerForCausalLM:
    config = FastformerConfig(
        vocab_size=SMOKE_VOCAB if smoke else DECODER_VOCAB,
        **(SMOKE_SIZE if smoke else DECODER_SIZE),
        is_decoder=True,
        max_position_embeddings=max_positions,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return FastformerForCausalLM(config).eval()


def onnx_session(path: Path):
    """An ONNX Runtime CPU session of the model at `path`, with torch's thread count."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def decoding_runners(model, backend: str, onnx_dir: Path) -> dict:
    """Each way of running one greedy step, as `start(cache, context) -> step` where `step(token) -> next token`
    (the logits of the last step are kept in `step.logits`). Compiled callables are created once, so that every
    context and repeat reuses their graphs."""
    from fastformer.export_fastformer import CausalLMDecodeStep, export_onnx

    counters = {}

    def compiled(function, name):
        counters[name] = CompileCounterWithBackend(backend)
        return torch.compile(function, dynamic=True, backend=counters[name])

    forward = compiled(model.forward, "torch.compile(model.forward)")
    module = CausalLMDecodeStep(model)
    module_compiled = compiled(module, "torch.compile(CausalLMDecodeStep)")
    onnx_path = onnx_dir / "decode_step.onnx"
    start = time.perf_counter()
    export_onnx(module, onnx_path)
    export_seconds = time.perf_counter() - start
    session = onnx_session(onnx_path)

    def with_cache(function):
        def start(cache, context):
            cache = copy.deepcopy(cache)

            def step(token):
                step.logits = function(token, cache=cache, use_cache=True).logits[:, -1]
                return step.logits.argmax(-1, keepdim=True)

            return step

        return start

    def with_state(function):
        def start(cache, context):
            state, position = module.read_state(cache), torch.full((cache_batch(cache), 1), context)

            def step(token):
                nonlocal state, position
                logits, state = function(token, position, state)
                position = position + 1
                step.logits = logits[:, -1]
                return step.logits.argmax(-1, keepdim=True)

            return step

        return start

    def onnx_state(cache, context):
        state = module.read_state(cache).numpy()
        position = torch.full((cache_batch(cache), 1), context).numpy()

        def step(token):
            nonlocal state, position
            logits, state = session.run(None, {"input_ids": token.numpy(), "position_ids": position, "state": state})
            position = position + 1
            step.logits = torch.from_numpy(logits[:, -1])
            return step.logits.argmax(-1, keepdim=True)

        return step

    runners = {
        "eager `model(token, cache=cache)`": with_cache(model),
        "torch.compile(model.forward, dynamic=True)": with_cache(forward),
        "eager `CausalLMDecodeStep`": with_state(module),
        "torch.compile(CausalLMDecodeStep, dynamic=True)": with_state(module_compiled),
        "ONNX Runtime `CausalLMDecodeStep`": onnx_state,
    }
    graphs = {
        "torch.compile(model.forward, dynamic=True)": counters["torch.compile(model.forward)"],
        "torch.compile(CausalLMDecodeStep, dynamic=True)": counters["torch.compile(CausalLMDecodeStep)"],
    }
    return runners, graphs, export_seconds


def cache_batch(cache) -> int:
    return cache.layers[0].recurrent_states[0].shape[0]


@torch.no_grad()
def decoding_rows(args, onnx_dir: Path) -> tuple[list[list], float]:
    """Per context and runner: ms per token, the ratio to eager, graphs compiled, the last logits' distance to
    eager's; and the ONNX export's seconds."""
    model = causal_lm(max(args.contexts) + args.steps + 2, args.smoke)
    torch._dynamo.reset()
    runners, graphs, export_seconds = decoding_runners(model, args.backend, onnx_dir)
    rows = []
    for context in args.contexts:
        cache = model.fastformer(random_tokens(model.config.vocab_size, 1, context), use_cache=True).cache
        first = random_tokens(model.config.vocab_size, 1, 1, seed=1)
        results = {}
        for name, start in runners.items():

            def run():
                step, token = start(cache, context), first
                for _ in range(args.steps):
                    token = step(token)
                run.logits = step.logits

            seconds = median_seconds(run, args.repeats) / args.steps
            results[name] = (seconds, run.logits)
        eager_seconds, eager_logits = next(iter(results.values()))
        for name, (seconds, logits) in results.items():
            counter = graphs.get(name)
            rows.append(
                [
                    f"{context:,}",
                    name,
                    fmt(seconds * 1e3),
                    f"{eager_seconds / seconds:.2f}x",
                    "" if counter is None else counter.frame_count,
                    f"{(logits - eager_logits).abs().max().item():.1e}",
                ]
            )
    torch._dynamo.reset()
    return rows, export_seconds


# ---------------------------------------------------------------------------------------------------------------
# onnx: the classifier in ONNX Runtime vs PyTorch


@torch.no_grad()
def onnx_classifier_rows(model, args, onnx_dir: Path) -> tuple[list[list], float]:
    """Per length (one document): PyTorch eager and ONNX Runtime latency, their ratio, max |Δ logits|; and the
    export's seconds."""
    from fastformer.export_fastformer import EncoderHead, export_onnx

    module = EncoderHead(model)
    path = onnx_dir / "classifier.onnx"
    start = time.perf_counter()
    export_onnx(module, path)
    export_seconds = time.perf_counter() - start
    session = onnx_session(path)
    rows = []
    for length in args.onnx_lengths:
        input_ids = random_tokens(model.config.vocab_size, 1, length)
        attention_mask = torch.ones_like(input_ids)
        feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        eager = median_seconds(lambda: module(input_ids, attention_mask), args.repeats)
        onnx = median_seconds(lambda: session.run(None, feed), args.repeats)
        difference = (torch.from_numpy(session.run(None, feed)[0]) - module(input_ids, attention_mask)[0]).abs()
        rows.append(
            [f"{length:,}", fmt(eager * 1e3), fmt(onnx * 1e3), f"{eager / onnx:.2f}x", f"{difference.max():.1e}"]
        )
    return rows, export_seconds


# ---------------------------------------------------------------------------------------------------------------
# int8


def quantize_int8(model: nn.Module, embeddings: bool = True) -> nn.Module:
    """A dynamically quantized copy of `model` (`torch.ao.quantization.quantize_dynamic`; `model` is left as it was):
    every `nn.Linear` becomes a `DynamicQuantizedLinear` (weights int8 per tensor; each call quantizes its input to
    int8 with the batch's own range and runs an int8 matrix product, fbgemm/oneDNN on x86, then rescales to float),
    and with `embeddings` every `nn.Embedding` a quantized embedding (int8 rows, each with its own float scale and
    offset: `weight[i] ~ scale_i * q_i + offset_i`). Everything else (LayerNorm, the pools, GELU) stays float32.

    The result is for inference on a CPU: save it with `torch.save(quantized.state_dict(), path)` and load that into
    `quantize_int8(the float32 model)` (`save_pretrained`'s safetensors has no quantized tensor type)."""
    from torch.ao.nn.quantized import Embedding as QuantizedEmbedding
    from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig, quantize_dynamic
    from torch.ao.quantization.quantization_mappings import get_default_dynamic_quant_module_mappings

    spec = {nn.Linear: default_dynamic_qconfig}
    mapping = get_default_dynamic_quant_module_mappings()
    if embeddings:
        spec[nn.Embedding] = float_qparams_weight_only_qconfig
        mapping = {**mapping, nn.Embedding: QuantizedEmbedding}
    with warnings.catch_warnings():  # deprecated in favour of torchao (see docs/deploy.md); still shipped with torch
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        return quantize_dynamic(copy.deepcopy(model).eval(), spec, mapping=mapping)


def quantize_torchao(model: nn.Module, dynamic_activations: bool) -> nn.Module:
    """A copy of `model` quantized by torchao's `quantize_`: `Int8DynamicActivationInt8WeightConfig` on the `Linear`
    layers (`dynamic_activations`), or int8 weight-only on the `Linear` layers (`Int8WeightOnlyConfig`) and the
    `Embedding` tables (`IntxWeightOnlyConfig`, one scale per row)."""
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        quantize_,
    )
    from torchao.quantization.granularity import PerAxis

    model = copy.deepcopy(model).eval()
    if dynamic_activations:
        quantize_(model, Int8DynamicActivationInt8WeightConfig())
        return model
    quantize_(model, Int8WeightOnlyConfig())
    embedding = IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))
    quantize_(model, embedding, filter_fn=lambda module, name: isinstance(module, nn.Embedding))
    return model


def tensor_bytes(value) -> int:
    """Bytes held by the tensors in `value` (a state dict, tuple or tensor): quantized tensors count their int8
    values and per-channel scales and offsets; tensor subclasses (torchao) their inner tensors."""
    if isinstance(value, dict):
        return sum(tensor_bytes(item) for item in value.values())
    if isinstance(value, (tuple, list)):
        return sum(tensor_bytes(item) for item in value)
    if not isinstance(value, torch.Tensor):
        return 0
    if type(value) not in (torch.Tensor, nn.Parameter) and hasattr(value, "__tensor_flatten__"):
        names, _ = value.__tensor_flatten__()
        return sum(tensor_bytes(getattr(value, name)) for name in names)
    size = value.numel() * value.element_size()
    if value.is_quantized and value.qscheme() in (torch.per_channel_affine, torch.per_channel_affine_float_qparams):
        size += tensor_bytes((value.q_per_channel_scales(), value.q_per_channel_zero_points()))
    return size


def saved_bytes(model: nn.Module) -> int:
    """Size of `torch.save(model.state_dict())`."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def test_batches(texts: list[str], tokenizer, max_length: int, batch_size: int = 16) -> list[dict]:
    """The texts cut at `max_length` tokens, in batches of `batch_size` in their order, each padded to its longest."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    rows = [{key: encoded[key][i] for key in ("input_ids", "attention_mask")} for i in range(len(texts))]
    return [tokenizer.pad(rows[i : i + batch_size], return_tensors="pt") for i in range(0, len(rows), batch_size)]


@torch.no_grad()
def classify(model, batches: list[dict]) -> tuple[torch.Tensor, float]:
    """The logits of every document and the seconds the batches took (one pass, after one warm-up batch)."""
    model(**batches[0])
    start = time.perf_counter()
    logits = torch.cat([model(**batch).logits for batch in batches])
    return logits, time.perf_counter() - start


def int8_variants(model) -> dict:
    variants = {
        "float32": lambda: model,
        "int8_dynamic, torch.ao (Linear + Embedding)": lambda: quantize_int8(model),
        "int8_dynamic, torch.ao (Linear only)": lambda: quantize_int8(model, embeddings=False),
    }
    if importlib.util.find_spec("torchao") is not None:
        variants["torchao Int8DynamicActivationInt8Weight (Linear)"] = lambda: quantize_torchao(model, True)
        variants["torchao int8 weight-only (Linear + Embedding)"] = lambda: quantize_torchao(model, False)
    return variants


def int8_rows(model, tokenizer, texts: list[str], labels: list[int]) -> list[list]:
    """Per variant: accuracy, predictions changed from float32's, max |Δ logits|, ms per review, sizes."""
    batches = test_batches(texts, tokenizer, model.config.max_position_embeddings)
    labels = torch.tensor(labels)
    rows, reference, reference_seconds = [], None, None
    for name, build in int8_variants(model.eval()).items():
        variant = build()
        logits, seconds = classify(variant, batches)
        predictions = logits.argmax(-1)
        if reference is None:
            reference, reference_seconds = logits, seconds
        rows.append(
            [
                name,
                f"{(predictions == labels).float().mean().item():.4f}",
                int((predictions != reference.argmax(-1)).sum()),
                f"{(logits - reference).abs().max().item():.1e}",
                fmt(seconds / len(texts) * 1e3, 1),
                f"{reference_seconds / seconds:.2f}x",
                fmt(saved_bytes(variant) / 2**20),
                fmt(tensor_bytes(variant.state_dict()) / 2**20),
            ]
        )
    return rows


def smoke_classifier(directory: Path):
    """A tiny classifier with the shipped tokenizer, saved like the main job's checkpoint, and 24 short reviews."""
    tokenizer = FastformerTokenizer(model_max_length=64)
    model = main_job_classifier(64, smoke=True)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    words = ["good", "bad", "film", "plot", "actor", "boring", "great", "scene"]
    texts = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(5 + i % 9)) for i in range(24)]
    return texts, [i % 2 for i in range(24)]


def load_classifier(model_dir: Path):
    model = FastformerForSequenceClassification.from_pretrained(model_dir).eval()
    return model, FastformerTokenizer.from_pretrained(model_dir)


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--model_dir", type=Path, help="the main job's checkpoint (int8, and onnx's classifier)")
    parser.add_argument("--train_lengths", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--train_batch", type=int, default=1)
    parser.add_argument("--contexts", type=int, nargs="+", default=[384, 4096])
    parser.add_argument("--steps", type=int, default=64, help="decoding steps timed per run")
    parser.add_argument("--onnx_lengths", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (the median is shown)")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--threads", type=int, help="torch (and ONNX Runtime) threads; default: torch's")
    parser.add_argument("--smoke", action="store_true", help="tiny models and data, the eager backend: seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.train_lengths, args.contexts, args.onnx_lengths = [40], [20], [24]
        args.steps, args.repeats, args.backend = 3, 1, "eager"
    if "int8" in args.parts and args.model_dir is None and not args.smoke:
        parser.error(
            "--parts int8 needs --model_dir (the main job's checkpoint: fastformer-classify --output_dir DIR)"
        )
    if args.model_dir is not None and not (args.model_dir / "config.json").is_file():
        parser.error(f"--model_dir {args.model_dir} holds no checkpoint (config.json)")
    if min(args.train_lengths + args.contexts + args.onnx_lengths + [args.steps, args.repeats, args.train_batch]) < 1:
        parser.error("lengths, contexts, --steps, --repeats and --train_batch must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    print(f"torch.compile backend: {args.backend}; repeats: {args.repeats} (median)\n")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model_dir, texts, labels = args.model_dir, None, None
        if args.smoke and model_dir is None:
            model_dir = scratch / "classifier"
            texts, labels = smoke_classifier(model_dir)
        if "train" in args.parts:
            print("### Training step (forward + loss + backward), the main job's classifier: compiled vs eager\n")
            header = ["tokens per row", "batch", "eager tok/s", "compiled tok/s", "speed-up", "compile s", "graphs"]
            print(markdown_table(header, training_rows(args), align="rrrrrrr") + "\n")
        if "decode" in args.parts:
            rows, export_seconds = decoding_rows(args, scratch)
            print(f"### Greedy decoding, batch 1, {args.steps} steps after the prompt: ms per token\n")
            header = ["prompt tokens", "runner", "ms/token", "speed-up vs eager", "graphs", "max abs Δ logits"]
            print(markdown_table(header, rows, align="rlrrrr"))
            print(f"\n(ONNX export of the step: {export_seconds:.1f} s)\n")
        if "onnx" in args.parts or "int8" in args.parts:
            if model_dir is not None:
                model, tokenizer = load_classifier(model_dir)
            else:
                model, tokenizer = main_job_classifier(max(args.onnx_lengths), args.smoke).eval(), None
        if "onnx" in args.parts:
            rows, export_seconds = onnx_classifier_rows(model, args, scratch)
            print("### Classifier, one document: ONNX Runtime vs PyTorch (eager), latency\n")
            header = ["tokens", "PyTorch ms", "ONNX Runtime ms", "speed-up", "max abs Δ logits"]
            print(markdown_table(header, rows, align="rrrrr"))
            print(f"\n(ONNX export: {export_seconds:.1f} s)\n")
        if "int8" in args.parts:
            if texts is None:
                texts, labels = load_data(DataArguments())["test"]
            print(f"### int8 vs float32: the classifier on {len(texts)} test reviews (batches of 16)\n")
            header = [
                "weights",
                "accuracy",
                "predictions changed",
                "max abs Δ logits",
                "ms/review",
                "speed-up",
                "on disk MiB",
                "in memory MiB",
            ]
            print(markdown_table(header, int8_rows(model, tokenizer, texts, labels), align="lrrrrrrr") + "\n")


if __name__ == "__main__":
    main()
