"""Run a lesson's test cells in-process against variants of its solution cells.

This exercises the test cells' logic without nbgrader (fast enough to try every bug variant):
the solution notebook's set-up cells, solution cells (one or more replaced by a variant) and
test cells (hidden tests included) run in order in one namespace, as in a kernel; demonstration
cells are skipped. The result says which test cells failed and with what message.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"


@dataclass
class TestOutcome:
    grade_id: str
    passed: bool
    message: str


def _strip_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def lesson_cells(lesson: str) -> list[tuple[str, str, str]]:
    """``(kind, grade_id, source)`` of the nbgrader cells of a solution notebook, in order;
    kind is "solution", "test" or "locked"."""
    nb = nbformat.read(str(SOLUTIONS / lesson / f"{lesson}.ipynb"), as_version=4)
    cells = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade_id"):
            continue
        kind = "test" if meta.get("grade") else "solution" if meta.get("solution") else "locked"
        cells.append((kind, meta["grade_id"], cell.source))
    return cells


HIDDEN_BLOCK = re.compile(r"### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS\n?", re.S)


def run_lesson(lesson: str, replacements: dict[str, str] | None = None,
               hidden: bool = True) -> dict[str, TestOutcome]:
    """Execute the lesson with ``replacements`` ({solution grade_id: source}); outcomes by
    test grade_id. Runs at smoke size, as under nbgrader. ``hidden=False`` runs the test
    cells as the student sees them: without their hidden tests."""
    replacements = dict(replacements or {})
    cells = lesson_cells(lesson)
    unknown = set(replacements) - {gid for kind, gid, _ in cells if kind == "solution"}
    if unknown:
        raise KeyError(f"{lesson}: no solution cell {sorted(unknown)}")
    namespace: dict = {"__name__": "__main__"}
    outcomes: dict[str, TestOutcome] = {}
    saved = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        for kind, grade_id, source in cells:
            source = _strip_magics(replacements.get(grade_id, source))
            if kind == "test" and not hidden:
                source = HIDDEN_BLOCK.sub("", source)
            stderr = io.StringIO()
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
                    exec(compile(source, f"<{lesson}:{grade_id}>", "exec"), namespace)
            except Exception as error:  # a failing cell, as the kernel would show it
                if kind == "test":
                    message = f"{type(error).__name__}: {error}"
                    outcomes[grade_id] = TestOutcome(grade_id, False, message)
                elif kind == "locked":
                    raise RuntimeError(f"{lesson}: locked cell {grade_id} failed:\n"
                                       f"{traceback.format_exc()}") from error
                continue
            if kind == "test":
                outcomes[grade_id] = TestOutcome(grade_id, True, stderr.getvalue())
    finally:
        if saved is None:
            os.environ.pop("NBGRADER_EXECUTION", None)
        else:
            os.environ["NBGRADER_EXECUTION"] = saved
    return outcomes


def failing(outcomes: dict[str, TestOutcome]) -> set[str]:
    return {gid for gid, outcome in outcomes.items() if not outcome.passed}
