"""The trainer: the loop that runs lesson 06's pieces (:mod:`nanolm_lib.course.train`) for hours,
with checkpoints, metrics, exact resume, Ctrl-C, NaN detection and several GPUs.

Reads top to bottom:
    Distributed, local_share              where a process sits in a torchrun job, its rows
    _StopRequest, rng states              Ctrl-C at a step boundary; generators saved exactly
    BatchStream                           a global batch shared by the processes of a job
    train                                 the loop: progress, metrics, Ctrl-C, NaN
    set_up, _Run                          its set-up (device, precision, DDP) and its moments

What a run writes to its folder, and checkpoints, is :mod:`nanolm_lib.lab.checkpoint`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nanolm_lib.course.data import gather_windows
from nanolm_lib.course.modern import family_of
from nanolm_lib.course.train import (
    TrainConfig,
    evaluate,
    lr_at,
    make_optimizer,
    optimize,
    perplexity,
    resolve_precision,
)
from nanolm_lib.errors import TrainingDiverged, UsageError
from nanolm_lib.lab.checkpoint import (
    RunFolder,
    checkpoint_family,
    checkpoint_state,
    config_dict,
    load_checkpoint,
    read_metrics,
    tokenizer_from_text,
)
from nanolm_lib.utils import pick_device, progress

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
        raise UsageError(f"TrainConfig.batch_size={batch_size}: expected at least one row per "
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
    """Raise UsageError, naming ``name``, unless every id of ``tokens`` is in [0, vocab_size).

    Done once per dataset, so that the training step need not check each batch (reading
    a batch's ids back to the host would make the GPU wait every step).
    """
    if len(tokens) == 0:
        return
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise UsageError(f"{name}: token ids must lie in [0, vocab_size={vocab_size}), found "
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
        return gather_windows(self.tokens, starts[self.rows], self.context_length,
                              self.device)


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
    setup = set_up(config)
    train_data, val_data = _checked_data(model, config, setup, train_tokens, val_tokens)
    folder = RunFolder(config.out_dir, writes=setup.dist.is_main)
    folder.refuse_overwrite(resume, overwrite)
    context_length = model.config.context_length
    model.to(setup.device)
    run = _Run(model, config, setup, folder, tokenizer=tokenizer, callback=callback,
               val_data=val_data, bytes_per_token=bytes_per_token, data_info=data_info or {})
    if resume and run.resume():
        return run.history  # already finished
    folder.start(run.history, model_config=model.config, train_config=config,
                 data_info=run.data_info, tokenizer=run.tokenizer)
    model = _wrapped(model, config, setup)
    batches = BatchStream(train_data, config.batch_size, context_length, run.generator,
                          setup.device, setup.dist)
    loss_scale = share_weight(batches.rows, config.batch_size, setup.dist)
    tokens_per_step = config.batch_size * context_length  # the global batch

    bar = progress(total=config.max_steps, initial=run.step, desc="training", unit="step",
                   **({} if setup.dist.is_main else {"disable": True}))
    at_boundary = True  # model, optimiser, generator and step counter agree
    failed = True
    clock = time.perf_counter()
    try:
        with _StopRequest() as stop:
            while run.step < config.max_steps:
                at_boundary = False
                run.set_lr()
                x, y = batches.next()  # (B, T) each, this process's rows
                run.totals.add(optimize(model, run.optimizer, x, y, config.grad_clip,
                                        scaler=run.scaler, precision=setup.precision,
                                        loss_scale=loss_scale, check_ids=False))
                run.count_step(tokens_per_step)
                bar.update(1)
                log_now, evaluate_now, save_now = run.due()
                # Under DDP every rank must agree to stop, so Ctrl-C is shared at log steps.
                stop_now = stop.requested and not setup.dist.enabled
                at_boundary = True
                if not (log_now or save_now or stop_now):
                    continue
                sums = run.read_losses()  # waits for the GPU: the time so far is training time
                run.add_time(time.perf_counter() - clock)
                if log_now:
                    run.log_train(sums, bar)
                if evaluate_now:
                    run.validate(sums, bar)
                if save_now:
                    run.checkpoint()
                if evaluate_now:
                    folder.plot(run.history)
                if _all_reduce([float(stop.requested)], setup.dist, setup.device, op="max")[0]:
                    raise KeyboardInterrupt
                clock = time.perf_counter()
        failed = False
    except KeyboardInterrupt:
        run.save_on_interrupt(at_boundary)
        raise
    finally:
        bar.close()
        if failed:  # the first error is the one to report; still, leave no write half done
            with contextlib.suppress(Exception):
                folder.join()
    folder.join()
    return run.history


# -------------------------------------------------------------------------------------------
# The run's set-up and its moments


@dataclass
class Setup:
    """Where this process trains: its place in the job, its device and its precision."""

    dist: Distributed
    device: torch.device
    precision: str


def set_up(config: TrainConfig) -> Setup:
    """Join a ``torchrun`` job if there is one; pick the device and the precision."""
    dist_info = setup_distributed(config.device)
    device = torch.device(pick_device(config.device))
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    precision = resolve_precision(config.precision, str(device))
    enable_tf32(device)
    if device.type == "cpu":
        keep_freed_memory()
    return Setup(dist_info, device, precision)


def _checked_data(model, config: TrainConfig, setup: Setup, train_tokens, val_tokens):
    """The token arrays, checked once (length, ids, a batch every process can share), and
    moved to the GPU when they fit (batches are then gathered there)."""
    context_length = model.config.context_length
    if len(train_tokens) <= context_length + 1:
        raise UsageError(f"train_tokens: {len(train_tokens)} tokens, expected more than "
                         f"context_length + 1 = {context_length + 1}")
    check_token_ids(train_tokens, model.config.vocab_size, "train_tokens")
    if val_tokens is not None:
        check_token_ids(val_tokens, model.config.vocab_size, "val_tokens")
    local_share(config.batch_size, setup.dist)  # a batch too small to share fails here
    if _keeps_on_device(train_tokens, setup.device):
        train_tokens = _to_device(train_tokens, setup.device)
        val_tokens = _to_device(val_tokens, setup.device) if val_tokens is not None else None
    return train_tokens, val_tokens


def _wrapped(model, config: TrainConfig, setup: Setup):
    """The model as the loop calls it: compiled and/or DistributedDataParallel, in train mode."""
    if config.compile:
        model = torch.compile(model)
    if setup.dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            model, device_ids=[setup.device.index] if setup.device.type == "cuda" else None)
    model.train()
    return model


class _Run:
    """One training run's optimiser, counters and records; :func:`train` drives it step by
    step, and its methods are the moments of the loop (a step, a log record, an evaluation,
    a checkpoint, Ctrl-C)."""

    def __init__(self, model, config: TrainConfig, setup: Setup, folder: RunFolder, *,
                 tokenizer, callback, val_data, bytes_per_token, data_info: dict):
        self.model = model  # what checkpoints hold, without compile's or DDP's wrappers
        self.config, self.setup, self.folder = config, setup, folder
        self.tokenizer, self.callback = tokenizer, callback
        self.val_data, self.bytes_per_token = val_data, bytes_per_token
        self.data_info = data_info
        self.optimizer = make_optimizer(model, config, setup.device.type)
        self.scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.precision == "fp16")
        self.generator = torch.Generator().manual_seed(config.seed)  # the same on every rank
        self.step, self.tokens_seen, self.elapsed = 0, 0, 0.0
        self.history: list[dict] = []
        self.totals = _LossTotals(setup.device, {})
        self.last_read = 0  # the step up to which the losses were read and found finite
        self.interval_time, self.interval_tokens = 0.0, 0

    def resume(self) -> bool:
        """Continue from the folder's checkpoint, if it has one; True when it is finished."""
        folder, config, dist_info = self.folder, self.config, self.setup.dist
        if not folder.has_checkpoint():
            if folder.checkpoint_file is not None:
                _say(dist_info, f"no checkpoint in {folder.path} yet: starting a new run")
            return False
        state = _restore(folder.checkpoint_file, self.model, self.optimizer, self.scaler,
                         self.generator, config, dist_info)
        self.step, self.tokens_seen = state["step"], state["tokens"]
        self.elapsed = state["extra"].get("elapsed_s", 0.0)
        self.totals = _LossTotals(self.setup.device, state["extra"].get("running", {}))
        self.history = [r for r in read_metrics(folder.path) if r["step"] <= self.step]
        self.last_read = self.step
        folder.last_saved = self.step if self.step > 0 else None
        if self.tokenizer is None and state.get("tokenizer"):
            self.tokenizer = tokenizer_from_text(state["tokenizer"])
        if self.step >= config.max_steps:
            _say(dist_info, f"{folder.path}: already finished ({self.step} of "
                 f"{config.max_steps} steps); nothing to do")
            return True
        _say(dist_info, f"resuming {folder.path} at step {self.step} of {config.max_steps}")
        return False

    def set_lr(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.config)

    def count_step(self, tokens: int) -> None:
        self.step += 1
        self.tokens_seen += tokens
        self.interval_tokens += tokens

    def due(self) -> tuple[bool, bool, bool]:
        """Whether this step logs, evaluates, saves (the last step does all three)."""
        config, step = self.config, self.step
        last = step == config.max_steps
        log_now = step % config.log_interval == 0 or last
        evaluate_now = step % config.eval_interval == 0 or last
        return log_now, evaluate_now, evaluate_now or step % config.checkpoint_interval == 0

    def add_time(self, seconds: float) -> None:
        self.elapsed += seconds
        self.interval_time += seconds

    def read_losses(self) -> dict:
        """Read the loss sums back; raise TrainingDiverged if a loss since the last read was
        NaN or infinite (every rank agrees, so all stop at the same step)."""
        sums = self.totals.read()
        bad = not (math.isfinite(sums["loss_sum"]) and math.isfinite(sums["epoch_sum"]))
        if _all_reduce([float(bad)], self.setup.dist, self.setup.device, op="max")[0]:
            last_saved = self.folder.last_saved
            kept = (f"the last good checkpoint, {self.folder.checkpoint_file} (step "
                    f"{last_saved}), is kept" if last_saved is not None
                    else "no checkpoint had been written")
            value = sums["loss_sum"] if not math.isfinite(sums["loss_sum"]) else sums["epoch_sum"]
            when = (f"at step {self.step}" if self.step == self.last_read + 1
                    else f"between steps {self.last_read + 1} and {self.step}")
            raise TrainingDiverged(
                f"the training loss became {value} {when}; stopped: {kept}. "
                "Try a lower learning rate (lr) or a smaller grad_clip.")
        self.last_read = self.step
        return sums

    def record(self, split: str, **values) -> dict:
        entry = {"step": self.step, "split": split, **values,
                 "lr": lr_at(self.step - 1, self.config), "tokens": self.tokens_seen}
        if self.config.steps_per_epoch:
            entry["epoch"] = self.step / self.config.steps_per_epoch
        self.history.append(entry)
        self.folder.append(entry)
        if self.callback is not None:
            self.callback(entry)
        return entry

    # The sums are reset before a record is written: a callback that raises (Ctrl-C in a
    # notebook) then leaves the state that the checkpoint on the way out saves consistent.
    def log_train(self, sums: dict, bar) -> None:
        dist_info = self.setup.dist
        mean_loss = sums["loss_sum"] / sums["loss_count"]
        mean_loss = _all_reduce([mean_loss], dist_info, self.setup.device)[0] / dist_info.world_size
        tokens_per_s = self.interval_tokens / max(self.interval_time, 1e-9)
        self.totals.reset_interval()
        self.interval_time, self.interval_tokens = 0.0, 0
        bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr_at(self.step - 1, self.config):.2e}",
                        tok_s=f"{tokens_per_s:,.0f}")
        self.record("train", loss=mean_loss, perplexity=perplexity(mean_loss),
                    tokens_per_s=tokens_per_s, elapsed_s=self.elapsed)

    def validate(self, sums: dict, bar) -> None:
        dist_info, config = self.setup.dist, self.config
        train_loss = sums["epoch_sum"] / max(1, sums["epoch_count"])
        train_loss = _all_reduce([train_loss], dist_info, self.setup.device)[0] / dist_info.world_size
        self.totals.reset_epoch()
        if self.val_data is None or not dist_info.is_main:
            return
        result = evaluate(self.model, self.val_data, self.model.config.context_length,
                          config.eval_batch_size, config.eval_batches,
                          bytes_per_token=self.bytes_per_token, precision=self.setup.precision)
        extra = {"bpb": result["bpb"]} if "bpb" in result else {}
        entry = self.record("validation", loss=result["loss"], perplexity=result["perplexity"],
                            **extra, train_loss=train_loss,
                            train_perplexity=perplexity(train_loss),
                            tokens_per_s=self.tokens_seen / max(self.elapsed, 1e-9),
                            elapsed_s=self.elapsed)
        bar.write(describe(entry))

    def checkpoint(self) -> None:
        sums = self.read_losses()  # a collective under DDP: every rank reads, rank 0 writes
        if not self.folder.writes:
            return
        state = checkpoint_state(
            model=self.model, optimizer=self.optimizer, scaler=self.scaler, step=self.step,
            tokens=self.tokens_seen, model_config=self.model.config, train_config=self.config,
            tokenizer=self.tokenizer, rng=_rng_state(self.generator),
            extra={"elapsed_s": self.elapsed, "running": sums, "data": self.data_info,
                   "last": self.history[-4:], "world_size": self.setup.dist.world_size})
        self.folder.save(state, self.step)

    def save_on_interrupt(self, at_boundary: bool) -> None:
        """Ctrl-C: save only a consistent state (an interrupt inside a step keeps the last
        checkpoint), wait for the write, and say where the run can continue from."""
        folder = self.folder
        if at_boundary and folder.last_saved != self.step and folder.path is not None:
            self.checkpoint()
        folder.join()
        where = (f"checkpoint {folder.checkpoint_file} holds step {folder.last_saved}; "
                 "continue with resume=True (nanolm train --resume)"
                 if folder.last_saved is not None else "nothing was saved")
        _say(self.setup.dist, f"\ninterrupted at step {self.step}: {where}")



def _restore(ckpt_file: Path, model, optimizer, scaler, generator, config: TrainConfig,
             dist_info: Distributed) -> dict:
    """Load model, optimiser, scaler and RNG states from ``ckpt_file``; return the state."""

    state = load_checkpoint(ckpt_file)
    checkpoint_family(state, family_of(model.config), ckpt_file)
    if state["model_config"] != config_dict(model.config):
        raise UsageError(f"resume: {ckpt_file} holds a model with config "
                         f"{state['model_config']}, not {config_dict(model.config)}; "
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


__all__ = [
    "train", "setup_distributed", "Distributed", "check_token_ids", "local_share",
    "share_weight", "record_count", "BatchStream", "fitting_cuda_states", "keep_freed_memory",
    "enable_tf32", "set_up", "Setup", "describe",
]
