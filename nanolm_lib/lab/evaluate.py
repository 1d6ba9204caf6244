"""``nanolm eval RUN --data FILE``: a trained model's loss and bits per byte on a text file.

The file's stories are read as for training (stories separated by ``<|endoftext|>`` lines,
paragraphs joined by single newlines, whether the file separates them by one newline or a
blank line), encoded with the run's own tokenizer and packed story, EOT, story, EOT, ...
The stream is cut into non-overlapping windows of the model's context length, so every token
is predicted at most once (:func:`nanolm_lib.course.train.evaluate`; the first token and the tail
after the last full window are not). Bits per byte divide the loss in bits
per token by the UTF-8 bytes of story text per token, so models with different tokenizers
compare on the same text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nanolm_lib.course.data import _read_file, pack_stories
from nanolm_lib.course.train import evaluate
from nanolm_lib.errors import UsageError
from nanolm_lib.lab.checkpoint import load_model
from nanolm_lib.utils import pick_device


def story_tokens(stories, tokenizer, where="stories") -> tuple[np.ndarray, dict]:
    """``stories`` packed (story, EOT, story, ...) and what they hold (stories, bytes,
    tokens); ``where`` names them in the error for an empty list."""

    stories = list(stories)
    if not stories:
        raise UsageError(f"{where}: holds no story text to evaluate on")
    tokens = pack_stories(tokenizer, stories)
    n_bytes = sum(len(story.encode("utf-8")) for story in stories)
    return tokens, {"stories": len(stories), "bytes": n_bytes, "tokens": len(tokens)}


def evaluate_stories(model, tokenizer, stories, *, batch_size: int = 32,
                     where="stories") -> dict:
    """Loss, perplexity and bits per byte of ``model`` (with its ``tokenizer``) on
    ``stories``, windows of the model's own context length: the measurement of ``nanolm
    eval``, for a model in memory (lesson 02's bigram, lesson 06's GPT)."""

    tokens, counts = story_tokens(stories, tokenizer, where)
    context_length = model.config.context_length
    if len(tokens) <= context_length:
        raise UsageError(f"{where}: {len(tokens):,} tokens hold no window of the model's "
                         f"context length + 1 = {context_length + 1}")
    result = evaluate(model, tokens, context_length, batch_size,
                      bytes_per_token=counts["bytes"] / counts["tokens"])
    return {**counts, "context_length": context_length,
            **{key: result[key] for key in ("loss", "perplexity", "bpb", "windows")},
            "predicted_tokens": result["tokens"]}


def evaluate_file(run, data, *, device: str | None = None, batch_size: int = 32) -> dict:
    """Loss, perplexity and bits per byte of the model in ``run`` (a run folder or checkpoint)
    on the text file ``data``; also the file's counts and what was evaluated where."""

    device = pick_device(device)
    model, tokenizer = load_model(run, device=device)
    result = evaluate_stories(model, tokenizer, _read_file(Path(data)), batch_size=batch_size,
                              where=data)
    return {"run": str(run), "data": str(data), "device": device, **result}


def describe(result: dict) -> str:
    """One line for :func:`evaluate_file`'s result."""
    return (f"{result['data']}: {result['stories']:,} stories, {result['tokens']:,} tokens "
            f"({result['bytes'] / result['tokens']:.3f} bytes/token), "
            f"{result['predicted_tokens']:,} predicted in {result['windows']:,} windows of "
            f"{result['context_length']}: loss {result['loss']:.4f}, perplexity "
            f"{result['perplexity']:.2f}, {result['bpb']:.4f} bits per byte")


__all__ = ["story_tokens", "evaluate_stories", "evaluate_file", "describe"]
