"""Real services for the classroom tests, each started by the test that uses it and stopped
by it: a PostgreSQL server (Debian's ``postgresql`` package) and a single-node Slurm cluster
(Debian's ``slurm-wlm`` and ``munge``), each with its own configuration, data and sockets in a
temporary folder and its own free ports. Only the processes started here are stopped, by pid.

Each ``start_*`` returns the service or raises :class:`Unavailable` with one line saying why,
which the tests turn into a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


class Unavailable(Exception):
    """The service cannot start on this machine; the message says why, in one line."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(condition, timeout: float, what: str, process=None, log: Path | None = None):
    """Poll ``condition`` until true; Unavailable when ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise Unavailable(f"{what} exited with status {process.returncode}: "
                              f"{_last_line(log)}")
        if time.monotonic() > deadline:
            raise Unavailable(f"{what} did not come up within {timeout:.0f} s: {_last_line(log)}")
        time.sleep(0.1)


def _last_line(log: Path | None) -> str:
    try:
        lines = [line for line in Path(log).read_text().splitlines() if line.strip()]
        return lines[-1][:300] if lines else "(empty log)"
    except (OSError, TypeError):
        return "(no log)"


def _stop(process: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 30) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------- PostgreSQL
def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise Unavailable("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return Path(found[-1]).parent


def _service_user() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: as root, run it as ``nobody``."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        raise Unavailable("running as root and there is no user 'nobody' to run "
                          "PostgreSQL as") from None
    return entry.pw_uid, entry.pw_gid


@contextmanager
def postgres_server():
    """A PostgreSQL server on 127.0.0.1 and a free port, trusting local connections, with a
    database ``gradebook``; yields its SQLAlchemy URL (psycopg 3)."""
    bin_dir = _postgres_bin()
    user = _service_user()
    root = Path(tempfile.mkdtemp(prefix="nanolm-postgres-"))  # not under a root-only tmp_path
    data, sockets, log = root / "data", root / "sockets", root / "postgres.log"
    sockets.mkdir()
    root.chmod(0o755)
    as_user = {"user": user[0], "group": user[1], "extra_groups": []} if user else {}
    if user:
        for path in (root, sockets):
            os.chown(path, *user)
    process = None
    try:
        init = subprocess.run([bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "grader",
                               "--no-sync", "-E", "UTF8"], capture_output=True, text=True,
                              cwd=root, **as_user)
        if init.returncode:
            raise Unavailable(f"initdb failed: {(init.stderr or init.stdout).strip()[-300:]}")
        port = free_port()
        with open(log, "w") as log_file:
            if user:
                os.chown(log, *user)
            process = subprocess.Popen(
                [bin_dir / "postgres", "-D", data, "-p", str(port), "-k", sockets,
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "max_connections=50"],
                stdout=log_file, stderr=subprocess.STDOUT, cwd=root, **as_user)

        def ready() -> bool:
            return subprocess.run([bin_dir / "pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                                  capture_output=True).returncode == 0

        _wait_for(ready, 60, "postgres", process, log)
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=grader dbname=postgres",
                             autocommit=True) as connection:
            connection.execute("CREATE DATABASE gradebook")
        yield f"postgresql+psycopg://grader@127.0.0.1:{port}/gradebook"
    finally:
        _stop(process, signal.SIGINT)  # fast shutdown: roll back, close connections, exit
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- Slurm
SLURM_CONF = """\
ClusterName=nanolm-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge-socket/socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
PlugStackConfig={root}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerParameters=sched_interval=1
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=grading Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 * 9 // 10
    raise Unavailable("cannot read MemTotal from /proc/meminfo")


@contextmanager
def slurm_cluster():
    """A one-node Slurm cluster: munged with a key of its own, slurmctld and slurmd with a
    slurm.conf in a temporary folder and free ports. Yields the environment in which Slurm's
    commands (sbatch, squeue, scancel) talk to it: ``SLURM_CONF`` set, as on any cluster whose
    configuration is not in /etc/slurm."""
    for command in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel"):
        if shutil.which(command) is None and not Path(f"/usr/sbin/{command}").exists():
            raise Unavailable(f"{command} is not installed (Debian: apt-get install slurm-wlm "
                              "munge)")
    if os.geteuid() != 0:
        raise Unavailable("slurmd must run as root to start jobs as their user; this test "
                          "runs as a user")
    root = Path(tempfile.mkdtemp(prefix="nanolm-slurm-"))
    root.chmod(0o755)
    for folder in ("munge-key", "munge-socket", "state", "spool"):
        (root / folder).mkdir()
    (root / "munge-key").chmod(0o700)
    key = root / "munge-key" / "key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (root / "plugstack.conf").write_text("")  # not Debian's /etc/slurm/plugstack.conf
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(root=root, host=host, user=pwd.getpwuid(0).pw_name,
                                      ctld_port=free_port(), slurmd_port=free_port(),
                                      cpus=os.cpu_count() or 1, memory_mb=_memory_mb()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    sbin = {name: shutil.which(name) or f"/usr/sbin/{name}"
            for name in ("munged", "slurmctld", "slurmd")}
    started: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        log = open(root / f"{name}.out", "w")
        process = subprocess.Popen([sbin[name], *args], stdout=log, stderr=subprocess.STDOUT,
                                   env=env, cwd=root)
        log.close()
        started.append(process)
        return process

    try:
        socket_path = root / "munge-socket" / "socket"
        munged = start("munged", "--foreground", "--force", f"--socket={socket_path}",
                       f"--key-file={key}", f"--pid-file={root}/munged.pid",
                       f"--seed-file={root}/munge-key/seed", "--num-threads=2")
        _wait_for(socket_path.exists, 30, "munged", munged, root / "munged.out")
        ctld = start("slurmctld", "-D", "-i", "-f", str(conf))
        slurmd = start("slurmd", "-D", "-f", str(conf))

        def node_idle() -> bool:
            for process, name in ((ctld, "slurmctld"), (slurmd, "slurmd")):
                if process.poll() is not None:
                    raise Unavailable(f"{name} exited with status {process.returncode}: "
                                      f"{_last_line(root / f'{name}.out')}")
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True,
                                   text=True)
            return state.returncode == 0 and state.stdout.strip() == "idle"

        _wait_for(node_idle, 60, "the Slurm node", log=root / "slurmctld.log")
        yield env
    finally:
        for process in reversed(started):  # slurmd, slurmctld, then munged
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)
