"""``python -m autograde check NOTEBOOK``: a student's self-check, question by question.

The notebook runs the way the grader runs it (smoke size, the same sandboxed kernel and
limits), but against the lesson's *visible* tests only, and a question whose solution uses or
copies the reference is shown at 0 with the reason, as grading scores it by default: every test cell is replaced by the
released version from ``lessons/`` (so an edited or deleted test cell is put back), and no
hidden test is involved. Each question's points come from nbgrader's own scoring rule
(``nbgrader.utils.determine_grade``: an error, or anything on stderr, scores 0).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from autograde.course import (
    LESSON_NAME,
    LESSONS_DIR,
    GraderError,
    copy_plain_file,
    grade_cells,
    nbgrader_meta,
    read_notebook,
)
from autograde.kernel import KERNEL_NAME, Limits, cell_failure, prepare_kernel, read_json_file


@dataclass
class QuestionResult:
    """One test cell's outcome."""

    grade_id: str
    score: float
    max_score: float
    message: str | None   # the failure, None when passed

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score


def restore_test_cells(nb, lesson_nb) -> None:
    """Put the lesson's visible test cells into ``nb`` (in place), by grade_id: edited ones
    are overwritten, deleted ones re-inserted after the cell that preceded them."""
    lesson_cells = {nbgrader_meta(c)["grade_id"]: c for c in lesson_nb.cells
                    if nbgrader_meta(c).get("grade")}
    present = {}
    for index, cell in enumerate(nb.cells):
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in lesson_cells:
            nb.cells[index] = lesson_cells[grade_id]
            present[grade_id] = index
    for position, cell in enumerate(lesson_nb.cells):
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in lesson_cells and grade_id not in present:
            previous = lesson_nb.cells[position - 1] if position else None
            previous_id = nbgrader_meta(previous).get("grade_id") if previous is not None \
                else None
            ids = [nbgrader_meta(c).get("grade_id") for c in nb.cells]
            insert_at = ids.index(previous_id) + 1 if previous_id in ids else len(nb.cells)
            nb.cells.insert(insert_at, cell)


def _copy_earlier_notebooks(lesson_folder: Path, sandbox: Path) -> None:
    """The notebooks next to the lesson (``workspace/NN_slug/NN_slug.ipynb``), next to the
    kernel's folder: in a staged kit the set-up cell loads the student's own earlier pieces
    from them."""
    for sibling in sorted(lesson_folder.parent.iterdir()):
        notebook = sibling / f"{sibling.name}.ipynb"
        if sibling != lesson_folder and LESSON_NAME.match(sibling.name) and notebook.is_file():
            copy_plain_file(notebook, sandbox / sibling.name / notebook.name)


def check_notebook(notebook: Path, lessons_dir: Path = LESSONS_DIR,
                   limits: Limits | None = None) -> tuple[str, list[QuestionResult], list[dict]]:
    """Run ``notebook`` with its lesson's visible tests: ``(lesson, results, limits hit)``."""
    from nbgrader.preprocessors import IgnorePattern
    from nbgrader.utils import determine_grade

    from autograde.course import ensure_tools_on_path, load_config
    from autograde.preprocessors import LimitedExecute

    notebook = Path(notebook).resolve()
    lesson = notebook.stem
    lesson_file = Path(lessons_dir) / lesson / f"{lesson}.ipynb"
    if not notebook.is_file():
        raise GraderError(f"{notebook}: no such notebook")
    if not lesson_file.is_file():
        raise GraderError(f"{notebook.name}: not a lesson notebook (expected NN_slug.ipynb "
                          f"named like a folder of {lessons_dir})")
    limits = limits or Limits()
    nb = read_notebook(notebook)
    lesson_nb = read_notebook(lesson_file)
    restore_test_cells(nb, lesson_nb)
    ensure_tools_on_path()
    with tempfile.TemporaryDirectory(prefix="autograde-check-") as tmp:
        # the kernel's folder: the lesson's own files (the student's, in the workspace)
        # nbgrader's own switch to the grader's (smoke) size, as while autograding
        run = prepare_kernel(Path(tmp) / "run", notebook.parent, None, limits,
                             Path(tmp) / "jupyter", execution="autograde")
        _copy_earlier_notebooks(notebook.parent, run.sandbox)
        config = load_config()
        executor = LimitedExecute(
            config=config, timeout=limits.cell_timeout_s, max_output_bytes=limits.output_bytes,
            max_notebook_output_bytes=limits.notebook_output_bytes, kernel_name=KERNEL_NAME,
            startup_timeout=120, limits_report=str(run.limits_report),
            status_file=str(run.status_file), kernelspec_dir=str(Path(tmp) / "jupyter" / "kernels"))
        nb, _ = executor.preprocess(nb, {"metadata": {"path": str(run.workdir)}})
        ignore = IgnorePattern(config=config)
        for index, cell in enumerate(nb.cells):
            ignore.preprocess_cell(cell, {}, index)
        hits = read_json_file(run.limits_report, [])
    results = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if not meta.get("grade") or cell.cell_type != "code":
            continue
        score, max_score = determine_grade(cell)
        message = None
        if score < max_score:
            message = cell_failure(cell, limits) or "failed"
        results.append(QuestionResult(meta["grade_id"], float(score), float(max_score), message))
    _apply_copy_policy(read_notebook(notebook), lesson_nb, results)
    order = [c["grade_id"] for c in grade_cells(lesson_nb) if c["kind"] == "test"]
    results.sort(key=lambda r: order.index(r.grade_id) if r.grade_id in order else len(order))
    return lesson, results, hits


def _apply_copy_policy(nb, lesson_nb, results: list[QuestionResult]) -> None:
    """Questions whose code uses or copies the reference, or breaks the question's policy,
    score 0 here, as they will when graded under the default policy (``grade --copied zero``);
    the message says why."""
    from autograde.copycheck import load_fingerprints
    from autograde.scan import policy_notes, scan_notebook

    graded = {c["grade_id"] for c in grade_cells(lesson_nb) if c["kind"] == "solution"}
    flags = scan_notebook(nb, graded, load_fingerprints(), released=lesson_nb)
    notes = policy_notes([flag.to_dict() for flag in flags])
    for result in results:
        texts = notes.get(result.grade_id.removeprefix("test_"))
        if texts:
            result.score = 0.0
            result.message = "\n".join(texts + ([result.message] if result.message else []))


def format_results(lesson: str, notebook: Path, results: list[QuestionResult],
                   hits: list[dict]) -> str:
    """The self-check's printout."""
    lines = [f"{lesson}: {notebook} (visible tests only; hidden tests run when it is graded)"]
    width = max([len(r.grade_id) for r in results] + [8])
    for r in results:
        status = "passed" if r.passed else "FAILED"
        lines.append(f"  {r.grade_id:<{width}}  {r.score:g} / {r.max_score:g}  {status}")
        if r.message:
            lines += [f"      {line}" for line in r.message.splitlines()[:8]]
    for hit in hits:
        lines.append(f"  limit hit: {hit['message']}")
    total = sum(r.score for r in results)
    maximum = sum(r.max_score for r in results)
    lines.append(f"total {total:g} / {maximum:g} on the visible tests")
    return "\n".join(lines)
