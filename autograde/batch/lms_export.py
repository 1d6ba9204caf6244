"""Grades out in the LMS's formats, with the late policy applied and the raw score beside it.

``grade`` writes into ``OUT/lms/``, for the lessons graded in the run:

* ``scores_by_student.csv``: one row per student keyed by the LMS id; per lesson the final
  score, the raw score, the late penalty (%) and the submission time;
* ``canvas_grades.csv``: Canvas's gradebook import, ``Student, ID, SIS User ID, SIS Login ID,
  Section``, then one column per lesson named ``<title> (<assignment id>)`` (``lms_id`` of the
  lesson in course.toml; without one Canvas offers to create the assignment);
* ``moodle_grades.csv``: for Moodle's "Import > CSV file": ``First name, Last name, ID
  number, Email address``, then one column per lesson; map users by email address (or ID
  number) and each lesson's column to its grade item when importing;
* ``feedback_<lesson>.zip`` (Canvas, Moodle): each student's feedback HTML named after the
  file the student handed in (``<downloaded name without .zip>-feedback.html``), the layout
  both LMSs' bulk feedback uploads match their students by.

A student on the roster without any file has a row of empty cells in
``scores_by_student.csv`` and none in the import files (an empty cell would clear a grade
entered in the LMS by hand), and the report names them; a graded lesson without a notebook
scores 0 as everywhere else. A lesson with an answer still to grade by hand has an empty cell
in the import files (its partial score, in ``scores_by_student.csv``, is not a grade to
publish) until ``autograde review`` or ``override`` grades it.
"""

from __future__ import annotations

import csv
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from autograde.batch.collect import Record
from autograde.batch.course_file import CourseFile

CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_COLUMNS = ["First name", "Last name", "ID number", "Email address"]


@dataclass
class LessonGrade:
    """One student's lesson: the grader's score, and what the late policy made of it."""

    raw: float
    max_score: float
    submitted: datetime | None
    time_source: str
    due: datetime | None
    penalty_percent: float
    note: str = ""
    needs_grading: tuple[str, ...] = ()   # hand-graded answers without a grade (not in raw)

    @property
    def final(self) -> float:
        return round(self.raw * (1 - self.penalty_percent / 100), 4)


def late_grades(course: CourseFile, answers: dict, records: dict[tuple[str, str], Record],
                students: list[str], lessons: list[str]) -> dict[tuple[str, str], LessonGrade]:
    """``{(student, lesson): LessonGrade}`` for every graded answer."""
    grades = {}
    for student in students:
        for lesson in lessons:
            answer = answers.get((student, lesson))
            if answer is None:
                continue
            raw = sum(e["score"] for e in answer.scores.values())
            maximum = sum(e["max_score"] for e in answer.scores.values())
            record = records.get((student, lesson))
            due = course.due(student, lesson)
            submitted = record.submitted if record else None
            penalty, note = 0.0, ""
            if due is not None and submitted is not None and submitted > due:
                policy = course.lessons[lesson].late
                penalty = policy.penalty_percent(submitted - due)
                note = f"late by {_duration(submitted - due)}: {policy.describe()}"
            elif due is not None and submitted is None and record is not None:
                note = "submission time unknown: no late penalty"
            if record and record.lms_late and not penalty:
                note = (note + "; " if note else "") + (
                    "the LMS marked the file late; by its time and the student's due time "
                    "it is not"
                    if due else "the LMS marked the file late")
            grades[(student, lesson)] = LessonGrade(
                raw, maximum, submitted, record.time_source if record else "", due, penalty,
                note, tuple(gid for gid, e in answer.scores.items() if e.get("needs_grading")))
    return grades


def _duration(delta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 24 else f"{hours:.1f} h"


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _score(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def write_exports(out: Path, course: CourseFile, lms: str, grades: dict, students: list[str],
                  lessons: list[str], records: dict[tuple[str, str], Record],
                  feedback_dir: Path) -> list[str]:
    """Write ``out/`` (see the module docstring); returns the report's lines about it."""
    out.mkdir(parents=True, exist_ok=True)
    everyone = sorted(set(students) | set(course.students), key=_id_order)
    names = {key: record.name for (key, _), record in records.items() if record.name}
    _write_wide(out / "scores_by_student.csv", course, grades, everyone, lessons, names)
    handed_in = sorted(students, key=_id_order)
    _write_canvas(out / "canvas_grades.csv", course, grades, handed_in, lessons, names)
    unmapped = _write_moodle(out / "moodle_grades.csv", course, grades, handed_in, lessons,
                             names)
    archives = []
    if lms in ("canvas", "moodle"):
        for lesson in lessons:
            archives.append(_feedback_zip(out / f"feedback_{lesson}.zip", lesson, records,
                                          feedback_dir))
    lines = ["Written to lms/: scores_by_student.csv, canvas_grades.csv, moodle_grades.csv"
             + "".join(f", {a.name}" for a in archives if a) + "."]
    strangers = [key for key in students if course.students and key not in course.students]
    if strangers:
        lines.append(f"In the download but not on the roster (rows without name or email): "
                     f"{', '.join(strangers)}.")
    absent = [key for key in everyone if key not in students]
    if absent:
        lines.append(f"On the roster without any file (no row in the import files, empty "
                     f"cells in scores_by_student.csv): {', '.join(absent)}.")
    waiting = sorted(f"{key} / {lesson}" for (key, lesson), grade in grades.items()
                     if grade.needs_grading and lesson in lessons)
    if waiting:
        lines.append(f"Answers still to grade by hand (`autograde review`): the import files "
                     f"leave these lessons empty until they are graded; scores_by_student.csv "
                     f"has the partial score: {', '.join(waiting)}.")
    if unmapped:
        lines.append(f"moodle_grades.csv: no email or ID number for {', '.join(unmapped)}; "
                     "Moodle cannot match these rows (add them to the roster in course.toml).")
    return lines


def _id_order(key: str):
    return (0, int(key), key) if key.isdigit() else (1, 0, key)


def _person(course: CourseFile, key: str, names: dict[str, str]):
    student = course.students.get(key)
    return student, (student.name if student and student.name else names.get(key, key))


def _write_wide(path, course, grades, everyone, lessons, names) -> None:
    header = ["lms_id", "name", "email", "section"]
    for lesson in lessons:
        header += [lesson, f"{lesson} raw", f"{lesson} max", f"{lesson} late penalty %",
                   f"{lesson} submitted", f"{lesson} time from", f"{lesson} needs grading"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for key in everyone:
            student, name = _person(course, key, names)
            row = [key, name, student.email if student else "",
                   student.section if student else ""]
            for lesson in lessons:
                grade = grades.get((key, lesson))
                row += ([_score(grade.final), _score(grade.raw), _score(grade.max_score),
                         _score(grade.penalty_percent), _when(grade.submitted),
                         grade.time_source, " ".join(grade.needs_grading)]
                        if grade else [""] * 7)
            writer.writerow(row)


def _import_cell(grade: LessonGrade | None) -> str:
    """An import file's cell: the final score, or empty while an answer waits for its hand
    grade (a partial score would reach students as their grade)."""
    return _score(grade.final) if grade and not grade.needs_grading else ""


def _write_canvas(path, course, grades, everyone, lessons, names) -> None:
    columns = []
    for lesson in lessons:
        dates = course.lessons.get(lesson)
        lms_id = dates.lms_id if dates else ""
        columns.append(f"{course.title(lesson)} ({lms_id})" if lms_id else course.title(lesson))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CANVAS_COLUMNS + columns)
        for key in everyone:
            student, name = _person(course, key, names)
            row = [name, key, student.sis_user_id if student else "",
                   student.sis_login_id if student else "", student.section if student else ""]
            row += [_import_cell(grades.get((key, lesson))) for lesson in lessons]
            writer.writerow(row)


def _write_moodle(path, course, grades, everyone, lessons, names) -> list[str]:
    unmapped = []
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MOODLE_COLUMNS + [course.title(lesson) for lesson in lessons])
        for key in everyone:
            student, name = _person(course, key, names)
            first, _, last = name.rpartition(" ")
            email = student.email if student else ""
            number = student.sis_user_id if student else ""
            if not (email or number):
                unmapped.append(key)
            row = [first or last, last if first else "", number, email]
            row += [_import_cell(grades.get((key, lesson))) for lesson in lessons]
            writer.writerow(row)
    return unmapped


def _feedback_zip(path: Path, lesson: str, records: dict, feedback_dir: Path) -> Path | None:
    """The feedback of ``lesson`` named after each student's downloaded file."""
    entries = []
    for (key, graded_lesson), record in sorted(records.items()):
        html = Path(feedback_dir) / key / f"{lesson}.html"
        if graded_lesson == lesson and html.is_file():
            stem = Path(record.file).name.removesuffix(".zip")
            entries.append((f"{stem}-feedback.html", html))
    if not entries:
        path.unlink(missing_ok=True)
        return None
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, html in entries:
            zf.write(html, name)
    return path


def late_lines(grades: dict) -> list[str]:
    """The report's lines on submission times and late work: where the times came from, then
    each submission that is late or otherwise worth a word (every time is in
    scores_by_student.csv)."""
    sources = Counter(grade.time_source or "nowhere" for grade in grades.values())
    lines = ["Submission times from " + "; ".join(
        f"{source}: {count}" for source, count in sorted(sources.items()))
        + " (each submission's time and source: lms/scores_by_student.csv)."] if grades else []
    for (student, lesson), grade in sorted(grades.items()):
        if not grade.penalty_percent and not grade.note:
            continue
        due = f", due {_when(grade.due)}" if grade.due else ""
        submitted = _when(grade.submitted) or "at an unknown time"
        line = (f"- {student} / {lesson}: submitted {submitted} (time from "
                f"{grade.time_source or 'nowhere'}){due}")
        if grade.penalty_percent:
            line += (f"; late penalty {_score(grade.penalty_percent)}%: raw "
                     f"{_score(grade.raw)} -> {_score(grade.final)} / {_score(grade.max_score)}")
        if grade.note:
            line += f" ({grade.note})"
        lines.append(line)
    return lines
