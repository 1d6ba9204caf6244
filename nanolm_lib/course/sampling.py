"""Turning a language model's scores into text (lesson 07).

Each step the model gives logits (B, V) for the next token; we reshape that distribution
(temperature, top-k, top-p), draw one token per row, append it, and repeat. A key/value cache
keeps every layer's keys and values from earlier steps so each step only runs the new token.
"""

from __future__ import annotations

import numbers

import torch

from nanolm_lib.errors import UsageError
from nanolm_lib.utils import progress, run_model


def _check_logits(logits: torch.Tensor, rank: int | None = None) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.dtype.is_floating_point:
        found = logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(f"logits: expected a floating-point tensor, found {found}")
    if rank is not None and logits.dim() != rank:
        raise ValueError(
            f"logits: expected a {rank}-d tensor shaped (B, V), found shape {tuple(logits.shape)}"
        )
    if logits.dim() < 1 or logits.size(-1) < 1:
        raise ValueError(f"logits: expected a last (vocabulary) dimension of size >= 1, found {tuple(logits.shape)}")


def _check_sampling(temperature, top_k, top_p) -> None:
    """Validate sampling settings, even those greedy decoding ignores, so that a bad setting
    is reported at once rather than when someone turns the temperature up."""
    if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
            or not temperature >= 0):
        raise UsageError(f"temperature: expected a number >= 0 (0 = greedy), found {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral)
                              or top_k <= 0):
        raise UsageError(f"top_k: expected a positive int, found {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0.0 < top_p <= 1.0):
        raise UsageError(f"top_p: expected a probability in (0, 1], found {top_p!r}")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (last dimension); set the others to -inf.

    Ties: every logit equal to the k-th largest value is kept, so a row with ties at the
    boundary keeps more than k tokens (the choice among equals would otherwise be arbitrary).
    k larger than the vocabulary keeps everything. Returns a new tensor.
    """
    _check_logits(logits)
    _check_sampling(1.0, k, None)
    k = min(int(k), logits.size(-1))
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al., 2020): keep the smallest set of most likely tokens
    whose probability mass reaches p; set the others to -inf.

    A token is kept when the mass of the tokens ranked above it is still below p, so the
    most likely token is always kept and p = 1 keeps everything. Returns a new tensor.
    """
    _check_logits(logits)
    _check_sampling(1.0, None, p)
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly higher-ranked tokens
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocab order
    return logits.masked_fill(drop, float("-inf"))


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token id per row from logits (B, V): returns (B, 1) int64.

    temperature 0 is greedy (argmax, ignoring top-k / top-p); otherwise the logits are divided
    by the temperature (below 1 sharpens, above 1 flattens), filtered by top-k then top-p,
    turned into probabilities and sampled with ``torch.multinomial(probs, 1, generator=...)``.

    The draw happens on the generator's device and the ids come back to the logits' device,
    so a seeded CPU generator gives the same tokens whether the model runs on the CPU or a
    GPU (a CPU generator with GPU logits costs one copy to the host per draw; a generator on
    the logits' device costs nothing).
    """
    _check_logits(logits, rank=2)
    _check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return draw(probs, generator)  # (B, 1)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One id per row of ``probs`` (B, V): ``torch.multinomial(probs, 1, generator=generator)``
    run where the generator lives, the result moved to ``probs``' device."""
    where = probs.device if generator is None else generator.device
    return torch.multinomial(probs.to(where), 1, generator=generator).to(probs.device)


@torch.inference_mode()
def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True,
             show_progress: bool = True) -> torch.Tensor:
    """Extend each row of idx (B, T) by up to ``max_new_tokens`` sampled tokens.

    Returns (B, T + n) with n <= max_new_tokens. A row that produces ``eos_id`` is finished:
    later positions of that row are filled with ``eos_id``, and generation stops as soon as
    every row is finished. The model sees at most its last ``context_length`` tokens. With
    ``use_cache`` a KV cache serves while the whole sequence fits the context; once it does
    not, the window slides (every position shifts), so, as without the cache, each step
    recomputes the cropped window. Both paths therefore give the same tokens for the same
    generator. The model runs in eval mode and gets its previous mode back afterwards; the
    result is on the model's device.
    A progress bar appears when generation takes more than two seconds (``show_progress``).
    """
    context_length = model.config.context_length
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.size(1) < 1:
        found = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"idx: expected a (B, T) tensor of token ids with T >= 1, found {found}")
    if idx.size(1) > context_length:
        raise ValueError(
            f"idx: the prompt has {idx.size(1)} tokens but the model's context_length is "
            f"{context_length}; shorten the prompt"
        )
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens: expected an int >= 0, found {max_new_tokens!r}")
    if eos_id is not None and (isinstance(eos_id, bool) or not isinstance(eos_id, numbers.Integral)
                               or not 0 <= eos_id < model.config.vocab_size):
        raise ValueError(f"eos_id: expected an id in [0, {model.config.vocab_size}), found {eos_id!r}")
    _check_sampling(temperature, top_k, top_p)  # before any model work

    idx = idx.to(next(model.parameters()).device)  # (B, T) on the model's device
    ids_checked = False  # the prompt's ids once; sampled ids are in range by construction
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    # a model without a cache (lesson 02's bigram) recomputes the window at every step
    cache = model.new_kv_cache(idx.size(0)) if use_cache and hasattr(model, "new_kv_cache") \
        else None
    bar_options = {} if show_progress else {"disable": True}
    was_training = model.training
    model.eval()
    try:
        with progress(range(max_new_tokens), desc="generating", leave=False, delay=2.0,
                      **bar_options) as steps:
            for _ in steps:
                if cache is not None and idx.size(1) <= context_length:
                    logits, _ = run_model(model, idx[:, cache[0].length:], kv_cache=cache,
                                          check_ids=not ids_checked)  # new tokens only
                else:
                    cache = None  # the window slides: positions shift, cached keys are stale
                    logits, _ = run_model(model, idx[:, -context_length:],
                                          check_ids=not ids_checked)
                ids_checked = True
                next_id = sample_next_token(logits[:, -1, :], temperature, top_k, top_p, generator)
                next_id = next_id.to(idx.dtype)  # (B, 1)
                if eos_id is not None:
                    next_id = next_id.masked_fill(finished.unsqueeze(1), eos_id)
                    finished |= next_id.squeeze(1) == eos_id
                idx = torch.cat([idx, next_id], dim=1)  # (B, T + 1)
                if eos_id is not None and bool(finished.all()):
                    break
    finally:
        model.train(was_training)
    return idx


def tell_story(model, tokenizer, prompt: str = "", max_new_tokens: int | None = None,
               generator: torch.Generator | None = None, **sampling) -> str:
    """Write one story: the prompt and its continuation up to the end-of-text token.

    Generation starts right after an end-of-text token, where every training story starts, so
    an empty prompt asks for a whole new story. ``max_new_tokens`` defaults to one context
    length; ``sampling`` holds ``temperature``, ``top_k``, ``top_p`` and ``use_cache``.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt: expected a str, found {type(prompt).__name__}")
    context_length = model.config.context_length
    ids = [tokenizer.eot_id] + (tokenizer.encode(prompt) if prompt else [])
    if len(ids) > context_length:
        raise ValueError(
            f"prompt: {len(ids) - 1} tokens, but the model's context holds {context_length} "
            f"including the leading end-of-text token; shorten the prompt"
        )
    if max_new_tokens is None:
        max_new_tokens = context_length
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    out = generate(model, idx, max_new_tokens, eos_id=tokenizer.eot_id, generator=generator,
                   **sampling)[0].tolist()
    story = out[1:]  # drop the leading end-of-text
    if tokenizer.eot_id in story:
        story = story[: story.index(tokenizer.eot_id)]
    return tokenizer.decode(story)
