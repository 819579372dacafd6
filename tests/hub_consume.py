"""Consumer side of tests/test_hub.py: a fresh process in which the `fastformer` package cannot be imported.

Run as `python -P hub_consume.py report.json out.json` with `HF_ENDPOINT` pointing at the loopback test server and
no token in the environment. Everything it loads comes from the repos over HTTP: `auto_map` and the code files,
with `trust_remote_code=True`. It writes outputs and the errors it met (type and message) to argv[2].
"""

import json
import os
import sys


sys.modules["fastformer"] = None  # only the code files in the repos may be used

import torch  # noqa: E402
import transformers  # noqa: E402
from huggingface_hub import constants  # noqa: E402
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402


OUTPUT_KEYS = ("logits", "start_logits", "end_logits", "last_hidden_state")


def model_inputs(class_name, data):
    ids, mask = torch.tensor(data["input_ids"]), torch.tensor(data["attention_mask"])
    if class_name.endswith("ForMultipleChoice"):
        ids, mask = (t.unsqueeze(1).expand(-1, 2, -1) for t in (ids, mask))
    inputs = {"input_ids": ids, "attention_mask": mask}
    if class_name.endswith("ForConditionalGeneration"):
        inputs["decoder_input_ids"] = torch.tensor(data["decoder_input_ids"])
    return inputs


def outputs(model, data):
    name = type(model).__name__
    with torch.no_grad():
        out = model(**model_inputs(name, data))
    result = {key: out[key].tolist() for key in OUTPUT_KEYS if out.get(key) is not None}
    if name.endswith("ForConditionalGeneration"):
        ids, mask = torch.tensor(data["input_ids"]), torch.tensor(data["attention_mask"])
        result["generated"] = model.generate(
            ids, attention_mask=mask, num_beams=2, max_new_tokens=6, min_new_tokens=6
        ).tolist()
    return result


def error_of(load):
    try:
        load()
    except Exception as error:  # noqa: BLE001 - the test inspects type and message
        return {
            "type": type(error).__name__,
            "message": str(error),
            "bases": [c.__name__ for c in type(error).__mro__],
        }
    return None


def cached_blobs(repo_id):
    folder = os.path.join(constants.HF_HUB_CACHE, f"models--{repo_id.replace('/', '--')}", "blobs")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def main(report_path, out_path):
    report = json.load(open(report_path))
    data = report["data"]
    assert os.environ.get("HF_TOKEN") is None
    try:
        import fastformer  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("the package must not be importable here")
    result = {"models": {}, "revisions": {}, "errors": {}}

    # 1. every model class through the Auto class that the repo's auto_map names for it
    for class_name, entry in report["models"].items():
        config = AutoConfig.from_pretrained(entry["repo_id"], trust_remote_code=True)
        auto_names = [auto for auto, ref in config.auto_map.items() if ref.split(".")[-1] == class_name]
        auto_class = getattr(transformers, auto_names[0])
        model = auto_class.from_pretrained(entry["repo_id"], trust_remote_code=True).eval()
        result["models"][class_name] = {
            "auto_class": auto_names[0],
            "class": type(model).__name__,
            "module": type(model).__module__,
            "config_class": type(config).__name__,
            "outputs": outputs(model, data),
        }

    # the tokenizer, through AutoTokenizer and the repo's tokenizer code
    tokenizer = AutoTokenizer.from_pretrained(report["tokenizer"]["repo_id"], trust_remote_code=True)
    result["tokenizer"] = {
        "class": type(tokenizer).__name__,
        "module": type(tokenizer).__module__,
        "encoded": tokenizer(report["tokenizer"]["texts"], padding=True)["input_ids"],
    }

    # 2. the config on its own
    config = AutoConfig.from_pretrained(report["config"]["repo_id"], trust_remote_code=True)
    result["config"] = {
        "class": type(config).__name__,
        "module": type(config).__module__,
        "dict": config.to_diff_dict(),
    }

    # 3. revisions: a commit id, a branch, a tag, the default branch
    repo = report["revisions"]["repo_id"]
    for label, revision in (
        ("v1", report["revisions"]["v1"]["commit"]),
        ("v3", "dev"),
        ("tag", "release-1"),
        ("main", None),
    ):
        model = AutoModelForSequenceClassification.from_pretrained(
            repo, revision=revision, trust_remote_code=True
        ).eval()
        result["revisions"][label] = {"outputs": outputs(model, data), "module": type(model).__module__}
    result["errors"]["missing-revision"] = error_of(
        lambda: AutoModelForSequenceClassification.from_pretrained(
            repo, revision="no-such-branch", trust_remote_code=True
        )
    )

    # 4. the private repo: no token, another user's token, the owner's token
    private = report["private"]["repo_id"]
    result["errors"]["private-anonymous"] = error_of(
        lambda: AutoModelForSequenceClassification.from_pretrained(private, trust_remote_code=True)
    )
    result["errors"]["private-other-user"] = error_of(
        lambda: AutoModelForSequenceClassification.from_pretrained(
            private, trust_remote_code=True, token=os.environ["OTHER_USER_TOKEN"]
        )
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        private, trust_remote_code=True, token=os.environ["OWNER_TOKEN"]
    ).eval()
    result["private"] = {"outputs": outputs(model, data)}

    # 5. broken repos: each must raise, and no model comes back
    for name, repo_id in report["broken"].items():
        error = error_of(lambda: AutoModelForSequenceClassification.from_pretrained(repo_id, trust_remote_code=True))
        if error is not None:
            error["cached_blobs"] = cached_blobs(repo_id)
        result["errors"][name] = error

    # 6. a download cut short by the server once: the client resumes it
    model = AutoModelForSequenceClassification.from_pretrained(
        report["dropped"]["repo_id"], trust_remote_code=True
    ).eval()
    result["dropped"] = {"outputs": outputs(model, data)}

    # 7. the converted official checkpoint (padding is token id 0, as in the official code)
    converted = report["converted"]
    model = AutoModelForSequenceClassification.from_pretrained(converted["repo_id"], trust_remote_code=True).eval()
    ids = torch.tensor(converted["input_ids"])
    with torch.no_grad():
        result["converted"] = {"logits": model(ids, attention_mask=(ids != 0).long()).logits.tolist()}

    json.dump(result, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
