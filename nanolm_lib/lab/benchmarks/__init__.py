"""Benchmarks behind ``nanolm bench``: each prints a table and returns a results dict.

Each submodule (``tokenizer``, ``attention``, ``train``, ``generate``) exposes
``run(quick: bool = False) -> dict``; ``quick`` shrinks it to seconds, for tests. The CLI
writes the dict with :func:`write_results`. Speed is reported as ratios measured in one run,
or as a fraction of a ceiling measured in the same run, never checked by timed tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

import torch

from nanolm_lib.utils import time_fn

BENCHMARKS = ("tokenizer", "attention", "train", "generate")


def machine_info(device: str = "cpu") -> dict:
    """What the figures were measured on."""
    info = {
        "device": device,
        "device_name": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name()
    return info


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with torch's intra-op thread count set to ``threads`` (None: unchanged)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def interleaved_times(calls: dict, device: str = "cpu", rounds: int = 3,
                      warmup: bool = True) -> dict:
    """Median seconds of each function in ``calls``, timed in turns (a, b, c, a, b, c, ...),
    so that a change in the machine's load falls on all of them alike. ``warmup``: one
    untimed call of each first."""
    times = {name: [] for name in calls}
    for fn in calls.values() if warmup else ():
        time_fn(fn, device=device, warmup=0, repeat=1)
    for _ in range(rounds):
        for name, fn in calls.items():
            times[name].append(time_fn(fn, device=device, warmup=0, repeat=1))
    return {name: statistics.median(values) for name, values in times.items()}


def matmul_ceiling(device: str = "cpu", n: int = 2048, dtype=torch.float32,
                   repeat: int = 5) -> float:
    """Measured FLOP/s of a large square matrix product: the machine's practical ceiling."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = time_fn(lambda: a @ b, device=device, warmup=2, repeat=repeat)
    return 2 * n**3 / seconds


def write_results(name: str, results: dict, out_dir: str | Path = "bench-results") -> Path:
    """Write ``results`` (plus machine info when missing) to ``out_dir/<name>.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"benchmark": name, "machine": machine_info(results.get("device", "cpu")), **results}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path
