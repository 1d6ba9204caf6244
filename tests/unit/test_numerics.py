"""Lesson 06's numerics, measured on the CPU: autocast's dtypes, fp16 underflow and its scale,
and gradient accumulation equal to the large batch."""

from __future__ import annotations

import torch

from nanolm_lib.course.model import GPT, GPTConfig
from nanolm_lib.course.numerics import (
    accumulated_gradient,
    autocast_dtypes,
    train_with_micro_batches,
    underflow_fractions,
)

CONFIG = GPTConfig(vocab_size=50, context_length=8, d_model=16, n_layers=1, n_heads=2, d_ff=32)


def _batch(seed, rows=8):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(0, 50, (rows, 8), generator=gen) for _ in range(2))


def test_gradient_accumulation_equals_the_large_batch():
    torch.manual_seed(0)
    model = GPT(CONFIG)
    x, y = _batch(1)
    full = accumulated_gradient(model, x, y, 1)
    for k in (2, 4, 8):
        accumulated = accumulated_gradient(model, x, y, k)
        assert ((accumulated - full).norm() / full.norm()).item() < 1e-5, k
        forgot = accumulated_gradient(model, x, y, k, divide=False)  # k times the gradient
        torch.testing.assert_close(forgot, k * full, rtol=1e-4, atol=1e-6)
    batches = [_batch(seed) for seed in range(2, 7)]
    one, four = (train_with_micro_batches(model, batches, k) for k in (1, 4))
    assert max(abs(a - b) for a, b in zip(one, four)) < 1e-4, (one, four)


def test_bf16_autocast_keeps_parameters_gradients_and_loss_in_fp32():
    torch.manual_seed(0)
    seen = autocast_dtypes(GPT(CONFIG), *_batch(1))
    assert seen["a Linear's output"] == seen["logits"] == torch.bfloat16
    assert seen["loss"] == seen["parameters"] == seen["gradients"] == torch.float32
    assert abs(seen["loss (autocast)"] - seen["loss (fp32)"]) < 0.05


def test_fp16_rounds_tiny_gradients_to_zero_and_a_scale_saves_them():
    magnitudes = torch.tensor([1e-9, 2e-8, 1e-6, 1e-3])  # below 2^-25 (3e-8) fp16 rounds to 0
    plain, scaled = underflow_fractions(magnitudes), underflow_fractions(magnitudes, 2.0**16)
    assert plain["fp16: zero"] == 0.5 and scaled["fp16: zero"] == 0.0
    assert plain["bf16: zero"] == 0.0  # bf16 has fp32's exponent range
    assert plain["fp16: subnormal"] == 0.25  # 1e-6 is below fp16's smallest normal 6.1e-5
