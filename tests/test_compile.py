"""`torch.compile`: every head's training step is one graph (`fullgraph=True`) that equals eager PyTorch, also at a
length it was not compiled at; variable-length batches and a 200-token decoding loop recompile a bounded number of
times, counted by dynamo (`CompileCounterWithBackend` counts the graphs handed to the backend; a recompile is one
more). The graphs are traced by dynamo exactly as for inductor; the backends used here (`aot_eager`: AOTAutograd's
forward and backward graphs run by eager kernels; `eager` where only the count matters) skip code generation, which
takes minutes on a CPU. What inductor's kernels buy: `benchmarks/benchmark_deploy.py`."""

import math

import pytest
import torch
import torch._dynamo
from helpers import assert_far, causal_config, max_difference, randomize_, seq2seq_config, tiny_config
from torch._dynamo.testing import CompileCounterWithBackend

from fastformer import (
    FastformerForCausalLM,
    FastformerForConditionalGeneration,
    FastformerForMaskedLM,
    FastformerForMultipleChoice,
    FastformerForQuestionAnswering,
    FastformerForSequenceClassification,
    FastformerForTokenClassification,
    FastformerModel,
)
from fastformer.pooling_fastformer import CAUSAL_CHUNK_SIZE


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each case starts from, and leaves, an empty compile cache (graphs, guards, automatic-dynamic marks)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def token_ids(generator, *shape, vocab=99):
    return torch.randint(3, vocab, shape, generator=generator)


def padded_mask(batch: int, seq: int) -> torch.Tensor:
    """All ones but the last row, which ends in `seq // 3` padding tokens."""
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[-1, seq - seq // 3 :] = 0
    return mask


def head_batch(head: str, seq: int, seed: int) -> dict:
    """A batch of 2 rows of `seq` tokens for `head`, with its labels (the last row padded)."""
    generator = torch.Generator().manual_seed(seed)
    ids, mask = token_ids(generator, 2, seq), padded_mask(2, seq)
    if head == "multiple_choice":  # (batch, choices, seq)
        return dict(
            input_ids=token_ids(generator, 2, 3, seq),
            attention_mask=mask.unsqueeze(1).expand(2, 3, seq).contiguous(),
            labels=torch.tensor([2, 0]),
        )
    labels = {
        "model": {},
        "sequence_classification": dict(labels=torch.tensor([2, 0])),
        "token_classification": dict(labels=torch.randint(0, 3, (2, seq), generator=generator)),
        "question_answering": dict(start_positions=torch.tensor([1, 3]), end_positions=torch.tensor([4, seq - 1])),
        "masked_lm": dict(labels=ids.masked_fill(torch.rand(2, seq, generator=generator) < 0.6, -100)),
        "causal_lm": dict(labels=ids),
        "conditional_generation": dict(labels=token_ids(generator, 2, seq - 3)),  # decoder: the same scan depth
    }[head]
    return dict(input_ids=ids, attention_mask=mask, **labels)


HEADS = {
    "model": lambda: FastformerModel(tiny_config()),
    "sequence_classification": lambda: FastformerForSequenceClassification(tiny_config(num_labels=3)),
    "token_classification": lambda: FastformerForTokenClassification(tiny_config(num_labels=3)),
    "question_answering": lambda: FastformerForQuestionAnswering(tiny_config()),
    "masked_lm": lambda: FastformerForMaskedLM(tiny_config()),
    "multiple_choice": lambda: FastformerForMultipleChoice(tiny_config()),
    "causal_lm": lambda: FastformerForCausalLM(causal_config()),
    "conditional_generation": lambda: FastformerForConditionalGeneration(seq2seq_config()),
}


def training_loss(model, batch: dict) -> torch.Tensor:
    """The head's loss; for `FastformerModel`, which has none, a fixed random projection of its hidden states."""
    outputs = model(**batch)
    if getattr(outputs, "loss", None) is not None:
        return outputs.loss
    hidden = outputs.last_hidden_state
    projection = torch.linspace(-1.0, 1.0, hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
    return (hidden * projection).sum(-1).square().mean()


def loss_and_gradients(step, model, batch: dict) -> tuple[torch.Tensor, list]:
    """`step(model, batch)` and the gradients of every parameter (None where a parameter takes no part)."""
    loss = step(model, batch)
    params = [param for param in model.parameters() if param.requires_grad]
    return loss.detach(), list(torch.autograd.grad(loss, params, allow_unused=True))


def flat(gradients: list) -> torch.Tensor:
    return torch.cat([g.flatten() for g in gradients if g is not None])


# Two lengths of the same causal scan depth (two levels of 16-item blocks), the second never compiled at.
LENGTHS = (21, 37)
RTOL, ATOL = 1e-4, 1e-5


@pytest.mark.parametrize("head", list(HEADS))
def test_training_step_is_one_graph_equal_to_eager_at_an_unseen_length(head):
    """`torch.compile(step, fullgraph=True, dynamic=True)` of forward + loss traces every head into one graph (a
    graph break would raise), and the loss and every parameter's gradient (autograd through the captured graph)
    equal eager PyTorch at the compiled length and at a second length, without a recompile. Catches a graph break
    (data-dependent Python control flow, an unsupported call), a guard on the length (a recompile per batch), and a
    graph that specialised a length-dependent value (wrong outputs at the unseen length). The gradients move by
    >= 100x the tolerance when one token per row changes (checked), so the comparison can fail."""
    model = randomize_(HEADS[head]()).train()  # the tiny configs have no dropout
    counter = CompileCounterWithBackend("eager")
    compiled = torch.compile(training_loss, fullgraph=True, dynamic=True, backend=counter)
    for seed, seq in enumerate(LENGTHS):
        batch = head_batch(head, seq, seed)
        eager_loss, eager_grads = loss_and_gradients(training_loss, model, batch)  # first: sets `problem_type`
        loss, grads = loss_and_gradients(compiled, model, batch)
        torch.testing.assert_close(loss, eager_loss, rtol=RTOL, atol=ATOL)
        assert [g is None for g in grads] == [g is None for g in eager_grads]
        torch.testing.assert_close(flat(grads), flat(eager_grads), rtol=RTOL, atol=ATOL)
    assert counter.frame_count == 1, f"{counter.frame_count} graphs for two lengths"
    changed = {**batch, "input_ids": batch["input_ids"].clone()}
    changed["input_ids"][..., 1] = (changed["input_ids"][..., 1] + 1) % 99
    assert_far(flat(loss_and_gradients(training_loss, model, changed)[1]), flat(eager_grads), atol=ATOL)


def test_causal_lm_backward_graph_from_aot_autograd_equals_eager():
    """The path of the default (inductor) backend up to code generation: AOTAutograd traces the causal LM's
    forward + loss into one graph and derives one backward graph, both run by eager kernels (`aot_eager`); loss
    and every gradient equal eager. Catches an op without a traceable backward, or a backward graph that saves a
    wrong (mutated, aliased) tensor. (Inductor's own kernels: `test_modeling_fastformer.py`'s compile test and
    `benchmarks/benchmark_deploy.py`, which compiles every training step with it.)"""
    model = randomize_(FastformerForCausalLM(causal_config(num_hidden_layers=1))).train()
    batch = head_batch("causal_lm", LENGTHS[0], 0)
    eager_loss, eager_grads = loss_and_gradients(training_loss, model, batch)
    counter = CompileCounterWithBackend("aot_eager")
    loss, grads = loss_and_gradients(torch.compile(training_loss, fullgraph=True, backend=counter), model, batch)
    assert counter.frame_count == 1
    torch.testing.assert_close(loss, eager_loss, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(flat(grads), flat(eager_grads), rtol=RTOL, atol=ATOL)


def scan_levels(seq: int) -> int:
    """The causal prefix scan's depth at `seq` tokens: `ceil(log16 seq)` levels of 16-item blocks (1 up to 16)."""
    return max(1, math.ceil(math.log(seq, CAUSAL_CHUNK_SIZE) - 1e-9))


# Ten lengths: 1, 5 and 4 of them at scan depths 1, 2 and 3.
TEN_LENGTHS = (11, 23, 40, 77, 130, 201, 256, 300, 389, 480)


def compiled_steps_over_lengths(model, dynamic, batch_of) -> CompileCounterWithBackend:
    """Runs `model`'s training step, compiled with `dynamic`, on a batch of each of `TEN_LENGTHS` (forward,
    loss and backward), each checked against eager; returns the compile counter."""
    counter = CompileCounterWithBackend("eager")
    compiled = torch.compile(training_loss, fullgraph=True, dynamic=dynamic, backend=counter)
    for seed, seq in enumerate(TEN_LENGTHS):
        batch = batch_of(seq, seed)
        eager_loss = training_loss(model, batch)
        loss = compiled(model, batch)
        loss.backward()
        torch.testing.assert_close(loss, eager_loss, rtol=RTOL, atol=ATOL)
    return counter


@pytest.mark.parametrize("dynamic", [None, True])
def test_encoder_recompiles_at_most_once_over_ten_lengths(dynamic):
    """The classifier's training step on batches of ten different lengths (3 .. 480 tokens): with `dynamic=None`
    (the default, also what the `Trainer`'s `torch_compile` uses) dynamo compiles the first length static and
    recompiles once with a symbolic length at the second; with `dynamic=True` one graph serves all ten. Catches a
    guard on a length-dependent value (one graph per length)."""
    model = FastformerForSequenceClassification(tiny_config(num_labels=2, max_position_embeddings=512)).train()
    model.config.problem_type = "single_label_classification"  # set by the first call otherwise: a recompile

    def batch_of(seq, seed):
        generator = torch.Generator().manual_seed(seed)
        return dict(
            input_ids=token_ids(generator, 2, seq), attention_mask=padded_mask(2, seq), labels=torch.tensor([0, 1])
        )

    counter = compiled_steps_over_lengths(model, dynamic, batch_of)
    assert counter.frame_count == (2 if dynamic is None else 1), counter.frame_count


def test_causal_lm_recompiles_once_per_scan_level_over_ten_lengths():
    """The causal LM's training step, `dynamic=True`, on ten lengths spanning scan depths 1, 2 and 3: one graph per
    depth (the number of block levels is Python control flow on the length), never one per length, and each
    length's loss equals eager. Catches a guard on the length itself or on the block count inside a level."""
    model = FastformerForCausalLM(causal_config(num_hidden_layers=1)).train()

    def batch_of(seq, seed):
        ids = token_ids(torch.Generator().manual_seed(seed), 2, seq)
        return dict(input_ids=ids, attention_mask=padded_mask(2, seq), labels=ids)

    counter = compiled_steps_over_lengths(model, True, batch_of)
    levels = {scan_levels(seq) for seq in TEN_LENGTHS}
    assert levels == {1, 2, 3}
    assert counter.frame_count == len(levels), f"{counter.frame_count} graphs for {len(levels)} scan depths"


@pytest.mark.parametrize("dynamic, graphs", [(True, 2), (None, 3)])
def test_compiled_decoding_loop_of_200_steps_recompiles_at_most_once(dynamic, graphs):
    """`model.forward = torch.compile(model.forward, dynamic=...)`, then `generate()`: 200 sampled steps (the same
    seed) give the eager tokens. The prompt's forward (no cache yet) is one graph and the one-token step another; with `dynamic=True` the
    step's graph is symbolic in the token count and mask length from the start (2 graphs in all), with the default
    it is recompiled once, at the second step, and never again (3). A second `generate()` compiles nothing. Catches
    a guard on the cache's token count or the growing mask (a recompile per step, slower than eager)."""
    config = causal_config()
    model = FastformerForCausalLM(config).eval()  # initial weights: flat enough that sampling varies the tokens
    prompt = token_ids(torch.Generator().manual_seed(0), 2, 7)
    mask = torch.ones_like(prompt)
    settings = dict(max_new_tokens=200, min_new_tokens=200, do_sample=True, top_k=0)
    torch.manual_seed(0)
    expected = model.generate(prompt, attention_mask=mask, **settings)
    counter = CompileCounterWithBackend("eager")
    model.forward = torch.compile(model.forward, dynamic=dynamic, backend=counter)
    torch.manual_seed(0)
    tokens = model.generate(prompt, attention_mask=mask, **settings)
    assert tokens.shape == (2, 207)
    assert torch.equal(tokens, expected)
    assert len(set(tokens[:, 7:].flatten().tolist())) > 50  # each step's logits decide its token
    assert counter.frame_count == graphs, f"{counter.frame_count} graphs for a 200-step decoding loop"
    model.generate(prompt, attention_mask=mask, max_new_tokens=20, min_new_tokens=20)
    assert counter.frame_count == graphs, "a second generate() recompiled"


def test_decoding_step_equals_eager_logits_after_many_steps():
    """The compiled step's logits (not only the argmax) equal eager after 60 steps from a cache, with a padded
    prompt row: the state carried through the compiled graph is the eager state. Catches a state that the graph
    reads stale (e.g. a value baked in at trace time), which greedy tokens could hide."""
    model = randomize_(FastformerForCausalLM(causal_config()), std=0.1).eval()
    generator = torch.Generator().manual_seed(1)
    prompt, mask = token_ids(generator, 2, 9), torch.ones(2, 9, dtype=torch.long)
    mask[1, :4] = 0  # a left-padded row, as generate() pads
    steps = token_ids(generator, 2, 60)
    compiled = torch.compile(model, dynamic=True, backend=CompileCounterWithBackend("eager"))

    def run(forward):
        with torch.no_grad():
            out = forward(prompt, attention_mask=mask, use_cache=True)
            cache, running_mask, logits = out.cache, mask, []
            for t in range(steps.shape[1]):
                running_mask = torch.cat([running_mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
                out = forward(steps[:, t : t + 1], attention_mask=running_mask, cache=cache, use_cache=True)
                cache = out.cache
                logits.append(out.logits[:, -1])
        return torch.stack(logits, dim=1)

    eager = run(model)
    torch.testing.assert_close(run(compiled), eager, rtol=RTOL, atol=ATOL)
    without_prompt = torch.stack(
        [model(steps[:, : t + 1]).logits[:, -1] for t in range(0, steps.shape[1], 10)], dim=1
    ).detach()
    assert max_difference(eager[:, ::10], without_prompt) >= 100 * ATOL  # the state matters
