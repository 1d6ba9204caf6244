"""The class's results from one source, and every output made from them.

A batch leaves its work in two places: the gradebook (``DIR/gradebook.db`` or ``--db``), which
holds each question's score (the grader's verdict, an instructor's override or hand grade,
:mod:`autograde.batch.overrides`), and ``DIR/.state/``, which keeps for each submission the grader's
answer (failure messages, limits hit, flags: ``<student>/<lesson>.json``), where it came from
(``records.json``) and what the last run said (``run.json``). :func:`write_outputs` makes
``grades.csv``, ``scores.json``, ``summary.md`` / ``summary.png``, ``report.md`` and ``lms/``
from those alone, for every submission in the gradebook, whichever run graded it: a run of one
lesson (``--lessons``) or of a download holding one student keeps everyone else's grades, and
an override changes every output at once.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from autograde.batch import lms_export, report
from autograde.batch.answer import Answer
from autograde.batch.collect import Record
from autograde.batch.course_file import CourseFile, load_course_file
from autograde.batch.override_log import load_history, load_overrides
from autograde.batch.state import Run, load_answer, state_dir, write_json
from autograde.course import ensure_tools_on_path


def save_records(out: Path, records: dict[tuple[str, str], Record]) -> None:
    """Where each submission came from and when, added to those of earlier runs."""
    saved = _load_record_dicts(out)
    for (student, lesson), record in records.items():
        entry = asdict(record)
        entry["submitted"] = record.submitted.isoformat() if record.submitted else None
        saved[f"{student}/{lesson}"] = entry
    write_json(state_dir(out) / "records.json", saved)


def _load_record_dicts(out: Path) -> dict:
    try:
        return json.loads((state_dir(out) / "records.json").read_text())
    except (OSError, ValueError):
        return {}


def load_records(out: Path) -> dict[tuple[str, str], Record]:
    records = {}
    for key, entry in _load_record_dicts(out).items():
        student, _, lesson = key.rpartition("/")
        when = entry.get("submitted")
        records[(student, lesson)] = Record(**{
            **entry, "submitted": datetime.fromisoformat(when) if when else None})
    return records


# --------------------------------------------------------------------------- the class's view
@dataclass
class ClassView:
    """Every graded submission: answers with the gradebook's scores, and the history."""

    answers: dict[tuple[str, str], Answer]
    students: list[str]
    lessons: list[str]
    history: list[dict]

    def needs_grading(self, student: str, lesson: str) -> list[str]:
        answer = self.answers.get((student, lesson))
        return [gid for gid, entry in (answer.scores if answer else {}).items()
                if entry.get("needs_grading")]


@dataclass(frozen=True)
class GradeRow:
    """One question of one submission as the gradebook holds it."""

    score: float          # nbgrader's: the manual score, else the automatic one, else 0
    max_score: float
    manual_score: float | None


def class_view(out: Path, db_url: str) -> ClassView:
    """Each submission in the gradebook with its state's answer, every question's score
    replaced by the gradebook's (verdict, override or hand grade) and marked with the override
    standing on it; a hand-graded question without a grade ``needs_grading``."""
    overrides = load_overrides(out)
    answers = {}
    for (student, lesson), grades in gradebook_grades(db_url).items():
        answer = load_answer(out, student, lesson) or Answer(
            student, lesson, problems=["the grader's record of this submission is missing "
                                       "from .state/: grade it again"])
        answer.scores = _scores(answer.scores, grades,
                                overrides.get(f"{student}/{lesson}", {}))
        answers[(student, lesson)] = answer
    return ClassView(answers, sorted({student for student, _ in answers}),
                     sorted({lesson for _, lesson in answers}), load_history(out))


def gradebook_grades(db_url: str) -> dict[tuple[str, str], dict[str, GradeRow]]:
    """``{(student, lesson): {grade_id: GradeRow}}`` for every submission in the gradebook,
    in two queries (a class of a thousand would otherwise cost a query per grade)."""
    from nbgrader.api import (
        Assignment,
        Grade,
        Gradebook,
        GradeCell,
        Student,
        SubmittedAssignment,
        SubmittedNotebook,
    )

    ensure_tools_on_path()  # nbgrader's gradebook runs the venv's alembic
    with Gradebook(db_url) as gb:
        submissions = (gb.db.query(Student.id, Assignment.name)
                       .join(SubmittedAssignment, SubmittedAssignment.student_id == Student.id)
                       .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id))
        found: dict = {(student, lesson): {} for student, lesson in submissions}
        rows = (gb.db.query(Student.id, Assignment.name, GradeCell.name, Grade.auto_score,
                            Grade.manual_score, GradeCell.max_score)
                .select_from(Grade)
                .join(GradeCell, Grade.cell_id == GradeCell.id)
                .join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
                .join(SubmittedAssignment,
                      SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                .join(Student, SubmittedAssignment.student_id == Student.id)
                .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id))
        for student, lesson, grade_id, auto, manual, maximum in rows:
            score = manual if manual is not None else auto if auto is not None else 0.0
            found.setdefault((student, lesson), {})[grade_id] = GradeRow(
                float(score), float(maximum or 0.0), manual)
    return found


def _scores(autograded: dict, grades: dict, overrides: dict) -> dict:
    """``{grade_id: {"score", "max_score", "error", "autograded", "needs_grading",
    "override"}}``: the grader's questions first, in its order, then the hand-graded ones."""
    scores = {}
    for grade_id in list(autograded) + sorted(set(grades) - set(autograded)):
        grade = grades.get(grade_id)
        if grade is None:
            continue
        entry = dict(autograded.get(grade_id, {"error": None}))
        manual = entry.get("manual", grade_id not in autograded)
        entry.update(score=float(grade.score or 0.0), max_score=float(grade.max_score),
                     manual=manual, needs_grading=bool(manual and grade.manual_score is None))
        entry["autograded"] = None if manual else autograded[grade_id]["score"]
        if grade_id in overrides:
            entry["override"] = overrides[grade_id]
        scores[grade_id] = entry
    return scores


# --------------------------------------------------------------------------- the outputs
def write_outputs(out: Path, run: Run | None = None, course: CourseFile | None = None):
    """grades.csv, lms/, scores.json, summary.md/png and report.md, from the gradebook and
    ``DIR/.state/`` (``run``: the last run's, by default read back from the state; ``course``:
    by default its course file). Returns what report.md was made of
    (:class:`autograde.batch.report.ReportInput`)."""

    out = Path(out)
    run = run or Run.load(out)
    db_url = run.gradebook(out)
    view = class_view(out, db_url)
    if course is None:
        course = load_course_file(Path(run.course)) if run.course else CourseFile()
    records = load_records(out)
    all_grades = lms_export.late_grades(course, view.answers, records, view.students,
                                        view.lessons)
    failures = list(run.failures)
    try:
        record_late_work(db_url, course, all_grades)
        export_csv(db_url, out / "grades.csv", view)
    except Exception as error:  # a gradebook held by another process: report, keep the rest
        failures.append(f"grades.csv: the gradebook {db_url} could not be read "
                        f"({str(error).splitlines()[0][:300]})")
    exported = [lesson for lesson in run.lessons if lesson in view.lessons]
    grades = {key: grade for key, grade in all_grades.items() if key[1] in exported}
    sections = {"Submission times and late work": lms_export.late_lines(grades) or [
        "(no submission time or due date known)"]}
    try:
        students = sorted({student for student, _ in grades})
        sections["LMS exports"] = lms_export.write_exports(
            out / "lms", course, run.lms, grades, students, exported, records, out / "feedback")
    except OSError as error:
        failures.append(f"lms/: the exports could not be written ({error})")
    sections["Similarity"] = run.similarity
    late = {key: (grade.final, grade.penalty_percent)
            for key, grade in all_grades.items() if grade.penalty_percent}
    written = report.ReportInput(out=out, answers=view.answers, run=run, failures=failures,
                                 sections=sections, late=late, history=view.history)
    report.write_outputs(written, view.students, view.lessons)
    return written


def record_late_work(db_url: str, course: CourseFile, grades: dict) -> None:
    """Due dates, extensions and late penalties into the gradebook, where nbgrader's own
    grades.csv reads them (``duedate``, ``late_submission_penalty``, ``score``)."""
    from nbgrader.api import Gradebook, MissingEntry

    def naive_utc(when):  # how nbgrader stores times
        return when.astimezone(UTC).replace(tzinfo=None) if when else None

    with Gradebook(db_url) as gb:
        for (student, lesson), grade in grades.items():
            dates = course.lessons.get(lesson)
            try:
                submission = gb.find_submission(lesson, student)
            except MissingEntry:
                continue
            submission.assignment.duedate = naive_utc(dates.due) if dates else None
            own_due = course.due(student, lesson)
            submission.extension = (own_due - dates.due if dates and dates.due and own_due
                                    and own_due != dates.due else None)
            for number, notebook in enumerate(submission.notebooks):
                notebook.late_submission_penalty = (
                    round(grade.raw - grade.final, 4)
                    if number == 0 and grade.penalty_percent else 0.0)
        gb.db.commit()


class _SortedGradebook:
    """nbgrader's gradebook with students and assignments in a fixed order, so that the CSV
    export is the same whatever order the submissions were merged in."""

    def __init__(self, gradebook):
        self._gradebook = gradebook

    def __getattr__(self, name):
        return getattr(self._gradebook, name)

    @property
    def students(self):
        return sorted(self._gradebook.students, key=lambda s: s.id)

    @property
    def assignments(self):
        return sorted(self._gradebook.assignments, key=lambda a: a.name)


def export_csv(db_url: str, path: Path, view: ClassView | None = None) -> None:
    """nbgrader's CSV export of the gradebook, with a last column ``needs_grading``: the
    hand-graded questions of that submission that have no grade yet."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    with Gradebook(db_url) as gb:
        CsvExportPlugin(to=str(path)).export(_SortedGradebook(gb))
    if view is None:
        return
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        columns = list(reader.fieldnames or []) + ["needs_grading"]
    for row in rows:
        row["needs_grading"] = " ".join(view.needs_grading(row["student_id"],
                                                           row["assignment"]))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
