"""Publishing on the Hub over HTTP: push with the package, pull in a fresh process without it.

A Hub-compatible test server (tests/hub_server.py, a test double) runs on 127.0.0.1. Two subprocesses talk to it
with the real `huggingface_hub` client through `HF_ENDPOINT`, as users do: tests/hub_publish.py pushes (package
installed), then tests/hub_consume.py pulls with `trust_remote_code=True` in a process where `fastformer` cannot
be imported. Both run once for the module; each test checks one property of what came back. Any request off
loopback goes to a dead proxy, so nothing can reach the real Hub.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import HubServer


HERE = Path(__file__).resolve().parent
TOKENS = {"hf_test_alice": "alice", "hf_test_bob": "bob"}


def client_env(hub: HubServer, home: Path, **extra) -> dict:
    """The environment of a client process: the test server as endpoint, a fresh cache, no token, no Xet."""
    drop = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_ENDPOINT", "PYTHONPATH", "HF_HUB_CACHE"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.lower().endswith("_proxy")}
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HOME=str(home),
        HF_HUB_DISABLE_XET="1",  # the client then uploads with the Git LFS basic transfer
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        # nothing but loopback: any other host goes to a closed port and fails at once
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        ALL_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def run(args, env, cwd):
    result = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-6000:]
    return result


@pytest.fixture(scope="module")
def hub_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub")
    with HubServer(TOKENS) as hub:
        report_path, result_path = tmp / "report.json", tmp / "result.json"
        run(
            [str(HERE / "hub_publish.py"), str(report_path)],
            client_env(hub, tmp / "publisher-home", HF_TOKEN="hf_test_alice"),
            tmp,
        )
        report = json.loads(report_path.read_text())
        # the first download of this repo's weights is cut short after 1,000 bytes
        repo = hub.state.repos[report["dropped"]["repo_id"]]
        weights = repo.commits[repo.refs["main"]].files["model.safetensors"]
        hub.truncate_downloads_of(weights.oid, 1000, times=1)
        publisher_requests = len(hub.requests)
        consumer = tmp / "consumer"
        consumer.mkdir()
        run(
            ["-P", str(HERE / "hub_consume.py"), str(report_path), str(result_path)],
            client_env(hub, tmp / "consumer-home", OWNER_TOKEN="hf_test_alice", OTHER_USER_TOKEN="hf_test_bob"),
            consumer,
        )
        yield {
            "hub": hub,
            "report": report,
            "result": json.loads(result_path.read_text()),
            "publisher_requests": hub.requests[:publisher_requests],
            "consumer_requests": hub.requests[publisher_requests:],
        }


def test_client_used_only_implemented_endpoints_and_lfs_for_weights(hub_run):
    hub = hub_run["hub"]
    assert hub.unhandled == [] and hub.errors == []
    publisher = hub_run["publisher_requests"]
    assert ("POST", "/api/repos/create") in publisher
    assert any(m == "PUT" and p.startswith("/lfs/") for m, p in publisher), "weights must go through LFS"
    assert any(m == "POST" and p.endswith("/commit/main") for m, p in publisher)
    consumer = hub_run["consumer_requests"]
    assert any(m == "HEAD" and "/resolve/" in p for m, p in consumer)
    assert all(m in ("GET", "HEAD") for m, p in consumer), "the consumer only reads"


def test_pushed_repos_hold_weights_in_lfs_code_files_and_auto_map(hub_run):
    state = hub_run["hub"].state
    for name, pushed in hub_run["report"]["models"].items():
        repo = state.repos[pushed["repo_id"]]
        files = repo.commits[repo.refs["main"]].files
        assert {
            "config.json",
            "model.safetensors",
            "configuration_fastformer.py",
            "modeling_fastformer.py",
            "README.md",
        } <= set(files), sorted(files)
        assert files["model.safetensors"].lfs and not files["modeling_fastformer.py"].lfs
        auto_map = json.loads(files["config.json"].content)["auto_map"]
        assert f"modeling_fastformer.{name}" in auto_map.values()
        assert auto_map["AutoConfig"] == "configuration_fastformer.FastformerConfig"
    repo = state.repos[hub_run["report"]["tokenizer"]["repo_id"]]
    files = repo.commits[repo.refs["main"]].files
    assert {"tokenizer.json", "tokenizer_config.json", "tokenization_fastformer.py"} <= set(files)
    auto_map = json.loads(files["tokenizer_config.json"].content)["auto_map"]
    assert "tokenization_fastformer.FastformerTokenizer" in json.dumps(auto_map["AutoTokenizer"])


def test_every_model_class_round_trips_through_the_hub(hub_run):
    from transformers import PreTrainedModel

    import fastformer

    report, result = hub_run["report"], hub_run["result"]
    exported = {
        name
        for name in fastformer.__all__
        if isinstance(getattr(fastformer, name), type)
        and issubclass(getattr(fastformer, name), PreTrainedModel)
        and name != "FastformerPreTrainedModel"
    }
    assert {"FastformerForSequenceClassification", "FastformerForConditionalGeneration"} <= exported
    assert set(report["models"]) == exported == set(result["models"])
    for name, pushed in report["models"].items():
        pulled = result["models"][name]
        assert pulled["class"] == name and pulled["config_class"] == "FastformerConfig"
        assert pulled["module"].startswith("transformers_modules."), pulled["module"]  # the repo's code
        assert pulled["outputs"].keys() == pushed["outputs"].keys() and pushed["outputs"]
        for key, value in pushed["outputs"].items():
            assert pulled["outputs"][key] == value, f"{name}.{key} differs after push/pull"  # bit-identical


def test_seq2seq_generation_is_identical_after_push_and_pull(hub_run):
    pushed = hub_run["report"]["models"]["FastformerForConditionalGeneration"]["outputs"]
    pulled = hub_run["result"]["models"]["FastformerForConditionalGeneration"]
    assert pulled["auto_class"] == "AutoModelForSeq2SeqLM"
    assert len(pushed["generated"][0]) == 7  # start token + 6 new tokens, beam search
    assert pulled["outputs"]["generated"] == pushed["generated"]


def test_tokenizer_round_trips_with_its_code(hub_run):
    report, result = hub_run["report"]["tokenizer"], hub_run["result"]["tokenizer"]
    assert result["class"] == "FastformerTokenizer"
    assert result["module"].startswith("transformers_modules."), result["module"]
    assert result["encoded"] == report["encoded"]
    assert report["encoded"][0][0] == 2 and 1 in report["encoded"][0]  # [CLS] first; "!" is [UNK] in this vocab


def test_config_push_to_hub_round_trips(hub_run):
    report, result = hub_run["report"]["config"], hub_run["result"]["config"]
    assert result["class"] == "FastformerConfig" and result["module"].startswith("transformers_modules.")
    for key in ("num_labels", "pooler_type", "hidden_size", "vocab_size"):
        assert result["dict"].get(key, None) == report["dict"].get(key, None), key


def test_revisions_behave_as_on_the_hub(hub_run):
    report, result = hub_run["report"]["revisions"], hub_run["result"]["revisions"]
    logits = {version: report[version]["outputs"]["logits"] for version in ("v1", "v2", "v3")}
    assert len({json.dumps(v) for v in logits.values()}) == 3  # three different models
    assert result["v1"]["outputs"]["logits"] == logits["v1"]  # by commit id
    assert result["tag"]["outputs"]["logits"] == logits["v1"]  # by tag
    assert result["v3"]["outputs"]["logits"] == logits["v3"]  # by branch
    assert result["main"]["outputs"]["logits"] == logits["v2"]  # default branch: the latest push
    # remote code is cached per commit: each revision ran its own copy of the code
    assert result["v1"]["module"] != result["main"]["module"]
    error = hub_run["result"]["errors"]["missing-revision"]
    assert error["type"] == "OSError" and "no-such-branch" in error["message"]
    assert "not a valid git identifier" in error["message"]


def test_private_repo_needs_the_owners_token(hub_run):
    errors = hub_run["result"]["errors"]
    for case in ("private-anonymous", "private-other-user"):
        assert errors[case] is not None, case
        assert errors[case]["type"] == "OSError"
        assert "private repository" in errors[case]["message"] and "token" in errors[case]["message"]
    assert hub_run["result"]["private"]["outputs"] == hub_run["report"]["private"]["outputs"]


@pytest.mark.parametrize("name", ["truncated-weights", "corrupt-weights"])
def test_broken_weights_file_raises_a_clear_error(hub_run, name):
    error = hub_run["result"]["errors"][name]
    assert error is not None, "a broken weights file must not load"
    assert error["type"] == "SafetensorError" and "Error while deserializing header" in error["message"]


def test_missing_shard_raises_a_clear_error(hub_run):
    """A sharded checkpoint whose index names a shard the repo lacks: an error, not a partly random model."""
    error = hub_run["result"]["errors"]["missing-shard"]
    assert error is not None and error["type"] == "OSError"
    assert "model-00002-of-00003.safetensors" in error["message"]


def test_corrupt_config_raises_a_clear_error(hub_run):
    error = hub_run["result"]["errors"]["corrupt-config"]
    assert error["type"] == "OSError" and "is not a valid JSON file" in error["message"]


def test_unknown_model_type_raises_a_clear_error(hub_run):
    errors = hub_run["result"]["errors"]
    # without custom code: transformers does not know the architecture
    assert errors["unknown-model-type"]["type"] == "ValueError"
    assert "not-a-model" in errors["unknown-model-type"]["message"]
    # with custom code (auto_map): FastformerConfig refuses a config of another model_type
    assert errors["unknown-model-type-remote-code"]["type"] == "ValueError"
    assert "model_type='not-a-model'" in errors["unknown-model-type-remote-code"]["message"]


@pytest.mark.parametrize(
    "name,missing",
    [
        ("missing-modeling-file", "modeling_fastformer.py"),
        ("missing-configuration-file", "configuration_fastformer.py"),
    ],
)
def test_missing_code_file_raises_a_clear_error(hub_run, name, missing):
    error = hub_run["result"]["errors"][name]
    assert error is not None and error["type"] == "OSError"
    assert f"does not appear to have a file named {missing}" in error["message"]
    # nothing half-loaded: the weights were never fetched
    repo = hub_run["hub"].state.repos[hub_run["report"]["broken"][name]]
    weights_oid = repo.commits[repo.refs["main"]].files["model.safetensors"].oid
    assert weights_oid not in error["cached_blobs"]


def test_dropped_download_is_resumed_and_loads_the_same_model(hub_run):
    assert hub_run["result"]["dropped"]["outputs"] == hub_run["report"]["dropped"]["outputs"]
    repo = hub_run["hub"].state.repos[hub_run["report"]["dropped"]["repo_id"]]
    weights = repo.commits[repo.refs["main"]].files["model.safetensors"]
    downloads = [p for m, p in hub_run["consumer_requests"] if m == "GET" and p == f"/lfs/{weights.oid}"]
    assert len(downloads) == 2  # cut after 1,000 bytes, then resumed from there


def test_converted_official_checkpoint_round_trips(hub_run):
    """The conversion CLI's `--push_to_hub`: the pulled model gives the official forward pass's logits."""
    import torch

    report, result = hub_run["report"]["converted"], hub_run["result"]["converted"]
    assert result["logits"] == report["logits"]
    torch.testing.assert_close(
        torch.tensor(result["logits"]), torch.tensor(report["official_logits"]), rtol=1e-5, atol=1e-5
    )


CARD_CONSUMER = """
import json, sys
sys.modules["fastformer"] = None  # only the repo's code
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, AutoTokenizer

repo_id, texts = sys.argv[1], json.loads(sys.argv[2])
card = ModelCard.load(repo_id)
tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(repo_id, trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(**tokenizer(texts, padding=True, truncation=True, return_tensors="pt")).logits
print(json.dumps({"card_data": card.data.to_dict(), "card_text": card.text, "logits": logits.tolist(),
                  "tokenizer_module": type(tokenizer).__module__}))
"""


def test_main_job_publishes_its_checkpoint_and_model_card(tmp_path):
    """The main job's `--push_to_hub` over the test server; a fresh process without the package reads the model
    card (library, task, tags, dataset, the run's metrics, the trust_remote_code snippet) and the model."""
    pytest.importorskip("fastformer.classify.run_classification")
    pytest.importorskip("datasets")
    pytest.importorskip("evaluate")
    import csv
    import random

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rng = random.Random(0)
    with open(tmp_path / "reviews.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(40):
            label = ("neg", "pos")[i % 2]
            words = rng.choices("the film story actor scene plot music end".split(), k=rng.randint(8, 40))
            words.insert(rng.randrange(len(words)), ("dull", "superb")[i % 2])
            writer.writerow([" ".join(words), label])
    tiny = [
        "--hidden_size",
        "16",
        "--num_attention_heads",
        "2",
        "--intermediate_size",
        "32",
        "--num_hidden_layers",
        "1",
        "--max_seq_length",
        "32",
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--disable_tqdm",
        "true",
        "--seed",
        "0",
        "--test_size",
        "0.25",
        "--report_to",
        "none",
    ]
    with HubServer(TOKENS) as hub:
        run(
            [
                "-m",
                "fastformer.classify.run_classification",
                "--output_dir",
                str(tmp_path / "checkpoint"),
                "--train_file",
                str(tmp_path / "reviews.csv"),
                *tiny,
                "--push_to_hub",
                "true",
                "--hub_model_id",
                "alice/tiny-reviews",
                "--hub_token",
                "hf_test_alice",
            ],
            client_env(hub, tmp_path / "job-home"),
            tmp_path,
        )
        texts = ["a superb film", "the plot was dull and the music dull"]
        (tmp_path / "consume.py").write_text(CARD_CONSUMER)
        result = run(
            ["-P", "consume.py", "alice/tiny-reviews", json.dumps(texts)],
            client_env(hub, tmp_path / "consumer-home"),
            tmp_path,
        )
        assert hub.unhandled == [] and hub.errors == []
    pulled = json.loads(result.stdout.strip().splitlines()[-1])
    data, text = pulled["card_data"], pulled["card_text"]
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-classification"
    assert {"fastformer", "custom_code"} <= set(data["tags"])
    assert data["datasets"] == ["reviews.csv"]
    assert set(data["metrics"]) == {"accuracy", "macro_f1"}
    run_results = json.loads((tmp_path / "checkpoint" / "all_results.json").read_text())
    card_metrics = {m["type"]: m["value"] for m in data["model-index"][0]["results"][0]["metrics"]}
    assert card_metrics == {"accuracy": run_results["accuracy"], "macro_f1": run_results["macro_f1"]}
    assert 'from_pretrained("alice/tiny-reviews", trust_remote_code=True)' in text
    assert pulled["tokenizer_module"].startswith("transformers_modules.")
    # the published model is the checkpoint the job wrote
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "checkpoint")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "checkpoint").eval()
    with torch.no_grad():
        local = model(**tokenizer(texts, padding=True, truncation=True, return_tensors="pt")).logits
    assert pulled["logits"] == local.tolist()
