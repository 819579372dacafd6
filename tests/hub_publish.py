"""Publisher side of tests/test_hub.py, run as a subprocess with `HF_ENDPOINT` pointing at the loopback test server.

It does what a user does with the package installed: builds tiny seeded models, `push_to_hub`es them (and a
config, and broken repos for the error tests) with the real `huggingface_hub` client, and writes to argv[1] the
inputs, the reference outputs and the repo ids / commit ids for the consumer side (tests/hub_consume.py).
"""

import json
import os
import shutil
import sys
import tempfile

import torch
from helpers import randomize_  # (tests/ is this script's directory, first on sys.path)
from huggingface_hub import HfApi
from transformers import PreTrainedModel

import fastformer
from fastformer import FastformerConfig, FastformerForSequenceClassification


TEXTS = ["The movies' acting was GOOD, but long!", "a bad plot"]
OUTPUT_KEYS = ("logits", "start_logits", "end_logits", "last_hidden_state")
TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    hidden_dropout_prob=0.0,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)


def model_classes():
    """Every model class the package exports (new heads are picked up without touching this file)."""
    return [
        getattr(fastformer, name)
        for name in sorted(fastformer.__all__)
        if isinstance(getattr(fastformer, name), type)
        and issubclass(getattr(fastformer, name), PreTrainedModel)
        and getattr(fastformer, name) is not fastformer.FastformerPreTrainedModel
    ]


def config_for(cls, **kwargs):
    extra = dict(num_labels=3)
    if cls.__name__.endswith("ForConditionalGeneration"):
        extra = dict(is_encoder_decoder=True, num_decoder_layers=2, decoder_start_token_id=1)
    elif cls.__name__.endswith("ForCausalLM"):
        extra = dict(is_decoder=True)
    return FastformerConfig(**{**TINY, **extra, **kwargs})


def build(cls, seed, **kwargs):
    """Random weights everywhere (non-zero biases, non-unit LayerNorms), so that a parameter lost on the way to
    the Hub and back cannot hide behind its initial value."""
    torch.manual_seed(seed)
    return randomize_(cls(config_for(cls, **kwargs)), seed=seed).eval()


def model_inputs(cls, data):
    ids, mask = torch.tensor(data["input_ids"]), torch.tensor(data["attention_mask"])
    if cls.__name__.endswith("ForMultipleChoice"):
        ids, mask = (t.unsqueeze(1).expand(-1, 2, -1) for t in (ids, mask))
    inputs = {"input_ids": ids, "attention_mask": mask}
    if cls.__name__.endswith("ForConditionalGeneration"):
        inputs["decoder_input_ids"] = torch.tensor(data["decoder_input_ids"])
    return inputs


def outputs(model, data):
    with torch.no_grad():
        out = model(**model_inputs(type(model), data))
    result = {key: out[key].tolist() for key in OUTPUT_KEYS if out.get(key) is not None}
    if type(model).__name__.endswith("ForConditionalGeneration"):
        ids, mask = torch.tensor(data["input_ids"]), torch.tensor(data["attention_mask"])
        result["generated"] = model.generate(
            ids, attention_mask=mask, num_beams=2, max_new_tokens=6, min_new_tokens=6
        ).tolist()
    return result


def main(out_path):
    torch.manual_seed(0)
    lengths = (12, 7)
    mask = torch.tensor([[1] * n + [0] * (12 - n) for n in lengths])
    data = {
        "input_ids": (torch.randint(3, 99, (2, 12)) * mask).tolist(),
        "attention_mask": mask.tolist(),
        "decoder_input_ids": torch.cat([torch.ones(2, 1, dtype=torch.long), torch.randint(3, 99, (2, 4))], 1).tolist(),
    }
    api = HfApi()  # token from HF_TOKEN, endpoint from HF_ENDPOINT: as a user's `hf auth login` session
    user = api.whoami()["name"]
    report = {"data": data, "models": {}}

    # 1. every model class, pushed with push_to_hub
    for cls in model_classes():
        model = build(cls, seed=1)
        commit = model.push_to_hub(f"{user}/{cls.__name__}")
        report["models"][cls.__name__] = {
            "repo_id": f"{user}/{cls.__name__}",
            "commit": commit.oid,
            "outputs": outputs(model, data),
        }

    # the tokenizer, pushed next to the classifier as a real checkpoint has it
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += "the a movie was long but good bad plot ##s act ##ing".split()
    tokenizer = fastformer.FastformerTokenizer(vocab={word: i for i, word in enumerate(words)})
    tokenizer.push_to_hub(f"{user}/FastformerForSequenceClassification")
    report["tokenizer"] = {
        "repo_id": f"{user}/FastformerForSequenceClassification",
        "texts": TEXTS,
        "encoded": tokenizer(TEXTS, padding=True)["input_ids"],
    }

    # 2. a config on its own
    config = FastformerConfig(**TINY, num_labels=5, pooler_type="mean")
    config.push_to_hub(f"{user}/config-only")
    report["config"] = {"repo_id": f"{user}/config-only", "dict": config.to_diff_dict()}

    # 3. revisions: v1 on main, then v2 on main, v3 on a branch, a tag on v1
    repo = f"{user}/classifier-revisions"
    revisions = {}
    for version, seed, branch in (("v1", 11, None), ("v2", 12, None), ("v3", 13, "dev")):
        model = build(FastformerForSequenceClassification, seed=seed)
        commit = model.push_to_hub(repo, revision=branch, commit_message=f"classifier {version}")
        revisions[version] = {"commit": commit.oid, "outputs": outputs(model, data)}
    api.create_tag(repo, tag="release-1", revision=revisions["v1"]["commit"])
    report["revisions"] = {"repo_id": repo, **revisions}

    # 4. a private repo
    model = build(FastformerForSequenceClassification, seed=21)
    model.push_to_hub(f"{user}/private-classifier", private=True)
    report["private"] = {"repo_id": f"{user}/private-classifier", "outputs": outputs(model, data)}

    # 5. broken repos for the error tests, uploaded as folders with the commit API
    work = tempfile.mkdtemp()
    broken = {}

    def publish_broken(name, edit, seed=31, **save_kwargs):
        folder = os.path.join(work, name)
        build(FastformerForSequenceClassification, seed=seed).save_pretrained(folder, **save_kwargs)
        edit(folder)
        api.create_repo(f"{user}/{name}")
        api.upload_folder(folder_path=folder, repo_id=f"{user}/{name}")
        broken[name] = f"{user}/{name}"

    def truncate_weights(folder):
        path = os.path.join(folder, "model.safetensors")
        content = open(path, "rb").read()
        open(path, "wb").write(content[: len(content) // 2])

    def corrupt_weights(folder):
        path = os.path.join(folder, "model.safetensors")
        open(path, "wb").write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + b"\x00" * 64)

    def edit_config(**changes):
        def edit(folder):
            path = os.path.join(folder, "config.json")
            config = json.load(open(path))
            for key, value in changes.items():
                if value is None:
                    config.pop(key)
                else:
                    config[key] = value
            json.dump(config, open(path, "w"))

        return edit

    publish_broken("truncated-weights", truncate_weights)
    publish_broken("corrupt-weights", corrupt_weights)
    publish_broken(
        "missing-shard",
        lambda folder: os.remove(os.path.join(folder, "model-00002-of-00003.safetensors")),
        max_shard_size="40KB",
    )
    publish_broken("corrupt-config", lambda folder: open(os.path.join(folder, "config.json"), "w").write('{"model_'))
    publish_broken("unknown-model-type", edit_config(model_type="not-a-model", auto_map=None))
    publish_broken("unknown-model-type-remote-code", edit_config(model_type="not-a-model"))
    publish_broken("missing-modeling-file", lambda folder: os.remove(os.path.join(folder, "modeling_fastformer.py")))
    publish_broken(
        "missing-configuration-file", lambda folder: os.remove(os.path.join(folder, "configuration_fastformer.py"))
    )
    report["broken"] = broken
    # 6. an intact repo whose first download the server cuts short (the client must resume, not load half a file)
    model = build(FastformerForSequenceClassification, seed=41)
    model.push_to_hub(f"{user}/dropped-download")
    report["dropped"] = {"repo_id": f"{user}/dropped-download", "outputs": outputs(model, data)}

    # 7. an official checkpoint (the authors' notebook layout), converted and pushed by the conversion CLI
    from test_convert_official import OFFICIAL_CONFIG, official_forward, official_state_dict, padded_ids

    from fastformer.convert_official_checkpoint import main as convert

    state = official_state_dict(seed=5)
    torch.save(state, os.path.join(work, "official.pt"))
    json.dump(OFFICIAL_CONFIG, open(os.path.join(work, "fastformer.json"), "w"))
    converted = convert(
        [
            "--checkpoint",
            os.path.join(work, "official.pt"),
            "--config",
            os.path.join(work, "fastformer.json"),
            "--output_dir",
            os.path.join(work, "converted"),
            "--push_to_hub",
            f"{user}/converted-official",
        ]
    )
    ids = padded_ids()
    with torch.no_grad():
        report["converted"] = {
            "repo_id": f"{user}/converted-official",
            "input_ids": ids.tolist(),
            "official_logits": official_forward(state, ids).tolist(),
            "logits": converted(ids, attention_mask=(ids != 0).long()).logits.tolist(),
        }
    shutil.rmtree(work)

    json.dump(report, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1])
