"""examples/run_summarization.py end to end on a tiny local JSON-lines dataset with a tiny model."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("datasets")
pytest.importorskip("rouge_score")
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer  # noqa: E402

from fastformer import FastformerForConditionalGeneration  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_summarization.py"

PAIRS = [
    ("The council approved a new bridge over the river. Work starts in May.", "Council approves river bridge."),
    ("Police arrested two men after a robbery in the city centre on Friday.", "Two men arrested after robbery."),
    ("The striker scored twice as the home side won the cup final.", "Striker's double wins cup final."),
    ("Heavy rain flooded roads across the county, and schools were closed.", "Floods close county schools."),
    ("A rare bird was seen in the park for the first time in fifty years.", "Rare bird returns to park."),
    ("Shares in the bank fell sharply after it reported a large loss.", "Bank shares fall after loss."),
]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("run_summarization", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_jsonl(path: Path, pairs, text="document", summary="summary"):
    path.write_text("".join(json.dumps({text: d, summary: s}) + "\n" for d, s in pairs), encoding="utf-8")
    return str(path)


def tiny_args(tmp_path: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--train_file", write_jsonl(tmp_path / "train.jsonl", PAIRS * 2),
        "--validation_file", write_jsonl(tmp_path / "validation.jsonl", PAIRS[:2]),
        "--test_file", write_jsonl(tmp_path / "test.jsonl", PAIRS[2:5]),
        "--output_dir", str(output_dir),
        "--vocab_size", "200", "--hidden_size", "32", "--num_attention_heads", "4", "--intermediate_size", "64",
        "--num_hidden_layers", "1", "--num_decoder_layers", "1", "--max_position_embeddings", "64",
        "--max_source_length", "64", "--max_target_length", "16", "--hidden_dropout_prob", "0.0",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--learning_rate", "3e-3",
        "--predict_with_generate", "--generation_max_length", "12", "--generation_num_beams", "2",
        "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true", "--seed", "0",
        *extra,
    ]


def test_script_trains_evaluates_and_the_checkpoint_reproduces_its_generations(script, tmp_path):
    output_dir = tmp_path / "out"
    script.main(tiny_args(tmp_path, output_dir, "--do_train", "--do_eval", "--do_predict", "--num_train_epochs", "4",
                          "--cross_attention_type", "additive"))

    results = json.loads((output_dir / "all_results.json").read_text())
    for key in ("train_loss", "eval_rouge1", "predict_rouge2", "predict_rougeL", "predict_lead1_rouge1"):
        assert key in results, sorted(results)
    written = (output_dir / "generated_predictions.txt").read_text(encoding="utf-8").splitlines()
    assert len(written) == 3

    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert type(model) is FastformerForConditionalGeneration and model.config.cross_attention_type == "additive"
    batch = tokenizer([d for d, _ in PAIRS[2:5]], padding=True, return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**batch, max_length=12, num_beams=2)
    assert [t.strip() for t in tokenizer.batch_decode(generated, skip_special_tokens=True)] == written


def test_script_trains_a_bart_of_the_same_size(script, tmp_path):
    output_dir = tmp_path / "bart"
    script.main(tiny_args(tmp_path, output_dir, "--do_train", "--model_type", "bart", "--max_steps", "2"))
    config = json.loads((output_dir / "config.json").read_text())
    assert config["model_type"] == "bart" and config["d_model"] == 32 and config["encoder_layers"] == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--do_train", "--text_column", "article"], "no column 'article'"),
        (["--do_train", "--summary_column", "highlights"], "no column 'highlights'"),
        (["--dataset_name", "cnn_dailymail", "--do_train"], "unknown --dataset_name"),
        (["--do_train", "--model_type", "bart", "--cross_attention_type", "additive"], "fastformer only"),
        (["--do_train", "--max_source_length", "128"], "exceeds the model's 64 positions"),
        ([], "nothing to do"),
    ],
)
def test_script_bad_input_stops_with_a_clear_error(script, tmp_path, extra, message):
    args = tiny_args(tmp_path, tmp_path / "out", *extra)
    if "--dataset_name" in extra:  # a dataset name replaces the files
        args = args[6:]
    with pytest.raises(SystemExit) as error:
        script.main(args)
    assert message in str(error.value)
