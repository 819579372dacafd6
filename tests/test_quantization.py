"""int8 dynamic quantization of the classifier (`benchmarks/benchmark_deploy.py`'s `quantize_int8`, the recipe of
docs/deploy.md): every linear layer and embedding table is replaced, the logits stay close to float32's, a saved
state dict reloads into a fresh quantized model bit for bit, and the saved and in-memory sizes shrink ~4x."""

import io
from pathlib import Path

import torch
from helpers import assert_far, load_script, randomize_, tiny_config
from torch import nn
from torch.ao.nn.quantized import Embedding as QuantizedEmbedding
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from fastformer import FastformerForSequenceClassification


SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark_deploy.py"


def benchmark():
    return load_script(SCRIPT, "benchmark_deploy")


def classifier(seed: int = 0) -> FastformerForSequenceClassification:
    """Hidden 64, 2 layers, a 1,000-word vocabulary, mean pooler, weights drawn so that tokens mix."""
    config = tiny_config(hidden_size=64, intermediate_size=96, vocab_size=1000, num_labels=3, pooler_type="mean")
    return randomize_(FastformerForSequenceClassification(config), std=0.05, seed=seed).eval()


ATOL = 0.01  # the logits' int8 error (here ~0.004; another input moves them by ~0.09)


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 1000, (4, 40), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 25:] = 0
    return dict(input_ids=input_ids, attention_mask=attention_mask)


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def test_every_linear_and_embedding_is_quantized_and_logits_stay_close():
    """The quantized copy has no float `Linear` or `Embedding` left (all 17 + 2 of them int8), the float32 model is
    left as it was, and the logits move by at most 0.01, while another input moves them by over 5x that (checked). Catches a layer left in float32 (no saving), a quantization that corrupts a layer (e.g. the
    embedding rows' scales swapped), and a quantizer that changes the model it was given."""
    model = classifier()
    inputs = batch()
    float_logits = logits(model, inputs)
    linears = sum(isinstance(module, nn.Linear) for module in model.modules())
    embeddings = sum(isinstance(module, nn.Embedding) for module in model.modules())
    quantized = benchmark().quantize_int8(model)
    kinds = [type(module) for module in quantized.modules()]
    assert nn.Linear not in kinds and nn.Embedding not in kinds
    assert kinds.count(DynamicQuantizedLinear) == linears == 17
    assert kinds.count(QuantizedEmbedding) == embeddings == 2
    assert all(
        isinstance(module, nn.Linear)
        for module in [model.classifier, model.fastformer.encoder.layer[0].intermediate.dense]
    )
    torch.testing.assert_close(logits(model, inputs), float_logits, rtol=0, atol=0)
    difference = (logits(quantized, inputs) - float_logits).abs().max().item()
    assert 0 < difference <= ATOL, difference
    assert_far(logits(model, batch(seed=1)), float_logits, atol=ATOL, factor=5)


def test_linear_only_keeps_the_embedding_tables_in_float32():
    """`embeddings=False` quantizes the linear layers only: the tables stay `nn.Embedding` with the same weights."""
    model = classifier()
    quantized = benchmark().quantize_int8(model, embeddings=False)
    assert isinstance(quantized.fastformer.embeddings.word_embeddings, nn.Embedding)
    assert torch.equal(
        quantized.fastformer.embeddings.word_embeddings.weight, model.fastformer.embeddings.word_embeddings.weight
    )
    assert not any(isinstance(module, nn.Linear) for module in quantized.modules())


def test_saved_int8_state_dict_reloads_bit_for_bit_and_is_about_4x_smaller():
    """`torch.save(quantized.state_dict())`, loaded into the quantized copy of a float32 model with other weights,
    gives the saved model's logits exactly (the other model's differ: checked); the file and the tensors in memory
    are at most 0.35x the float32 model's (int8 values, plus one scale and offset per embedding row). Catches a
    state dict that misses the packed weights or the scales, and a size that does not shrink."""
    script = benchmark()
    model = classifier(seed=0)
    quantized = script.quantize_int8(model)
    buffer = io.BytesIO()
    torch.save(quantized.state_dict(), buffer)
    other = script.quantize_int8(classifier(seed=1))
    inputs = batch()
    assert_far(logits(other, inputs), logits(quantized, inputs), atol=1e-3)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer, weights_only=False))
    torch.testing.assert_close(logits(other, inputs), logits(quantized, inputs), rtol=0, atol=0)
    assert script.saved_bytes(quantized) <= 0.35 * script.saved_bytes(model)
    float_bytes = script.tensor_bytes(model.state_dict())
    assert float_bytes == 4 * sum(p.numel() for p in model.state_dict().values())
    assert script.tensor_bytes(quantized.state_dict()) <= 0.35 * float_bytes
