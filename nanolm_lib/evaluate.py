"""``nanolm eval RUN --data FILE``: a trained model's loss and bits per byte on a text file.

The file's stories are read as for training (stories separated by ``<|endoftext|>`` lines,
paragraphs joined by single newlines, whether the file separates them by one newline or a
blank line), encoded with the run's own tokenizer and packed story, EOT, story, EOT, ...
The stream is cut into non-overlapping windows of the model's context length, so every token
is predicted once (:func:`nanolm_lib.train.evaluate`). Bits per byte divide the loss in bits
per token by the UTF-8 bytes of story text per token, so models with different tokenizers
compare on the same text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nanolm_lib.errors import UsageError


def file_tokens(path, tokenizer) -> tuple[np.ndarray, dict]:
    """The packed tokens of the stories in ``path`` and what they hold (stories, bytes,
    tokens); raises a clear error for a missing, unreadable or empty file."""
    from nanolm_lib.data import _read_file, pack_stories

    path = Path(path)
    stories = list(_read_file(path))  # FileNotFoundError / ValueError name the file
    if not stories:
        raise UsageError(f"{path}: holds no story text to evaluate on")
    tokens = pack_stories(tokenizer, stories)
    n_bytes = sum(len(story.encode("utf-8")) for story in stories)
    return tokens, {"stories": len(stories), "bytes": n_bytes, "tokens": len(tokens)}


def evaluate_file(run, data, *, device: str | None = None, batch_size: int = 32) -> dict:
    """Loss, perplexity and bits per byte of the model in ``run`` (a run folder or checkpoint)
    on the text file ``data``; also the file's counts and what was evaluated where."""
    from nanolm_lib.checkpoint import load_model
    from nanolm_lib.train import evaluate
    from nanolm_lib.utils import pick_device

    device = pick_device(device)
    model, tokenizer = load_model(run, device=device)
    tokens, counts = file_tokens(data, tokenizer)
    context_length = model.config.context_length
    if len(tokens) <= context_length:
        raise UsageError(f"{data}: {len(tokens):,} tokens hold no window of the model's "
                         f"context length + 1 = {context_length + 1}")
    result = evaluate(model, tokens, context_length, batch_size,
                      bytes_per_token=counts["bytes"] / counts["tokens"])
    return {"run": str(run), "data": str(data), **counts, "context_length": context_length,
            "device": device, **{key: result[key] for key in
                                 ("loss", "perplexity", "bpb", "windows")},
            "predicted_tokens": result["tokens"]}


def describe(result: dict) -> str:
    """One line for :func:`evaluate_file`'s result."""
    return (f"{result['data']}: {result['stories']:,} stories, {result['tokens']:,} tokens "
            f"({result['bytes'] / result['tokens']:.3f} bytes/token), "
            f"{result['predicted_tokens']:,} predicted in {result['windows']:,} windows of "
            f"{result['context_length']}: loss {result['loss']:.4f}, perplexity "
            f"{result['perplexity']:.2f}, {result['bpb']:.4f} bits per byte")


__all__ = ["file_tokens", "evaluate_file", "describe"]
