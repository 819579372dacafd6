"""Assisted and prompt-lookup decoding: the decoding cache records the states of the last tokens
(`FastformerCache.activate_past_recording`) and `crop` rolls back the draft tokens the target model rejects, so that
`generate(assistant_model=...)` and `generate(prompt_lookup_num_tokens=...)` give exactly the greedy tokens.

The models have weights large enough that tokens mix (`randomize_`): the greedy tokens depend on the context, and a
rollback that keeps the rejected tokens' states changes them. A draft model "misleads" at chosen positions (the
target's own weights, its greedy token there replaced by the next best), so that the rounds, and the tokens each
rolls back, are known in advance. Batch 1: transformers' assisted decoding supports no other.
"""

import copy

import pytest
import torch
from helpers import assert_far, causal_config, max_difference, randomize_, seq2seq_config

from fastformer import FastformerCache, FastformerForCausalLM, FastformerForConditionalGeneration
from fastformer.cache_fastformer import FastformerCacheLayer, split_cache


PROMPT, NEW = 6, 40


def causal_lm(seed: int = 0, **kwargs) -> FastformerForCausalLM:
    return randomize_(FastformerForCausalLM(causal_config(eos_token_id=None, **kwargs)), seed=seed).eval()


@pytest.fixture(scope="module")
def target():
    return causal_lm()


@pytest.fixture(scope="module")
def prompt():
    return torch.randint(3, 99, (1, PROMPT), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def greedy(target, prompt):
    return target.generate(prompt, max_new_tokens=NEW, do_sample=False)


@pytest.fixture
def target_crops(monkeypatch):
    """The token counts `crop` removes from each cache, by cache: `crops[id(cache)]`, in call order."""
    crops = {}
    crop = FastformerCache.crop

    def spy(self, tokens_to_remove):
        crops.setdefault(id(self), []).append(-tokens_to_remove)
        return crop(self, tokens_to_remove)

    monkeypatch.setattr(FastformerCache, "crop", spy)
    return crops


def crops_of(model, crops: dict, run):
    """`run()`, and the crops of the (decoder) caches that `model`'s forwards returned."""
    caches = set()
    handle = model.register_forward_hook(lambda module, args, output: caches.add(id(split_cache(output.cache)[0])))
    try:
        result = run()
    finally:
        handle.remove()
    return result, [removed for cache in caches for removed in crops.get(cache, [])]


def misleading_draft(wrong: set[int], num_assistant_tokens: int) -> FastformerForCausalLM:
    """The target's weights, but the token it drafts for each position in `wrong` (0-based over the prompt and the
    generated tokens) is its second best: the target rejects exactly those. It drafts all `num_assistant_tokens`
    each round (no confidence threshold)."""
    draft = causal_lm()
    draft.generation_config.num_assistant_tokens = num_assistant_tokens
    draft.generation_config.assistant_confidence_threshold = 0.0

    def mislead(module, args, output):
        seen, kept = output.cache.get_seq_length(), output.logits.shape[1]
        for row in range(kept):
            if seen - kept + row + 1 in wrong:  # the position this row of logits predicts
                output.logits[0, row, output.logits[0, row].argmax()] = torch.finfo(output.logits.dtype).min

    draft.register_forward_hook(mislead)
    return draft


def rejections_at_every_position(k: int) -> tuple[set[int], list[int]]:
    """Wrong positions for drafts of `k` tokens such that round `j` (j < k) rejects draft token `j` (the target
    keeps `j` tokens and adds its own), and every later round accepts all; and the tokens each round's `crop`
    removes: `k - j`, then 0."""
    wrong, position = set(), PROMPT
    for j in range(k):
        wrong.add(position + j)
        position += j + 1
    return wrong, [k - j for j in range(k)]


def test_the_greedy_tokens_depend_on_the_context(target, prompt, greedy):
    """Each token decoded from a reset state (the model sees only the current token at its position) gives other
    tokens than greedy decoding: a rollback that leaves a wrong state can show in the tokens."""
    ids = prompt
    for _ in range(NEW):
        position = torch.tensor([[ids.shape[1] - 1]])
        logits = target(ids[:, -1:], position_ids=position).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    assert not torch.equal(ids, greedy)


@pytest.mark.parametrize("num_assistant_tokens", [1, 2, 3, 5])
def test_assisted_decoding_with_rejections_at_every_position(
    target, prompt, greedy, target_crops, num_assistant_tokens
):
    wrong, rolled_back = rejections_at_every_position(num_assistant_tokens)
    draft = misleading_draft(wrong, num_assistant_tokens)
    run = lambda: target.generate(prompt, max_new_tokens=NEW, do_sample=False, assistant_model=draft)  # noqa: E731
    output, crops = crops_of(target, target_crops, run)
    assert torch.equal(output, greedy)
    assert crops[:num_assistant_tokens] == rolled_back  # a rejection at each draft position, in turn
    assert set(crops[num_assistant_tokens:]) == {0}  # then every draft accepted


@pytest.mark.parametrize("num_assistant_tokens", [1, 3, 5])
def test_a_draft_that_is_always_wrong(target, prompt, greedy, target_crops, num_assistant_tokens):
    """Every draft is rejected at its first token: each round rolls the whole draft back and keeps the target's
    own token."""
    draft = misleading_draft(set(range(PROMPT + NEW)), num_assistant_tokens)
    run = lambda: target.generate(prompt, max_new_tokens=NEW, do_sample=False, assistant_model=draft)  # noqa: E731
    output, crops = crops_of(target, target_crops, run)
    assert torch.equal(output, greedy)
    end = PROMPT + NEW
    assert crops == [min(num_assistant_tokens, end - length - 1) for length in range(PROMPT, end)]


def test_the_model_as_its_own_draft_is_always_accepted(target, prompt, greedy, target_crops):
    run = lambda: target.generate(prompt, max_new_tokens=NEW, do_sample=False, assistant_model=target)  # noqa: E731
    output, crops = crops_of(target, target_crops, run)
    assert torch.equal(output, greedy)
    assert crops and set(crops) == {0}


def test_a_smaller_draft_model(target, prompt, greedy, target_crops):
    """A draft of other weights and one layer: it is both accepted and rejected, the output is the target's."""
    draft = causal_lm(seed=1, num_hidden_layers=1)
    draft.generation_config.num_assistant_tokens = 4
    run = lambda: target.generate(prompt, max_new_tokens=NEW, do_sample=False, assistant_model=draft)  # noqa: E731
    output, crops = crops_of(target, target_crops, run)
    assert torch.equal(output, greedy)
    assert max(crops) > 0 and min(crops) < 4


def test_a_draft_that_grows_heuristic_schedule(target, prompt, greedy, target_crops):
    """Under `num_assistant_tokens_schedule="heuristic"` the draft grows by 2 after each accepted one: the cache
    records as many states as the longest draft, whose rejection it then rolls back whole."""
    draft = misleading_draft({PROMPT + 24, PROMPT + 36}, 2)
    draft.generation_config.num_assistant_tokens_schedule = "heuristic"
    run = lambda: target.generate(prompt, max_new_tokens=NEW, do_sample=False, assistant_model=draft)  # noqa: E731
    output, crops = crops_of(target, target_crops, run)
    assert torch.equal(output, greedy)
    assert max(crops) > 2  # a rejected draft longer than the first


def test_a_rollback_that_keeps_the_rejected_states_is_caught(target, prompt, greedy, monkeypatch):
    """The equality above can fail: with a `crop` that only recounts the tokens (the rejected tokens' states stay),
    assisted decoding gives other tokens than greedy."""
    monkeypatch.setattr(FastformerCacheLayer, "crop", lambda self, tokens_to_remove: None)
    draft = misleading_draft(rejections_at_every_position(3)[0], 3)
    output = target.generate(prompt, max_new_tokens=NEW, do_sample=False, assistant_model=draft)
    assert not torch.equal(output, greedy)


@pytest.mark.parametrize("prompt_lookup_num_tokens", [1, 3, 5])
def test_prompt_lookup_decoding(target, greedy, target_crops, prompt_lookup_num_tokens):
    """The greedy text repeats itself, so n-grams of the prompt propose drafts, some right, some wrong."""
    text = greedy[:, : PROMPT + 20]
    expected = target.generate(text, max_new_tokens=NEW, do_sample=False)
    run = lambda: target.generate(  # noqa: E731
        text, max_new_tokens=NEW, do_sample=False, prompt_lookup_num_tokens=prompt_lookup_num_tokens
    )
    output, crops = crops_of(target, target_crops, run)
    assert torch.equal(output, expected)
    assert max(crops) > 0  # drafts were rolled back


def states(cache: FastformerCache) -> list:
    """Every stored state of `cache`, layer by layer, slot by slot (None where unwritten)."""
    return [layer.current(slot) for layer in cache.layers for slot in range(layer.number_of_states)]


def assert_same_states(cache: FastformerCache, reference: FastformerCache, atol: float = 1e-5):
    for state, expected in zip(states(cache), states(reference), strict=True):
        assert (state is None) == (expected is None)
        if state is not None:
            assert max_difference(state, expected) <= atol * max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("forwards", [(5,), (1, 1, 1, 1), (2, 1, 3)])
@pytest.mark.parametrize("removed", [1, 2, 3])
def test_crop_restores_the_states_of_the_shorter_text(target, forwards, removed):
    """Prefill 8 tokens, decode `forwards` more (tokens per forward), roll back `removed`: the states equal those of
    the shorter text decoded from scratch, and decoding continues from them as from that text."""
    tokens = torch.randint(3, 99, (1, 8 + sum(forwards) + 1), generator=torch.Generator().manual_seed(1))
    cache = FastformerCache(target.config.num_hidden_layers)
    cache.activate_past_recording(recurrent_states_to_keep=3)
    with torch.no_grad():
        target(tokens[:, :8], cache=cache, use_cache=True)
        length = 8
        for count in forwards:
            target(tokens[:, length : length + count], cache=cache, use_cache=True)
            length += count
        before = [state.clone() for state in states(cache) if state is not None]
        cache.crop(-removed)
        length -= removed
        reference = target(tokens[:, :length], use_cache=True).cache
        assert cache.get_seq_length() == reference.get_seq_length() == length
        assert_same_states(cache, reference)
        assert_far(torch.stack(before), torch.stack([s for s in states(reference) if s is not None]), atol=1e-5)
        continued = target(tokens[:, length : length + 1], cache=cache, use_cache=True).logits
        scratch = target(tokens[:, : length + 1]).logits[:, -1:]
    assert max_difference(continued, scratch) <= 1e-4


def test_rolling_back_to_before_the_first_token(target):
    tokens = torch.randint(3, 99, (1, 3), generator=torch.Generator().manual_seed(2))
    cache = FastformerCache(target.config.num_hidden_layers)
    cache.activate_past_recording(recurrent_states_to_keep=3)
    with torch.no_grad():
        target(tokens, cache=cache, use_cache=True)
        cache.crop(-3)
        assert cache.get_seq_length() == 0 and cache.read_state(0, "query") is None
        again = target(tokens, cache=cache, use_cache=True).logits
    assert max_difference(again, target(tokens).logits) <= 1e-5


def test_crop_refuses_what_it_cannot_roll_back(target):
    tokens = torch.randint(3, 99, (1, 12), generator=torch.Generator().manual_seed(3))
    cache = FastformerCache(target.config.num_hidden_layers)
    with torch.no_grad():
        target(tokens[:, :6], cache=cache, use_cache=True)
        cache.crop(0)  # nothing to remove: always fine
        with pytest.raises(ValueError, match="does not record past states"):
            cache.crop(-1)
        cache.activate_past_recording(recurrent_states_to_keep=2)
        with pytest.raises(ValueError, match="recorded the states of the last 0 only"):
            cache.crop(-1)  # recording began after these tokens
        target(tokens[:, 6:], cache=cache, use_cache=True)
        with pytest.raises(ValueError, match="recorded the states of the last 2 only"):
            cache.crop(-3)
        with pytest.raises(ValueError, match="negative int"):
            cache.crop(2)
    with pytest.raises(ValueError, match="must be a positive int"):
        cache.activate_past_recording(recurrent_states_to_keep=0)
    assert cache.get_seq_length() == 12  # nothing was removed by the refused calls


def test_states_recorded_before_recording_was_switched_off_are_forgotten(target, prompt):
    """transformers switches recording off (`record_past = False`) when it hands a cache back; the states recorded
    before then no longer lead up to the state after the next forwards, so a later rollback refuses them."""
    cache = FastformerCache(target.config.num_hidden_layers)
    cache.activate_past_recording(recurrent_states_to_keep=2)
    with torch.no_grad():
        target(prompt[:, :4], cache=cache, use_cache=True)
        for layer in cache.layers:
            layer.record_past = False
        target(prompt[:, 4:5], cache=cache, use_cache=True)
        cache.activate_past_recording(recurrent_states_to_keep=2)
        with pytest.raises(ValueError, match="recorded the states of the last 0 only"):
            cache.crop(-1)


def test_a_sequence_chunked_forward_records_no_states(prompt):
    """Under `sequence_chunk_size` a forward longer than a chunk writes only its final states: the cache refuses
    to roll that forward back rather than restore a wrong state."""
    model = causal_lm(sequence_chunk_size=4)
    cache = FastformerCache(model.config.num_hidden_layers)
    cache.activate_past_recording(recurrent_states_to_keep=3)
    with torch.no_grad():
        model(prompt, cache=cache, use_cache=True)
        with pytest.raises(ValueError, match="sequence_chunk_size"):
            cache.crop(-1)
        model(prompt[:, :1], cache=cache, use_cache=True)  # a one-token forward is recorded again
        cache.crop(-1)
    assert cache.get_seq_length() == PROMPT


def test_beam_reordering_moves_the_recorded_states_too(target):
    """Reordering the beams then rolling back equals rolling back then reordering (the recorded states follow the
    beams), and differs from rolling back without reordering."""
    tokens = torch.randint(3, 99, (3, 7), generator=torch.Generator().manual_seed(4))
    cache = FastformerCache(target.config.num_hidden_layers)
    cache.activate_past_recording(recurrent_states_to_keep=2)
    with torch.no_grad():
        target(tokens[:, :5], cache=cache, use_cache=True)
        target(tokens[:, 5:6], cache=cache, use_cache=True)
        target(tokens[:, 6:], cache=cache, use_cache=True)
    beams = torch.tensor([2, 0, 0])
    reordered, cropped, unordered = copy.deepcopy(cache), copy.deepcopy(cache), copy.deepcopy(cache)
    reordered.reorder_cache(beams)
    reordered.crop(-2)
    cropped.crop(-2)
    cropped.reorder_cache(beams)
    unordered.crop(-2)
    for state, expected, other in zip(states(reordered), states(cropped), states(unordered)):
        if state is not None:
            assert torch.equal(state, expected)
            assert_far(state, other, atol=1e-5)


def test_beam_search_with_recording_on(target, prompt):
    """Beam search reorders a recording cache each step and gives the beams it gives without recording."""
    expected = target.generate(prompt, max_new_tokens=12, num_beams=3, do_sample=False)
    cache = FastformerCache(target.config.num_hidden_layers)
    cache.activate_past_recording(recurrent_states_to_keep=4)
    output = target.generate(prompt, max_new_tokens=12, num_beams=3, do_sample=False, cache=cache)
    assert torch.equal(output, expected)
    assert all(len(history) == 4 for history in list(cache.layers[0].recurrent_states_history.values())[:2])


def test_memory_with_recording_is_bounded(target):
    """`layers x slots x (1 + k) x batch x heads x (head_dim + 2) x 4` bytes with `k` states recorded, whatever the
    length; `(1 + 0)` without recording."""
    config = target.config
    one_state = 2 * config.num_hidden_layers * config.num_attention_heads * (config.head_dim + 2) * 4  # 2 slots
    tokens = torch.randint(3, 99, (1, 120), generator=torch.Generator().manual_seed(5))
    plain, recording = FastformerCache(config.num_hidden_layers), FastformerCache(config.num_hidden_layers)
    recording.activate_past_recording(recurrent_states_to_keep=4)
    with torch.no_grad():
        for cache in (plain, recording):
            target(tokens[:, :100], cache=cache, use_cache=True)
        assert (plain.memory_bytes(), recording.memory_bytes()) == (one_state, 5 * one_state)
        for position in range(100, 120):
            target(tokens[:, position : position + 1], cache=recording, use_cache=True)
        assert recording.memory_bytes() == 5 * one_state


@pytest.fixture(scope="module")
def seq2seq():
    config = seq2seq_config(eos_token_id=None)
    return randomize_(FastformerForConditionalGeneration(config), seed=0).eval()


@pytest.mark.parametrize("mode", ["draft", "prompt_lookup"])
def test_encoder_decoder_assisted_decoding(seq2seq, prompt, target_crops, mode):
    """The seq2seq model rolls back its decoder's state (`FastformerEncoderDecoderCache.crop`); the encoder output's
    cross-attention projections stay."""
    expected = seq2seq.generate(prompt, max_new_tokens=30, do_sample=False)
    if mode == "draft":
        draft = randomize_(FastformerForConditionalGeneration(seq2seq_config(eos_token_id=None, num_decoder_layers=1)))
        draft.eval().generation_config.num_assistant_tokens = 3
        kwargs = {"assistant_model": draft}
    else:
        kwargs = {"prompt_lookup_num_tokens": 3}
        prompt = expected[:, 1:]  # its own summary as the source: the drafts come from there
        expected = seq2seq.generate(prompt, max_new_tokens=30, do_sample=False)
    run = lambda: seq2seq.generate(prompt, max_new_tokens=30, do_sample=False, **kwargs)  # noqa: E731
    output, crops = crops_of(seq2seq, target_crops, run)
    assert torch.equal(output, expected)
    assert max(crops) > 0


def test_assisted_decoding_records_only_the_draft_length(target):
    """After assisted decoding from a 60-token prompt, the target's and the draft's caches record the states of
    `num_assistant_tokens` tokens, not of the prompt: `(1 + k)` states per slot."""
    config = target.config
    one_state = 2 * config.num_hidden_layers * config.num_attention_heads * (config.head_dim + 2) * 4
    prompt = torch.randint(3, 99, (1, 60), generator=torch.Generator().manual_seed(6))
    draft = misleading_draft({62, 70}, 3)
    caches = []
    handles = [
        model.register_forward_hook(lambda m, a, output: caches.append(output.cache)) for model in (target, draft)
    ]
    try:
        target.generate(prompt, max_new_tokens=20, do_sample=False, assistant_model=draft)
    finally:
        for handle in handles:
            handle.remove()
    assert {cache.get_recurrent_states_to_keep() for cache in caches} == {3}
    assert max(cache.memory_bytes() for cache in caches) <= 4 * one_state
