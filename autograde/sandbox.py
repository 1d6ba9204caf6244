"""Kernel launcher that confines one submission: bubblewrap, and limits on the whole sandbox.

The autograder registers a kernelspec whose command is ``python -m autograde.sandbox
{connection_file}`` and whose environment carries :class:`SandboxSettings` as JSON in
``AUTOGRADE_SANDBOX`` (:mod:`autograde.kernel` writes both). The launcher starts the real
IPython kernel as its child:

* in bubblewrap (:func:`bwrap_command`): a new user namespace with no capabilities (as root
  too: no remount, no mount at all), its own PID namespace, session and /tmp, a cleared
  environment set to the settings' ``env`` only, and a file system holding only what Python
  needs read-only (system folders, a few /etc files, the interpreter, the venv, the library,
  the lessons, the data) plus the kernel's own folder and scratch writable. No home folder, no
  ``.git``, no ``solutions/``, no other checkout, no grader folder is mounted at all;
* under a watchdog (:class:`Watchdog`) that sums the resident memory and counts the processes
  of everything the kernel started, and kills the whole sandbox over ``memory_mb`` or
  ``max_processes`` (a per-process rlimit would let three 1.5 GB processes pass a 4 GB limit);
* with per-process rlimits as a second line: data (private writable memory; not the address
  space, which a CUDA build of torch fills with gigabytes of mapped libraries at import),
  file size, no core dumps;
* for at most ``wall_s`` seconds.

Why the kernel ended goes to ``status_file``, in a folder the kernel cannot see.
"""

from __future__ import annotations

import ctypes
import functools
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

from autograde.paths import LESSONS_DIR, REPO

ENV_VAR = "AUTOGRADE_SANDBOX"
# Read-only for Python, torch and the C library; never /etc/shadow, SSH keys or the like.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf",
             "passwd", "group", "hosts", "host.conf")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
POLL_S = 0.2


@dataclass
class SandboxSettings:
    """What the launcher needs to know about one submission."""

    memory_mb: int = 4096          # resident memory of the whole sandbox
    wall_s: float = 600.0          # wall-clock limit for the whole notebook
    file_mb: int = 256             # largest file the kernel may write
    max_processes: int = 64        # processes in the sandbox at once
    scratch: str = ""              # writable: caches, HOME, TMPDIR
    workdir: str = ""              # writable: the kernel's own folder (its cwd)
    status_file: str = ""          # where the launcher records why the kernel ended
    use_bwrap: bool = True
    env: dict = field(default_factory=dict)   # the kernel's whole environment
    library_dir: str = ""          # the folder holding the staged nanolm_lib ("": the repo's)
    cases_dir: str = ""            # the grader's test inputs (read-only)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> SandboxSettings:
        raw = os.environ.get(ENV_VAR)
        return cls(**json.loads(raw)) if raw else cls(use_bwrap=False)


def bwrap_path() -> str | None:
    """The bubblewrap executable, or None when it is not installed."""
    return shutil.which("bwrap")


UNSAFE_BANNER = ("UNSAFE: NO ISOLATION (--unsafe-no-isolation): each kernel ran as the "
                 "grader's user with the grader's file system; a submission could read the "
                 "solutions and overwrite grades. Limits (memory, processes, output, time) "
                 "still applied.")


def isolation_level(use_bwrap: bool = True) -> str:
    """One line for reports: how a kernel was isolated."""
    if use_bwrap and bwrap_path():
        return ("bubblewrap: user namespace without capabilities, own PID namespace and "
                "session, cleared environment, only the Python environment, the library, the "
                "lessons and the kernel's own folder mounted; memory and process limits for "
                "the whole sandbox, output and wall-clock limits per notebook")
    return UNSAFE_BANNER


def kernel_mounts(settings: SandboxSettings) -> list[tuple[str, Path]]:
    """(kind, path) of what the kernel sees read-only: ``ro`` a folder or file bound at its
    own path, ``link`` a symlink (merged /usr systems)."""
    mounts: list[tuple[str, Path]] = []
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            mounts.append(("link", path))
        elif path.is_dir():
            mounts.append(("ro", path))
    mounts += [("ro", Path("/etc") / name) for name in ETC_FILES if (Path("/etc") / name).exists()]
    # the interpreter and the venv (under /root with pyenv: bound alone, not /root)
    for prefix in {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}:
        mounts.append(("ro", prefix))
    if not settings.library_dir:  # grading mounts the staged copy instead, never the full one
        mounts.append(("ro", REPO / "nanolm_lib"))   # an editable install imports it from here
    if LESSONS_DIR.is_dir():
        mounts.append(("ro", LESSONS_DIR))       # the fixtures next to the package
    for extra in (settings.library_dir, settings.cases_dir, settings.env.get("NANOLM_DATA")):
        if extra and Path(extra).exists():
            mounts.append(("ro", Path(extra).resolve()))
    return mounts


def bwrap_command(settings: SandboxSettings, connection_file: str | None) -> list[str]:
    """The bwrap prefix for one kernel (order matters: later mounts go on top of earlier)."""
    command = [bwrap_path(), "--unshare-user", "--unshare-pid", "--unshare-ipc",
               "--unshare-uts", "--unshare-cgroup-try", "--new-session", "--die-with-parent",
               "--clearenv"]
    if _bwrap_supports("--disable-userns"):  # bubblewrap 0.8+: no nested user namespace
        command.append("--disable-userns")
    if os.getuid() == 0:
        command += ["--cap-drop", "ALL"]   # root keeps every capability otherwise
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for kind, path in kernel_mounts(settings):
        if kind == "link":
            command += ["--symlink", os.readlink(path), str(path)]
        else:
            command += ["--ro-bind", str(path), str(path)]
    for folder in (settings.scratch, settings.workdir):
        if folder:
            command += ["--bind", folder, folder]
    if connection_file:
        command += ["--ro-bind", connection_file, connection_file]
    if settings.workdir:
        command += ["--chdir", settings.workdir]
    for name, value in kernel_env(settings).items():
        command += ["--setenv", name, value]
    return command + ["--"]


@functools.cache
def _bwrap_supports(option: str) -> bool:
    help_text = subprocess.run([bwrap_path(), "--help"], capture_output=True, text=True)
    return option in help_text.stdout + help_text.stderr


def kernel_env(settings: SandboxSettings) -> dict[str, str]:
    """The settings' environment, plus nbgrader's execution flag from the launcher's own."""
    env = dict(settings.env)
    if os.environ.get("NBGRADER_EXECUTION") and "NBGRADER_EXECUTION" not in env:
        env["NBGRADER_EXECUTION"] = os.environ["NBGRADER_EXECUTION"]
    if settings.library_dir:   # the folder holding the staged nanolm_lib, first on sys.path
        env["PYTHONPATH"] = str(Path(settings.library_dir).resolve())
    return env


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
        # per process, a second line behind the watchdog's whole-sandbox limit: RLIMIT_DATA
        # counts what a program allocates; RLIMIT_AS also counts mapped libraries, and a CUDA
        # build of torch maps more than the limit just by being imported
        memory = settings.memory_mb << 20
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
        size = settings.file_mb << 20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        die_with_parent(launcher)  # jupyter kills the launcher; the kernel must not outlive it
    return apply


class Watchdog:
    """Memory and process count of a process tree, measured from outside it."""

    def __init__(self, root_pid: int, memory_mb: int, max_processes: int):
        self.root_pid, self.memory_mb, self.max_processes = root_pid, memory_mb, max_processes
        self.page = os.sysconf("SC_PAGE_SIZE")

    def tree(self) -> list[int]:
        """Every descendant of the root (by parent pid, from /proc)."""
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()
            if fields[0] != b"Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
        found, todo = [], list(children.get(self.root_pid, []))
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def resident_mb(self, pids: list[int]) -> float:
        total = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/statm") as handle:
                    total += int(handle.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
        return total * self.page / 2**20

    def check(self) -> dict | None:
        """A status when a limit is passed (and the tree killed), else None."""
        pids = self.tree()
        if len(pids) > self.max_processes:  # bwrap's own two processes are counted too
            return self._kill(pids, {"limit": "processes", "message":
                                     f"more than {self.max_processes} processes in the "
                                     "sandbox; the kernel was stopped"})
        resident = self.resident_mb(pids)
        if resident > self.memory_mb:
            return self._kill(pids, {"limit": "memory", "message":
                                     f"memory limit of {self.memory_mb} MB for the whole "
                                     f"sandbox hit ({resident:.0f} MB resident); the kernel "
                                     "was stopped"})
        return None

    @staticmethod
    def _kill(pids: list[int], status: dict) -> dict:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return status


def _become_subreaper() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    except OSError:
        pass


def _interrupt(bwrap_pid: int) -> None:
    """SIGINT to every process of the sandbox but bwrap's own."""
    for pid in Watchdog(bwrap_pid, 0, 0).tree():  # bwrap's init and what it runs
        try:
            with open(f"/proc/{pid}/comm") as handle:
                if handle.read().strip() == "bwrap":
                    continue
            os.kill(pid, signal.SIGINT)
        except OSError:
            continue


def _write_status(settings: SandboxSettings, status: dict) -> None:
    if settings.status_file:
        Path(settings.status_file).write_text(json.dumps(status))


class _StopRequest:
    """SIGTERM to the launcher: its kernel manager ending a kernel it no longer needs (the
    grader, once the notebook has run). The kernel is stopped at once, and since that stop was
    asked for, no limit or death is recorded. Installed before the kernel starts, so a stop
    that comes while it starts is not lost."""

    def __init__(self):
        self.requested = False
        self._child: subprocess.Popen | None = None

    def handle(self, *_) -> None:
        self.requested = True
        if self._child is not None:
            self._child.kill()

    def watch(self, child: subprocess.Popen) -> None:
        self._child = child
        if self.requested:
            child.kill()


def _supervise(child: subprocess.Popen, settings: SandboxSettings) -> dict | None:
    """Wait for the kernel under the watchdog and the wall clock; why it ended, if a limit."""
    # rooted at the launcher, a subreaper: a daemon that detaches is still counted
    watchdog = Watchdog(os.getpid(), settings.memory_mb, settings.max_processes)
    started = time.monotonic()
    while True:
        try:
            child.wait(timeout=POLL_S)
            return None
        except subprocess.TimeoutExpired:
            pass
        status = watchdog.check()
        if status is None and time.monotonic() - started > settings.wall_s:
            status = watchdog._kill(watchdog.tree(), {
                "limit": "wall-clock", "message": f"wall-clock limit of {settings.wall_s:g} s "
                "for the notebook reached; the kernel was stopped",
                "seconds": round(time.monotonic() - started, 1)})
        if status is not None:
            child.kill()
            child.wait()
            return status


def main(argv: list[str]) -> int:
    """Start the kernel for ``argv[0]`` (a connection file), or with ``--run COMMAND...`` any
    command (the grader's run of the hidden cases), under the sandbox settings."""
    if not argv or argv == ["--run"]:
        print("usage: python -m autograde.sandbox CONNECTION_FILE | --run COMMAND...",
              file=sys.stderr)
        return 2
    settings = SandboxSettings.from_env()
    # A grading worker that is killed takes its kernels with it (jupyter_client tells the
    # kernel its manager's pid in JPY_PARENT_PID).
    die_with_parent(int(os.environ.get("JPY_PARENT_PID") or 0) or None)
    if argv[0] == "--run":
        connection_file, kernel = None, argv[2:] if argv[1:2] == ["--"] else argv[1:]
    else:
        connection_file = str(Path(argv[0]).resolve())
        kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file,
                  "--HistoryManager.hist_file=:memory:"]
    if settings.use_bwrap:
        if not bwrap_path():
            _write_status(settings, {"limit": "exit", "message": "bubblewrap (bwrap) is not "
                                     "installed: the kernel was not started"})
            return 1
        command = bwrap_command(settings, connection_file) + kernel
    else:
        command = kernel
    _become_subreaper()  # orphans of the kernel (daemons) stay in the watched tree
    # The kernel process's own chatter (not the notebook's output, which travels over ZMQ)
    # goes to a log in the scratch folder rather than the grader's terminal.
    log = open(os.path.join(settings.scratch, "kernel.log"), "ab") if settings.scratch else None
    stop = _StopRequest()
    signal.signal(signal.SIGTERM, stop.handle)
    # In bwrap, the sandbox gets its own process group: Jupyter's SIGINT to the launcher's
    # group would kill bwrap itself; the launcher passes it on to the kernel (below).
    child = subprocess.Popen(command, preexec_fn=_limit_child(settings),
                             env=kernel_env(settings), cwd=settings.workdir or None,
                             stdout=log, stderr=log, start_new_session=settings.use_bwrap)
    stop.watch(child)
    # Jupyter interrupts by signalling the launcher's process group: without bwrap the kernel
    # is in it; in bwrap the launcher passes the interrupt on.
    signal.signal(signal.SIGINT, (lambda *_: _interrupt(child.pid)) if settings.use_bwrap
                  else signal.SIG_IGN)
    try:
        status = _supervise(child, settings)
    finally:
        Watchdog._kill(Watchdog(os.getpid(), 0, 0).tree(), {})  # nothing outlives it
    if status is not None:
        _write_status(settings, status)
        return 1
    if stop.requested:
        return 0
    returncode = child.returncode
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
