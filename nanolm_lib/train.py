"""Training (lesson 06): loss, learning-rate schedule, one optimisation step, evaluation, and
the training loop with its checkpoints, metrics and resume.

Reads top to bottom:
    TrainConfig, TRAIN_PRESETS            how long, how fast, how often to look
    cross_entropy_loss, perplexity        the objective and its readable form
    lr_at                                 linear warm-up, then cosine down to min_lr
    parameter_groups, make_optimizer      AdamW; no weight decay on biases, norms, embeddings
    train_step                            forward, backward, clip, step
    evaluate                              fixed non-overlapping windows: loss, ppl, bits/byte
    save_checkpoint, load_checkpoint      plain data only, written atomically
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

from nanolm_lib.data import get_batch
from nanolm_lib.utils import pick_device, progress

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
    # About 5 minutes on a 2-core CPU: 1,800 steps x 8 x 256 = 3.7 M tokens at ~12,800
    # tokens/s (the 1.1 M-parameter "cpu" model, 2 threads, two idle AMD EPYC cores).
    # Measured on the TinyStories sample at this budget (3.7 M tokens, validation loss):
    # batch 8 / lr 5e-3: 2.98 (1.19 bits/byte); batch 8 / 3e-3: 3.01; batch 16 / 6e-3:
    # 3.06; batch 16 / 3e-3: 3.11; batch 16 / 1.5e-3: 3.29; batch 32 / 3e-3: 3.37. So short
    # runs want many updates: small batches (no slower per token here) and a high lr.
    "cpu": TrainConfig(
        batch_size=8, max_steps=1_800, lr=5e-3, min_lr=5e-4, warmup_steps=90,
        eval_interval=600, eval_batches=20, log_interval=20, checkpoint_interval=200,
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
    device = x.device.type
    optimizer.zero_grad(set_to_none=True)
    with autocast(precision, device):
        logits, _ = model(x)  # (B, T, V)
        loss = cross_entropy_loss(logits, y)
    scaling = scaler is not None and scaler.is_enabled()
    (scaler.scale(loss) if scaling else loss).backward()
    if scaling:
        scaler.unscale_(optimizer)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaling:
        scaler.step(optimizer)  # skips the step when the fp16 gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    return loss.item()


def _windows(tokens, starts: torch.Tensor, context_length: int, device):
    """Inputs and targets of the windows starting at ``starts`` (B,): two (B, T) int64 tensors.

    ``tokens`` is a 1-D tensor (possibly on the GPU) or numpy array (a memmap reads only the
    windows it is asked for).
    """
    if isinstance(tokens, torch.Tensor):
        offsets = torch.arange(context_length + 1, device=tokens.device)
        chunk = tokens[starts.to(tokens.device)[:, None] + offsets]  # (B, T + 1)
    else:
        index = starts.numpy()[:, None] + np.arange(context_length + 1)
        chunk = torch.from_numpy(np.asarray(tokens[index], dtype=np.int64))  # (B, T + 1)
    chunk = chunk.to(device=device, dtype=torch.long)
    return chunk[:, :-1], chunk[:, 1:]


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
    model_config = model_config if model_config is not None else getattr(model, "config", None)
    state = {
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
    _atomic_write(path, lambda temp: torch.save(state, temp))
    return path


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


def _rng_state(generator: torch.Generator, dist_info: Distributed) -> dict:
    """RNG states to checkpoint: torch's and CUDA's (dropout), and every rank's batch draws."""
    batch = generator.get_state()
    if dist_info.enabled:  # every rank draws its own batches; keep them all
        import torch.distributed as dist

        gathered = [None] * dist_info.world_size
        dist.all_gather_object(gathered, batch)
        batch_states = gathered
    else:
        batch_states = [batch]
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "batch": batch_states,
    }


def _restore_rng(rng: dict, generator: torch.Generator, dist_info: Distributed) -> bool:
    """Restore what :func:`_rng_state` saved; False when the batch stream could not be."""
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and rng.get("cuda"):
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(rng["cuda"])
    batch = rng.get("batch") or []
    if len(batch) == dist_info.world_size:
        generator.set_state(batch[dist_info.rank])
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

    Under ``torchrun`` each process trains on its own batches through
    DistributedDataParallel; only rank 0 writes.
    """
    dist_info = setup_distributed(config.device)
    device = torch.device(pick_device(config.device))
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    precision = resolve_precision(config.precision, str(device))
    if device.type == "cuda":  # TF32 tensor cores for the fp32 matmuls that remain
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if device.type == "cpu":
        keep_freed_memory()
    context_length = model.config.context_length
    train_data, val_data = train_tokens, val_tokens
    if len(train_data) <= context_length + 1:
        raise ValueError(f"train_tokens: {len(train_data)} tokens, expected more than "
                         f"context_length + 1 = {context_length + 1}")
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
    generator = torch.Generator().manual_seed(config.seed + dist_info.rank)

    step, tokens_seen, elapsed = 0, 0, 0.0
    running = {"loss_sum": 0.0, "loss_count": 0, "epoch_sum": 0.0, "epoch_count": 0}
    history: list[dict] = []
    if resume and ckpt_file is not None and ckpt_file.exists():
        state = _restore(ckpt_file, raw_model, optimizer, scaler, generator, config, dist_info)
        step, tokens_seen = state["step"], state["tokens"]
        elapsed = state["extra"].get("elapsed_s", 0.0)
        running.update(state["extra"].get("running", {}))
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

    tokens_per_step = config.batch_size * context_length * dist_info.world_size
    last_good = step if resume and step > 0 else None  # step of the checkpoint on disk
    interval_time, interval_tokens = 0.0, 0

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

    def log_train() -> None:
        nonlocal interval_time, interval_tokens
        mean_loss = running["loss_sum"] / running["loss_count"]
        mean_loss = _all_reduce([mean_loss], dist_info, device)[0] / dist_info.world_size
        entry = record("train", loss=mean_loss, perplexity=perplexity(mean_loss),
                       tokens_per_s=interval_tokens / max(interval_time, 1e-9),
                       elapsed_s=elapsed)
        running["loss_sum"], running["loss_count"] = 0.0, 0
        interval_time, interval_tokens = 0.0, 0
        bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{entry['lr']:.2e}",
                        tok_s=f"{entry['tokens_per_s']:,.0f}")

    def validate() -> None:
        train_loss = running["epoch_sum"] / max(1, running["epoch_count"])
        train_loss = _all_reduce([train_loss], dist_info, device)[0] / dist_info.world_size
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
        running["epoch_sum"], running["epoch_count"] = 0.0, 0

    def checkpoint() -> None:
        nonlocal last_good
        rng = _rng_state(generator, dist_info)  # a collective under DDP: every rank calls it
        if out_dir is None:
            return
        save_checkpoint(
            ckpt_file, model=raw_model, optimizer=optimizer, scaler=scaler, step=step,
            tokens=tokens_seen, model_config=raw_model.config, train_config=config,
            tokenizer=tokenizer, rng=rng,
            extra={"elapsed_s": elapsed, "running": dict(running), "data": data_info or {},
                   "last": history[-4:], "world_size": dist_info.world_size})
        last_good = step

    bar = progress(total=config.max_steps, initial=step, desc="training", unit="step",
                   **({} if dist_info.is_main else {"disable": True}))
    at_boundary = True  # model, optimiser, generator and step counter agree
    try:
        with _StopRequest() as stop:
            while step < config.max_steps:
                at_boundary = False
                started = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, config)
                x, y = get_batch(train_data, config.batch_size, context_length, generator,
                                 device)  # (B, T) each
                loss = train_step(model, optimizer, x, y, config.grad_clip, scaler=scaler,
                                  precision=precision)
                step += 1
                tokens_seen += tokens_per_step
                seconds = time.perf_counter() - started
                elapsed += seconds
                interval_time += seconds
                interval_tokens += tokens_per_step
                # Every rank must agree to stop (a diverged loss, Ctrl-C) at the same step.
                diverged = _all_reduce([float(not math.isfinite(loss))], dist_info, device,
                                       op="max")[0]
                if diverged:
                    kept = (f"the last good checkpoint, {ckpt_file} (step {last_good}), is kept"
                            if last_good is not None else "no checkpoint had been written")
                    raise TrainingDiverged(
                        f"the training loss became {loss} at step {step}; stopped: {kept}. "
                        "Try a lower learning rate (lr) or a smaller grad_clip.")
                running["loss_sum"] += loss
                running["loss_count"] += 1
                running["epoch_sum"] += loss
                running["epoch_count"] += 1
                bar.update(1)
                if step % config.log_interval == 0 or step == config.max_steps:
                    log_train()
                evaluate_now = step % config.eval_interval == 0 or step == config.max_steps
                if evaluate_now:
                    validate()
                if evaluate_now or step % config.checkpoint_interval == 0:
                    checkpoint()
                if evaluate_now and out_dir is not None:
                    _plot(out_dir, history)
                at_boundary = True
                if _all_reduce([float(stop.requested)], dist_info, device, op="max")[0]:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        # Save only a consistent state; an interrupt inside a step keeps the last checkpoint.
        if at_boundary and last_good != step and config.out_dir:
            checkpoint()
        where = (f"checkpoint {ckpt_file} holds step {last_good}; continue with resume=True "
                 "(nanolm train --resume)" if last_good is not None else "nothing was saved")
        _say(dist_info, f"\ninterrupted at step {step}: {where}")
        raise
    finally:
        bar.close()
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
        generator.manual_seed(config.seed + dist_info.rank + 1_000_003 * state["step"])
        _say(dist_info, f"resume: {ckpt_file} was written by a job of another size; "
             "batches are drawn afresh from here")
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
    "TrainingDiverged", "setup_distributed",
]
