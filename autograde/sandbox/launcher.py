"""Kernel launcher that confines one submission: bubblewrap, and limits on the whole sandbox.

The autograder registers a kernelspec whose command is ``python -m autograde.sandbox.launcher
{connection_file}`` and whose environment carries :class:`SandboxSettings` as JSON in
``AUTOGRADE_SANDBOX`` (:mod:`autograde.sandbox.kernel` writes both). The launcher starts the real
IPython kernel as its child:

* in bubblewrap (:func:`bwrap_command`): a new user namespace with no capabilities (as root
  too: no remount, no mount at all), its own PID namespace, session and network namespace
  (loopback only: no host port, no other kernel's port, no service on the network), a cleared
  environment set to the settings' ``env`` only, and a file system holding only what Python
  needs read-only (system folders, a few /etc files, the interpreter, the venv, the library,
  the lessons, the data) plus the kernel's own folder, scratch and the folder of its Unix
  sockets writable. ``/`` and ``/dev`` are read-only; ``/tmp`` and ``/dev/shm`` are private
  tmpfs capped at ``tmp_mb``. No home folder, no ``.git``, no ``solutions/``, no other
  checkout, no grader folder is mounted at all. The kernel talks to the grader over Unix
  sockets (jupyter_client's ``ipc`` transport), in a folder named by its connection file;
* under a watchdog (:class:`Watchdog`) that, for everything the kernel started, sums the
  resident memory, counts the processes and their threads, measures ``/tmp`` and
  ``/dev/shm`` and the bytes in the writable folders, and kills the whole sandbox over
  ``memory_mb``, ``max_processes``, ``max_threads``, ``tmp_mb`` or ``disk_mb`` (a per-process
  rlimit would let three 1.5 GB processes pass a 4 GB limit);
* in cgroups of its own where the grader may make them (:class:`SandboxCgroups`): an equal CPU
  share per sandbox (and at most ``cpus`` cores when set), Linux's own count of its memory
  (shared memory and memfd included), and a hard cap on its tasks;
* with per-process rlimits as a second line: data (private writable memory; not the address
  space, which a CUDA build of torch fills with gigabytes of mapped libraries at import),
  file size, no core dumps;
* for at most ``wall_s`` seconds.

Why the kernel ended goes to ``status_file``, in a folder the kernel cannot see: ``limit``
names the limit that fired. :func:`run_sandboxed` is the sandbox for any command; ``main``
runs the kernel in it.
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
MEMORY_FOLDERS = ("/tmp", "/dev/shm")   # the sandbox's tmpfs: in memory, capped at tmp_mb
POLL_S = 0.2
MAX_FILES = 100_000   # entries in the writable folders: past it, the disk limit fires
CGROUP_PREFIX = "nanolm-autograde-"   # + the launcher's pid


@dataclass
class SandboxSettings:
    """What the launcher needs to know about one submission."""

    memory_mb: int = 4096          # resident memory of the whole sandbox
    wall_s: float = 600.0          # wall-clock limit for the whole notebook
    file_mb: int = 256             # largest file the kernel may write
    max_processes: int = 64        # processes in the sandbox at once
    max_threads: int = 256         # threads of all its processes together
    tmp_mb: int = 512              # /tmp and /dev/shm together (tmpfs: memory)
    disk_mb: int = 1024            # bytes in the writable folders together
    cpus: float = 0.0              # most cores it may use (0: an equal share only)
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
        cpu = ("cgroups: an equal CPU share, Linux's memory count and a task cap per sandbox"
               if SandboxCgroups.available() else "no writable cgroup: CPU bounded by the "
               "wall clock only")
        return ("bubblewrap: user namespace without capabilities, own PID namespace, session "
                "and network (no network: Unix sockets to the grader), cleared environment, "
                "only the Python environment, the library, the lessons and the kernel's own "
                "folder mounted; memory, process, thread, /tmp and disk limits for the whole "
                f"sandbox, {cpu}; output and wall-clock limits per notebook")
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


def bwrap_command(settings: SandboxSettings, connection_file: str | None = None) -> list[str]:
    """The bwrap prefix for one sandbox (order matters: later mounts go on top of earlier).
    With a ``connection_file`` the kernel's connection file is bound read-only and the folder
    of its Unix sockets writable."""
    command = [bwrap_path(), "--unshare-user", "--unshare-pid", "--unshare-ipc",
               "--unshare-uts", "--unshare-net", "--unshare-cgroup-try", "--new-session",
               "--die-with-parent", "--clearenv"]
    if _bwrap_supports("--disable-userns"):  # bubblewrap 0.8+: no nested user namespace
        command.append("--disable-userns")
    if os.getuid() == 0:
        command += ["--cap-drop", "ALL"]   # root keeps every capability otherwise
    command += ["--proc", "/proc", "--dev", "/dev"]
    for folder in MEMORY_FOLDERS:   # capped where bwrap has --size; the watchdog measures both
        size = ["--size", str(settings.tmp_mb << 20)] if _bwrap_supports("--size") else []
        command += size + ["--tmpfs", folder]
    command += ["--remount-ro", "/dev"]   # else /dev is a tmpfs of half the machine's memory
    for kind, path in kernel_mounts(settings):
        if kind == "link":
            command += ["--symlink", os.readlink(path), str(path)]
        else:
            command += ["--ro-bind", str(path), str(path)]
    for folder in writable_folders(settings, connection_file):
        command += ["--bind", folder, folder]
    if connection_file:
        command += ["--ro-bind", connection_file, connection_file]
    command += ["--remount-ro", "/"]   # bwrap's root is a tmpfs too: nothing to write there
    if settings.workdir:
        command += ["--chdir", settings.workdir]
    for name, value in kernel_env(settings).items():
        command += ["--setenv", name, value]
    return command + ["--"]


def socket_folder(connection_file: str | None) -> str | None:
    """The folder of the kernel's Unix sockets (jupyter_client's ``ipc`` transport: the
    connection file's ``ip`` is the sockets' path prefix), or None for TCP or no file."""
    if not connection_file:
        return None
    info = json.loads(Path(connection_file).read_text())
    if info.get("transport") != "ipc" or not info.get("ip"):
        return None
    return os.path.dirname(os.path.abspath(info["ip"]))


def writable_folders(settings: SandboxSettings, connection_file: str | None = None) -> list[str]:
    """What the sandbox may write on the host's disk: scratch, its own folder, its sockets."""
    folders = [settings.scratch, settings.workdir, socket_folder(connection_file)]
    return [folder for folder in folders if folder]


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


def _limit_child(settings: SandboxSettings, cgroups: SandboxCgroups | None = None):
    """A preexec function: limits apply to the sandbox and anything it starts."""
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
        if cgroups is not None:
            cgroups.join()
        die_with_parent(launcher)  # jupyter kills the launcher; the kernel must not outlive it
    return apply


def process_tree(root_pid: int) -> dict[int, int]:
    """Every descendant of the root (by parent pid, from /proc): pid -> its thread count."""
    children: dict[int, list[int]] = {}
    threads: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()   # state, ppid, ... num_threads (18th)
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            threads[int(entry.name)] = int(fields[17])
    found, todo = {}, list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        found[pid] = threads[pid]
        todo += children.get(pid, [])
    return found


def kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def memory_folders_mb(pids) -> float | None:
    """MB used in the sandbox's /tmp and /dev/shm, seen through a sandboxed process's root
    (``/proc/PID/root``); None before any process has its own root (or without bwrap)."""
    host = {os.stat(path).st_dev for path in ("/", *MEMORY_FOLDERS) if os.path.exists(path)}
    for pid in pids:
        root = f"/proc/{pid}/root"
        try:
            if os.stat(root + MEMORY_FOLDERS[0]).st_dev in host:
                continue   # bwrap itself, or still before its pivot_root: the host's /tmp
            used = 0
            for folder in MEMORY_FOLDERS:
                fs = os.statvfs(root + folder)
                used += (fs.f_blocks - fs.f_bfree) * fs.f_frsize
            return used / 2**20
        except OSError:
            continue
    return None


def folders_mb(folders: list[str]) -> tuple[float, int]:
    """(MB allocated, entries) under ``folders``, each file once (hard links, nested folders),
    no link followed; stops counting past MAX_FILES entries."""
    seen, used, entries = set(), 0, 0
    todo = [folder for folder in folders if folder]
    while todo and entries <= MAX_FILES:
        try:
            with os.scandir(todo.pop()) as listing:
                for entry in listing:
                    info = entry.stat(follow_symlinks=False)
                    if (info.st_dev, info.st_ino) in seen:
                        continue
                    seen.add((info.st_dev, info.st_ino))
                    entries += 1
                    used += info.st_blocks * 512
                    if entries > MAX_FILES:
                        break
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
        except OSError:
            continue
    return used / 2**20, entries


class Watchdog:
    """Memory, processes, threads, /tmp and disk of a process tree, measured from outside it."""

    def __init__(self, root_pid: int, settings: SandboxSettings, folders: list[str] = (),
                 cgroups: SandboxCgroups | None = None):
        self.root_pid, self.settings, self.cgroups = root_pid, settings, cgroups
        self.folders = list(folders)
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.next_disk_check = 0.0

    def resident_mb(self, pids) -> float:
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
        tree = process_tree(self.root_pid)
        status = self.memory_killed() or self._passed(tree) or self._check_disk()
        if status is not None:
            kill_all(tree)
        return status

    def _passed(self, tree: dict[int, int]) -> dict | None:
        """The first of the process, thread, memory and /tmp limits the tree passed."""
        s, threads = self.settings, sum(tree.values())
        if len(tree) > s.max_processes:  # bwrap's own two processes are counted too
            return {"limit": "processes", "message": f"more than {s.max_processes} "
                    "processes in the sandbox; the kernel was stopped"}
        if threads > s.max_threads:
            return {"limit": "threads", "message": f"more than {s.max_threads} threads in "
                    f"the sandbox ({threads}); the kernel was stopped"}
        if (resident := self.resident_mb(tree)) > s.memory_mb:
            return {"limit": "memory", "message": f"memory limit of {s.memory_mb} MB for the "
                    f"whole sandbox hit ({resident:.0f} MB resident); the kernel was stopped"}
        if s.use_bwrap and (in_memory := memory_folders_mb(tree) or 0) >= s.tmp_mb:
            return {"limit": "tmp", "message": f"/tmp and /dev/shm limit of {s.tmp_mb} MB "
                    f"reached ({in_memory:.0f} MB); the kernel was stopped"}
        return None

    def memory_killed(self) -> dict | None:
        """A status when Linux killed a process at the memory cgroup's limit, else None."""
        if self.cgroups is None or not self.cgroups.oom_kills():
            return None
        s = self.settings
        return {"limit": "memory", "message": f"memory limit of {s.memory_mb} MB for the whole "
                f"sandbox hit (Linux's count, with shared memory, memfd and /tmp: over "
                f"{s.memory_mb + 2 * s.tmp_mb} MB); the kernel was stopped"}

    def _check_disk(self) -> dict | None:
        """The writable folders' size, measured at most every tenth of the time it takes (a
        million small files would otherwise keep the launcher busy)."""
        if not self.folders or time.monotonic() < self.next_disk_check:
            return None
        started = time.monotonic()
        used, entries = folders_mb(self.folders)
        self.next_disk_check = started + max(POLL_S, 10 * (time.monotonic() - started))
        if used > self.settings.disk_mb or entries > MAX_FILES:
            what = f"{used:.0f} MB" if entries <= MAX_FILES else f"more than {MAX_FILES} files"
            return {"limit": "disk", "message": f"disk limit of {self.settings.disk_mb} MB for "
                    f"the writable folders (HOME, scratch, the kernel's folder) passed ({what}); "
                    "the kernel was stopped"}
        return None
        return None


class SandboxCgroups:
    """The sandbox's own cgroups, where the grader may make them (root), each a child of the
    grader's own cgroup of that controller (not of a common parent, under which all sandboxes
    together would weigh as much as one), named by the launcher's pid, removed when it ends:

    * ``cpu``: every sandbox has the same weight, so one with 60 busy processes gets no more
      CPU than a neighbour with one, however many sessions it starts (``cpus`` > 0 also caps
      it at that many cores);
    * ``memory``: everything the sandbox holds in memory, counted by Linux, up to
      ``memory_mb`` plus its two tmpfs: also shared memory and memfd files, which no process's
      resident size shows; past it Linux kills, and :meth:`oom_kills` says so;
    * ``pids``: a task one past ``max_threads`` is refused, where the watchdog sees it.
    """

    CONTROLLERS = ("cpu", "memory", "pids")

    def __init__(self, folders: dict[str, Path]):
        self.folders = folders   # controller ("v2" for cgroup v2's one tree) -> folder

    @classmethod
    def roots(cls) -> list[tuple[str, Path]]:
        """(controller, the launcher's own cgroup folder): v2's one tree, or v1's each."""
        base, own = Path("/sys/fs/cgroup"), {}
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:   # not Linux
            return []
        for line in lines:
            _, names, path = line.split(":", 2)
            for name in names.split(","):
                own[name] = path.lstrip("/")
        if (base / "cgroup.controllers").exists():
            return [("v2", base / own.get("", ""))]
        return [(name, base / name / own.get(name, "")) for name in cls.CONTROLLERS
                if (base / name / "cgroup.procs").exists()]

    @classmethod
    def available(cls) -> bool:
        return any(os.access(root, os.W_OK) for _, root in cls.roots())

    @classmethod
    def create(cls, settings: SandboxSettings) -> SandboxCgroups:
        folders = {}
        for kind, root in cls.roots():
            try:
                if kind == "v2":  # its children get the controllers only when asked
                    (root / "cgroup.subtree_control").write_text("+cpu +memory +pids")
                cls._remove_stale(root)
                own = root / f"{CGROUP_PREFIX}{os.getpid()}"
                own.mkdir(exist_ok=True)
                cls._configure(kind, own, settings)
                folders[kind] = own
            except OSError:
                continue   # not ours to make: the wall clock and the watchdog still bound it
        return cls(folders)

    @staticmethod
    def _configure(kind: str, folder: Path, settings: SandboxSettings) -> None:
        values = {"tasks": str(settings.max_threads + 1),
                  "memory": str((settings.memory_mb + 2 * settings.tmp_mb) << 20)}
        period = 100_000
        quota = int(settings.cpus * period) if settings.cpus > 0 else 0
        files = {"v2": {"pids.max": values["tasks"], "memory.max": values["memory"],
                        "cpu.max": f"{quota or 'max'} {period}"},
                 "pids": {"pids.max": values["tasks"]},
                 "memory": {"memory.limit_in_bytes": values["memory"]},
                 "cpu": {"cpu.cfs_period_us": str(period),
                         "cpu.cfs_quota_us": str(quota or -1)}}[kind]
        for name, value in files.items():
            (folder / name).write_text(value)

    @staticmethod
    def _remove_stale(root: Path) -> None:
        """Cgroups of launchers that were killed (SIGKILL leaves them behind, empty)."""
        for folder in root.glob(f"{CGROUP_PREFIX}*"):
            pid = folder.name.removeprefix(CGROUP_PREFIX)
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                try:
                    folder.rmdir()
                except OSError:
                    pass

    def oom_kills(self) -> int:
        """Processes Linux killed at the memory cgroup's limit."""
        folder = self.folders.get("memory") or self.folders.get("v2")
        name = "memory.oom_control" if "memory" in self.folders else "memory.events"
        try:
            for line in (folder / name).read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, TypeError, ValueError):
            pass
        return 0

    def join(self) -> None:
        """Move the calling process into the cgroups (its children follow)."""
        for folder in self.folders.values():
            try:
                (folder / "cgroup.procs").write_text("0")
            except OSError:
                pass

    def remove(self) -> None:
        """Once every process of the sandbox is gone (a killed one takes a moment)."""
        for folder in self.folders.values():
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _become_subreaper() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    except OSError:
        pass


def _interrupt(bwrap_pid: int) -> None:
    """SIGINT to every process of the sandbox but bwrap's own."""
    for pid in process_tree(bwrap_pid):  # bwrap's init and what it runs
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


def _supervise(child: subprocess.Popen, watchdog: Watchdog, wall_s: float) -> dict | None:
    """Wait for the child under the watchdog and the wall clock; why it ended, if a limit."""
    started = time.monotonic()
    while True:
        try:
            child.wait(timeout=POLL_S)
            return watchdog.memory_killed()   # Linux may have killed it at the cgroup's limit
        except subprocess.TimeoutExpired:
            pass
        status = watchdog.check()
        if status is None and time.monotonic() - started > wall_s:
            kill_all(process_tree(watchdog.root_pid))
            status = {"limit": "wall-clock", "message": f"wall-clock limit of {wall_s:g} s "
                      "for the notebook reached; the kernel was stopped",
                      "seconds": round(time.monotonic() - started, 1)}
        if status is not None:
            child.kill()
            child.wait()
            return status


@dataclass
class Outcome:
    """How a sandboxed command ended."""

    returncode: int
    status: dict | None   # the limit that fired (``limit`` names it), None if none did
    stop_requested: bool  # SIGTERM to the launcher: asked to stop, not a failure


def run_sandboxed(command: list[str], settings: SandboxSettings, folders: list[str],
                  log=None) -> Outcome:
    """Run ``command`` (already behind its bwrap prefix when isolated) as this launcher's
    child under every limit of ``settings``; ``folders`` are the writable folders the disk
    limit counts. For a launcher process of its own: it becomes a subreaper, and takes SIGTERM
    (stop the sandbox) and SIGINT (passed on to the sandbox) for itself."""
    _become_subreaper()  # orphans (daemons) stay in the watched tree
    cgroups = SandboxCgroups.create(settings)
    stop = _StopRequest()
    signal.signal(signal.SIGTERM, stop.handle)
    # In bwrap, the sandbox gets its own process group: Jupyter's SIGINT to the launcher's
    # group would kill bwrap itself; the launcher passes it on (below).
    child = subprocess.Popen(command, preexec_fn=_limit_child(settings, cgroups),
                             env=kernel_env(settings), cwd=settings.workdir or None,
                             stdout=log, stderr=log, start_new_session=settings.use_bwrap)
    stop.watch(child)
    # Jupyter interrupts by signalling the launcher's process group: without bwrap the kernel
    # is in it; in bwrap the launcher passes the interrupt on.
    signal.signal(signal.SIGINT, (lambda *_: _interrupt(child.pid)) if settings.use_bwrap
                  else signal.SIG_IGN)
    # rooted at the launcher, a subreaper: a daemon that detaches is still counted
    watchdog = Watchdog(os.getpid(), settings, folders, cgroups)
    try:
        status = _supervise(child, watchdog, settings.wall_s)
    finally:
        kill_all(process_tree(os.getpid()))  # nothing outlives it
        if cgroups is not None:
            cgroups.remove()
    return Outcome(child.returncode, status, stop.requested)


def end_status(outcome: Outcome) -> dict | None:
    """What the status file says: the limit that fired, or a death nobody asked for."""
    if outcome.status is not None:
        return outcome.status
    if outcome.stop_requested or outcome.returncode == 0:
        return None
    if outcome.returncode < 0:
        message = f"the kernel was killed by {signal.Signals(-outcome.returncode).name}"
        if -outcome.returncode == signal.SIGKILL:
            message += " (out of memory, or stopped from outside)"
        return {"limit": "killed", "message": message}
    return {"limit": "exit", "message": f"the kernel exited with code {outcome.returncode} "
            "(os._exit or sys.exit at top level, or a crash)"}


def _refusal(connection_file: str | None) -> str | None:
    """Why a kernel cannot be started in bubblewrap, or None."""
    if not bwrap_path():
        return "bubblewrap (bwrap) is not installed"
    if connection_file is None:  # --run: a command without sockets
        return None
    folder = socket_folder(connection_file)
    if folder is None:
        return ("the kernel manager asked for TCP, but the sandbox has no network: start "
                "kernels with transport ipc (autograde.sandbox.preprocessors.SandboxKernelManager)")
    # bound writable into the sandbox: a fresh folder of this kernel's own, never /tmp itself
    if os.path.islink(folder) or not os.path.isdir(folder) or os.listdir(folder):
        return (f"the folder of the kernel's sockets, {folder}, is not a fresh empty folder of "
                "its own")
    return None


def main(argv: list[str]) -> int:
    """Start the kernel for ``argv[0]`` (a connection file), or with ``--run COMMAND...`` any
    command (the grader's run of the hidden cases), under the sandbox settings."""
    if not argv or argv == ["--run"]:
        print("usage: python -m autograde.sandbox.launcher CONNECTION_FILE | --run COMMAND...",
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
        refusal = _refusal(connection_file)
        if refusal:
            _write_status(settings, {"limit": "exit", "message": refusal + ": the kernel was "
                                     "not started"})
            return 1
        command = bwrap_command(settings, connection_file) + kernel
    else:
        command = kernel
    # The kernel process's own chatter (not the notebook's output, which travels over ZMQ)
    # goes to a log in the scratch folder rather than the grader's terminal.
    log = open(os.path.join(settings.scratch, "kernel.log"), "ab") if settings.scratch else None
    outcome = run_sandboxed(command, settings, writable_folders(settings, connection_file), log)
    status = end_status(outcome)
    if status is not None:
        _write_status(settings, status)
    return 1 if outcome.status is not None else (0 if outcome.stop_requested
                                                  else outcome.returncode)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
