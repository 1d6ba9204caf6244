"""``python -m autograde check NOTEBOOK``: a student's self-check, question by question.

The notebook runs the way the grader runs it (smoke size, the same sandboxed kernel and
limits) with the lesson's visible tests: every test cell is replaced by the released version
from ``lessons/`` (so an edited or deleted test cell is put back). Then, for a course lesson,
the grader's own verdict decides each question's points, as in grading: its sandboxed run of
the solution cells, its question code and comparison, on practice cases
(:mod:`autograde.student.practice`; grading draws cases of its own). A question whose solution uses
or copies the reference is shown at 0 with the reason, as grading scores it by default. Lessons
outside the course (the tests' toy lessons) keep nbgrader's scoring rule on the visible tests
(``nbgrader.utils.determine_grade``: an error, or anything on stderr, scores 0).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autograde.course import (
    LESSON_NAME,
    LESSONS_DIR,
    GraderError,
    copy_plain_file,
    ensure_tools_on_path,
    grade_cells,
    load_config,
    nbgrader_meta,
    read_json_file,
    read_notebook,
)
from autograde.integrity.copycheck import load_fingerprints
from autograde.integrity.scan import policy_notes, scan_notebook
from autograde.sandbox.kernel import (
    KERNEL_NAME,
    Limits,
    cell_failure,
    prepare_kernel,
)
from autograde.sandbox.preprocessors import LimitedExecute
from autograde.sandbox.verdict import (
    HIDDEN_PREFIX,
    PACKAGE_DIR,
    Verdict,
    graded_by_verdict,
    stage_grading_library,
)
from autograde.student.practice import practice_cases, stored_practice
from nanolm_lib.grading.question_base import QUESTIONS


@dataclass
class QuestionResult:
    """One test cell's outcome."""

    grade_id: str
    score: float
    max_score: float
    message: str | None   # the failure, None when passed
    grader: str | None = None  # the grader's verdict on the practice cases (course lessons)
    visible_passed: bool = True

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


def check_notebook(notebook: Path, lessons_dir: Path = LESSONS_DIR, limits: Limits | None = None
                   ) -> tuple[str, list[QuestionResult], list[dict], list[str]]:
    """Run ``notebook`` with its lesson's visible tests: ``(lesson, results, limits hit,
    errors)``, the errors being those of cells that are not tests (``cell_errors``)."""
    from nbgrader.preprocessors import IgnorePattern
    from nbgrader.utils import determine_grade


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
        verdicts = (_grader_verdicts(notebook, lesson_file, Path(tmp) / "practice", limits,
                                     Path(lessons_dir)) if graded_by_verdict(lesson)
                    and QUESTIONS.get(lesson) else None)
    results = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if not meta.get("grade") or cell.cell_type != "code":
            continue
        score, max_score = determine_grade(cell)
        message = None
        if score < max_score:
            message = cell_failure(cell, limits) or "failed"
        result = QuestionResult(meta["grade_id"], float(score), float(max_score), message,
                                visible_passed=score >= max_score)
        if verdicts is not None and result.grade_id in verdicts:  # the grader decides
            verdict = verdicts[result.grade_id]
            result.score = result.max_score if verdict.passed else 0.0
            result.grader = verdict.message.removeprefix(HIDDEN_PREFIX)
        results.append(result)
    _apply_copy_policy(read_notebook(notebook), lesson_nb, results)
    order = [c["grade_id"] for c in grade_cells(lesson_nb) if c["kind"] == "test"]
    results.sort(key=lambda r: order.index(r.grade_id) if r.grade_id in order else len(order))
    return lesson, results, hits, cell_errors(nb)


def cell_errors(nb) -> list[str]:
    """One line per code cell that is not a test and raised: such a cell scores nothing, but
    the notebook did not run to its end as written (a lesson with no questions, such as
    lesson 00, is checked by this alone)."""
    errors = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or nbgrader_meta(cell).get("grade"):
            continue
        for output in cell.get("outputs", []):
            value = str(output.get("evalue", "")).splitlines()
            # the cells after a limit's (the limit hit is reported on its own)
            if output.get("output_type") == "error" and not (value and value[0].startswith(
                    "not run: ")):
                errors.append(f"cell {index + 1}: {output.get('ename')}: "
                              f"{value[0] if value else ''}"[:600])
    return errors


def _grader_verdicts(notebook: Path, released: Path, root: Path, limits: Limits,
                     lessons_dir: Path) -> dict:
    """test grade_id -> the grader's verdict on practice cases (:mod:`autograde.student.practice`):
    its own run of the solution cells, its question code and its comparison. With the
    reference at hand (the repository) the run gets grading's staged library and a failed
    question is rerun with the reference's helpers, as in grading; a kit has neither, so
    there the message says that grading reruns it."""

    lesson = notebook.stem
    verdict = Verdict.from_drawn(lesson, root / "cases", root / "records",
                                 practice_cases(lesson))
    if stored_practice(lesson):  # a kit: its own library is staged; the run gets a copy
        library = root / "library"
        shutil.copytree(PACKAGE_DIR, library / "nanolm_lib",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        verdict.run(notebook, released, root / "run", limits, library_dir=str(library))
        return _note_reruns(verdict, verdict.judge())

    def run(folder: str, keep=(), questions=None):
        library = stage_grading_library(root / "libraries" / folder, lesson, lessons_dir, keep)
        verdict.run(notebook, released, root / folder, limits, str(library),
                    questions=questions)

    run("hidden")
    return verdict.isolate(verdict.judge(), lambda name, helpers: run(
        f"hidden-{name}", helpers, [name]))


def _note_reruns(verdict: Verdict, verdicts: dict) -> dict:
    """Where a question fails with a helper of the lesson that fails too, say that grading
    runs it again with the reference's helper (one bug costs one question)."""
    failed = {name for name in verdict.cases if not verdicts[f"test_{name}"].passed}
    for name in sorted(failed):
        helpers = sorted(verdict.helpers_of.get(name, set()) & failed)
        if helpers:
            verdicts[f"test_{name}"].message += (
                f" (your {', '.join(helpers)} fail{'s' if len(helpers) == 1 else ''} too: "
                "grading runs this question again with the reference's in place of yours, "
                "and it scores if that run matches)")
    return verdicts


def _apply_copy_policy(nb, lesson_nb, results: list[QuestionResult]) -> None:
    """Questions whose code uses or copies the reference, or breaks the question's policy,
    score 0 here, as they will when graded under the default policy (``grade --copied zero``);
    the message says why."""

    graded = {c["grade_id"] for c in grade_cells(lesson_nb) if c["kind"] == "solution"}
    flags = scan_notebook(nb, graded, load_fingerprints(), released=lesson_nb)
    notes = policy_notes([flag.to_dict() for flag in flags])
    for result in results:
        texts = notes.get(result.grade_id.removeprefix("test_"))
        if texts:
            result.score = 0.0
            result.message = "\n".join(texts + ([result.message] if result.message else []))


def format_results(lesson: str, notebook: Path, results: list[QuestionResult],
                   hits: list[dict], errors: list[str] = ()) -> str:
    """The self-check's printout."""
    by_grader = any(r.grader is not None for r in results)
    lines = [f"{lesson}: {notebook} " + (
        "(the visible tests, then the grader's own check on practice cases: grading draws "
        "cases of its own)" if by_grader else
        "(visible tests only; hidden tests run when it is graded)")]
    width = max([len(r.grade_id) for r in results] + [8])
    for r in results:
        status = "passed" if r.passed else "FAILED"
        lines.append(f"  {r.grade_id:<{width}}  {r.score:g} / {r.max_score:g}  {status}")
        if r.grader:
            lines.append(f"      visible tests {'passed' if r.visible_passed else 'FAILED'}; "
                         f"the grader's check: {r.grader[:600]}")
        if r.message:
            lines += [f"      {line}" for line in r.message.splitlines()[:8]]
    for hit in hits:
        lines.append(f"  limit hit: {hit['message']}")
    if errors:
        lines.append(f"  ERROR: {len(errors)} cell(s) that are not tests raised, so the "
                     "notebook does not run to its end:")
        lines += [f"    {error}" for error in errors]
    total = sum(r.score for r in results)
    maximum = sum(r.max_score for r in results)
    lines.append(f"total {total:g} / {maximum:g} " + (
        "as grading would score these cases" if by_grader else "on the visible tests")
        + (f"; {len(errors)} cell(s) raised (above)" if errors else ""))
    return "\n".join(lines)
