"""Lesson 02's first model that learns: a bigram language model.

The next token is predicted from the current token alone: a (V, V) table whose row ``a``
holds the logits of the token that follows ``a`` (the model of Karpathy's first lesson, and
of Shannon's 1948 letter statistics). It has the course's model interface, ``model(x,
targets=None) -> (logits, loss)`` and a ``config`` with ``vocab_size`` and
``context_length``, so lesson 02's windows train it, ``nanolm_lib.train.evaluate`` (what
``nanolm eval`` runs) measures it, and ``nanolm_lib.sampling.tell_story`` writes with it.

    BigramConfig, Bigram     the model (it starts at all-zero logits: loss ln V exactly)
    train_bigram             AdamW on random windows, with a progress bar; Ctrl-C stops early

``nanolm_lib.checkpoint.save_model`` writes it as a run folder that ``nanolm eval RUN --data
FILE`` reads, as it reads a GPT's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class BigramConfig:
    """``context_length`` is the window the model is trained, evaluated and sampled in; the
    model itself reads one token, so any length gives it the same predictions."""

    vocab_size: int
    context_length: int = 256

    def __post_init__(self):
        if self.vocab_size < 1 or self.context_length < 1:
            raise ValueError(f"BigramConfig: vocab_size and context_length must be >= 1, "
                             f"found {self.vocab_size} and {self.context_length}")


class Bigram(nn.Module):
    """Logits of the next token = row ``x[t]`` of a learned (V, V) table."""

    def __init__(self, config: BigramConfig):
        super().__init__()
        self.config = config
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)
        nn.init.zeros_(self.table.weight)  # uniform predictions: the loss starts at ln V

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.table(idx)  # (B, T, V)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def train_bigram(tokens, vocab_size: int, steps: int, *, context_length: int = 256,
                 batch_size: int = 32, lr: float = 0.1, seed: int = 0, get_batch=None,
                 show_progress: bool = True) -> tuple[Bigram, list[dict]]:
    """Train a :class:`Bigram` on random windows of ``tokens`` with AdamW for ``steps``
    steps, drawn by ``get_batch(tokens, batch_size, context_length, generator)`` (lesson
    02's; None: the library's) with a seeded generator. Returns the model (in eval mode) and
    one record per step (``step``, ``loss``, ``tokens``, ``seconds``). Ctrl-C stops after the
    step in progress and returns what was trained so far."""
    import time

    from nanolm_lib import data
    from nanolm_lib.utils import progress

    get_batch = get_batch or data.get_batch
    if len(tokens) <= context_length:
        raise ValueError(f"train_bigram: {len(tokens):,} tokens hold no window of "
                         f"context_length + 1 = {context_length + 1}")
    torch.manual_seed(seed)
    model = Bigram(BigramConfig(vocab_size, context_length))
    # no weight decay: it would pull the logits of rare pairs towards uniform
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    batches = torch.Generator().manual_seed(seed)
    history, start = [], time.perf_counter()
    bar = progress(range(1, steps + 1), desc="bigram", **({} if show_progress else
                                                          {"disable": True}))
    try:
        for step in bar:
            x, y = get_batch(tokens, batch_size, context_length, batches)
            _, loss = model(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append({"step": step, "loss": loss.item(),
                            "tokens": step * batch_size * context_length,
                            "seconds": time.perf_counter() - start})
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", refresh=False)
    except KeyboardInterrupt:
        print(f"bigram: stopped at step {len(history)} of {steps}")
    return model.eval(), history


def start_loss(vocab_size: int) -> float:
    """The loss of uniform predictions, where a fresh :class:`Bigram` starts: ln V."""
    return math.log(vocab_size)


__all__ = ["BigramConfig", "Bigram", "train_bigram", "start_loss"]
