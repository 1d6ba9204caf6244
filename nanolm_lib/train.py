"""Training (lesson 06): loss, learning-rate schedule, one optimisation step, evaluation, and
the training loop with its checkpoints, metrics and resume.

Reads top to bottom:
    TrainConfig, TRAIN_PRESETS            how long, how fast, how often to look
    cross_entropy_loss, perplexity        the objective and its readable form
    lr_at                                 linear warm-up, then cosine down to min_lr
    parameter_groups, make_optimizer      AdamW; no weight decay on biases, norms, embeddings
    train_step, optimize                  forward, backward, clip, step (optimize: no host sync)
    evaluate                              fixed non-overlapping windows: loss, ppl, bits/byte
    save_checkpoint, load_checkpoint      plain data only, written atomically
    CheckpointWriter                      the same, written by a background thread
    local_share, BatchStream              a global batch shared by the processes of a job
    train                                 the loop: precision, progress, metrics, Ctrl-C, NaN, DDP
    load_model                            (model, tokenizer) from a checkpoint or run folder

A run folder (``out_dir``) holds ``model.ckpt`` (the latest good checkpoint),
``tokenizer.json``, ``config.json``, ``metrics.jsonl`` and ``plot.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import signal
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nanolm_lib.utils import pick_device, progress, run_model

CHECKPOINT_FORMAT = "nanolm-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "model.ckpt"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, foreign, or holds more than plain data."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


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
                raise ValueError(f"TrainConfig.{name}={value!r}: expected a positive integer")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"TrainConfig.steps_per_epoch={self.steps_per_epoch!r}: "
                             "expected a positive integer or None")
        if self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps={self.warmup_steps!r}: expected >= 0")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"TrainConfig lr={self.lr}, min_lr={self.min_lr}: "
                             "expected 0 <= min_lr <= lr")
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision={self.precision!r}: "
                             f"expected one of {', '.join(PRECISIONS)}")

    @property
    def epochs(self) -> float | None:
        """How many epochs ``max_steps`` makes (None without ``steps_per_epoch``)."""
        return self.max_steps / self.steps_per_epoch if self.steps_per_epoch else None


# The training half of each model preset in nanolm_lib.model.PRESETS (same names).
TRAIN_PRESETS: dict[str, TrainConfig] = {
    # The reference recipe: 2 epochs x 28,000 steps x 64 x 128 tokens = 458,752,000 tokens,
    # validation after each epoch over the whole validation split (~49 min/epoch on a 3090).
    "seed-3090": TrainConfig(
        batch_size=64, max_steps=56_000, steps_per_epoch=28_000, lr=6e-4, min_lr=6e-5,
        warmup_steps=1_000, eval_interval=28_000, eval_batches=None, log_interval=50,
        checkpoint_interval=2_000,
    ),
    # About 5 minutes on a 2-core CPU: 1,920 steps x 8 x 256 = 3.9 M tokens (the 1.1
    # M-parameter "cpu" model, 2 threads, two idle AMD EPYC cores). The budget is kept in
    # steps: 1,800 steps took five minutes (~12,800 tokens/s) before the GPT's layer norm
    # was fused, which made a step 1.08x faster (the two interleaved in one run), so 1,920
    # steps take the same time. Measured on the TinyStories sample at 3.7 M tokens
    # (validation loss): batch 8 / lr 5e-3: 2.98 (1.19 bits/byte); batch 8 / 3e-3: 3.01;
    # batch 16 / 6e-3: 3.06; batch 16 / 3e-3: 3.11; batch 16 / 1.5e-3: 3.29; batch 32 /
    # 3e-3: 3.37. So short runs want many updates: small batches and a high lr.
    "cpu": TrainConfig(
        batch_size=8, max_steps=1_920, lr=5e-3, min_lr=5e-4, warmup_steps=90,
        eval_interval=640, eval_batches=20, log_interval=20, checkpoint_interval=200,
        precision="fp32",
    ),
    # Seconds: for tests, CI and nbgrader.
    "smoke": TrainConfig(
        batch_size=8, max_steps=20, lr=3e-3, min_lr=3e-4, warmup_steps=4, eval_interval=10,
        eval_batches=2, log_interval=5, checkpoint_interval=10, eval_batch_size=8,
        precision="fp32",
    ),
}


def train_preset(name: str, **overrides) -> TrainConfig:
    """A fresh copy of ``TRAIN_PRESETS[name]`` with ``overrides`` applied."""
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(TRAIN_PRESETS)}")
    return dataclasses.replace(TRAIN_PRESETS[name], **overrides)


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
        raise ValueError(f"precision='fp16' needs a CUDA device, not {device!r}; "
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


def _windows(tokens, starts: torch.Tensor, context_length: int, device):
    """Inputs and targets of the windows starting at ``starts`` (B,): two (B, T) int64 tensors.

    ``tokens`` is a 1-D tensor (possibly on the GPU) or numpy array (a memmap reads only the
    windows it is asked for). Copies to a GPU go through pinned memory without blocking, so
    the host never waits for the GPU here.
    """
    device = torch.device(device)
    if isinstance(tokens, torch.Tensor):
        offsets = torch.arange(context_length + 1, device=tokens.device)
        chunk = tokens[_to(starts, tokens.device)[:, None] + offsets]  # (B, T + 1)
    else:
        index = starts.numpy()[:, None] + np.arange(context_length + 1)
        chunk = torch.from_numpy(np.asarray(tokens[index], dtype=np.int64))  # (B, T + 1)
    chunk = _to(chunk, device).long()
    return chunk[:, :-1], chunk[:, 1:]


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor.to(device)``; from the CPU to a GPU through pinned memory, non-blocking (a
    pageable copy would make the host wait for the GPU)."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


@torch.no_grad()
def evaluate(model, tokens, context_length: int, batch_size: int = 32,
             max_batches: int | None = None, *, bytes_per_token: float | None = None,
             precision: str = "fp32") -> dict:
    """Mean loss of ``model`` on ``tokens`` cut into fixed, non-overlapping windows.

    Window i reads ``tokens[i*T : i*T + T]`` and predicts ``tokens[i*T + 1 : i*T + T + 1]``
    (T = ``context_length``), so every token is predicted exactly once and the figure is the
    same each time it is computed. ``max_batches`` keeps only the first batches.
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
            x, y = _windows(tokens, starts, context_length, device)
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


# -------------------------------------------------------------------------------------------
# Checkpoints: plain data only, so that loading runs no code from the file


def tokenizer_to_text(tokenizer) -> str:
    """The tokenizer's own file format, as text (it travels inside the checkpoint)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        tokenizer.save(str(path))
        return path.read_text(encoding="utf-8")


def tokenizer_from_text(text: str):
    """Inverse of :func:`tokenizer_to_text`."""
    from nanolm_lib.tokenizer import load_tokenizer

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        path.write_text(text, encoding="utf-8")
        return load_tokenizer(str(path))


def _atomic_write(path: Path, write) -> None:
    """Call ``write(temp_path)``, then rename over ``path``: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    write(temp)
    os.replace(temp, path)


def save_checkpoint(path, *, model, optimizer=None, scaler=None, step: int = 0,
                    tokens: int = 0, model_config=None, train_config=None, tokenizer=None,
                    rng: dict | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (temp file + ``os.replace``).

    Everything in it is a tensor or plain Python data (configs as dicts, the tokenizer as
    its JSON text), so :func:`load_checkpoint` can use ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    state = checkpoint_state(model=model, optimizer=optimizer, scaler=scaler, step=step,
                             tokens=tokens, model_config=model_config,
                             train_config=train_config, tokenizer=tokenizer, rng=rng,
                             extra=extra)
    _atomic_write(path, lambda temp: torch.save(state, temp))
    return path


def checkpoint_state(*, model, optimizer=None, scaler=None, step: int = 0, tokens: int = 0,
                     model_config=None, train_config=None, tokenizer=None,
                     rng: dict | None = None, extra: dict | None = None) -> dict:
    """What :func:`save_checkpoint` writes, as a dict (tensors still where they live)."""
    model_config = model_config if model_config is not None else getattr(model, "config", None)
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "step": int(step),
        "tokens": int(tokens),
        "model_config": _plain(model_config),
        "train_config": _plain(train_config),
        "tokenizer": tokenizer_to_text(tokenizer) if tokenizer is not None else None,
        "rng": rng or {},
        "extra": extra or {},
        "torch": str(torch.__version__),
    }


def cpu_snapshot(state):
    """A copy of ``state`` (nested dicts, lists, tuples, tensors) whose tensors are CPU copies
    that training can no longer change. Views of one tensor stay views of one copy (a tied
    head is stored once, as ``torch.save`` stores the live model)."""
    copies: dict = {}

    def copy(value):
        if isinstance(value, torch.Tensor):
            key = (value.untyped_storage().data_ptr(), value.storage_offset(),
                   tuple(value.shape), value.stride(), value.dtype, value.device)
            if key not in copies:
                copies[key] = value.detach().to("cpu", copy=True)
            return copies[key]
        if isinstance(value, dict):
            return {k: copy(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(copy(v) for v in value)
        return value

    return copy(state)


class CheckpointWriter:
    """Writes checkpoints on a background thread, so that a step never waits for the disk.

    :meth:`save` copies the state to the CPU (the training loop may change the live tensors
    right after) and hands the file write to a thread; the write is atomic, as in
    :func:`save_checkpoint`. The previous write is joined before the next one starts and by
    :meth:`join`; a write that failed raises there.
    """

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, path: Path, state: dict) -> None:
        self.join()
        snapshot = cpu_snapshot(state)

        def write():
            try:
                _atomic_write(Path(path), lambda temp: torch.save(snapshot, temp))
            except BaseException as error:  # reported by join(), in the training thread
                self._error = error

        self._thread = threading.Thread(target=write, name="nanolm-checkpoint", daemon=False)
        self._thread.start()

    def join(self) -> None:
        """Wait for the write in progress; raise its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _plain(config):
    if config is None:
        return None
    return asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def checkpoint_path(path) -> Path:
    """A checkpoint file, or the ``model.ckpt`` of a run folder."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (a file or a run folder).

    Never runs code from the file (``weights_only=True``). Raises :class:`CheckpointError`,
    naming the file, when it is missing, truncated, not a NanoLM checkpoint, or holds pickled
    objects.
    """
    path = checkpoint_path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with warnings.catch_warnings():  # torch warns about legacy files; the error says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch.load raises many types for a file it cannot read
        unsafe = [line.split("Unsupported global:", 1)[1].split(" was not")[0].strip()
                  for line in str(error).splitlines() if "Unsupported global:" in line]
        if isinstance(error, pickle.UnpicklingError) and unsafe:
            raise CheckpointError(
                f"checkpoint {path}: refused, it holds objects other than tensors and plain "
                f"data ({unsafe[0]}), and loading them could run code") from None
        raise CheckpointError(
            f"checkpoint {path}: unreadable, truncated or not a torch file "
            f"({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a NanoLM checkpoint "
                              f"(no '{CHECKPOINT_FORMAT}' marker)")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {state['version']} is newer "
                              f"than this nanolm_lib reads ({CHECKPOINT_VERSION})")
    return state


def model_from_checkpoint(state: dict, device: str = "cpu"):
    """Build the GPT that ``state`` (from :func:`load_checkpoint`) describes, with its weights."""
    from nanolm_lib.model import GPT, GPTConfig

    config = GPTConfig(**state["model_config"])
    model = GPT(config)
    model.load_state_dict(state["model"])
    return model.to(device)


def load_model(path, device: str = "cpu"):
    """``(model, tokenizer)`` from a checkpoint file or a run folder; the model in eval mode."""
    path = checkpoint_path(path)
    state = load_checkpoint(path)
    model = model_from_checkpoint(state, device).eval()
    if state.get("tokenizer"):
        tokenizer = tokenizer_from_text(state["tokenizer"])
    elif (path.parent / "tokenizer.json").exists():
        from nanolm_lib.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(str(path.parent / "tokenizer.json"))
    else:
        raise CheckpointError(f"checkpoint {path}: holds no tokenizer, and there is no "
                              f"tokenizer.json beside it")
    return model, tokenizer


def read_metrics(path) -> list[dict]:
    """The records of a run's ``metrics.jsonl`` (a file or a run folder); [] when absent."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash: the rest is redone
                break
    return records


# -------------------------------------------------------------------------------------------
# Several GPUs (torchrun): one process per device, DistributedDataParallel


@dataclass
class Distributed:
    """Where this process sits in a ``torchrun`` job (rank 0 of 1 when run alone)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None = None) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    NCCL on CUDA, gloo on CPU. Safe to call twice; a plain process gets rank 0 of 1.
    """
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = pick_device(device).startswith("cuda")
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(rank=rank, local_rank=local_rank, world_size=world_size)


def _all_reduce(values: list[float], dist_info: Distributed, device, op="sum") -> list[float]:
    """Sum (or max) a few floats over all ranks; unchanged when running alone."""
    if not dist_info.enabled:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor.tolist()


def local_share(batch_size: int, dist_info: Distributed) -> slice:
    """This process's rows of a global batch of ``batch_size``, split as evenly as possible.

    ``batch_size`` means the whole batch of one optimisation step, however many processes
    share it: under ``torchrun`` every process draws the same global batch and trains on
    its own slice, and DistributedDataParallel averages the gradients. So a recipe reads the
    same tokens per step, and gives the same updates (up to rounding), on any number of GPUs.
    """
    if batch_size < dist_info.world_size:
        raise ValueError(f"TrainConfig.batch_size={batch_size}: expected at least one row per "
                         f"process ({dist_info.world_size} processes)")
    base, extra = divmod(batch_size, dist_info.world_size)
    start = dist_info.rank * base + min(dist_info.rank, extra)
    return slice(start, start + base + (dist_info.rank < extra))


def share_weight(rows: slice, batch_size: int, dist_info: Distributed) -> float:
    """The factor that makes the average of every process's mean loss the mean over the
    global batch: rows / batch_size x world_size (exactly 1.0 for an even split)."""
    size = rows.stop - rows.start
    if size * dist_info.world_size == batch_size:
        return 1.0
    return size * dist_info.world_size / batch_size


# -------------------------------------------------------------------------------------------
# The training loop


class _StopRequest:
    """Turns Ctrl-C (SIGINT) into a request to stop at the next step boundary.

    Stopping between steps leaves model, optimiser and batch generator consistent, so the
    checkpoint written on the way out resumes exactly. A second Ctrl-C interrupts at once.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _rng_state(generator: torch.Generator) -> dict:
    """RNG states to checkpoint: torch's and CUDA's (dropout), and the batch stream's.

    Every process of a job draws the same stream of global batches (see :func:`local_share`),
    so one batch state serves a resume on any number of processes.
    """
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "batch": [generator.get_state()],
    }


def fitting_cuda_states(saved: list, n_devices: int) -> tuple[list, str | None]:
    """The saved CUDA RNG states that this machine's ``n_devices`` GPUs can take, and a note
    when some are left out or missing (a checkpoint of an 8-GPU job resumed on 1 GPU)."""
    if len(saved) == n_devices or not saved:
        return list(saved), None
    kept = list(saved[:n_devices])
    return kept, (f"the checkpoint holds CUDA RNG states for {len(saved)} GPUs and this machine "
                  f"has {n_devices}: restored {len(kept)}, the rest "
                  f"{'left out' if len(saved) > n_devices else 'keep their own seeds'}; "
                  "dropout draws differ from the uninterrupted run from here")


def _restore_rng(rng: dict, generator: torch.Generator, dist_info: Distributed) -> bool:
    """Restore what :func:`_rng_state` saved; False when the batch stream could not be
    (a checkpoint of an older multi-process format, which kept one stream per process)."""
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and rng.get("cuda"):
        states, note = fitting_cuda_states(rng["cuda"], torch.cuda.device_count())
        for index, state in enumerate(states):
            torch.cuda.set_rng_state(state, index)
        if note:
            _say(dist_info, f"resume: {note}")
    batch = rng.get("batch") or []
    if len(batch) == 1:
        generator.set_state(batch[0])
        return True
    return False


def keep_freed_memory() -> bool:
    """Let this process keep the memory it frees instead of handing it back to the kernel.

    glibc serves each large tensor (the reference model's logits alone are 328 MB) with a
    fresh ``mmap`` and returns it on free, so every CPU training step page-faults in and
    zero-fills about 2 GB anew: ~1 s of kernel time per step of the 22 M model, 5-10 % of
    it. Serving all allocations from the heap and never trimming it removes that cost;
    the process then keeps its peak memory until it exits. Linux/glibc only (returns False
    elsewhere); process-wide; called by :func:`train` on the CPU.
    """
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    m_trim_threshold, m_mmap_max = -1, -4  # mallopt parameters, from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**30))


def _keeps_on_device(tokens, device: torch.device) -> bool:
    """Whether the token arrays fit comfortably on the GPU (under a quarter of free memory)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return len(tokens) * 4 < free // 4


def _to_device(tokens, device: torch.device) -> torch.Tensor:
    """A device copy of ``tokens`` as int32 (uint16 tensors support too few operations)."""
    if isinstance(tokens, torch.Tensor):
        return tokens.to(device=device, dtype=torch.int32)
    return torch.from_numpy(np.asarray(tokens).astype(np.int32)).to(device)


def check_token_ids(tokens, vocab_size: int, name: str = "tokens") -> None:
    """Raise ValueError, naming ``name``, unless every id of ``tokens`` is in [0, vocab_size).

    Done once per dataset, so that the training step need not check each batch (reading
    a batch's ids back to the host would make the GPU wait every step).
    """
    if len(tokens) == 0:
        return
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name}: token ids must lie in [0, vocab_size={vocab_size}), found "
                         f"values in [{low}, {high}] (does the tokenizer match the model's "
                         "vocabulary?)")


def enable_tf32(device: torch.device) -> None:
    """TF32 tensor cores for the fp32 matmuls that remain under autocast (CUDA only)."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


class BatchStream:
    """This process's share of each step's global batch, drawn from one seeded stream.

    The starts of all ``batch_size`` windows are drawn exactly as :func:`get_batch` draws
    them (so a single process trains on get_batch's batches), then this process keeps its
    rows (:func:`local_share`) and copies them to the device without blocking.
    """

    def __init__(self, tokens, batch_size: int, context_length: int, generator,
                 device: torch.device, dist_info: Distributed):
        self.tokens, self.batch_size, self.context_length = tokens, batch_size, context_length
        self.generator, self.device = generator, device
        self.rows = local_share(batch_size, dist_info)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.tokens) - self.context_length, (self.batch_size,),
                               generator=self.generator, device=self.generator.device)
        return _windows(self.tokens, starts[self.rows], self.context_length, self.device)


class _LossTotals:
    """Running sums of the training loss, kept on the device and read only when asked.

    ``interval`` is reset at each log record, ``epoch`` at each evaluation; both add the
    step losses one by one in float64, the arithmetic of the Python floats they replace.
    """

    def __init__(self, device: torch.device, saved: dict):
        dtype = torch.float32 if device.type == "mps" else torch.float64  # mps: no float64
        self.interval = torch.tensor(saved.get("loss_sum", 0.0), dtype=dtype, device=device)
        self.epoch = torch.tensor(saved.get("epoch_sum", 0.0), dtype=dtype, device=device)
        self.interval_count = saved.get("loss_count", 0)
        self.epoch_count = saved.get("epoch_count", 0)

    def add(self, loss: torch.Tensor) -> None:
        value = loss.to(self.interval.dtype)
        self.interval += value
        self.epoch += value
        self.interval_count += 1
        self.epoch_count += 1

    def read(self) -> dict:
        """The sums as floats (one copy to the host: the loop's only regular sync)."""
        interval, epoch = torch.stack([self.interval, self.epoch]).tolist()
        return {"loss_sum": interval, "loss_count": self.interval_count,
                "epoch_sum": epoch, "epoch_count": self.epoch_count}

    def reset_interval(self) -> None:
        self.interval.zero_()
        self.interval_count = 0

    def reset_epoch(self) -> None:
        self.epoch.zero_()
        self.epoch_count = 0


def record_count(config: TrainConfig, start_step: int = 0) -> int:
    """How many records (``train`` and ``validation``) a run writes after ``start_step``: what
    a live plot needs to know to redraw a few dozen times rather than at every record."""
    steps = range(start_step + 1, config.max_steps + 1)
    logs = sum(1 for s in steps if s % config.log_interval == 0 or s == config.max_steps)
    evals = sum(1 for s in steps if s % config.eval_interval == 0 or s == config.max_steps)
    return logs + evals



def train(model, config: TrainConfig, train_tokens, val_tokens=None, *, tokenizer=None,
          bytes_per_token: float | None = None, resume: bool = False, overwrite: bool = False,
          callback=None, data_info: dict | None = None) -> list[dict]:
    """Train ``model`` on ``train_tokens``; return the history (the records of metrics.jsonl).

    Every ``log_interval`` steps a ``"train"`` record (mean loss since the last one, lr,
    tokens seen, tokens/s); every ``eval_interval`` steps and at the end a ``"validation"``
    record from :func:`evaluate` on ``val_tokens`` (with ``bpb`` when ``bytes_per_token`` is
    given, and ``train_loss``: the mean training loss since the previous evaluation).
    ``callback(record)`` sees each record as it is written (a live plot, say).

    With ``config.out_dir`` set, the run folder gets metrics.jsonl, config.json,
    tokenizer.json, plot.png, and ``model.ckpt`` every ``checkpoint_interval`` steps, at
    each evaluation, at the end and on Ctrl-C (the run stops at the next step boundary,
    saves, and raises KeyboardInterrupt). ``resume=True`` continues from that checkpoint
    exactly where it stopped; a folder that already holds a checkpoint is never overwritten
    unless ``overwrite=True``. A NaN or infinite loss raises :class:`TrainingDiverged` and
    keeps the last good checkpoint.

    The step never waits for the GPU: the token ids are checked once per dataset, batches
    are copied without blocking, the loss is summed on the device and read back only when a
    record or a checkpoint is written (a NaN is therefore caught at the next such step, and
    before any checkpoint), and checkpoints are written by a background thread.

    Under ``torchrun`` each process trains on its share of the same global batch of
    ``batch_size`` rows (:func:`local_share`) through DistributedDataParallel; only rank 0
    writes.
    """
    dist_info = setup_distributed(config.device)
    device = torch.device(pick_device(config.device))
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    precision = resolve_precision(config.precision, str(device))
    enable_tf32(device)
    if device.type == "cpu":
        keep_freed_memory()
    context_length = model.config.context_length
    train_data, val_data = train_tokens, val_tokens
    if len(train_data) <= context_length + 1:
        raise ValueError(f"train_tokens: {len(train_data)} tokens, expected more than "
                         f"context_length + 1 = {context_length + 1}")
    check_token_ids(train_data, model.config.vocab_size, "train_tokens")
    if val_data is not None:
        check_token_ids(val_data, model.config.vocab_size, "val_tokens")
    local_share(config.batch_size, dist_info)  # a batch too small to share fails here
    if _keeps_on_device(train_data, device):  # batches are then gathered on the GPU
        train_data = _to_device(train_data, device)
        val_data = _to_device(val_data, device) if val_data is not None else None

    out_dir = Path(config.out_dir) if config.out_dir and dist_info.is_main else None
    ckpt_file = Path(config.out_dir) / CHECKPOINT_NAME if config.out_dir else None
    if ckpt_file is not None and ckpt_file.exists() and not (resume or overwrite):
        raise FileExistsError(f"{ckpt_file.parent} already holds a run (model.ckpt); resume it "
                              "(resume=True, --resume) or start over (overwrite=True, --fresh)")

    model.to(device)
    raw_model = model  # what checkpoints hold, without compile's or DDP's wrappers
    optimizer = make_optimizer(raw_model, config, device.type)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    generator = torch.Generator().manual_seed(config.seed)  # the same stream on every rank

    step, tokens_seen, elapsed = 0, 0, 0.0
    running: dict = {}
    history: list[dict] = []
    if resume and ckpt_file is not None and ckpt_file.exists():
        state = _restore(ckpt_file, raw_model, optimizer, scaler, generator, config, dist_info)
        step, tokens_seen = state["step"], state["tokens"]
        elapsed = state["extra"].get("elapsed_s", 0.0)
        running = state["extra"].get("running", {})
        history = [r for r in read_metrics(ckpt_file.parent) if r["step"] <= step]
        if tokenizer is None and state.get("tokenizer"):
            tokenizer = tokenizer_from_text(state["tokenizer"])
        if step >= config.max_steps:
            _say(dist_info, f"{ckpt_file.parent}: already finished ({step} of "
                 f"{config.max_steps} steps); nothing to do")
            return history
        _say(dist_info, f"resuming {ckpt_file.parent} at step {step} of {config.max_steps}")
    elif resume and ckpt_file is not None:
        _say(dist_info, f"no checkpoint in {ckpt_file.parent} yet: starting a new run")

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_metrics(out_dir, history)
        (out_dir / "config.json").write_text(json.dumps(
            {"model": _plain(raw_model.config), "train": _plain(config),
             "data": data_info or {}}, indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save(str(out_dir / "tokenizer.json"))

    if config.compile:
        model = torch.compile(model)
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    model.train()

    batches = BatchStream(train_data, config.batch_size, context_length, generator, device,
                       dist_info)
    loss_scale = share_weight(batches.rows, config.batch_size, dist_info)
    totals = _LossTotals(device, running)
    tokens_per_step = config.batch_size * context_length  # the global batch
    last_good = step if resume and step > 0 else None  # step of the checkpoint on disk
    last_read = step  # the step up to which the losses were read and found finite
    interval_time, interval_tokens = 0.0, 0
    writer = CheckpointWriter()

    def record(split: str, **values) -> dict:
        entry = {"step": step, "split": split, **values, "lr": lr_at(step - 1, config),
                 "tokens": tokens_seen}
        if config.steps_per_epoch:
            entry["epoch"] = step / config.steps_per_epoch
        history.append(entry)
        if out_dir is not None:
            with open(out_dir / "metrics.jsonl", "a") as file:
                file.write(json.dumps(entry) + "\n")
        if callback is not None:
            callback(entry)
        return entry

    def read_losses() -> dict:
        """Read the loss sums back; raise TrainingDiverged if a loss since the last read was
        NaN or infinite (every rank agrees, so all stop at the same step)."""
        nonlocal last_read
        sums = totals.read()
        bad = not (math.isfinite(sums["loss_sum"]) and math.isfinite(sums["epoch_sum"]))
        if _all_reduce([float(bad)], dist_info, device, op="max")[0]:
            kept = (f"the last good checkpoint, {ckpt_file} (step {last_good}), is kept"
                    if last_good is not None else "no checkpoint had been written")
            value = sums["loss_sum"] if not math.isfinite(sums["loss_sum"]) else sums["epoch_sum"]
            when = (f"at step {step}" if step == last_read + 1
                    else f"between steps {last_read + 1} and {step}")
            raise TrainingDiverged(
                f"the training loss became {value} {when}; stopped: {kept}. "
                "Try a lower learning rate (lr) or a smaller grad_clip.")
        last_read = step
        return sums

    # The sums are reset before a record is written: a callback that raises (Ctrl-C in a
    # notebook) then leaves the state that the checkpoint on the way out saves consistent.
    def log_train(sums: dict) -> None:
        nonlocal interval_time, interval_tokens
        mean_loss = sums["loss_sum"] / sums["loss_count"]
        mean_loss = _all_reduce([mean_loss], dist_info, device)[0] / dist_info.world_size
        tokens_per_s = interval_tokens / max(interval_time, 1e-9)
        totals.reset_interval()
        interval_time, interval_tokens = 0.0, 0
        bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr_at(step - 1, config):.2e}",
                        tok_s=f"{tokens_per_s:,.0f}")
        record("train", loss=mean_loss, perplexity=perplexity(mean_loss),
               tokens_per_s=tokens_per_s, elapsed_s=elapsed)

    def validate(sums: dict) -> None:
        train_loss = sums["epoch_sum"] / max(1, sums["epoch_count"])
        train_loss = _all_reduce([train_loss], dist_info, device)[0] / dist_info.world_size
        totals.reset_epoch()
        if val_data is not None and dist_info.is_main:
            result = evaluate(raw_model, val_data, context_length, config.eval_batch_size,
                              config.eval_batches, bytes_per_token=bytes_per_token,
                              precision=precision)
            extra = {"bpb": result["bpb"]} if "bpb" in result else {}
            entry = record("validation", loss=result["loss"], perplexity=result["perplexity"],
                           **extra, train_loss=train_loss,
                           train_perplexity=perplexity(train_loss),
                           tokens_per_s=tokens_seen / max(elapsed, 1e-9), elapsed_s=elapsed)
            bar.write(describe(entry))

    def checkpoint() -> None:
        nonlocal last_good
        sums = read_losses()  # a collective under DDP: every rank reads, rank 0 writes
        if out_dir is None:
            return
        state = checkpoint_state(
            model=raw_model, optimizer=optimizer, scaler=scaler, step=step,
            tokens=tokens_seen, model_config=raw_model.config, train_config=config,
            tokenizer=tokenizer, rng=_rng_state(generator),
            extra={"elapsed_s": elapsed, "running": sums, "data": data_info or {},
                   "last": history[-4:], "world_size": dist_info.world_size})
        writer.save(ckpt_file, state)
        last_good = step

    bar = progress(total=config.max_steps, initial=step, desc="training", unit="step",
                   **({} if dist_info.is_main else {"disable": True}))
    at_boundary = True  # model, optimiser, generator and step counter agree
    failed = True
    clock = time.perf_counter()
    try:
        with _StopRequest() as stop:
            while step < config.max_steps:
                at_boundary = False
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, config)
                x, y = batches.next()  # (B, T) each, this process's rows
                totals.add(optimize(model, optimizer, x, y, config.grad_clip, scaler=scaler,
                                    precision=precision, loss_scale=loss_scale,
                                    check_ids=False))
                step += 1
                tokens_seen += tokens_per_step
                interval_tokens += tokens_per_step
                bar.update(1)
                log_now = step % config.log_interval == 0 or step == config.max_steps
                evaluate_now = step % config.eval_interval == 0 or step == config.max_steps
                save_now = evaluate_now or step % config.checkpoint_interval == 0
                # Under DDP every rank must agree to stop, so Ctrl-C is shared at log steps.
                stop_now = stop.requested and not dist_info.enabled
                at_boundary = True
                if not (log_now or save_now or stop_now):
                    continue
                sums = read_losses()  # waits for the GPU: the time so far is training time
                seconds = time.perf_counter() - clock
                elapsed += seconds
                interval_time += seconds
                if log_now:
                    log_train(sums)
                if evaluate_now:
                    validate(sums)
                if save_now:
                    checkpoint()
                if evaluate_now and out_dir is not None:
                    _plot(out_dir, history)
                if _all_reduce([float(stop.requested)], dist_info, device, op="max")[0]:
                    raise KeyboardInterrupt
                clock = time.perf_counter()
        failed = False
    except KeyboardInterrupt:
        # Save only a consistent state; an interrupt inside a step keeps the last checkpoint.
        if at_boundary and last_good != step and config.out_dir:
            checkpoint()
        writer.join()
        where = (f"checkpoint {ckpt_file} holds step {last_good}; continue with resume=True "
                 "(nanolm train --resume)" if last_good is not None else "nothing was saved")
        _say(dist_info, f"\ninterrupted at step {step}: {where}")
        raise
    finally:
        bar.close()
        if failed:  # the first error is the one to report; still, leave no write half done
            with contextlib.suppress(Exception):
                writer.join()
    writer.join()
    return history


def _restore(ckpt_file: Path, model, optimizer, scaler, generator, config: TrainConfig,
             dist_info: Distributed) -> dict:
    """Load model, optimiser, scaler and RNG states from ``ckpt_file``; return the state."""
    state = load_checkpoint(ckpt_file)
    if state["model_config"] != _plain(model.config):
        raise ValueError(f"resume: {ckpt_file} holds a model with config "
                         f"{state['model_config']}, not {_plain(model.config)}; "
                         "start over with overwrite=True (--fresh) or use another out_dir")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    if not _restore_rng(state["rng"], generator, dist_info):
        generator.manual_seed(config.seed + 1_000_003 * state["step"])
        _say(dist_info, f"resume: {ckpt_file} keeps one batch stream per process (an older "
             "format); batches are drawn afresh from here")
    return state


def _say(dist_info: Distributed, message: str) -> None:
    if dist_info.is_main:
        print(message, flush=True)


def describe(entry: dict) -> str:
    """One line for a validation record: train and validation loss, perplexity, bits/byte."""
    text = (f"step {entry['step']}: train loss {entry['train_loss']:.4f} | "
            f"validation loss {entry['loss']:.4f}, perplexity {entry['perplexity']:.2f}")
    if "bpb" in entry:
        text += f", {entry['bpb']:.3f} bits/byte"
    return text


def _write_metrics(out_dir: Path, history: list[dict]) -> None:
    """Rewrite metrics.jsonl as ``history`` (on resume, drops records past the checkpoint)."""
    text = "".join(json.dumps(entry) + "\n" for entry in history)
    _atomic_write(out_dir / "metrics.jsonl", lambda temp: temp.write_text(text))


def _plot(out_dir: Path, history: list[dict]) -> None:
    from nanolm_lib.plotting import plot_history

    plot_history(history, out_dir / "plot.png")


__all__ = [
    "TrainConfig", "TRAIN_PRESETS", "train_preset", "cross_entropy_loss", "perplexity",
    "lr_at", "parameter_groups", "make_optimizer", "train_step", "evaluate", "train",
    "save_checkpoint", "load_checkpoint", "load_model", "read_metrics", "CheckpointError",
    "TrainingDiverged", "setup_distributed", "optimize", "check_token_ids", "local_share",
    "record_count", "CheckpointWriter", "BatchStream", "checkpoint_state", "fitting_cuda_states",
]
