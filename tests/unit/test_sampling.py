"""Sampling: filters keep the right tokens, draws follow the softmax (chi-square), generation
stops per row at end-of-text, the KV cache changes nothing but speed, bad settings fail."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from model_helpers import seeded_model, single_thread  # noqa: F401 (an autouse fixture)

from nanolm_lib.course.model import GPTConfig
from nanolm_lib.course.sampling import (
    generate,
    sample_next_token,
    tell_story,
    top_k_filter,
    top_p_filter,
)

CONFIG = GPTConfig(vocab_size=11, context_length=16, d_model=24, n_layers=2, n_heads=3, d_ff=40)
LOGITS = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -0.5]])
N_DRAWS = 20_000
# Upper 0.1% points of the chi-square distribution (degrees of freedom -> critical value):
# a correct sampler fails one of these checks with probability 1e-3, and the seeds are fixed.
CHI2_CRITICAL_0_001 = {3: 16.266, 5: 20.515}


def draw_counts(logits, seed=0, **sampling):
    """Counts of N_DRAWS draws from one row of logits, all in one batched call."""
    generator = torch.Generator().manual_seed(seed)
    draws = sample_next_token(logits.expand(N_DRAWS, -1), generator=generator, **sampling)
    assert draws.shape == (N_DRAWS, 1) and draws.dtype == torch.int64
    return torch.bincount(draws[:, 0], minlength=logits.size(-1)).double()


def chi_square(counts, probs):
    """Pearson's statistic over the outcomes with non-zero expected count."""
    keep = probs > 0
    expected = probs[keep].double() * counts.sum()
    return (((counts[keep] - expected) ** 2) / expected).sum().item()


# --- filters ---------------------------------------------------------------------------------

def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.randn(20, 50, generator=torch.Generator().manual_seed(1))
    filtered = top_k_filter(logits, 5)
    kept = torch.isfinite(filtered)
    assert (kept.sum(-1) == 5).all()
    top = torch.topk(logits, 5, dim=-1).indices
    assert kept.gather(-1, top).all()
    assert torch.equal(filtered[kept], logits[kept])  # kept logits untouched
    assert torch.equal(top_k_filter(logits, 50), logits) and torch.equal(top_k_filter(logits, 500), logits)


def test_top_k_keeps_every_tie_at_the_kth_value():
    logits = torch.tensor([[1.0, 3.0, 3.0, 2.0]])
    assert torch.isfinite(top_k_filter(logits, 1)).tolist() == [[False, True, True, False]]
    assert torch.isfinite(top_k_filter(logits, 2)).tolist() == [[False, True, True, False]]
    assert torch.isfinite(top_k_filter(logits, 3)).tolist() == [[False, True, True, True]]


def test_top_k_never_draws_outside_the_k_largest():
    logits = torch.randn(64, 100, generator=torch.Generator().manual_seed(2))
    top = set()
    allowed = torch.topk(logits, 3, dim=-1).indices
    generator = torch.Generator().manual_seed(3)
    for _ in range(30):
        draws = sample_next_token(logits, temperature=1.5, top_k=3, generator=generator)
        assert (draws == allowed).any(-1).all()
        top.update(draws.flatten().tolist())
    assert len(top) > 3  # the draws did vary


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    def kept(p):
        return torch.isfinite(top_p_filter(logits, p)).tolist()[0]
    assert kept(0.01) == [True, False, False, False]  # the top token is always kept
    assert kept(0.45) == [True, False, False, False]
    assert kept(0.7) == [True, True, False, False]
    assert kept(0.9) == [True, True, True, False]
    assert kept(1.0) == [True, True, True, True]


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.99, 1.0])
def test_top_p_against_a_direct_construction(p):
    logits = 2 * torch.randn(30, 40, generator=torch.Generator().manual_seed(4))
    kept = torch.isfinite(top_p_filter(logits, p))
    for row in range(30):
        probs = torch.softmax(logits[row].double(), -1)
        order = torch.argsort(probs, descending=True).tolist()
        mass, expected = 0.0, set()
        for token in order:
            expected.add(token)
            mass += probs[token].item()
            if mass >= p:
                break
        assert set(torch.nonzero(kept[row]).flatten().tolist()) == expected


# --- sample_next_token -----------------------------------------------------------------------

def test_draw_frequencies_match_the_softmax():
    counts = draw_counts(LOGITS, seed=5)
    assert chi_square(counts, torch.softmax(LOGITS[0], -1)) < CHI2_CRITICAL_0_001[5]


def test_temperature_scales_the_logits():
    counts = draw_counts(LOGITS, seed=6, temperature=2.0)
    assert chi_square(counts, torch.softmax(LOGITS[0] / 2.0, -1)) < CHI2_CRITICAL_0_001[5]
    # the check has power: the unscaled distribution is rejected outright
    assert chi_square(counts, torch.softmax(LOGITS[0], -1)) > 10 * CHI2_CRITICAL_0_001[5]


def test_top_k_with_temperature_draws_from_the_renormalised_top_k():
    counts = draw_counts(LOGITS, seed=7, temperature=0.7, top_k=4)
    probs = torch.softmax(LOGITS[0] / 0.7, -1)
    probs[torch.tensor([4, 5])] = 0.0  # the two smallest logits are cut
    assert counts[4] == counts[5] == 0
    assert chi_square(counts, probs / probs.sum()) < CHI2_CRITICAL_0_001[3]


def test_top_p_draws_from_the_renormalised_nucleus():
    probs = torch.softmax(LOGITS[0], -1)  # 0.54, 0.20, 0.12, 0.07, 0.03, 0.04
    counts = draw_counts(LOGITS, seed=8, top_p=0.9)
    nucleus = probs.clone()
    nucleus[torch.tensor([4, 5])] = 0.0  # 0.54 + 0.20 + 0.12 = 0.86 < 0.9, so token 3 stays
    assert counts[4] == counts[5] == 0
    assert chi_square(counts, nucleus / nucleus.sum()) < CHI2_CRITICAL_0_001[3]


def test_temperature_zero_is_argmax():
    logits = torch.randn(7, 30, generator=torch.Generator().manual_seed(9))
    expected = logits.argmax(-1, keepdim=True)
    assert torch.equal(sample_next_token(logits, temperature=0), expected)
    assert torch.equal(sample_next_token(logits, temperature=0.0, top_k=3, top_p=0.5), expected)


def test_draws_are_exactly_torch_multinomial_with_the_generator():
    logits = torch.randn(5, 20, generator=torch.Generator().manual_seed(10))
    ours = sample_next_token(logits, generator=torch.Generator().manual_seed(11))
    direct = torch.multinomial(torch.softmax(logits, -1), 1, generator=torch.Generator().manual_seed(11))
    assert torch.equal(ours, direct)


def test_sampling_errors():
    logits = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="top_k: expected a positive int, found 0"):
        top_k_filter(logits, 0)
    with pytest.raises(ValueError, match="top_k: expected a positive int, found -2"):
        sample_next_token(logits, top_k=-2)
    with pytest.raises(ValueError, match="top_k: expected a positive int, found 2.5"):
        sample_next_token(logits, top_k=2.5)
    with pytest.raises(ValueError, match=r"top_p: expected a probability in \(0, 1\], found 0"):
        top_p_filter(logits, 0)
    with pytest.raises(ValueError, match=r"top_p: expected a probability in \(0, 1\], found 1.5"):
        sample_next_token(logits, top_p=1.5)
    with pytest.raises(ValueError, match=r"temperature: expected a number >= 0 \(0 = greedy\), found -0.5"):
        sample_next_token(logits, temperature=-0.5)
    with pytest.raises(ValueError, match="temperature: expected a number >= 0"):
        sample_next_token(logits, temperature=float("nan"))
    with pytest.raises(ValueError, match="top_k: expected a positive int"):  # even when greedy
        sample_next_token(logits, temperature=0, top_k=0)
    with pytest.raises(ValueError, match=r"logits: expected a 2-d tensor shaped \(B, V\), found shape \(1, 2, 5\)"):
        sample_next_token(torch.zeros(1, 2, 5))
    with pytest.raises(ValueError, match=r"logits: expected a 2-d tensor shaped \(B, V\), found shape \(5,\)"):
        sample_next_token(torch.zeros(5))
    with pytest.raises(TypeError, match="logits: expected a floating-point tensor, found torch.int64"):
        top_k_filter(torch.zeros(2, 5, dtype=torch.long), 2)


# --- generate --------------------------------------------------------------------------------

def test_generate_extends_each_row_and_restores_the_mode():
    model = seeded_model(CONFIG)
    model.train()
    idx = torch.tensor([[1, 2, 3], [4, 5, 6]])
    out = generate(model, idx, 7, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 10) and torch.equal(out[:, :3], idx)
    assert model.training  # put back as it was
    assert not out.requires_grad
    assert ((out >= 0) & (out < CONFIG.vocab_size)).all()
    model.eval()
    generate(model, idx, 2)
    assert not model.training
    assert torch.equal(generate(model, idx, 0), idx)


def test_rows_stop_independently_at_eos_and_are_padded():
    model = seeded_model(CONFIG, seed=1)
    idx = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 5, 9]])
    free = generate(model, idx, 60, generator=torch.Generator().manual_seed(12))
    eos = int(free[0, 3])  # row 0 draws it first, so row 0 finishes at once
    out = generate(model, idx, 60, eos_id=eos, generator=torch.Generator().manual_seed(12))
    assert torch.equal(out[:, :4], free[:, :4])  # identical inputs until a row finishes
    finish_steps = []
    for row in out[:, 3:]:
        hits = (row == eos).nonzero().flatten()
        assert len(hits) > 0, "every row should meet eos within 60 draws from 11 tokens"
        first = int(hits[0])
        assert (row[first:] == eos).all()  # padded with eos after finishing
        finish_steps.append(first)
    assert finish_steps[0] == 0 and max(finish_steps) > 2  # rows really finished apart
    # early stop: the loop ended on the step the last row finished, before 60 new tokens
    assert out.size(1) == 3 + max(finish_steps) + 1 < 3 + 60


def test_prompt_ending_in_eos_does_not_count_as_finished():
    model = seeded_model(CONFIG, seed=2)
    # an id that the continuation of [3, id] never draws: only the prompt holds it
    for eos in range(CONFIG.vocab_size):
        prompt = torch.tensor([[3, eos]])
        free = generate(model, prompt, 8, generator=torch.Generator().manual_seed(eos))
        if eos not in free[0, 2:].tolist():
            break
    else:
        pytest.fail("every id reappears in its own continuation; pick another model seed")
    out = generate(model, prompt, 8, eos_id=eos, generator=torch.Generator().manual_seed(eos))
    assert torch.equal(out, free)


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
@pytest.mark.parametrize("sampling", [{}, {"top_k": 4, "temperature": 0.8}, {"top_p": 0.9}])
def test_cache_and_no_cache_give_identical_tokens_past_the_context(impl, sampling):
    model = seeded_model(dataclasses.replace(CONFIG, attn_impl=impl), seed=3)
    idx = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [0, 0, 0, 0, 0]])
    outs = [generate(model, idx, 40, generator=torch.Generator().manual_seed(13), use_cache=use_cache,
                     **sampling) for use_cache in (True, False)]
    assert outs[0].shape == (3, 45)  # well past context_length=16
    assert torch.equal(outs[0], outs[1])


def test_the_cache_feeds_one_token_per_step_until_the_window_slides():
    model = seeded_model(CONFIG, seed=4)
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0].size(1)),
                                             with_kwargs=True)
    try:
        generate(model, torch.tensor([[1, 2, 3, 4, 5]]), 14, use_cache=True)
        assert seen == [5] + [1] * 11 + [16] * 2  # lengths 6..16 fit; 17 and 18 slide
        seen.clear()
        generate(model, torch.tensor([[1, 2, 3, 4, 5]]), 14, use_cache=False)
        assert seen == list(range(5, 17)) + [16] * 2
    finally:
        handle.remove()


def test_generate_errors():
    model = seeded_model(CONFIG)
    with pytest.raises(ValueError, match="the prompt has 17 tokens but the model's context_length is 16"):
        generate(model, torch.zeros(1, 17, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="max_new_tokens: expected an int >= 0, found -1"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), -1)
    with pytest.raises(ValueError, match=r"eos_id: expected an id in \[0, 11\), found 11"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 5, eos_id=11)
    with pytest.raises(ValueError, match=r"eos_id: expected an id in \[0, 11\), found 2.0"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 5, eos_id=2.0)
    with pytest.raises(ValueError, match=r"idx: expected a \(B, T\) tensor of token ids with T >= 1, found \(3,\)"):
        generate(model, torch.zeros(3, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="temperature: expected a number >= 0"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 5, temperature=-1)
    model.train()
    with pytest.raises(ValueError, match="top_p"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 5, top_p=2.0)
    assert model.training


# --- tell_story ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def story_tokenizer():
    tokenizer_module = pytest.importorskip("nanolm_lib.course.tokenizer")
    stories = [
        "Once upon a time, there was a little cat. The cat liked to play in the sun.",
        "One day, a girl named Lily went to the park. She saw a big red ball.",
        "Tom had a toy car. He loved his car very much and played with it every day.",
    ]
    return tokenizer_module.BPETokenizer.train(stories, 300)


def test_tell_story_continues_the_prompt_up_to_end_of_text(story_tokenizer):
    config = dataclasses.replace(CONFIG, vocab_size=story_tokenizer.vocab_size, context_length=32)
    model = seeded_model(config, seed=5)
    eot = story_tokenizer.eot_id
    prompt = "Once upon a time"
    story = tell_story(model, story_tokenizer, prompt, max_new_tokens=20,
                       generator=torch.Generator().manual_seed(14))
    assert isinstance(story, str) and story.startswith(prompt)
    # the same as decoding generate()'s tokens after the leading end-of-text, up to the next
    ids = torch.tensor([[eot] + story_tokenizer.encode(prompt)])
    out = generate(model, ids, 20, eos_id=eot, generator=torch.Generator().manual_seed(14))[0, 1:].tolist()
    out = out[: out.index(eot)] if eot in out else out
    assert story == story_tokenizer.decode(out)
    assert isinstance(tell_story(model, story_tokenizer, max_new_tokens=5, temperature=0), str)
    with pytest.raises(ValueError, match="prompt: .* tokens, but the model's context holds 32"):
        tell_story(model, story_tokenizer, "a very long prompt " * 40)
