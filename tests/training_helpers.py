"""The tiny model's size, a token stream, a tokenizer and training settings that the training
tests share."""

from __future__ import annotations

import numpy as np
import pytest

from nanolm_lib.course.model import GPTConfig
from nanolm_lib.course.tokenizer import train_fast_tokenizer
from nanolm_lib.course.train import TrainConfig

TINY = GPTConfig(vocab_size=96, context_length=16, d_model=32, n_layers=2, n_heads=4, d_ff=64)


def token_stream(n: int, vocab: int = TINY.vocab_size, seed: int = 0) -> np.ndarray:
    """A learnable stream: a noisy repeating pattern, as uint16 like a prepared corpus."""
    rng = np.random.default_rng(seed)
    pattern = rng.integers(0, vocab, 37)
    tokens = np.resize(pattern, n)
    noise = rng.random(n) < 0.1
    tokens[noise] = rng.integers(0, vocab, noise.sum())
    return tokens.astype(np.uint16)


@pytest.fixture(scope="module")
def tokenizer():
    stories = [f"Tom had {i} red balls. He gave one to Sue. They were happy." for i in range(50)]
    return train_fast_tokenizer(stories, vocab_size=300)


def small_config(out_dir, **changes) -> TrainConfig:
    values = dict(batch_size=4, max_steps=12, lr=3e-3, min_lr=3e-4, warmup_steps=3,
                  eval_interval=6, eval_batches=2, eval_batch_size=4, log_interval=1,
                  checkpoint_interval=100, precision="fp32", device="cpu", seed=7,
                  out_dir=str(out_dir) if out_dir else None)
    values.update(changes)
    return TrainConfig(**values)
