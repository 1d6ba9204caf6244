"""The kernel a submission runs in: its limits, kernelspec, environment and failure messages.

Grading (:mod:`autograde.batch.worker`) and the self-check (:mod:`autograde.student.selfcheck`) both
start the student's code through :func:`prepare_kernel`: a fresh folder tree per run, split in two

* ``sandbox/`` (``work/``: the kernel's cwd, with its own copy of the notebook and the lesson's
  files; ``home``, ``tmp`` and caches): what the kernel may write;
* ``control/``: the sandbox settings, the launcher's status file and the limits report, which
  only the grader reads and writes (the kernel never sees this folder).

The kernel's environment is built here as a dict from an allow-list and travels in the
kernelspec to the launcher (:mod:`autograde.sandbox.launcher`), which applies it with
``--clearenv`` / ``--setenv`` or as the subprocess's whole environment: the grader's own environment (and any
secret in it) never reaches the student's code, and ``os.environ`` is never edited.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from autograde.course import GraderError, safe_copy_tree
from autograde.sandbox.launcher import SandboxSettings, bwrap_path
from autograde.sandbox.preprocessors import is_memory_error

KERNEL_NAME = "nanolm-autograde"
# Passed on from the grader's environment when set: what the lessons' code reads.
PASSED_ON = ("NANOLM_DATA", "NANOLM_SIZE", "NANOLM_SMOKE", "LANG", "LC_ALL", "TZ")


@dataclass
class Limits:
    """Limits on every kernel that runs a submission (all of them for the whole sandbox)."""

    cell_timeout_s: int = 120          # per cell (nbgrader interrupts the kernel)
    notebook_timeout_s: float = 900.0  # wall clock for the whole notebook (kernel is killed)
    memory_mb: int = 4096              # resident memory of all the sandbox's processes
    output_bytes: int = 1_000_000      # output of one cell
    notebook_output_bytes: int = 10_000_000  # output of the whole notebook
    file_mb: int = 256                 # largest file the kernel may write
    max_processes: int = 64            # processes in the sandbox at once
    max_threads: int = 256             # threads of all the sandbox's processes together
    tmp_mb: int = 512                  # /tmp and /dev/shm together (tmpfs: memory)
    disk_mb: int = 1024                # HOME, scratch and the kernel's folder together
    cpus: float = 0.0                  # most cores per sandbox (0: an equal share only)
    use_bwrap: bool = True             # False only with --unsafe-no-isolation

    def __post_init__(self):
        # One spelling per value: the limits are part of every submission's content hash.
        self.cell_timeout_s = int(self.cell_timeout_s)
        self.notebook_timeout_s = float(self.notebook_timeout_s)
        self.memory_mb, self.output_bytes = int(self.memory_mb), int(self.output_bytes)
        self.notebook_output_bytes = int(self.notebook_output_bytes)
        self.file_mb, self.use_bwrap = int(self.file_mb), bool(self.use_bwrap)
        self.max_processes, self.max_threads = int(self.max_processes), int(self.max_threads)
        self.tmp_mb, self.disk_mb, self.cpus = int(self.tmp_mb), int(self.disk_mb), float(self.cpus)


@dataclass
class KernelRun:
    """The folders of one kernel run (see the module docstring)."""

    sandbox: Path     # writable by the kernel
    workdir: Path     # the kernel's cwd, inside ``sandbox``
    control: Path     # the grader's only

    @property
    def limits_report(self) -> Path:
        return self.control / "limits.json"

    @property
    def status_file(self) -> Path:
        return self.control / "kernel-status.json"


def kernel_environment(run: KernelRun, threads: int = 0, execution: str = "") -> dict[str, str]:
    """The kernel's whole environment: offline, quiet on stderr, caches in its own folder.

    nbgrader's NBGRADER_EXECUTION (smoke size) is ``execution`` when given, else the launcher
    takes it from its own environment, where nbgrader sets it while autograding.
    """
    scratch = run.sandbox
    env = {name: os.environ[name] for name in PASSED_ON if os.environ.get(name)}
    env.update({
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        "HOME": str(scratch / "home"),
        "TMPDIR": str(scratch / "tmp"),
        "XDG_CACHE_HOME": str(scratch / "cache"),
        "MPLCONFIGDIR": str(scratch / "mpl"),
        "HF_HOME": str(scratch / "hf"),
        "HF_DATASETS_CACHE": str(scratch / "hf" / "datasets"),
        "TORCH_HOME": str(scratch / "cache" / "torch"),
        "IPYTHONDIR": str(scratch / "ipython"),
        "NANOLM_CACHE": str(scratch / "cache" / "nanolm"),
        "NANOLM_RUNS": str(scratch / "runs"),
        "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "NANOLM_PROGRESS": "0",
        "MPLBACKEND": "Agg",
        "PYTHONWARNINGS": "ignore",
        "TQDM_DISABLE": "1",
        # Grading runs at smoke size on the CPU: the same on every grader's machine.
        "CUDA_VISIBLE_DEVICES": "",
    })
    if execution:
        env["NBGRADER_EXECUTION"] = execution
    if threads:
        env.update({name: str(threads) for name in
                    ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    return env


def prepare_kernel(root: Path, lesson_files: Path | None, notebook: Path | None,
                   limits: Limits, jupyter_dir: Path, threads: int = 0,
                   library_dir: str = "", execution: str = "",
                   extra_env: dict[str, str] | None = None) -> KernelRun:
    """A fresh run under ``root`` (:func:`prepare_run`) and the kernelspec (in
    ``jupyter_dir``) that starts the next kernel in it."""
    run, settings = prepare_run(root, lesson_files, notebook, limits, threads=threads,
                                library_dir=library_dir, execution=execution,
                                extra_env=extra_env)
    write_kernelspec(jupyter_dir, settings)
    return run


def prepare_run(root: Path, lesson_files: Path | None, notebook: Path | None, limits: Limits,
                threads: int = 0, library_dir: str = "", cases_dir: str = "",
                execution: str = "", extra_env: dict[str, str] | None = None,
                wall_s: float | None = None) -> tuple[KernelRun, SandboxSettings]:
    """A fresh run under ``root`` and the sandbox settings of what runs in it: the run's
    folder gets ``lesson_files`` (the released lesson's files, never a submission's) and a
    copy of ``notebook``; ``cases_dir`` is bound read-only; ``extra_env`` joins the
    environment; ``wall_s`` replaces the notebook's wall-clock limit."""

    require_isolation(limits)
    root = Path(root)
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
    # the kernel's folder is named as the lesson's (NN_slug), as in a student's workspace
    name = Path(notebook).stem if notebook is not None else Path(lesson_files or "work").name
    run = KernelRun(sandbox=root / "sandbox", workdir=root / "sandbox" / name,
                    control=root / "control")
    for sub in ("home", "tmp", "cache", "runtime", "mpl", "hf", "runs", "ipython", name):
        (run.sandbox / sub).mkdir(parents=True, exist_ok=True)
    run.control.mkdir(parents=True)
    if lesson_files is not None and Path(lesson_files).is_dir():
        safe_copy_tree(Path(lesson_files), run.workdir, skip=("*.ipynb",))
    if notebook is not None and Path(notebook).is_file():
        shutil.copyfile(notebook, run.workdir / Path(notebook).name, follow_symlinks=False)
    settings = SandboxSettings(
        memory_mb=limits.memory_mb, file_mb=limits.file_mb,
        wall_s=limits.notebook_timeout_s if wall_s is None else wall_s,
        max_processes=limits.max_processes, max_threads=limits.max_threads,
        tmp_mb=limits.tmp_mb, disk_mb=limits.disk_mb, cpus=limits.cpus,
        scratch=str(run.sandbox), workdir=str(run.workdir),
        status_file=str(run.status_file), use_bwrap=limits.use_bwrap,
        env={**kernel_environment(run, threads, execution), **(extra_env or {})},
        library_dir=library_dir, cases_dir=cases_dir)
    return run, settings


def require_isolation(limits: Limits) -> None:
    """Refuse to run a submission without bubblewrap unless isolation was waived."""

    if limits.use_bwrap and not bwrap_path():
        raise GraderError("bubblewrap (bwrap) is not installed, so a submission's kernel could "
                          "not be isolated: install it (apt install bubblewrap), or pass "
                          "--unsafe-no-isolation to run students' code with the grader's "
                          "rights")


def write_kernelspec(jupyter_dir: Path, settings: SandboxSettings | None = None) -> None:
    """A kernelspec that starts IPython through the sandbox launcher with ``settings``.

    The settings travel in the spec's ``env``, which jupyter_client adds to the launcher's
    environment only (not the grader's)."""
    folder = Path(jupyter_dir) / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "autograde.sandbox.launcher", "{connection_file}"],
            "display_name": "NanoLM autograder (sandboxed Python 3)",
            "language": "python", "interrupt_mode": "signal", "metadata": {"debugger": False}}
    if settings is not None:
        spec["env"] = {"AUTOGRADE_SANDBOX": settings.to_env()}
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))


def cell_failure(cell, limits: Limits) -> str | None:
    """Why a test cell failed, as the report and the self-check state it: its first error
    output, or what it wrote to stderr (nbgrader scores either 0); None when it has neither."""
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            return error_message(output.ename, output.evalue, limits)
        if output.output_type == "stream" and output.name == "stderr":
            return "the test cell wrote to stderr: " + output.text.strip()
    return None


def error_message(ename: str, evalue: str, limits: Limits) -> str:
    """A test cell's failure as the report and the self-check state it."""

    if is_memory_error(ename, evalue):
        return f"memory limit of {limits.memory_mb} MB hit ({ename}: {evalue})".strip()
    if ename == "CellTimeoutError":  # LimitedExecute names the cell in evalue
        return f"cell timeout: {evalue or f'a cell ran longer than {limits.cell_timeout_s} s'}"
    return f"{ename}: {evalue}" if evalue else ename
