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
