"""Attention benchmark (lesson 04): naive vs fused (SDPA), FlashAttention written in PyTorch,
and the native inference fast path.

Two tables, on the CPU and, when present, on CUDA:

* core attention, q, k, v (B, H, T, D) -> out: the naive formula (``attention`` with
  ``causal_mask``) against ``fused_attention``, forward alone (no autograd graph) and
  forward + backward, time and peak memory, over T = 64 .. 1,024; the forward also times
  ``flash_attention`` (lesson 04's exercise: key tiles and an online softmax in PyTorch);
* the whole attention module in inference, x (B, T, C) -> y: ``MultiHeadAttention`` with
  impl "naive" and "sdpa" against ``native_mha_inference`` (same weights).

The headline is B=64, H=8, D=96 (C=768, the reference model's attention) at T=128. The sweep
over T uses B=8 on the CPU (B=64 at T=1,024 would need tens of GB and minutes per call for
the naive path) and B=64 on CUDA.

Peak memory is the most memory held at any point during the call beyond what existed before
it (inputs are not counted, outputs and gradients are), measured by
:func:`nanolm_lib.lab.profiling.peak_memory` as lesson 04 measures it; timing runs separately,
without the profiler. Wall times on a shared machine are noisy: the
implementations of one comparison are timed in turns (5 rounds, median each), and the
ratios within one run are what to compare.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nanolm_lib.course.attention import (
    MultiHeadAttention,
    attention,
    causal_mask,
    flash_attention,
    fused_attention,
    native_mha_inference,
)
from nanolm_lib.lab.benchmarks import (
    interleaved_times,
    machine_info,
    torch_threads,
)
from nanolm_lib.lab.profiling import MEMORY_METHOD, peak_memory
from nanolm_lib.lab.tables import format_table
from nanolm_lib.utils import progress

HEADLINE = {"batch": 64, "heads": 8, "head_dim": 96, "T": 128}
SWEEP_T = (64, 128, 256, 512, 1024)
COLORS = {"naive": "tab:red", "fused": "tab:blue", "sdpa": "tab:blue", "native": "tab:green",
          "flash": "tab:purple"}
LINESTYLES = {"forward": "-", "forward+backward": "--", "inference": ":"}
def _core_calls(impl: str, mode: str, batch: int, heads: int, T: int, head_dim: int,
                device: str, dtype: torch.dtype):
    """``(call, measured, setup)`` for one core-attention case: ``call`` is timed; ``measured``
    (after ``setup``) is what peak memory is taken of."""
    generator = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(batch, heads, T, head_dim, generator=generator, device=device, dtype=dtype)
               for _ in range(3))
    mask = causal_mask(T, device)

    def forward(q, k, v):
        if impl == "flash":
            return flash_attention(q, k, v)[0]
        return attention(q, k, v, mask)[0] if impl == "naive" else fused_attention(q, k, v)

    if mode == "forward":
        def call():
            with torch.no_grad():
                forward(q, k, v)

        return call, call, None

    leaves = [t.requires_grad_() for t in (q, k, v)]
    upstream = torch.ones(batch, heads, T, head_dim, device=device, dtype=dtype)

    def drop_gradients():  # a fresh gradient each call, so every call allocates alike
        for leaf in leaves:
            leaf.grad = None

    def backward():
        forward(*leaves).backward(upstream)

    def call():
        drop_gradients()
        backward()

    return call, backward, drop_gradients


def _module_calls(impl: str, batch: int, heads: int, T: int, head_dim: int,
                  device: str, dtype: torch.dtype):
    """``(call, measured, setup)`` for one inference forward of the attention module."""
    d_model = heads * head_dim
    module = MultiHeadAttention(d_model, heads, impl="naive" if impl == "native" else impl)
    module = module.to(device=device, dtype=dtype).eval()
    generator = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(batch, T, d_model, generator=generator, device=device, dtype=dtype)

    def call():
        with torch.inference_mode():
            native_mha_inference(module, x) if impl == "native" else module(x)

    return call, call, None


def _cases(device: str, quick: bool):
    """(batch, T, heads, head_dim, dtype, is_headline) for one device."""
    dtypes = [torch.float32] + ([torch.bfloat16] if device == "cuda" and not quick else [])
    if quick:
        return [(2, T, 2, 16, torch.float32, T == 32) for T in (16, 32)]
    sweep_batch = 64 if device == "cuda" else 8
    h = HEADLINE
    cases = [(h["batch"], h["T"], h["heads"], h["head_dim"], dtype, True) for dtype in dtypes]
    cases += [(sweep_batch, T, h["heads"], h["head_dim"], dtype, False)
              for dtype in dtypes for T in SWEEP_T]
    return cases


def plot(rows: list[dict], path: Path) -> Path:
    """Time and peak memory against T for the sweep rows (one line per device, impl, mode)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    sweep = [r for r in rows if not r["headline"]]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_time, ax_mem = fig.subplots(1, 2)
    series = sorted({(r["device"], r["dtype"], r["op"], r["impl"], r["mode"]) for r in sweep})
    # colour: the implementation; line: forward, forward+backward, or module inference
    for key in series:
        points = sorted((r["T"], r["ms"], r["peak_MB"]) for r in sweep
                        if (r["device"], r["dtype"], r["op"], r["impl"], r["mode"]) == key)
        device, dtype, op, impl, mode = key
        label = f"{device} {dtype} {op} {impl} {mode}"
        style = {"color": COLORS[impl], "linestyle": LINESTYLES[mode],
                 "marker": "o" if device == "cpu" else "s", "label": label}
        Ts = [p[0] for p in points]
        ax_time.plot(Ts, [p[1] for p in points], **style)
        ax_mem.plot(Ts, [p[2] for p in points], **style)
    batch = sweep[0]["B"] if sweep else "?"
    for ax, ylabel in ((ax_time, "time per call (ms)"), (ax_mem, "peak extra memory (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_time.set_title(f"causal attention, B={batch}, H=8, D=96")
    ax_mem.set_title("memory (naive keeps the (T, T) weights)")
    ax_mem.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def run(quick: bool = False, out_dir: str | Path = "bench-results", threads: int | None = None) -> dict:
    """Run the benchmark, print the tables, write the plot to ``out_dir/attention.png``, and
    return the figures (``quick``: tiny sizes, seconds). ``threads`` sets torch's intra-op
    thread count for the run (restored afterwards)."""
    with torch_threads(threads) as used_threads:
        return _run(quick, Path(out_dir), used_threads)


def _run(quick: bool, out_dir: Path, threads: int) -> dict:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rounds = 1 if quick else 5
    plan = []  # one entry per comparison; its implementations are timed in turns
    for device in devices:
        for batch, T, heads, head_dim, dtype, headline in _cases(device, quick):
            for op, mode, impls in (("core", "forward", ("naive", "fused", "flash")),
                                    ("core", "forward+backward", ("naive", "fused")),
                                    ("module", "inference", ("naive", "sdpa", "native"))):
                plan.append((op, mode, impls, batch, T, heads, head_dim, device, dtype, headline))

    rows = []
    for op, mode, impls, batch, T, heads, head_dim, device, dtype, headline in progress(
            plan, desc="attention benchmark"):
        cases = {impl: (_core_calls(impl, mode, batch, heads, T, head_dim, device, dtype)
                        if op == "core" else
                        _module_calls(impl, batch, heads, T, head_dim, device, dtype))
                 for impl in impls}
        seconds = interleaved_times({impl: case[0] for impl, case in cases.items()}, device, rounds)
        for impl, (_, measured, setup) in cases.items():
            peak = peak_memory(measured, device, setup=setup)
            rows.append({"device": device, "dtype": str(dtype).removeprefix("torch."), "op": op,
                         "impl": impl, "mode": mode, "B": batch, "T": T, "H": heads,
                         "D": head_dim, "threads": threads, "ms": seconds[impl] * 1e3,
                         "peak_MB": peak / 1e6,
                         "headline": headline})

    # speed-up against the naive row of the same case
    for row in rows:
        base = next(r for r in rows if r["impl"] == "naive" and all(
            r[key] == row[key] for key in ("device", "dtype", "op", "mode", "B", "T")))
        row["speedup_vs_naive"] = base["ms"] / row["ms"]
        row["memory_vs_naive"] = row["peak_MB"] / base["peak_MB"] if base["peak_MB"] else float("nan")

    columns = ["device", "dtype", "threads", "op", "impl", "mode", "B", "T", "ms", "peak_MB",
               "speedup_vs_naive", "memory_vs_naive"]
    for title, subset in (("headline", [r for r in rows if r["headline"]]),
                          ("sweep", [r for r in rows if not r["headline"]])):
        print(f"-- {title} --")
        print(format_table(subset, columns))

    headline = {}
    for row in rows:
        if row["headline"] and row["impl"] != "naive":
            key = f"{row['device']}/{row['dtype']}/{row['op']}/{row['impl']}/{row['mode']}"
            headline[key] = {"speedup_vs_naive": row["speedup_vs_naive"],
                             "memory_vs_naive": row["memory_vs_naive"]}
    plot_path = plot(rows, out_dir / "attention.png")
    print(f"plot: {plot_path}")
    return {
        "device": devices[-1],
        "devices": devices,
        "machine": machine_info(devices[-1]),
        "quick": quick,
        "threads": threads,
        "headline_case": HEADLINE if not quick else {"batch": 2, "heads": 2, "head_dim": 16, "T": 32},
        "headline": headline,
        "memory_method": {d: MEMORY_METHOD[d] for d in devices},
        "rows": rows,
        "plot": str(plot_path),
    }
