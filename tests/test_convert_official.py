"""Conversion of the official PyTorch code's classifier (`wuch15/Fastformer`, `Model`) into ours."""

import json

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_far
from reference import official_layer
from transformers import AutoModelForSequenceClassification

from fastformer import FastformerForSequenceClassification
from fastformer.convert_official_checkpoint import cli, convert_official_state_dict, main


# the official fastformer.json's entries, at a tiny size
OFFICIAL_CONFIG = {
    "hidden_size": 32,
    "hidden_dropout_prob": 0.2,
    "num_hidden_layers": 2,
    "hidden_act": "gelu",
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "max_position_embeddings": 40,
    "type_vocab_size": 2,
    "vocab_size": 100000,
    "layer_norm_eps": 1e-12,
    "initializer_range": 0.02,
    "pooler_type": "weightpooler",
    "enable_fp16": "False",
}
VOCAB, LABELS = 60, 4


def official_state_dict(config=OFFICIAL_CONFIG, seed=0):
    """Random weights under the official `Model`'s parameter names and shapes (non-trivial biases and norms)."""
    g = torch.Generator().manual_seed(seed)
    h, inter, heads = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"]
    shapes = {
        "dense_linear.weight": (LABELS, h),
        "dense_linear.bias": (LABELS,),
        "word_embedding.weight": (VOCAB, h),
        "fastformer_model.position_embeddings.weight": (config["max_position_embeddings"], h),
        "fastformer_model.LayerNorm.weight": (h,),
        "fastformer_model.LayerNorm.bias": (h,),
        "fastformer_model.poolers.0.att_fc1.weight": (h, h),
        "fastformer_model.poolers.0.att_fc1.bias": (h,),
        "fastformer_model.poolers.0.att_fc2.weight": (1, h),
        "fastformer_model.poolers.0.att_fc2.bias": (1,),
    }
    layer = {
        "attention.self.query": (h, h),
        "attention.self.query_att": (heads, h),
        "attention.self.key": (h, h),
        "attention.self.key_att": (heads, h),
        "attention.self.transform": (h, h),
        "attention.output.dense": (h, h),
        "attention.output.LayerNorm": (h,),
        "intermediate.dense": (inter, h),
        "output.dense": (h, inter),
        "output.LayerNorm": (h,),
    }
    for i in range(config["num_hidden_layers"]):
        for module, shape in layer.items():
            shapes[f"fastformer_model.encoders.{i}.{module}.weight"] = shape
            shapes[f"fastformer_model.encoders.{i}.{module}.bias"] = (shape[0],)
    state = {}
    for name, shape in shapes.items():
        scale = 0.3 if name.endswith("weight") and len(shape) == 2 else 0.1
        state[name] = torch.randn(shape, generator=g) * scale
        if "LayerNorm.weight" in name:
            state[name] += 1.0
    state["word_embedding.weight"][0] = 0.0  # padding_idx=0
    return state


def official_forward(sd, input_ids, config=OFFICIAL_CONFIG):
    """The official `Model.forward` in eval mode, reading the official names: mask = ids.bool(), word + position
    embeddings -> LayerNorm, the layers, `AttentionPooling` (exp, mask, / (sum + 1e-8)), `dense_linear`."""
    eps, h = config["layer_norm_eps"], config["hidden_size"]
    mask = input_ids.bool().float()
    x = (
        sd["word_embedding.weight"][input_ids]
        + sd["fastformer_model.position_embeddings.weight"][: input_ids.shape[1]]
    )
    x = F.layer_norm(x, (h,), sd["fastformer_model.LayerNorm.weight"], sd["fastformer_model.LayerNorm.bias"], eps)
    for i in range(config["num_hidden_layers"]):
        x = official_layer(
            sd, f"fastformer_model.encoders.{i}", x, mask, config["num_attention_heads"], eps, act=config["hidden_act"]
        )
    pooler = "fastformer_model.poolers.0"
    e = torch.tanh(F.linear(x, sd[f"{pooler}.att_fc1.weight"], sd[f"{pooler}.att_fc1.bias"]))
    alpha = torch.exp(F.linear(e, sd[f"{pooler}.att_fc2.weight"], sd[f"{pooler}.att_fc2.bias"]))
    alpha = alpha * mask.unsqueeze(2)
    alpha = alpha / (alpha.sum(dim=1, keepdim=True) + 1e-8)
    pooled = torch.bmm(x.permute(0, 2, 1), alpha).squeeze(-1)
    return F.linear(pooled, sd["dense_linear.weight"], sd["dense_linear.bias"])


def padded_ids(lengths=(40, 23, 5), seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, VOCAB, (n,), generator=g)
    return ids


def test_converted_model_gives_the_official_logits():
    sd = official_state_dict()
    model = convert_official_state_dict(sd, OFFICIAL_CONFIG)
    assert isinstance(model, FastformerForSequenceClassification) and not model.training
    config = model.config
    assert (config.vocab_size, config.num_labels, config.max_position_embeddings) == (VOCAB, LABELS, 40)
    assert config.pooler_type == "attention" and config.pad_token_id == 0
    ids = padded_ids()
    with torch.no_grad():
        ours = model(ids, attention_mask=(ids != 0).long()).logits
        torch.testing.assert_close(ours, official_forward(sd, ids), rtol=1e-5, atol=1e-5)
    # every official tensor arrived unchanged
    ours_sd = model.state_dict()
    assert torch.equal(
        ours_sd["fastformer.encoder.layer.1.attention.self.key_att.weight"],
        sd["fastformer_model.encoders.1.attention.self.key_att.weight"],
    )
    assert torch.equal(ours_sd["classifier.bias"], sd["dense_linear.bias"])


# BertConfig entries a checkpoint may set away from the defaults; the official code (BERT's modules) honours them.
NON_DEFAULT_CONFIG = {**OFFICIAL_CONFIG, "hidden_act": "relu", "layer_norm_eps": 0.1}


def test_converted_model_honours_hidden_act_and_layer_norm_eps():
    """With `hidden_act="relu"` and `layer_norm_eps=0.1` in fastformer.json, the converted model gives the
    official logits computed with them; catches a converter (or model) that ignores either entry (the logits under
    the default GELU and 1e-12 are checked to be far from these)."""
    sd = official_state_dict(seed=2)
    model = convert_official_state_dict(sd, NON_DEFAULT_CONFIG)
    assert (model.config.hidden_act, model.config.layer_norm_eps) == ("relu", 0.1)
    ids = padded_ids()
    expected = official_forward(sd, ids, NON_DEFAULT_CONFIG)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, attention_mask=(ids != 0).long()).logits, expected, rtol=1e-5, atol=1e-5)
    for default in ({"hidden_act": "gelu"}, {"layer_norm_eps": 1e-12}):
        assert_far(official_forward(sd, ids, {**NON_DEFAULT_CONFIG, **default}), expected, atol=1e-5)


def test_dataparallel_prefix_is_accepted():
    sd = official_state_dict()
    model = convert_official_state_dict({f"module.{k}": v for k, v in sd.items()}, OFFICIAL_CONFIG)
    assert torch.equal(model.state_dict()["pooler.att_fc2.bias"], sd["fastformer_model.poolers.0.att_fc2.bias"])


def test_cli_writes_a_checkpoint_that_loads_with_auto_classes(tmp_path):
    sd = official_state_dict(seed=3)
    torch.save(sd, tmp_path / "model.pt")
    (tmp_path / "fastformer.json").write_text(json.dumps(OFFICIAL_CONFIG))
    main(
        [
            "--checkpoint",
            str(tmp_path / "model.pt"),
            "--config",
            str(tmp_path / "fastformer.json"),
            "--output_dir",
            str(tmp_path / "converted"),
        ]
    )
    assert (tmp_path / "converted" / "modeling_fastformer.py").exists()
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "converted").eval()
    ids = padded_ids()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(ids, attention_mask=(ids != 0).long()).logits, official_forward(sd, ids), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize(
    "mutate,message",
    [
        (
            lambda sd: {**sd, "fastformer_model.encoders.0.attention.self.value.weight": torch.zeros(32, 32)},
            "'fastformer_model.encoders.0.attention.self.value.weight' is not a parameter of the official",
        ),
        (lambda sd: {**sd, "bert.pooler.dense.weight": torch.zeros(32, 32)}, "'bert.pooler.dense.weight' is not a"),
        (lambda sd: {**sd, "fastformer_model.poolers.1.att_fc1.weight": torch.zeros(32, 32)}, "more than one pooler"),
        (
            lambda sd: {**sd, "fastformer_model.encoders.2.output.dense.bias": torch.zeros(32)},
            "is for layer 2, but fastformer.json says num_hidden_layers=2",
        ),
        (
            lambda sd: {
                k: v for k, v in sd.items() if k != "fastformer_model.encoders.1.attention.self.transform.bias"
            },
            "lacks parameters the model needs: ['fastformer.encoder.layer.1.attention.self.transform.bias']",
        ),
        (
            lambda sd: {k: v for k, v in sd.items() if k != "fastformer_model.LayerNorm.weight"},
            "lacks parameters the model needs: ['fastformer_model.LayerNorm.weight']",
        ),
        (
            lambda sd: {**sd, "fastformer_model.encoders.0.attention.self.query_att.weight": torch.zeros(8, 32)},
            "'fastformer_model.encoders.0.attention.self.query_att.weight' has shape (8, 32), but",
        ),
        (
            lambda sd: {**sd, "fastformer_model.position_embeddings.weight": torch.zeros(256, 32)},
            "'fastformer_model.position_embeddings.weight' has shape (256, 32)",
        ),
        (lambda sd: {**sd, "word_embedding.weight": torch.zeros(VOCAB, 16)}, "word_embedding.weight has width 16"),
        (lambda sd: {k: v for k, v in sd.items() if k != "dense_linear.weight"}, "has no 'dense_linear.weight'"),
        (lambda sd: {**sd, "dense_linear.weight": [[0.0]]}, "are not tensors"),
    ],
)
def test_state_dict_it_does_not_understand_is_refused(mutate, message):
    with pytest.raises(ValueError) as error:
        convert_official_state_dict(mutate(official_state_dict()), OFFICIAL_CONFIG)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"attention_probs_dropout": 0.1}, "entries the converter does not understand: ['attention_probs_dropout']"),
        ({"pooler_type": "cls"}, "pooler_type='cls'"),
        ({"num_attention_heads": None}, "lacks ['num_attention_heads']"),
        ({"num_attention_heads": 5}, "divisible"),
    ],
)
def test_config_it_cannot_honour_is_refused(changes, message):
    config = {k: v for k, v in {**OFFICIAL_CONFIG, **changes}.items() if v is not None}
    with pytest.raises(ValueError) as error:
        convert_official_state_dict(official_state_dict(), config)
    assert message in str(error.value)


def test_cli_ends_with_one_line_for_a_bad_checkpoint(tmp_path, monkeypatch):
    torch.save({**official_state_dict(), "extra.weight": torch.zeros(2)}, tmp_path / "model.pt")
    (tmp_path / "fastformer.json").write_text(json.dumps(OFFICIAL_CONFIG))
    argv = [
        "fastformer-convert-official",
        "--checkpoint",
        str(tmp_path / "model.pt"),
        "--config",
        str(tmp_path / "fastformer.json"),
        "--output_dir",
        str(tmp_path / "out"),
    ]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        cli()
    assert str(exit_info.value).startswith("fastformer-convert-official: error: 'extra.weight' is not a parameter")
    assert not (tmp_path / "out").exists()  # nothing written
