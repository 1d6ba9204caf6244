"""Training speed: tokens/s, model FLOPs per token, and the fraction of the machine's matmul
ceiling reached (MFU), with the projected time of the reference run on this device.

The ceiling is :func:`~nanolm_lib.lab.benchmarks.matmul_ceiling` (a large square matrix product in
the step's own precision: bf16 for a bf16 step, fp32 with TF32 as training sets it for an
fp32 step) measured in the same run, just before and after every timed step, so that the
ratio holds even when other processes share the machine. On a CPU the ratio is also reported in CPU
time (FLOPs per second of this process's CPU time), which other processes disturb less.
"""

from __future__ import annotations

import statistics
import time

import torch

from nanolm_lib.course.modern import build_model, training_flops_per_token
from nanolm_lib.course.train import make_optimizer, resolve_precision, train_step
from nanolm_lib.lab.benchmarks import machine_info, matmul_ceiling
from nanolm_lib.lab.presets import model_config as preset_model
from nanolm_lib.lab.presets import train_preset
from nanolm_lib.lab.tables import format_table, reference_tokens
from nanolm_lib.lab.trainer import enable_tf32, keep_freed_memory
from nanolm_lib.utils import pick_device, synchronize

REFERENCE_TOKENS = reference_tokens()  # 2 epochs x 28,000 steps x 64 x 128


def _timed(fn, device: str) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call of ``fn``."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


CEILING_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def ceiling_dtype(precision: str) -> torch.dtype:
    """The matmul dtype a step of ``precision`` runs its products in (autocast's choice)."""
    return CEILING_DTYPES[precision]


def _cpu_time_ceiling(n: int, dtype=torch.float32) -> float:
    """FLOPs per second of process CPU time of an n x n matmul on the CPU (median of 3)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    return 2 * n**3 / statistics.median(_timed(lambda: a @ b, "cpu")[1] for _ in range(3))


def _ceiling(device: str, n: int, dtype=torch.float32) -> tuple[float, float | None]:
    """The matmul ceiling now: FLOP/s in wall time, and per CPU second on a CPU."""
    wall = matmul_ceiling(device, n, dtype=dtype, repeat=3)
    return wall, _cpu_time_ceiling(n, dtype) if device == "cpu" else None


def measure(preset: str, batch_size: int | None = None, steps: int = 3, device: str = "cpu",
            compile: bool = False, ceiling_n: int = 2048, precision: str | None = None) -> dict:
    """Time ``steps`` training steps of the model preset ``preset`` (after one warm-up step),
    in the preset's precision unless ``precision`` is given."""

    if device == "cpu":
        keep_freed_memory()  # as train() does
    enable_tf32(device)  # as train() does: fp32 products on TF32 tensor cores

    model_config = preset_model(preset)
    config = train_preset(preset, **({"batch_size": batch_size} if batch_size else {}))
    torch.manual_seed(0)
    model = build_model(model_config).to(device)
    optimizer = make_optimizer(model, config, device)
    precision = resolve_precision(precision or config.precision, device)
    dtype = ceiling_dtype(precision)
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=precision == "fp16")
    if compile:
        model = torch.compile(model)
    generator = torch.Generator().manual_seed(0)
    shape = (config.batch_size, model_config.context_length)
    x = torch.randint(model_config.vocab_size, shape, generator=generator).to(device)
    y = torch.randint(model_config.vocab_size, shape, generator=generator).to(device)

    def step():
        train_step(model, optimizer, x, y, config.grad_clip, scaler=scaler, precision=precision)

    step()  # warm-up: allocations, kernel choice, compilation
    per_token = training_flops_per_token(model_config)
    tokens = config.batch_size * model_config.context_length
    walls, cpus, mfu_wall, mfu_cpu, ceilings = [], [], [], [], []
    before = _ceiling(device, ceiling_n, dtype)
    for _ in range(steps):
        wall, cpu = _timed(step, device)
        after = _ceiling(device, ceiling_n, dtype)
        ceiling_wall = (before[0] + after[0]) / 2  # the machine as it was around this step
        walls.append(wall)
        cpus.append(cpu)
        ceilings.append(ceiling_wall)
        mfu_wall.append(tokens * per_token / wall / ceiling_wall)
        if device == "cpu":
            mfu_cpu.append(tokens * per_token / cpu / ((before[1] + after[1]) / 2))
        before = after
    wall = statistics.median(walls)
    tokens_per_s = tokens / wall
    result = {
        "preset": preset, "batch_size": config.batch_size,
        "context_length": model_config.context_length, "precision": precision,
        "compile": compile, "parameters": sum(p.numel() for p in model.parameters()),
        "step_s": wall, "tokens_per_s": tokens_per_s, "flops_per_token": per_token,
        "achieved_flops": tokens_per_s * per_token,
        "ceiling_flops": statistics.median(ceilings),
        "ceiling_dtype": str(dtype).removeprefix("torch."),
        "mfu": statistics.median(mfu_wall),
        "mfu_all_steps": mfu_wall,
        "reference_run_hours": REFERENCE_TOKENS / tokens_per_s / 3600,
    }
    if device == "cpu":  # process CPU time: less disturbed by other processes on the machine
        result["mfu_cpu_time"] = statistics.median(mfu_cpu)
    return result


def run(quick: bool = False) -> dict:
    """Print and return the training-speed table: the reference model, and the CPU preset on
    a CPU (``quick``: the smoke preset only, seconds)."""

    device = pick_device()
    if quick:
        plans = [("smoke", None, 2, 512)]
    elif device == "cpu":
        plans = [("seed-3090", 64, 3, 2048), ("cpu", None, 5, 2048)]
    else:
        plans = [("seed-3090", 64, 10, 8192)]
    rows = [measure(preset, batch, steps, device, ceiling_n=n) for preset, batch, steps, n in plans]
    columns = ["preset", "batch_size", "parameters", "precision", "step_s", "tokens_per_s",
               "flops_per_token", "achieved_flops", "ceiling_dtype", "ceiling_flops", "mfu"]
    if device == "cpu":
        columns.append("mfu_cpu_time")
    columns.append("reference_run_hours")
    print(format_table(rows, columns))
    print(f"mfu = tokens/s x FLOPs per token / measured matmul FLOP/s in the step's precision; "
          f"reference run = {REFERENCE_TOKENS:,} tokens")
    return {"device": device, "machine": machine_info(device), "rows": rows,
            "reference_tokens": REFERENCE_TOKENS,
            "ceiling_matmul": "square matmul in the step's precision (ceiling_dtype), measured "
                              "around every timed step"}


__all__ = ["run", "measure", "REFERENCE_TOKENS", "matmul_ceiling", "ceiling_dtype"]
