"""Seeing what PyTorch really runs: operation recorders, peak memory, SDPA's backends.

Lessons 04 and 05 and ``nanolm bench attention`` share these, so that "which kernel ran" and
"how much memory it took" are measured one way everywhere.

* :class:`AtenOps` records the aten operations that reach the dispatcher (a
  ``TorchDispatchMode``): one fused op, or the pieces of a decomposition.
* :class:`TorchCalls` records the ``torch`` functions called from Python (a
  ``TorchFunctionMode``), e.g. whether ``F.scaled_dot_product_attention`` was called at all.
* :func:`profiled_ops` lists every aten op the profiler saw, nested ones included: what a
  C++ op such as ``_native_multi_head_attention`` runs inside.
* :func:`peak_memory`: the most memory held at once during a call.
* :func:`sdpa_backend_table`: for each ``SDPBackend`` and each condition (dtype, head size,
  mask, dropout), whether the installed torch runs it, and if not, the reason it gives.
"""

from __future__ import annotations

import gc
import os
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

MEMORY_METHOD = {
    "cpu": "torch.profiler memory records (profile_memory=True), replayed in time order",
    "cuda": "torch.cuda.max_memory_allocated above the memory held before the call",
}


class AtenOps(TorchDispatchMode):
    """``with AtenOps() as ops: ...`` records the name of each aten op run, in order."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


class TorchCalls(TorchFunctionMode):
    """``with TorchCalls() as calls: ...`` records the name of each torch function called."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", repr(func)))
        return func(*args, **(kwargs or {}))


def _quiet_profiler() -> None:
    os.environ.setdefault("KINETO_LOG_LEVEL", "99")  # else each profile prints to stderr


def profiled_ops(fn, inside: str | None = None) -> list[str]:
    """The aten ops (nested ones included) that ``fn()`` runs, each once, in first-seen order;
    allocation and view bookkeeping (empty, view, as_strided, ...) left out. With ``inside``
    (an op name such as ``"aten::_native_multi_head_attention"``), only the ops run within
    that op: what a C++ operation does under the hood."""
    from torch.profiler import ProfilerActivity, profile

    _quiet_profiler()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.events()
    if inside is not None:
        events = [child for event in events if event.name == inside
                  for child in _descendants(event)]
    skip = {"aten::empty", "aten::view", "aten::as_strided", "aten::empty_strided",
            "aten::resolve_conj", "aten::detach", "aten::lift_fresh"}
    names = (event.name for event in events)
    return [n for n in dict.fromkeys(names) if n.startswith("aten::") and n not in skip]


def _descendants(event) -> list:
    found = []
    for child in event.cpu_children:
        found.append(child)
        found.extend(_descendants(child))
    return found


def peak_memory(fn, device: str = "cpu", setup=None) -> int:
    """Bytes of the most memory held at once while ``fn()`` runs, beyond what was held before
    (inputs are not counted; outputs, temporaries and a fused kernel's buffers are).

    On CUDA from ``torch.cuda.max_memory_allocated``. On the CPU torch keeps no such counter
    (and tracemalloc does not see its allocator), so the allocations and frees that
    ``torch.profiler`` records (``profile_memory=True``) are replayed in time order.
    ``setup()``, if given, runs first, unmeasured (e.g. dropping old gradients: the profiler
    cannot replay the free of a block allocated before it started).
    """
    if setup is not None:
        setup()
    gc.collect()  # garbage from before must not be freed while the profiler listens
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    _quiet_profiler()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    held = peak = 0
    for record in sorted(records, key=lambda e: e.start_ns()):
        held += record.nbytes()  # negative for a free
        peak = max(peak, held)
    return peak


# --------------------------------------------------------------------------- SDPA backends

def sdpa_backends() -> list:
    """The selectable backends of the installed torch (``SDPBackend`` without ``ERROR``)."""
    from torch.nn.attention import SDPBackend

    return [b for b in SDPBackend.__members__.values() if b.name != "ERROR"]


@dataclass
class SdpaRun:
    backend: str
    ops: list[str]  # the aten ops that ran (empty when it could not run)
    error: str  # "" when it ran; else the error, then the reasons torch warned about


def _reason(text: str) -> str:
    text = text.split(" (Triggered internally")[0].strip()
    return " ".join(text.split())


def run_with_backend(backend, q, k, v, **sdpa_kwargs) -> SdpaRun:
    """Run ``F.scaled_dot_product_attention`` allowing only ``backend``; what ran, or why not.

    torch states why a kernel cannot serve a call as warnings ("Flash attention kernel not
    used because: ...") followed by a RuntimeError; both are caught and returned as text.
    """
    from torch.nn.attention import sdpa_kernel

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with sdpa_kernel(backend), AtenOps() as recorder:
                F.scaled_dot_product_attention(q, k, v, **sdpa_kwargs)
        except RuntimeError as error:
            reasons = [_reason(str(w.message)) for w in caught]
            reasons = [r for r in reasons if r and not r.endswith("because:")]
            text = _reason(str(error).split("\n")[0])
            return SdpaRun(backend.name, [], "; ".join([text] + reasons))
    return SdpaRun(backend.name, recorder.ops, "")


def _conditions(device: str) -> list[tuple[str, dict]]:
    """(label, case) pairs; a case changes one thing from fp32, D = 64, is_causal=True."""
    cases = [("float32, D=64, is_causal", {}),
             ("bfloat16", {"dtype": torch.bfloat16}),
             ("float16", {"dtype": torch.float16}),
             ("head size D=256", {"head_dim": 256}),
             ("head size D=512", {"head_dim": 512}),
             ("head size D=36 (not x8)", {"head_dim": 36}),
             ("boolean attn_mask", {"mask": "bool"}),
             ("no mask", {"mask": None}),
             ("dropout_p=0.1", {"dropout_p": 0.1})]
    if device == "cuda":
        cases.insert(3, ("bfloat16, boolean attn_mask", {"dtype": torch.bfloat16, "mask": "bool"}))
    return cases


def _probe(backend, device: str, dtype=torch.float32, head_dim=64, mask="causal",
           dropout_p=0.0, T=32) -> SdpaRun:
    generator = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(1, 2, T, head_dim, device=device, dtype=dtype, generator=generator)
               for _ in range(3))
    kwargs = {"dropout_p": dropout_p}
    if mask == "causal":
        kwargs["is_causal"] = True
    elif mask == "bool":
        kwargs["attn_mask"] = torch.ones(T, T, dtype=torch.bool, device=device).tril()
    return run_with_backend(backend, q, k, v, **kwargs)


def sdpa_backend_table(device: str = "cpu") -> list[dict]:
    """One row per condition: for each backend, the fused aten op that ran, ``"math"`` for the
    decomposed math path, or ``"no: "`` and the reason torch gave."""
    rows = []
    for label, case in _conditions(device):
        row = {"condition": label}
        for backend in sdpa_backends():
            run = _probe(backend, device, **case)
            fused = [op for op in run.ops if "scaled_dot_product" in op]
            row[backend.name] = (fused[0].removeprefix("aten.").removesuffix(".default")
                                 if fused else "math" if run.ops else "no: " + run.error)
        rows.append(row)
    return rows


def format_backend_table(rows: list[dict]) -> str:
    """The rows of :func:`sdpa_backend_table` as a grid; reasons as numbered notes below."""
    notes: list[str] = []

    def cell(value: str) -> str:
        if value.startswith("no: "):
            reason = value.removeprefix("no: ")
            if reason not in notes:
                notes.append(reason)
            return f"no [{notes.index(reason) + 1}]"
        return value.removeprefix("_scaled_dot_product_")

    names = [k for k in rows[0] if k != "condition"] if rows else []
    grid = [["condition"] + [n.removesuffix("_ATTENTION") for n in names]] + [[r["condition"]] + [cell(r[n]) for n in names] for r in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(grid[0]))]
    lines = ["  ".join(text.ljust(w) for text, w in zip(line, widths)).rstrip() for line in grid]
    lines.insert(1, "-" * len(lines[0]))
    lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(lines)
