"""No network in the sandbox: a grading kernel reaches neither a port of the host nor another
kernel. Real kernels under bubblewrap, started the grader's way (LimitedExecute, its kernel
manager and the sandbox launcher), talking to the grader over Unix sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograde.course import read_json_file
from autograde.sandbox.kernel import KERNEL_NAME, prepare_kernel
from autograde.sandbox.launcher import ENV_VAR, SandboxSettings, bwrap_path
from autograde.sandbox.preprocessors import LimitedExecute
from hostile.hostile_class import LIMITS, REPO, needs_bwrap

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
# What a student looking for the host or a neighbour would try first.
PROBE = """\
import json, os, socket
found = {{}}
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=10).close()
    found["host port"] = "connected"
except OSError as error:
    found["host port"] = type(error).__name__
found["tcp"] = [line.split() for name in ("/proc/net/tcp", "/proc/net/tcp6")
                for line in open(name).read().splitlines()[1:]]
found["network namespace"] = os.readlink("/proc/self/ns/net")
for name, path in [*zip({neighbour!r}, {neighbour!r}), ("abstract", {abstract!r})]:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
        found[name] = "connected"
    except OSError as error:
        found[name] = type(error).__name__
unix = open("/proc/net/unix").read()
found["neighbour listed"] = [path for path in {neighbour!r} if path in unix]
print(json.dumps(found))
"""


def _executor(root: Path) -> tuple[LimitedExecute, Path]:
    """A grader's executor for a fresh sandboxed kernel under ``root``; and its folder."""
    run = prepare_kernel(root / "run", None, None, LIMITS, root / "jupyter")
    executor = LimitedExecute(
        timeout=LIMITS.cell_timeout_s, kernel_name=KERNEL_NAME, startup_timeout=120,
        limits_report=str(run.limits_report), status_file=str(run.status_file),
        kernelspec_dir=str(root / "jupyter" / "kernels"))
    return executor, run.workdir


def _tcp_sockets() -> list[list[str]]:
    """The host's /proc/net/tcp and tcp6 rows, split (local address 1, inode 9)."""
    return [line.split() for name in ("/proc/net/tcp", "/proc/net/tcp6")
            for line in Path(name).read_text().splitlines()[1:]]


def _host_listener() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


@needs_bwrap
def test_a_kernel_reaches_neither_the_host_nor_its_neighbour(tmp_path):
    listener = _host_listener()
    port = listener.getsockname()[1]
    socket.create_connection(("127.0.0.1", port), timeout=10).close()  # the host itself can
    # an abstract Unix socket (as D-Bus and others use): it belongs to the network namespace
    abstract_name = f"\0autograde-test-{os.getpid()}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(abstract_name)
    abstract.listen()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(abstract_name)   # from the host, it answers
    neighbour, neighbour_dir = _executor(tmp_path / "neighbour")
    neighbour.resources = {"metadata": {"path": str(neighbour_dir)}}
    prober, prober_dir = _executor(tmp_path / "prober")
    with neighbour.setup_kernel():   # a live kernel, side by side with the prober's
        km = neighbour.km
        assert km.transport == "ipc"
        sockets = [f"{km.ip}-{number}" for number in km.ports]
        for path in sockets:   # its sockets are there: from the host, one connects
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(path)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            PROBE.format(port=port, neighbour=sockets, abstract=abstract_name))])
        nb, _ = prober.preprocess(nb, {"metadata": {"path": str(prober_dir)}})
        host_sockets = _tcp_sockets()
    listener.close()
    abstract.close()
    outputs = nb.cells[0].outputs
    assert outputs and outputs[0].get("name") == "stdout", outputs
    found = json.loads(outputs[0]["text"])
    assert found["host port"] == "ConnectionRefusedError", found   # its own loopback only
    # its own network namespace: none of the host's sockets (inodes are system-wide), not
    # the listener (only what the kernel itself opened on its own loopback, if anything)
    assert found["network namespace"] != os.readlink("/proc/self/ns/net")
    assert f"0100007F:{port:04X}" in {row[1] for row in host_sockets}
    assert f"0100007F:{port:04X}" not in {row[1] for row in found["tcp"]}, found["tcp"]
    assert not {row[9] for row in found["tcp"]} & {row[9] for row in host_sockets}, found["tcp"]
    for path in sockets:
        assert found[path] == "FileNotFoundError", (path, found[path])
    assert found["neighbour listed"] == []
    assert found["abstract"] == "ConnectionRefusedError", found
    assert not Path(km.ip).parent.exists(), "the kernel's socket folder outlived it"


@needs_bwrap
def test_the_launcher_refuses_a_tcp_kernel_under_bubblewrap(tmp_path):
    """A kernel manager that asks for TCP gets a clear refusal at once, not a kernel the grader
    could never reach (and waits for until its start-up timeout)."""
    from jupyter_client.connect import write_connection_file

    connection, _ = write_connection_file(str(tmp_path / "kernel.json"))
    status = tmp_path / "kernel-status.json"
    settings = SandboxSettings(status_file=str(status), scratch=str(tmp_path))
    assert bwrap_path()
    done = subprocess.run([sys.executable, "-m", "autograde.sandbox.launcher", connection], cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", ENV_VAR: settings.to_env()},
                          timeout=60)
    assert done.returncode == 1
    assert "TCP" in read_json_file(status, {})["message"]
