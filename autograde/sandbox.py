"""Kernel launcher that confines one submission: resource limits and, where available, bubblewrap.

The autograder registers a kernelspec whose command is ``python -m autograde.sandbox
{connection_file}``. This launcher reads its settings from the ``AUTOGRADE_SANDBOX``
environment variable (JSON, written by the worker for each submission) and starts the real
IPython kernel as its child:

* limits (``resource.setrlimit`` in the child): address space (``memory_mb``; an allocation
  beyond it raises MemoryError in the student's cell), size of any file written (``file_mb``),
  and a wall-clock limit for the whole notebook (``wall_s``), after which the kernel is killed;
* isolation with ``bwrap`` when it is installed: the whole file system read-only, the
  grader's working folders hidden behind an empty tmpfs, and only the submission's own folder
  and scratch folder writable, in a private /tmp and process namespace. Without bwrap the kernel
  runs with the limits only (the batch report says so).

Why the kernel ended (wall-clock limit, a signal, an exit code) goes to ``status_file``, so
that the grader can say which limit a submission hit.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENV_VAR = "AUTOGRADE_SANDBOX"


@dataclass
class SandboxSettings:
    """What the launcher needs to know about one submission."""

    memory_mb: int = 4096          # address-space limit of the kernel
    wall_s: float = 600.0          # wall-clock limit for the whole notebook
    file_mb: int = 256             # largest file the kernel may write
    scratch: str = ""              # writable: caches, HOME, TMPDIR
    workdir: str = ""              # writable: the submission's own copy (the kernel's cwd)
    hide: list[str] = field(default_factory=list)   # folders replaced by an empty tmpfs
    status_file: str = ""          # where the launcher records why the kernel ended
    use_bwrap: bool = True
    library_dir: str = ""          # read-only, first on sys.path: the staged nanolm_lib's folder
    cases_dir: str = ""            # read-only: the grader's hidden cases (autograde.verdict)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> SandboxSettings:
        raw = os.environ.get(ENV_VAR)
        return cls(**json.loads(raw)) if raw else cls(use_bwrap=False)


def bwrap_path() -> str | None:
    """The bubblewrap executable, or None when it is not installed."""
    return shutil.which("bwrap")


def isolation_level(use_bwrap: bool = True) -> str:
    """One line for reports: how strongly a kernel is isolated on this machine."""
    if use_bwrap and bwrap_path():
        return ("bubblewrap: read-only file system, grader folders hidden, only the "
                "submission's own folder and scratch writable; memory, file-size and "
                "wall-clock limits")
    return ("WEAKER ISOLATION: bubblewrap (bwrap) is not available, so a submission's kernel "
            "runs as the grader's user with memory, file-size and wall-clock limits only; it "
            "could read or write the grader's files. Install bubblewrap for isolation.")


def kernel_needs() -> list[Path]:
    """What a kernel must always see: the project, the Python environment, the data named by
    NANOLM_DATA. They are never hidden, and are mounted again (read-only) when they lie under
    /tmp, which the sandbox replaces with an empty tmpfs (a CI clone often lives there)."""
    needed = [Path(__file__).resolve().parent.parent, Path(sys.prefix).resolve(),
              Path(sys.base_prefix).resolve()]
    if os.environ.get("NANOLM_DATA"):
        needed.append(Path(os.environ["NANOLM_DATA"]).resolve())
    return needed


def bwrap_command(settings: SandboxSettings) -> list[str]:
    """The bwrap prefix for one kernel (order matters: later mounts go on top of earlier)."""
    command = [bwrap_path(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
               "--tmpfs", "/tmp", "--unshare-pid", "--die-with-parent"]
    for path in kernel_needs():
        if Path("/tmp") in path.parents and path.exists():
            command += ["--ro-bind", str(path), str(path)]
    for folder in settings.hide:
        command += ["--tmpfs", folder]
    if settings.library_dir:  # the kernel imports the staged copy: hide the full package
        command += ["--tmpfs", str(Path(__file__).resolve().parent.parent / "nanolm_lib")]
    for folder in (settings.library_dir, settings.cases_dir):  # after the hiding: they live
        if folder:                                              # in the grader's folders
            command += ["--ro-bind", folder, folder]
    for folder in (settings.workdir, settings.scratch):
        if folder:
            command += ["--bind", folder, folder]
    if settings.workdir:
        command += ["--chdir", settings.workdir]
    return command


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG).

    A parent that died before the request was made would never send the signal: exit now
    when the parent is already gone (reparented to init, or not ``parent_pid``).
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:  # not Linux: the kernel manager's own clean-up still applies
        return
    if os.getppid() == 1 or (parent_pid and os.getppid() != parent_pid):
        os._exit(1)


def _limit_child(settings: SandboxSettings):
    """A preexec function: limits apply to the kernel and anything it starts."""
    launcher = os.getpid()

    def apply() -> None:
        memory = settings.memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        size = settings.file_mb << 20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        die_with_parent(launcher)  # jupyter kills the launcher; the kernel must not outlive it
    return apply


def _write_status(settings: SandboxSettings, status: dict) -> None:
    if settings.status_file:
        with open(settings.status_file, "w") as handle:
            json.dump(status, handle)


def main(argv: list[str]) -> int:
    """Start the kernel for ``argv[0]`` (a connection file) under the sandbox settings."""
    if not argv:
        print("usage: python -m autograde.sandbox CONNECTION_FILE", file=sys.stderr)
        return 2
    settings = SandboxSettings.from_env()
    # A grading worker that is killed takes its kernels with it (jupyter_client tells the
    # kernel its manager's pid in JPY_PARENT_PID).
    die_with_parent(int(os.environ.get("JPY_PARENT_PID") or 0) or None)
    kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", argv[0],
              "--HistoryManager.hist_file=:memory:"]
    if shutil.which("timeout"):
        # A kernel must not outlive its limit even if this launcher is killed (SIGKILL leaves
        # no chance to clean up, and bwrap's sandbox does not always follow its parent).
        # --foreground keeps the kernel in our process group, where Jupyter's SIGINT lands.
        kernel = [shutil.which("timeout"), "--foreground", "--signal=KILL",
                  f"{settings.wall_s + 30:g}"] + kernel
    command = bwrap_command(settings) + kernel if settings.use_bwrap and bwrap_path() else kernel
    # Jupyter interrupts by signalling the whole process group: the kernel gets SIGINT itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # In bwrap's pid namespace the kernel's parent is pid 1, which ipykernel's parent poller
    # (enabled by JPY_PARENT_PID) takes for "the parent exited". The kernel dies with this
    # launcher anyway (PR_SET_PDEATHSIG, bwrap --die-with-parent).
    env = {name: value for name, value in os.environ.items() if name != "JPY_PARENT_PID"}
    if settings.library_dir:  # before the project's own package (the venv's editable install)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [settings.library_dir,
                                                         env.get("PYTHONPATH")]))
    # The kernel process's own chatter (not the notebook's output, which travels over ZMQ)
    # goes to a log in the scratch folder rather than the grader's terminal.
    log = open(os.path.join(settings.scratch, "kernel.log"), "ab") if settings.scratch else None
    child = subprocess.Popen(command, preexec_fn=_limit_child(settings), env=env,
                             cwd=settings.workdir or None, stdout=log, stderr=log)
    signal.signal(signal.SIGTERM, lambda *_: child.kill())
    started = time.monotonic()
    try:
        returncode = child.wait(timeout=settings.wall_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        _write_status(settings, {"limit": "wall-clock",
                                 "message": f"wall-clock limit of {settings.wall_s:g} s for the "
                                            "notebook reached; the kernel was stopped",
                                 "seconds": round(time.monotonic() - started, 1)})
        return 1
    if returncode < 0:
        name = signal.Signals(-returncode).name
        message = f"the kernel was killed by {name}"
        if -returncode == signal.SIGKILL:
            message += " (out of memory, or stopped from outside)"
        _write_status(settings, {"limit": "killed", "message": message})
    elif returncode != 0:
        _write_status(settings, {"limit": "exit", "message": f"the kernel exited with code "
                                 f"{returncode} (os._exit or sys.exit at top level, or a crash)"})
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
