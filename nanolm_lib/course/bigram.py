"""Lesson 02's first model that learns: a bigram language model.

The next token is predicted from the current token alone: a (V, V) table whose row ``a``
holds the logits of the token that follows ``a`` (the model of Karpathy's first lesson, and
of Shannon's 1948 letter statistics). It has the course's model interface, ``model(x,
targets=None) -> (logits, loss)`` and a ``config`` with ``vocab_size`` and
``context_length``, so lesson 02's windows train it, ``nanolm_lib.course.train.evaluate`` (what
``nanolm eval`` runs) measures it, and ``nanolm_lib.course.sampling.tell_story`` writes with it.

    BigramConfig, Bigram     the model (it starts at all-zero logits: loss ln V exactly)
    train_bigram             AdamW on random windows, with a progress bar; Ctrl-C stops early
    write_story              what ``tell_story`` writes with it, for the same generator
    bigram_bits_per_byte     what ``nanolm eval`` measures, for stories in memory

The last two are written out for the bigram, where a prediction is one row of the table,
because lesson 02 uses them and a kit released at lesson 02 does not ship lesson 06's
``evaluate`` or lesson 07's ``generate`` yet; the tests hold them equal to those.

``nanolm_lib.lab.checkpoint.save_model`` writes it as a run folder that ``nanolm eval RUN --data
FILE`` reads, as it reads a GPT's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nanolm_lib.course import data
from nanolm_lib.course.data import pack_stories
from nanolm_lib.course.sampling import draw
from nanolm_lib.utils import progress


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


@torch.no_grad()
def write_story(model: Bigram, tokenizer, max_new_tokens: int = 120,
                generator: torch.Generator | None = None) -> str:
    """A story: after an end-of-text token, each token drawn from the softmax of the row of
    the token before, up to the next end-of-text or ``max_new_tokens`` draws."""

    ids = [tokenizer.eot_id]
    for _ in range(max_new_tokens):
        probs = torch.softmax(model.table.weight[ids[-1]].float(), dim=-1)  # (V,)
        next_id = int(draw(probs[None], generator))
        if next_id == tokenizer.eot_id:
            break
        ids.append(next_id)
    return tokenizer.decode(ids[1:])


@torch.no_grad()
def bigram_bits_per_byte(model: Bigram, tokenizer, stories) -> dict:
    """Loss, perplexity and bits per byte of ``model`` on ``stories`` as ``nanolm eval``
    measures them: packed story, EOT, ..., cut into windows of the context length, so the
    tokens predicted are ``tokens[1 : n * T + 1]`` for n full windows; each from the token
    before it, the only one a bigram reads."""

    stories = list(stories)
    tokens = torch.from_numpy(pack_stories(tokenizer, stories).astype(np.int64))
    T = model.config.context_length
    predicted = (len(tokens) - 1) // T * T
    if predicted < 1:
        raise ValueError(f"bigram_bits_per_byte: {len(tokens):,} tokens hold no window of "
                         f"context_length + 1 = {T + 1}")
    log_probs = torch.log_softmax(model.table.weight.float(), dim=-1)  # (V, V)
    loss = -log_probs[tokens[:predicted], tokens[1:predicted + 1]].mean().item()
    bytes_per_token = sum(len(story.encode("utf-8")) for story in stories) / len(tokens)
    return {"loss": loss, "perplexity": math.exp(loss),
            "bpb": loss / math.log(2) / bytes_per_token, "bytes_per_token": bytes_per_token,
            "predicted_tokens": predicted}


def start_loss(vocab_size: int) -> float:
    """The loss of uniform predictions, where a fresh :class:`Bigram` starts: ln V."""
    return math.log(vocab_size)


__all__ = ["BigramConfig", "Bigram", "train_bigram", "write_story", "bigram_bits_per_byte",
           "start_loss"]
