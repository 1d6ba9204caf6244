"""Numerics of training (lesson 06): what bf16 autocast changes, why fp16 needs a gradient
scaler, and gradient accumulation, measured on the CPU.

    autocast_dtypes        the dtypes inside a forward/backward under autocast, and the loss
    gradient_magnitudes    every gradient entry's |value| after one backward pass
    underflow_fractions    the share of gradient entries a dtype rounds to zero, with a scale
    accumulated_gradient   the gradient of a batch taken in micro-batches (loss / k each)
    train_with_micro_batches  a few optimiser steps, each accumulated over micro-batches
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

# fp16's smallest positive (subnormal) value 2^-24 and smallest normal value 2^-14: below the
# first a value becomes 0, below the second it keeps fewer significant bits
FP16_SMALLEST = torch.finfo(torch.float16).smallest_normal * 2.0**-10
FP16_SMALLEST_NORMAL = torch.finfo(torch.float16).smallest_normal


def _loss(model, x, y):
    logits, _ = model(x)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


def autocast_dtypes(model, x, y, dtype=torch.bfloat16) -> dict:
    """One forward and backward of ``model`` on (x, y) under ``torch.autocast`` on the CPU.

    Returns what has which dtype (the first Linear's output, the logits, the loss, the
    parameters, their gradients) and the loss under autocast next to the fp32 loss.
    """
    with torch.no_grad():
        fp32_loss = _loss(model, x, y).item()
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    seen = {}

    def note_dtype(module, inputs, output):  # a hook that returns None keeps the output
        seen["linear"] = output.dtype

    hook = linear.register_forward_hook(note_dtype)
    try:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype):
            logits, _ = model(x)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
    finally:
        hook.remove()
    parameter = next(model.parameters())
    return {"a Linear's output": seen["linear"], "logits": logits.dtype, "loss": loss.dtype,
            "parameters": parameter.dtype, "gradients": parameter.grad.dtype,
            "loss (autocast)": loss.item(), "loss (fp32)": fp32_loss}


def gradient_magnitudes(model, x, y) -> torch.Tensor:
    """|gradient| of every parameter entry after one fp32 backward pass, as one 1-D tensor."""
    model.zero_grad(set_to_none=True)
    _loss(model, x, y).backward()
    grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return torch.cat(grads).abs()


def underflow_fractions(magnitudes: torch.Tensor, scale: float = 1.0) -> dict:
    """The share of the nonzero ``magnitudes`` (times ``scale``) that fp16 and bf16 round to 0,
    and the share that fp16 keeps only as subnormals (fewer significant bits)."""
    values = magnitudes[magnitudes > 0].double() * scale
    return {"fp16: zero": (values.half() == 0).double().mean().item(),
            "fp16: subnormal": ((values < FP16_SMALLEST_NORMAL) & (values.half() != 0))
            .double().mean().item(),
            "bf16: zero": (values.bfloat16() == 0).double().mean().item()}


def accumulated_gradient(model, x, y, micro_batches: int, divide: bool = True) -> torch.Tensor:
    """The gradient of the mean loss over (x, y), taken in ``micro_batches`` equal slices of the
    batch: each slice's loss divided by ``micro_batches`` (``divide=False`` forgets that),
    ``backward`` after each, the gradients adding up in ``.grad``. Returned as one 1-D tensor."""
    if x.size(0) % micro_batches:
        raise ValueError(f"a batch of {x.size(0)} rows does not split into {micro_batches} "
                         "equal micro-batches")
    model.zero_grad(set_to_none=True)
    for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches)):
        loss = _loss(model, xs, ys)
        (loss / micro_batches if divide else loss).backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return grads


def train_with_micro_batches(model, batches, micro_batches: int, lr: float = 1e-2,
                             divide: bool = True, grad_clip: float | None = None) -> list[float]:
    """A copy of ``model`` trained with AdamW, one step per (x, y) in ``batches``, each step's
    gradient accumulated over ``micro_batches`` slices; returns each step's mean loss."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, foreach=False)
    losses = []
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches)):
            loss = _loss(model, xs, ys)
            (loss / micro_batches if divide else loss).backward()
            total += loss.item() / micro_batches
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        losses.append(total)
    return losses
