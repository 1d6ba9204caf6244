"""nbgrader's Execute, made to grade what completed when a submission hits a limit.

Plain nbgrader stops at a dead kernel (``nbgrader autograde`` fails for the notebook and records
nothing). :class:`LimitedExecute` instead

* catches a dead kernel (wall-clock limit, memory kill, ``os._exit``), marks every cell that did
  not run with an error output saying why, and lets the rest of the pipeline score the notebook:
  tests that passed before the end keep their points, the others get none (a test cell without
  output would otherwise count as passed);
* caps each cell's output (``max_output_bytes``): past it, further output is dropped, the kernel
  is interrupted, and the cell gets an ``OutputLimitExceeded`` error;
* before each test cell, drops ``nanolm_lib.checks`` from ``sys.modules`` so that the tests use
  a fresh copy of their helpers (the reference itself is loaded fresh by ``checks.reference``);
* records every limit hit (cell timeout, output, memory, wall clock, dead kernel) in a JSON file
  named by the ``AUTOGRADE_LIMITS_REPORT`` environment variable, for the grade report.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from nbclient.exceptions import DeadKernelError
from nbclient.util import ensure_async
from nbconvert.preprocessors import Preprocessor
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer

REPORT_ENV = "AUTOGRADE_LIMITS_REPORT"

# Run silently before every test cell: the cell's `from nanolm_lib.checks import ...` then loads
# the test helpers afresh from disk, whatever a submission did to the imported module.
RESTORE_CHECKS = """\
import sys as _autograde_sys
_autograde_sys.modules.pop("nanolm_lib.checks", None)
if "nanolm_lib" in _autograde_sys.modules:
    vars(_autograde_sys.modules["nanolm_lib"]).pop("checks", None)
del _autograde_sys
"""


def is_memory_error(ename: str, evalue: str) -> bool:
    """True for Python's MemoryError and torch's failed CPU allocations."""
    return ename == "MemoryError" or "can't allocate memory" in evalue or (
        "DefaultCPUAllocator" in evalue)


def _error_output(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"{ename}: {evalue}"])


class LimitedExecute(Execute):
    """Execute with an output cap per cell and a graceful end when the kernel dies."""

    max_output_bytes = Integer(
        1_000_000, help="Largest output (stream text and display data) one cell may produce."
    ).tag(config=True)

    def preprocess(self, nb, resources, km=None):
        self._limit_hits: list[dict] = []
        self._current_index = 0
        self._cell_output_bytes = 0
        self._cell_over_limit = False
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
        if cell.cell_type == "code" and cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            self.wait_for_reply(self.kc.execute(RESTORE_CHECKS, silent=True, store_history=False))
        return super().preprocess_cell(cell, resources, index)

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        reply = kwargs["execute_reply"]["content"]
        if reply.get("status") == "error" and reply.get("ename") == "CellTimeoutError":
            self._limit_hits.append({
                "limit": "cell-timeout", "cell": kwargs["cell_index"],
                "message": f"a cell ran longer than the per-cell limit of {self.timeout} s "
                           "and was interrupted"})
        if reply.get("status") == "error" and is_memory_error(reply.get("ename", ""),
                                                               reply.get("evalue", "")):
            self._limit_hits.append({
                "limit": "memory", "cell": kwargs["cell_index"],
                "message": "a cell hit the memory limit "
                           f"({reply.get('ename')}: {reply.get('evalue', '')[:200]})".strip()})
        if self._cell_over_limit:
            kwargs["cell"].outputs.append(_error_output(
                "OutputLimitExceeded",
                f"the cell printed more than {self.max_output_bytes} bytes; it was interrupted"))

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] in ("stream", "display_data", "execute_result", "update_display_data"):
            content = msg["content"]
            size = len(content.get("text", "")) + sum(
                len(str(value)) for value in content.get("data", {}).values())
            self._cell_output_bytes += size
            if self._cell_output_bytes > self.max_output_bytes:
                if not self._cell_over_limit:
                    self._cell_over_limit = True
                    self._limit_hits.append({
                        "limit": "output", "cell": cell_index,
                        "message": f"a cell printed more than {self.max_output_bytes} bytes "
                                   "and was interrupted"})
                    asyncio.ensure_future(ensure_async(self.km.interrupt_kernel()))
                return None
        return super().output(outs, msg, display_id, cell_index)

    # ----------------------------------------------------------------------------- helpers
    def _kernel_end_reason(self) -> dict:
        from autograde.sandbox import SandboxSettings

        status_file = SandboxSettings.from_env().status_file
        if status_file and Path(status_file).is_file():
            status = json.loads(Path(status_file).read_text())
            status["cell"] = self._current_index
            return status
        return {"limit": "dead-kernel", "cell": self._current_index,
                "message": "the kernel died (os._exit, a crash, or killed from outside)"}

    @staticmethod
    def _mark_not_run(nb, first_index: int, hit: dict) -> None:
        ename = {"wall-clock": "WallClockLimit", "killed": "KernelKilled"}.get(
            hit.get("limit"), "KernelDied")
        for index, cell in enumerate(nb.cells):
            if index >= first_index and cell.cell_type == "code":
                reason = hit["message"] if index == first_index else (
                    f"not run: {hit['message']} in an earlier cell")
                cell.outputs.append(_error_output(ename, reason))

    def _write_report(self) -> None:
        path = os.environ.get(REPORT_ENV)
        if path:
            Path(path).write_text(json.dumps(self._limit_hits))


class HideHiddenTests(Preprocessor):
    """For feedback: each test cell keeps its result and failure message, not its hidden tests.

    The hidden regions (``### BEGIN/END HIDDEN TESTS``) leave the cell's source, and an error's
    traceback (which quotes the failing source lines) shrinks to ``Name: message``, so the
    feedback a student receives (and passes on to the next cohort) does not list the hidden
    cases. ``grade --show-hidden-tests`` leaves this preprocessor out.
    """

    def preprocess_cell(self, cell, resources, index):
        meta = cell.get("metadata", {}).get("nbgrader", {})
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
