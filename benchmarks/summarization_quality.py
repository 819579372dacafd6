#!/usr/bin/env python
"""Summarization quality on XSum: Fastformer (both cross-attention types) vs a BART of the same size, same budget.

Every model is trained from scratch by `examples/run_summarization.py` on the built-in XSum split (849 training
pairs, 100 held-out test pairs; 50 validation pairs are not used) with the same arguments: one WordPiece tokenizer
trained here once on the training split and shared by all, the same width/depth/heads/FFN, the same epochs, batch
size, learning-rate schedule and seed, and the same decoding (beam search, no-repeat n-gram size, maximum length).
Documents are truncated only at `--max_source_length` (4,096 tokens by default, the position table of every model:
BART's is extended to 4,096); summaries at 64 tokens. Each run is a separate process; the script prints ROUGE-1/2/L
(stemmed F-measures x 100, `fastformer.classify.metrics.load("rouge")`) on the test split for each model and for the lead-1
baseline (the document's first sentence), the teacher-forced cross-entropy of the test summaries (nats per token,
a smoother measure than ROUGE on 100 pairs) and the training time.

Run: `python benchmarks/summarization_quality.py --output_dir outputs/xsum-quality [--epochs 8]`.
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "run_summarization.py"
MODELS = {
    "fastformer-sdpa": ["--model_type", "fastformer", "--cross_attention_type", "scaled_dot_product"],
    "fastformer-additive": ["--model_type", "fastformer", "--cross_attention_type", "additive"],
    "bart": ["--model_type", "bart"],
}


def load_script():
    spec = importlib.util.spec_from_file_location("run_summarization", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--data_cache_dir", default=None, help="the example script's --data_cache_dir")
    parser.add_argument("--epochs", type=float, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--warmup_steps", type=int, default=50)
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--num_attention_heads", type=int, default=8)
    parser.add_argument("--layers", type=int, default=2, help="encoder layers = decoder layers")
    parser.add_argument("--intermediate_size", type=int, default=1024)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--max_source_length", type=int, default=4096)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--no_repeat_ngram_size", type=int, default=3)
    parser.add_argument("--generation_max_length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max_predict_samples", type=int, default=None, help="score fewer test pairs (dry runs)")
    args = parser.parse_args()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    script = load_script()
    data_args = ["--dataset_name", "xsum"] + (["--data_cache_dir", args.data_cache_dir] if args.data_cache_dir else [])
    tokenizer_dir = output_dir / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        data = script.DataTrainingArguments(dataset_name="xsum", **(
            {"data_cache_dir": args.data_cache_dir} if args.data_cache_dir else {}))
        train = script.load_raw_datasets(data)["train"]
        tokenizer = script.train_tokenizer(list(train["document"]) + list(train["summary"]), args.vocab_size)
        tokenizer.save_pretrained(tokenizer_dir)

    common = data_args + [
        "--tokenizer_name", str(tokenizer_dir),
        "--hidden_size", str(args.hidden_size), "--num_attention_heads", str(args.num_attention_heads),
        "--num_hidden_layers", str(args.layers), "--num_decoder_layers", str(args.layers),
        "--intermediate_size", str(args.intermediate_size), "--hidden_dropout_prob", str(args.dropout),
        "--max_position_embeddings", str(args.max_source_length), "--max_source_length", str(args.max_source_length),
        "--max_target_length", "64", "--do_train", "--do_predict", "--predict_with_generate",
        "--num_train_epochs", str(args.epochs), "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", "10", "--learning_rate", str(args.learning_rate),
        "--warmup_steps", str(args.warmup_steps), "--lr_scheduler_type", "linear", "--weight_decay", "0.01",
        "--train_sampling_strategy", "group_by_length", "--generation_num_beams", str(args.beams),
        "--generation_max_length", str(args.generation_max_length),
        "--no_repeat_ngram_size", str(args.no_repeat_ngram_size), "--seed", str(args.seed),
        "--logging_steps", "50", "--save_strategy", "no", "--report_to", "none", "--use_cpu",
        "--disable_tqdm", "true",
    ]
    if args.max_predict_samples is not None:
        common += ["--max_predict_samples", str(args.max_predict_samples)]
    results = {}
    for name in args.models:
        run_dir = output_dir / name
        if not (run_dir / "predict_results.json").is_file():
            start = time.perf_counter()
            command = [sys.executable, str(SCRIPT), *common, *MODELS[name], "--output_dir", str(run_dir)]
            print(f"== {name}: {' '.join(command)}", flush=True)
            subprocess.run(command, check=True)
            (run_dir / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
        results[name] = {
            **json.loads((run_dir / "predict_results.json").read_text()),
            **json.loads((run_dir / "train_results.json").read_text()),
        }

    print(f"\nXSum (built-in split): trained on 849 pairs, scored on 100 held-out pairs; {args.epochs} epochs, "
          f"batch {args.batch_size}, lr {args.learning_rate}, hidden {args.hidden_size}, {args.num_attention_heads} "
          f"heads, {args.layers}+{args.layers} layers, FFN {args.intermediate_size}, vocab {args.vocab_size}; "
          f"beam {args.beams}, no-repeat {args.no_repeat_ngram_size}-grams, max {args.generation_max_length} tokens\n")
    print("| model | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum | mean length | test loss | mean train loss "
          "| train time (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['predict_rouge1']:.2f} | {r['predict_rouge2']:.2f} | {r['predict_rougeL']:.2f} | "
              f"{r['predict_rougeLsum']:.2f} | {r['predict_gen_len']:.1f} | {r['predict_loss']:.3f} | "
              f"{r['train_loss']:.3f} | {r['train_runtime']:.0f} |")
    lead = next(iter(results.values()))
    print(f"| lead-1 | {lead['predict_lead1_rouge1']:.2f} | {lead['predict_lead1_rouge2']:.2f} | "
          f"{lead['predict_lead1_rougeL']:.2f} | {lead['predict_lead1_rougeLsum']:.2f} | | | | |")
    (output_dir / "summary.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
