"""Training (lesson 06): the settings, the loss, the learning-rate schedule, the optimiser, one
optimisation step and evaluation: what the lesson teaches and grades.

Reads top to bottom:
    TrainConfig                           how long, how fast, how often to look
    cross_entropy_loss, perplexity        the objective and its readable form
    lr_at                                 linear warm-up, then cosine down to min_lr
    parameter_groups, make_optimizer      AdamW; no weight decay on biases, norms, embeddings
    AdamW, clip_grad_norm                 the optimiser and the clipping, written out (lesson 06)
    resolve_precision, autocast           fp32, bf16 or fp16 (with a gradient scaler)
    train_step, optimize                  forward, backward, clip, step (optimize: no host sync)
    evaluate                              fixed non-overlapping windows: loss, ppl, bits/byte

The loop that runs these for hours (checkpoints, resume, Ctrl-C, several GPUs) is the lab's
trainer, :mod:`nanolm_lib.lab.trainer`; the recipes are in :mod:`nanolm_lib.lab.presets`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanolm_lib.course.data import gather_windows
from nanolm_lib.errors import UsageError
from nanolm_lib.utils import run_model

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


# -------------------------------------------------------------------------------------------
# Configuration


@dataclass
class TrainConfig:
    """How to train: batch, schedule, optimiser, evaluation, precision, where to write.

    ``max_steps`` is the total number of optimisation steps. ``steps_per_epoch`` only names
    the epoch boundaries in logs and tables (batches are random windows, so an "epoch" is
    ``steps_per_epoch * batch_size * context_length`` tokens, about one pass over the data).
    ``batch_size`` is the global batch of one optimisation step: under ``torchrun`` the
    processes share it (:func:`local_share`), so a recipe means the same on any number of GPUs.
    """

    batch_size: int = 64
    max_steps: int = 56_000
    lr: float = 6e-4
    min_lr: float = 6e-5
    warmup_steps: int = 1_000
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    eval_interval: int = 28_000
    eval_batches: int | None = None  # None: the whole validation split
    precision: str = "auto"  # auto: bf16 (or fp16 + GradScaler) on CUDA, fp32 on CPU
    compile: bool = False
    seed: int = 1337
    device: str | None = None  # None: cuda, then mps, then cpu
    out_dir: str | None = None  # None: write nothing (a quick experiment in a notebook)
    steps_per_epoch: int | None = None
    log_interval: int = 50
    checkpoint_interval: int = 2_000
    eval_batch_size: int = 32

    def __post_init__(self):
        self.betas = tuple(self.betas)
        positive = ("batch_size", "max_steps", "eval_interval", "log_interval",
                    "checkpoint_interval", "eval_batch_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"TrainConfig.{name}={value!r}: expected a positive integer")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise UsageError(f"TrainConfig.steps_per_epoch={self.steps_per_epoch!r}: "
                             "expected a positive integer or None")
        if self.warmup_steps < 0:
            raise UsageError(f"TrainConfig.warmup_steps={self.warmup_steps!r}: expected >= 0")
        if not 0 <= self.min_lr <= self.lr:
            raise UsageError(f"TrainConfig lr={self.lr}, min_lr={self.min_lr}: "
                             "expected 0 <= min_lr <= lr")
        if self.precision not in PRECISIONS:
            raise UsageError(f"TrainConfig.precision={self.precision!r}: "
                             f"expected one of {', '.join(PRECISIONS)}")

    @property
    def epochs(self) -> float | None:
        """How many epochs ``max_steps`` makes (None without ``steps_per_epoch``)."""
        return self.max_steps / self.steps_per_epoch if self.steps_per_epoch else None


# -------------------------------------------------------------------------------------------
# The objective and the schedule


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over all positions: logits (B, T, V), targets (B, T) -> scalar."""
    vocab_size = logits.size(-1)
    return F.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))


def perplexity(loss) -> float:
    """e ** loss: the number of equally likely tokens the model is, on average, choosing from."""
    return math.exp(float(loss))


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of step ``step`` (0-based): linear warm-up, cosine to ``min_lr``.

    ``lr * (step + 1) / warmup_steps`` while ``step < warmup_steps``; then a half cosine from
    ``lr`` (at ``warmup_steps``) down to ``min_lr`` (at ``max_steps``); ``min_lr`` after.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if step >= config.max_steps:
        return config.min_lr
    progress_ = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress_))  # 1 -> 0
    return config.min_lr + cosine * (config.lr - config.min_lr)


# -------------------------------------------------------------------------------------------
# Optimiser


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices, none on biases, norm weights and embeddings.

    Decay pulls weights towards zero; that regularises matrices that mix features, but it
    would only distort gains, offsets and the lookup tables of embeddings. A tied output
    head shares its tensor with the token embedding and is spared with it.
    """
    spared = set()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            spared.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for name, param in model.named_parameters():  # shared (tied) tensors are listed once
        if not param.requires_grad:
            continue
        is_embedding = id(param) in spared or name.split(".")[-1].endswith("emb")
        if param.dim() < 2 or is_embedding:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig, device: str = "cpu"):
    """AdamW over :func:`parameter_groups`, fused (one kernel for all tensors) where possible."""
    groups = parameter_groups(model, config.weight_decay)
    kwargs = dict(lr=config.lr, betas=config.betas)
    if str(device).split(":")[0] in ("cuda", "cpu"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):  # older torch: no fused AdamW on this device
            pass
    return torch.optim.AdamW(groups, **kwargs)


class AdamW(torch.optim.Optimizer):
    """AdamW (Loshchilov & Hutter, 2019) written out, in ``torch.optim.AdamW``'s order: decay
    the parameter by ``lr * weight_decay`` first, then update the moments and take the
    bias-corrected Adam step. ``param_groups[i]["lr"]`` is read at every step (a schedule sets it).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)  # first moment m
                    state["exp_avg_sq"] = torch.zeros_like(param)  # second moment v
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                param.mul_(1 - lr * group["weight_decay"])  # decoupled: not through the moments
                m.mul_(beta1).add_(param.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                denominator = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
                param.addcdiv_(m, denominator, value=-lr / (1 - beta1**t))
        return loss


def clip_grad_norm(parameters, max_norm):
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    The norm is that of every gradient as one long vector (parameters without a gradient are
    skipped); when it exceeds ``max_norm`` every gradient is multiplied by
    ``max_norm / (norm + 1e-6)``, as ``torch.nn.utils.clip_grad_norm_`` does. Returns the
    norm before clipping, a 0-dim tensor.
    """
    grads = [p.grad for p in parameters if p.grad is not None]  # a generator is read once
    if not grads:
        return torch.tensor(0.0)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if norm > max_norm:
        for g in grads:
            g.mul_(max_norm / (norm + 1e-6))
    return norm


# -------------------------------------------------------------------------------------------
# Precision


def resolve_precision(precision: str, device: str) -> str:
    """``"auto"`` -> bf16 on GPUs that have it (Ampere+), fp16 on older GPUs, fp32 elsewhere."""
    kind = str(device).split(":")[0]
    if precision == "auto":
        if kind == "cuda":
            major, _ = torch.cuda.get_device_capability(device)
            return "bf16" if major >= 8 else "fp16"
        return "fp32"
    if precision == "fp16" and kind != "cuda":
        raise UsageError(f"precision='fp16' needs a CUDA device, not {device!r}; "
                         "use 'bf16' or 'fp32'")
    return precision


def autocast(precision: str, device: str):
    """The autocast context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=str(device).split(":")[0], dtype=dtype)


# -------------------------------------------------------------------------------------------
# One step, and evaluation


def train_step(model, optimizer, x, y, grad_clip: float | None = 1.0, *, scaler=None,
               precision: str = "fp32") -> float:
    """One optimisation step on batch (x, y); returns the loss before the update.

    Gradients are clipped to total norm ``grad_clip`` (None or 0: no clipping); they stay in
    ``.grad`` afterwards. With fp16 a ``torch.amp.GradScaler`` scales the loss so small
    gradients survive, and unscales before clipping.
    """
    return optimize(model, optimizer, x, y, grad_clip, scaler=scaler, precision=precision).item()


def optimize(model, optimizer, x, y, grad_clip: float | None = 1.0, *, scaler=None,
             precision: str = "fp32", loss_scale: float = 1.0,
             check_ids: bool = True) -> torch.Tensor:
    """:func:`train_step` without reading the loss back: returns it as a 0-d tensor on the
    device, so a GPU never waits for the host. The model computes the loss itself
    (``model(x, y)``), so ``torch.compile`` compiles it with the forward pass.

    ``loss_scale`` multiplies the loss before the backward pass (one process's share of a
    batch split unevenly across processes); the returned loss is the scaled one.
    ``check_ids=False`` skips the model's per-batch vocabulary check (a GPU sync); callers
    that pass it have checked their data once.
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast(precision, x.device.type):
        _, loss = run_model(model, x, y, check_ids=check_ids)  # mean cross-entropy, (B, T)
    if loss_scale != 1.0:
        loss = loss * loss_scale
    scaling = scaler is not None and scaler.is_enabled()
    (scaler.scale(loss) if scaling else loss).backward()
    if scaling:
        scaler.unscale_(optimizer)
    if grad_clip:  # no host sync: the norm scales the gradients on the device
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaling:
        scaler.step(optimizer)  # skips the step when the fp16 gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    return loss.detach()


@torch.no_grad()
def evaluate(model, tokens, context_length: int, batch_size: int = 32,
             max_batches: int | None = None, *, bytes_per_token: float | None = None,
             precision: str = "fp32") -> dict:
    """Mean loss of ``model`` on ``tokens`` cut into fixed, non-overlapping windows.

    Window i reads ``tokens[i*T : i*T + T]`` and predicts ``tokens[i*T + 1 : i*T + T + 1]``
    (T = ``context_length``), so every token is predicted at most once (token 0 and the tail
    after the last full window never are) and the figure is the same each time it is computed. ``max_batches`` keeps only the first batches.
    Returns ``loss``, ``perplexity``, ``windows``, ``tokens``, and ``bpb`` (bits per byte:
    loss / ln 2 / bytes_per_token) when ``bytes_per_token`` is given.
    """
    n_windows = (len(tokens) - 1) // context_length
    if n_windows < 1:
        raise ValueError(f"evaluate: {len(tokens)} tokens hold no window of "
                         f"context_length + 1 = {context_length + 1} tokens")
    if max_batches is not None:
        n_windows = min(n_windows, max_batches * batch_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for first in range(0, n_windows, batch_size):
            starts = torch.arange(first, min(first + batch_size, n_windows)) * context_length
            x, y = gather_windows(tokens, starts, context_length, device)
            with autocast(precision, device.type):
                logits, _ = model(x)
                loss = cross_entropy_loss(logits.float(), y)
            total += loss.item() * y.numel()
            count += y.numel()
    finally:
        model.train(was_training)
    mean = total / count
    result = {"loss": mean, "perplexity": perplexity(mean), "windows": n_windows,
              "tokens": count}
    if bytes_per_token:
        result["bpb"] = mean / math.log(2) / bytes_per_token
    return result


__all__ = [
    "TrainConfig", "PRECISIONS", "cross_entropy_loss", "perplexity", "lr_at", "parameter_groups",
    "make_optimizer", "AdamW", "clip_grad_norm", "resolve_precision", "autocast", "train_step",
    "optimize", "evaluate",
]
