"""Small shared helpers: device and run-size choice, progress bars, project folders, timing.

Every module of nanolm_lib takes these decisions here, so that "smoke mode", "which device"
and "where do runs go" mean the same thing in the notebooks, the CLI and the tests.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from nanolm_lib.errors import UsageError

SIZES = ("smoke", "cpu", "full")


def pick_device(preferred: str | None = None) -> str:
    """Return the device to use: ``preferred`` if given, else cuda, then mps, then cpu."""
    if preferred:
        return preferred
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


# --------------------------------------------------------------------------------------
# A kit rebuilt under a running kernel: the kernel keeps the library it imported
# (`autograde student-kit` writes STAGE.json beside the kit's nanolm_lib at each build)

KIT_STAGE = Path(__file__).resolve().parent.parent / "STAGE.json"  # a kit's stage file


def kit_stage() -> dict | None:
    """The kit's stage (STAGE.json: week, lessons, built_ns), None outside a kit."""
    try:
        stage = json.loads(KIT_STAGE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stage if isinstance(stage, dict) else None


def _kit_build() -> int | None:
    """The kit's build stamp, None outside a kit."""
    return (kit_stage() or {}).get("built_ns")


_BUILD_AT_IMPORT = _kit_build()
_restart_said = False


def kit_rebuilt_since_import() -> str | None:
    """A message when the kit was rebuilt (a new stage, a corrected library) after this
    process imported ``nanolm_lib``, once per process; else None."""
    global _restart_said
    if _restart_said or _kit_build() == _BUILD_AT_IMPORT:
        return None
    _restart_said = True
    return ("this kit was rebuilt after this kernel started, and the kernel still runs the old "
            "nanolm_lib: restart the kernel (Kernel > Restart Kernel) and run the set-up cell "
            "again")


def is_smoke() -> bool:
    """True when notebooks and commands should run at their smallest size.

    Set by ``NANOLM_SMOKE=1``, by ``NANOLM_SIZE=smoke``, or by nbgrader executing the notebook
    (it sets ``NBGRADER_EXECUTION`` in the kernel).
    """
    # every lesson's set-up cell calls this: where a kit rebuilt under a running kernel says so
    stale = kit_rebuilt_since_import()
    if stale:
        print(f"NOTE: {stale}", file=sys.stderr)
    return run_size() == "smoke"


def run_size(device: str | None = None) -> str:
    """The size a notebook or command runs at: ``"smoke"``, ``"cpu"`` or ``"full"``.

    ``NANOLM_SIZE`` overrides; otherwise smoke mode (see :func:`is_smoke`) wins, and then the
    device decides: ``"full"`` (the seed-3090 recipe) on CUDA, ``"cpu"`` elsewhere.
    """
    size = os.environ.get("NANOLM_SIZE", "").strip().lower()
    if size:
        if size not in SIZES:
            raise UsageError(f"NANOLM_SIZE={size!r}: expected one of {', '.join(SIZES)}")
        return size
    if os.environ.get("NANOLM_SMOKE", "").strip() not in ("", "0") or os.environ.get(
        "NBGRADER_EXECUTION"
    ):
        return "smoke"
    return "full" if pick_device(device) == "cuda" else "cpu"


def set_torch_threads(size: str | None = None) -> int:
    """One torch thread at smoke size (``size`` defaults to :func:`run_size`); returns the
    number of threads torch uses now.

    Smoke-size tensors are so small that a second thread mostly waits for the first, and on a
    busy machine the threads fight for the cores: 40 smoke training steps took 4.5 s on one
    thread and 24.7 s on two while other jobs ran (``tests/`` does the same in conftest.py).
    Other sizes keep torch's default.
    """
    if (size or run_size()) == "smoke":
        torch.set_num_threads(1)
    return torch.get_num_threads()


def progress_disabled() -> bool:
    """Progress bars are off under ``NANOLM_PROGRESS=0`` and while nbgrader grades.

    tqdm writes to stderr, and nbgrader scores a test cell that writes to stderr 0.
    """
    return os.environ.get("NANOLM_PROGRESS", "1") == "0" or bool(
        os.environ.get("NBGRADER_EXECUTION")
    )


def progress(iterable=None, **kwargs):
    """A notebook-aware tqdm bar (``tqdm.auto``); honours :func:`progress_disabled`."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", progress_disabled())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def project_root() -> Path:
    """The repository root (the folder holding ``nanolm_lib``)."""
    return Path(__file__).resolve().parent.parent


def working_copy_root(start: Path | None = None) -> Path | None:
    """The folder of this working copy that holds ``lessons/`` or ``workspace/``: the project
    root, or a student kit's root. Searched from ``start`` (default: the current folder)
    upwards, so a notebook running in ``workspace/07_sampling/`` finds the kit's root.
    None when no folder on the way up holds either."""
    start = Path.cwd() if start is None else Path(start)
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / "lessons").is_dir() or (folder / "workspace").is_dir():
            return folder
    return None


def runs_dir() -> Path:
    """Where run folders go: ``NANOLM_RUNS`` when set; else ``runs/`` in the working copy's
    root (see :func:`working_copy_root`), one place whichever lesson folder a notebook runs
    in, so that lesson 07 finds lesson 06's run and ``make demo``'s; else ``runs/`` in the
    current folder."""
    if os.environ.get("NANOLM_RUNS"):
        return Path(os.environ["NANOLM_RUNS"])
    root = working_copy_root()
    return root / "runs" if root is not None else Path("runs")


def cache_dir() -> Path:
    """Where prepared corpora go: ``NANOLM_CACHE``, else ``~/.cache/nanolm``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nanolm"
    return Path(os.environ.get("NANOLM_CACHE", default))


def run_model(model: torch.nn.Module, idx: torch.Tensor, targets: torch.Tensor | None = None,
              kv_cache: list | None = None, *, check_ids: bool = True):
    """``model(idx, targets, kv_cache=...)``, skipping the per-call vocabulary check (a GPU
    sync) when ``check_ids`` is False and the model offers the switch. Any model with the
    ``(idx, targets) -> (logits, loss)`` interface works: a student's own GPT, which has no
    ``check_ids``, simply keeps its own behaviour."""
    kwargs = {} if kv_cache is None else {"kv_cache": kv_cache}
    if not check_ids and _takes_check_ids(model):
        kwargs["check_ids"] = False
    return model(idx, targets, **kwargs)


def _takes_check_ids(model: torch.nn.Module) -> bool:
    inner = model
    for wrapper in ("_orig_mod", "module", "_orig_mod"):  # compiled, DDP, compiled inside
        inner = getattr(inner, wrapper, inner)
    return _forward_takes_check_ids(type(inner))


@functools.cache  # once per model class, not at every training step or generated token
def _forward_takes_check_ids(model_class: type) -> bool:
    return "check_ids" in inspect.signature(model_class.forward).parameters


def atomic_write(path: Path, write) -> Path:
    """Call ``write(temp_path)``, then rename the temporary file over ``path``: a crash or a
    Ctrl-C never leaves half a file where a whole one was (checkpoints, metrics, tokenizers).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    write(temp)
    os.replace(temp, path)
    return path


# timing: the lessons' measurements and the lab's benchmarks


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work (nothing to wait for elsewhere)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(fn, *, device: str = "cpu", warmup: int = 1, repeat: int = 5,
            min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls.

    Repeats at least ``repeat`` times and until ``min_time`` seconds have been spent.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - started < min_time:
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
