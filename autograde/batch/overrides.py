"""An instructor's score for one question (an override, or the grade of a hand-graded
question), kept with its history, and applied to the gradebook every output is made from.

``python -m autograde override STUDENT LESSON QUESTION POINTS --why TEXT [--by NAME]`` sets it,
``--remove --why TEXT`` takes it back. The standing overrides live in ``DIR/overrides.json``
(``{"student/lesson": {grade_id: {"points", "why", "by", "when"}}}``) and every change of a
score in ``DIR/history.jsonl``, one event a line: ``{"when", "by", "student", "lesson",
"question", "kind", "old", "new", "why"}`` with kind ``override``, ``override removed``,
``hand grade`` or ``regrade`` (a regrade that changed an autograded score).

In the gradebook an override is the question's manual score (where nbgrader's own Formgrader
puts one), and its reason is added to the comment of the question's solution cell, which the
feedback shows. A regrade writes the grader's rows afresh and then the standing overrides
again (:func:`apply_overrides`), so an override stands until the instructor removes it.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import shutil
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from autograde.batch.answer import NEEDS_GRADING
from autograde.batch.markup import feedback_overrides, markdown_text
from autograde.batch.override_log import HISTORY, OVERRIDES, load_overrides
from autograde.batch.results import write_outputs
from autograde.batch.state import Run, load_answer, write_json
from autograde.course import GraderError, course_config, ensure_tools_on_path, run_nbgrader


def _append_history(out: Path, events: list[dict]) -> None:
    if events:
        with open(Path(out) / HISTORY, "a") as handle:
            handle.writelines(json.dumps(event, sort_keys=True) + "\n" for event in events)


@contextmanager
def _locked(out: Path):
    """One writer of the overrides and the history at a time."""
    with open(Path(out) / ".overrides.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _question(grades: dict, question: str, student: str, lesson: str) -> str:
    """The gradebook's grade_id for what the instructor typed (``add`` or ``test_add``)."""
    for grade_id in (question, f"test_{question}"):
        if grade_id in grades:
            return grade_id
    raise GraderError(f"{student}/{lesson} has no question {question!r}; its questions: "
                      f"{', '.join(sorted(grades))}")


def override(out: Path, student: str, lesson: str, question: str, points: float | None,
             why: str, by: str | None = None, db_url: str | None = None,
             remove: bool = False) -> str:
    """Set (or with ``remove`` take back) the instructor's score of one question, then write
    the submission's feedback and every output again. Returns what changed, in words."""
    from nbgrader.api import Gradebook, MissingEntry

    out = Path(out).resolve()
    run = Run.load(out)
    db_url = db_url or run.gradebook(out)
    ensure_tools_on_path()  # nbgrader's gradebook runs the venv's alembic
    if not (why or "").strip():
        raise GraderError("--why is required: say why the score changes (the history and "
                          "report.md keep it)")
    by = by or getpass.getuser()
    with _locked(out):
        with Gradebook(db_url) as gb:
            try:
                submission = gb.find_submission(lesson, student)
            except MissingEntry:
                raise GraderError(f"no graded submission {student}/{lesson} in {db_url}") \
                    from None
            grades = {g.name: g for nb in submission.notebooks for g in nb.grades}
            grade_id = _question(grades, question, student, lesson)
            grade = grades[grade_id]
            maximum = float(grade.max_score)
            answer = load_answer(out, student, lesson)
            autograded = answer.scores if answer else {}
            manual = autograded.get(grade_id, {}).get("manual", grade_id not in autograded)
            old = None if manual and grade.manual_score is None else float(grade.score or 0.0)
        overrides = load_overrides(out)
        standing = overrides.setdefault(f"{student}/{lesson}", {})
        if remove:
            if grade_id not in standing:
                raise GraderError(f"{student}/{lesson} {grade_id} has no override to remove")
            del standing[grade_id]
            kind, new = "override removed", None
        else:
            if points is None or not 0 <= points <= maximum:
                raise GraderError(f"POINTS {points}: {student}/{lesson} {grade_id} takes 0 to "
                                  f"{maximum:g} points")
            kind, new = ("hand grade" if manual else "override"), float(points)
            standing[grade_id] = {"points": new, "why": why, "by": by, "when": _now()}
        if not standing:
            del overrides[f"{student}/{lesson}"]
        write_json(out / OVERRIDES, overrides)
        apply_overrides(out, db_url, student, lesson)
        if remove:
            new = _score_now(db_url, student, lesson, grade_id, manual)
        _append_history(out, [{"when": _now(), "by": by, "student": student, "lesson": lesson,
                               "question": grade_id, "kind": kind, "old": old, "new": new,
                               "why": why}])
        regenerate_feedback(out, db_url, student, lesson)
        if lesson not in run.lessons:  # lms/ then holds the changed lesson's grades too
            run.lessons = sorted([*run.lessons, lesson])
            run.save(out)
        write_outputs(out, run)
    return (f"{student}/{lesson} {grade_id}: {_points(old)} -> {_points(new)} / {maximum:g} "
            f"({kind} by {by}); grades.csv, scores.json, report.md, summary.md, lms/ and "
            f"feedback/{student}/{lesson}.html written again")


def _points(value) -> str:
    return "needs grading" if value is None else f"{value:g}"


def _score_now(db_url: str, student: str, lesson: str, grade_id: str,
               manual: bool) -> float | None:
    """The question's score in the gradebook; None for a hand-graded one without a grade."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        grade = gb.find_grade(grade_id, lesson, lesson, student)
        if manual and grade.manual_score is None:
            return None
        return float(grade.score or 0.0)


def apply_overrides(out: Path, db_url: str, student: str, lesson: str) -> None:
    """The submission's grades and comments in the gradebook as the grader wrote them (its
    answer in the state), then the standing overrides on top, each with its reason added to
    the comment of its question."""
    from nbgrader.api import Gradebook

    answer = load_answer(out, student, lesson)
    rows = (answer.submission or {}).get("notebooks", {}) if answer else {}
    standing = load_overrides(out).get(f"{student}/{lesson}", {})
    with Gradebook(db_url) as gb:
        submission = gb.find_submission(lesson, student)
        for notebook in submission.notebooks:
            data = rows.get(notebook.name, {})
            comments = {comment.name: comment for comment in notebook.comments}
            for comment in comments.values():
                comment.auto_comment = data.get("comments", {}).get(comment.name)
                comment.manual_comment = data.get("manual_comments", {}).get(comment.name)
            for grade in notebook.grades:
                values = data.get("grades", {}).get(grade.name)
                if values is not None:
                    grade.auto_score = values.get("auto_score")
                    grade.manual_score = values.get("manual_score")
                    grade.needs_manual_grade = bool(values.get("needs_manual_grade"))
                entry = standing.get(grade.name)
                if entry is None:
                    continue
                grade.manual_score = entry["points"]
                grade.needs_manual_grade = False
                comment = (comments.get(grade.name.removeprefix("test_"))
                           or comments.get(grade.name))
                if comment is not None:
                    note = markdown_text(f"Score set by the instructor ({entry['by']}, "
                                         f"{entry['when'][:10]}): {entry['points']:g} / "
                                         f"{grade.max_score:g}. {entry['why']}")
                    base = comment.manual_comment or comment.auto_comment
                    comment.manual_comment = "\n\n".join(filter(None, [
                        None if base == NEEDS_GRADING else base, note]))
        gb.db.commit()


def log_regrade(out: Path, before, after, by: str | None = None) -> None:
    """A regrade that changed an autograded score, question by question, into the history
    (``before``, ``after``: the grader's answers), saying whether an override stands on it."""
    standing = load_overrides(out).get(f"{after.student}/{after.lesson}", {})
    events = []
    for grade_id, entry in after.scores.items():
        old = (before.scores.get(grade_id) or {}).get("score")
        if old is None or old == entry["score"] or entry.get("manual"):
            continue
        why = "regraded: the submission, the lesson or the grader's settings changed"
        if grade_id in standing:
            why += f"; the override of {standing[grade_id]['points']:g} stands"
        events.append({"when": _now(), "by": by or getpass.getuser(),
                       "student": after.student, "lesson": after.lesson,
                       "question": grade_id, "kind": "regrade", "old": old,
                       "new": entry["score"], "why": why})
    with _locked(out):
        _append_history(out, events)


def regenerate_feedback(out: Path, db_url: str, student: str, lesson: str) -> Path | None:
    """``feedback/<student>/<lesson>.html`` made again by nbgrader's generate_feedback from the
    graded notebook the grader kept (``autograded/``) and the gradebook's scores and comments.
    None when the grader kept no notebook (a missing or refused submission)."""

    from nbgrader.converters import GenerateFeedback


    out = Path(out)
    if not (out / "autograded" / student / lesson / f"{lesson}.ipynb").is_file():
        return None
    scratch = out / ".work" / "feedback"
    shutil.rmtree(scratch, ignore_errors=True)
    config = course_config(out, db_url=db_url, overrides={
        **feedback_overrides(),
        "CourseDirectory": {"feedback_directory": str(scratch),
                            "autograded_directory": str(out / "autograded")}})
    run_nbgrader(GenerateFeedback, config, assignment_id=lesson, student_id=student)
    target = out / "feedback" / student / f"{lesson}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(scratch / student / lesson / f"{lesson}.html", target)
    shutil.rmtree(scratch, ignore_errors=True)
    return target
