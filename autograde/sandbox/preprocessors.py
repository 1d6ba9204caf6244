"""nbgrader's Execute, made to grade what completed when a submission hits a limit.

Plain nbgrader stops at a dead kernel (``nbgrader autograde`` fails for the notebook and records
nothing). :class:`LimitedExecute` instead

* catches a dead kernel (wall-clock limit, memory kill, ``os._exit``), marks every cell that did
  not run with an error output saying why, and lets the rest of the pipeline score the notebook:
  tests that passed before the end keep their points, the others get none (a test cell without
  output would otherwise count as passed);
* caps each cell's output (``max_output_bytes``): past it, further output is dropped, the kernel
  is interrupted, and the cell gets an ``OutputLimitExceeded`` error;
* before each test cell, drops ``nanolm_lib.grading.checks`` from ``sys.modules`` so that the
  tests use a fresh copy of their helpers (the reference itself is loaded fresh by
  ``checks.reference``);
* caps the output of the whole notebook (``max_notebook_output_bytes``): past it, output is
  dropped (the cells still run and score);
* kills a kernel that does not stop within ``interrupt_grace_s`` of the interrupt at the cell
  limit (a loop that swallows KeyboardInterrupt, a kernel stuck flushing its output): the rest
  of the notebook is graded as not run, instead of waiting for the notebook's wall clock;
* stops the kernel as soon as the notebook has run (``shutdown_wait_s``): its state is of no
  further use, and waiting for a graceful exit cost seconds per notebook;
* records every limit hit (cell timeout, output, memory, wall clock, dead kernel, and the
  sandbox's own: processes, threads, /tmp, disk) in the JSON file ``limits_report``, for the
  grade report. It and the launcher's ``status_file`` live in a folder the kernel cannot see
  or write (:mod:`autograde.sandbox.kernel`);
* talks to the kernel over Unix sockets (:class:`SandboxKernelManager`): the sandbox has no
  network.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

from jupyter_client import AsyncKernelManager
from jupyter_client.manager import KernelManager
from nbclient.exceptions import DeadKernelError
from nbclient.util import ensure_async
from nbconvert.preprocessors import Preprocessor
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Float, Integer, Unicode, default

from autograde.course import nbgrader_meta, read_json_file

# Run silently before every test cell: the cell's `from nanolm_lib.grading.checks import ...`
# then loads the test helpers afresh from disk, whatever a submission did to the imported module.
RESTORE_CHECKS = """\
import sys as _autograde_sys
_autograde_sys.modules.pop("nanolm_lib.grading.checks", None)
if "nanolm_lib.grading" in _autograde_sys.modules:
    vars(_autograde_sys.modules["nanolm_lib.grading"]).pop("checks", None)
del _autograde_sys
"""


def is_memory_error(ename: str, evalue: str) -> bool:
    """True for Python's MemoryError and torch's failed CPU allocations."""
    return ename == "MemoryError" or "can't allocate memory" in evalue or (
        "DefaultCPUAllocator" in evalue)


def cell_name(nb, index: int) -> str:
    """How the reports and the feedback name the notebook's cell at ``index``: its number among
    the code cells, from 1 (as the static scan counts them), and what it is."""
    number = sum(1 for cell in nb.cells[:index + 1] if cell.cell_type == "code")
    if not 0 <= index < len(nb.cells):
        return f"code cell {number}"
    meta = nbgrader_meta(nb.cells[index])
    grade_id = meta.get("grade_id")
    if not isinstance(grade_id, str):  # a lesson's example or a cell the student added
        first = next((line.strip() for line in nb.cells[index].source.splitlines()
                      if line.strip()), "")
        return f"code cell {number} ({first[:60]!r})" if first else f"code cell {number}"
    kind = ("solution cell" if meta.get("solution") else "test cell" if meta.get("grade")
            else "set-up cell")
    return f"code cell {number} ({kind} {grade_id})"


def _error_output(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"{ename}: {evalue}"])


def _short_temp_dir() -> str:
    """A folder for Unix sockets: their paths hold at most 107 bytes, so not a deep one."""
    folder = tempfile.gettempdir()
    return folder if len(folder) <= 40 else "/tmp"


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager that reaches its kernel over Unix sockets (jupyter_client's ``ipc``
    transport), since the sandbox has no network: they live in a fresh folder of their own
    (``ip`` is their path prefix) that the sandbox launcher binds, and only that kernel's
    sandbox, into which no other kernel's folder is bound, can reach them. The folder goes
    when the kernel's resources are cleaned up."""

    @default("transport")
    def _transport_default(self) -> str:
        return "ipc"

    def _ip_default(self) -> str:
        if self.transport != "ipc":
            return super()._ip_default()
        return str(Path(tempfile.mkdtemp(prefix="autograde-ipc-", dir=_short_temp_dir()),
                        "kernel"))

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await KernelManager._async_cleanup_resources(self, restart=restart)
        if self.transport == "ipc" and not restart:
            shutil.rmtree(Path(self.ip).parent, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources


class LimitedExecute(Execute):
    """Execute with an output cap per cell and a graceful end when the kernel dies."""

    max_output_bytes = Integer(
        1_000_000, help="Largest output (stream text and display data) one cell may produce."
    ).tag(config=True)
    max_notebook_output_bytes = Integer(
        10_000_000, help="Largest output of all the notebook's cells together.").tag(config=True)
    interrupt_grace_s = Float(
        5.0, help="Seconds a kernel has to stop after the interrupt at the cell limit before "
                  "it is killed.").tag(config=True)
    limits_report = Unicode("", help="Where the limits hit are written (JSON).").tag(config=True)
    status_file = Unicode("", help="Where the sandbox launcher says why the kernel ended."
                          ).tag(config=True)
    kernelspec_dir = Unicode("", help="Folder of the sandboxed kernelspec (else Jupyter's "
                             "search path).").tag(config=True)
    shutdown_wait_s = Float(
        1.0, help="Seconds jupyter_client gives a graded kernel to end: half after the shutdown "
                  "request, then SIGTERM (the sandbox launcher stops the sandbox and exits), "
                  "the other half before SIGKILL.").tag(config=True)

    def __init__(self, *args, **kwargs):
        # before nbgrader's Execute, which sets its own (TCP) kernel manager
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        # The graded kernel's state is thrown away: rather than waiting for it to exit (about
        # 2 s in the sandbox, up to jupyter_client's default of 5 s), the sandbox launcher gets
        # SIGTERM after half of shutdown_wait_s, on which it stops the whole sandbox and exits.
        km.shutdown_wait_time = self.shutdown_wait_s
        if self.kernelspec_dir:
            from jupyter_client.kernelspec import KernelSpecManager

            km.kernel_spec_manager = KernelSpecManager(kernel_dirs=[self.kernelspec_dir])
        return km

    def preprocess(self, nb, resources, km=None):
        self._limit_hits: list[dict] = []
        self._current_index = 0
        self._cell_output_bytes = 0
        self._notebook_output_bytes = 0
        self._notebook_over_limit = False
        self._cell_over_limit = False
        self._stuck: dict | None = None
        try:
            return super().preprocess(nb, resources, km=km)
        except DeadKernelError:
            hit = self._kernel_end_reason()
            self._limit_hits.append(hit)
            self._mark_not_run(nb, self._current_index, hit)
            return nb, resources
        finally:
            self._write_report()

    def preprocess_cell(self, cell, resources, index):
        self._current_index = index
        self._cell_output_bytes = 0
        self._cell_over_limit = False
        if cell.cell_type == "code" and nbgrader_meta(cell).get("grade"):
            self.wait_for_reply(self.kc.execute(RESTORE_CHECKS, silent=True, store_history=False))
        return super().preprocess_cell(cell, resources, index)

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        reply = kwargs["execute_reply"]["content"]
        index = kwargs["cell_index"]
        if reply.get("status") == "error" and reply.get("ename") == "CellTimeoutError":
            message = (f"{cell_name(self.nb, index)} ran longer than the per-cell limit of "
                       f"{self.timeout} s and was interrupted")
            self._limit_hits.append({"limit": "cell-timeout", "cell": index,
                                     "message": message})
            for output in kwargs["cell"].outputs:  # nbgrader's "No reply from kernel"
                if output.get("output_type") == "error" and output.ename == "CellTimeoutError":
                    output.evalue, output.traceback = message, [f"CellTimeoutError: {message}"]
        if reply.get("status") == "error" and is_memory_error(reply.get("ename", ""),
                                                               reply.get("evalue", "")):
            self._limit_hits.append({
                "limit": "memory", "cell": index,
                "message": f"{cell_name(self.nb, index)} hit the memory limit "
                           f"({reply.get('ename')}: {reply.get('evalue', '')[:200]})".strip()})
        if self._cell_over_limit:
            kwargs["cell"].outputs.append(_error_output("OutputLimitExceeded",
                                                        self._cell_over_limit))

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] in ("stream", "display_data", "execute_result", "update_display_data"):
            content = msg["content"]
            size = len(content.get("text", "")) + sum(
                len(str(value)) for value in content.get("data", {}).values())
            self._cell_output_bytes += size
            self._notebook_output_bytes += size
            if self._notebook_output_bytes > self.max_notebook_output_bytes:
                # past the notebook's cap, output is dropped; the cells still run (and
                # score), without an interrupt per cell
                if not self._notebook_over_limit:
                    self._notebook_over_limit = True
                    self._limit_hits.append({
                        "limit": "output", "cell": cell_index,
                        "message": f"the notebook printed more than "
                                   f"{self.max_notebook_output_bytes} bytes in all; output "
                                   f"from {cell_name(self.nb, cell_index)} on was dropped"})
                return None
            if self._cell_output_bytes > self.max_output_bytes:
                if not self._cell_over_limit:
                    self._cell_over_limit = (f"the cell printed more than "
                                             f"{self.max_output_bytes} bytes; it was interrupted")
                    self._limit_hits.append({
                        "limit": "output", "cell": cell_index,
                        "message": f"{cell_name(self.nb, cell_index)} printed more than "
                                   f"{self.max_output_bytes} bytes and was interrupted"})
                    asyncio.ensure_future(ensure_async(self.km.interrupt_kernel()))
                return None
        return super().output(outs, msg, display_id, cell_index)

    async def _async_handle_timeout(self, timeout, cell=None):
        """Interrupt at the cell limit; a kernel that does not answer within the grace period
        is killed, and the notebook ends here (graded on what completed)."""
        reply = await super()._async_handle_timeout(timeout, cell)
        try:
            await asyncio.wait_for(self._idle_after_interrupt(), self.interrupt_grace_s)
        except TimeoutError:
            self._stuck = {"limit": "cell-timeout", "cell": self._current_index,
                           "message": f"{cell_name(self.nb, self._current_index)} ran longer "
                                      "than the per-cell limit of "
                                      f"{self.timeout} s and did not stop within "
                                      f"{self.interrupt_grace_s:g} s of the interrupt; the "
                                      "kernel was stopped"}
            await ensure_async(self.km.shutdown_kernel(now=True))
            raise DeadKernelError("kernel did not stop after the interrupt") from None
        return reply

    async def _idle_after_interrupt(self) -> None:
        """Until the kernel answers a request again (it is idle)."""
        while True:
            msg_id = self.kc.kernel_info()
            try:
                while True:
                    msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=1))
                    if msg["parent_header"].get("msg_id") == msg_id:
                        return
            except Exception:  # Empty: no answer yet, ask again
                continue

    # ----------------------------------------------------------------------------- helpers
    def _kernel_end_reason(self) -> dict:
        if self._stuck:
            return self._stuck
        status = read_json_file(Path(self.status_file), None) if self.status_file else None
        where = cell_name(self.nb, self._current_index)
        if isinstance(status, dict) and isinstance(status.get("message"), str):
            status["cell"] = self._current_index
            status["message"] = f"{status['message']} (in {where})"
            return status
        return {"limit": "dead-kernel", "cell": self._current_index,
                "message": f"the kernel died in {where} (os._exit, a crash, or killed from "
                           "outside)"}

    @staticmethod
    def _mark_not_run(nb, first_index: int, hit: dict) -> None:
        ename = {"wall-clock": "WallClockLimit", "killed": "KernelKilled",
                 "cell-timeout": "CellTimeoutError", "memory": "MemoryLimit",
                 "processes": "ProcessLimit", "threads": "ThreadLimit", "tmp": "TmpLimit",
                 "disk": "DiskLimit"}.get(
            hit.get("limit"), "KernelDied")
        for index, cell in enumerate(nb.cells):
            if index >= first_index and cell.cell_type == "code":
                reason = hit["message"] if index == first_index else (
                    f"not run: the notebook stopped earlier: {hit['message']}")
                cell.outputs.append(_error_output(ename, reason))

    def _write_report(self) -> None:
        if self.limits_report:
            Path(self.limits_report).write_text(json.dumps(self._limit_hits))


class HideHiddenTests(Preprocessor):
    """For feedback: each test cell keeps its result and failure message, not its hidden tests.

    The hidden regions (``### BEGIN/END HIDDEN TESTS``) leave the cell's source, and an error's
    traceback (which quotes the failing source lines) shrinks to ``Name: message``, so the
    feedback a student receives (and passes on to the next cohort) does not list the hidden
    cases. ``grade --show-hidden-tests`` leaves this preprocessor out.
    """

    def preprocess_cell(self, cell, resources, index):
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code" or not meta.get("grade"):
            return cell, resources
        lines, hidden = [], False
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                hidden = True
                lines.append("# (hidden tests: their result is this cell's score)")
            elif "END HIDDEN TESTS" in line:
                hidden = False
            elif not hidden:
                lines.append(line)
        cell.source = "\n".join(lines)
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                message = f"{output.get('ename', '')}: {output.get('evalue', '')}"
                output["traceback"] = [message]
        return cell, resources
