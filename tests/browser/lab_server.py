"""`make lab` for the browser test: the student's JupyterLab over a scratch workspace.

The server runs exactly as a student starts it (the Makefile's lab target, its Jupyter
configuration), on a free port with a token of its own; the test only adds smoke size and
scratch folders for runs and caches. ``stop`` asks the server to shut down through its API,
then checks that every process it started (kernels included) is gone.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+/)lab\?token=")


def chromium_path() -> str | None:
    """Debian's Chromium (or NANOLM_CHROMIUM): the browser every browser test drives."""
    for candidate in (os.environ.get("NANOLM_CHROMIUM"), shutil.which("chromium"),
                      "/usr/bin/chromium", shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def browser_or_skip(test: str):
    """(Playwright's sync API, Chromium's path), or skip ``test`` saying what is missing."""
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason=f"{test}: playwright is not installed (dev extra)")
    executable = chromium_path()
    if executable is None:
        pytest.skip(f"{test}: no Chromium (apt-get install chromium, or NANOLM_CHROMIUM=PATH)")
    return playwright_api, executable


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _exited(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` (not necessarily our child) to end."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([handle], [], [], timeout)
        return bool(readable)
    finally:
        os.close(handle)


class LabServer:
    """``make TARGET`` in ``root`` (the repository, or a student kit with its own venv)."""

    def __init__(self, workspace: Path, scratch: Path, log_path: Path, target: str = "lab",
                 root: Path = REPO, venv: Path | None = None):
        self.token = secrets.token_hex(16)
        self.log_path = log_path
        self.lines: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        venv = Path(venv or sys.prefix)
        env = dict(os.environ, NANOLM_SMOKE="1", NANOLM_RUNS=str(scratch / "runs"),
                   NANOLM_CACHE=str(scratch / "cache"), JUPYTER_RUNTIME_DIR=str(scratch / "rt"))
        lab_args = (f"--no-browser --port={_free_port()} --ServerApp.ip=127.0.0.1 "
                    f"--IdentityProvider.token={self.token}")
        # The Makefile's own target; its set-up step is skipped (-o): this environment is set up.
        command = ["make", "--no-print-directory", "-C", str(root), target, f"VENV={venv}",
                   "-o", f"{venv}/.installed", f"WORKSPACE={workspace}", f"LAB_ARGS={lab_args}"]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        with open(self.log_path, "w") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                self.lines.append(line)
                match = URL_LINE.search(line)
                if match and not self._ready.is_set():
                    self.url = match.group(1)
                    self._ready.set()
        self._ready.set()  # the server ended: whoever waits stops waiting

    def wait_ready(self, timeout: float) -> str:
        """The server's URL once it answers: it prints the URL before it accepts connections
        (measured: the first request right after the line can be refused)."""
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        if not self._ready.wait(timeout) or self.url is None:
            raise RuntimeError(f"jupyter lab did not start; its log:\n{''.join(self.lines[-40:])}")
        while True:
            try:
                urllib.request.urlopen(self.page("api/status"), timeout=10).close()
                return self.url
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("jupyter lab printed its URL but does not answer; its "
                                       f"log:\n{''.join(self.lines[-40:])}") from None
                time.sleep(0.2)

    def page(self, path: str) -> str:
        return f"{self.url}{path}{'&' if '?' in path else '?'}token={self.token}"

    def stop(self, timeout: float = 60) -> list[int]:
        """Shut the server down; returns the processes it started that outlived it (killed)."""
        import urllib.request

        started = _descendants(self.process.pid)
        if self.url and self.process.poll() is None:
            request = urllib.request.Request(self.page("api/shutdown"), method="POST")
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except OSError:
                pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
        survivors = [pid for pid in started if not _exited(pid, timeout)]
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
        return survivors
