"""``course.toml``: the class's calendar, late policy, roster and LMS, read by ``grade``.

It lives beside ``lessons/`` (``grade --course FILE`` names another). Every key is optional
except a lesson's ``due`` when the lesson is listed::

    timezone = "Europe/London"      # dates without an offset are local to the course (UTC)

    [lms]
    kind = "canvas"                 # canvas | moodle | blackboard | native (submit's zips);
                                    # without it, recognised from the file names
    # pattern = '...'               # a regex for the download's file names (see collect.py)
    # time_format = "%Y-%m-%d-%H-%M-%S"

    [late]                          # the default late policy of every lesson
    policy = "percent_per_day"      # none | percent_per_day | zero_after_grace
    percent = 10                    # per started day late (percent_per_day)
    grace_hours = 0                 # late by at most this much costs nothing

    [lessons.01_tokenizer]
    release = 2026-01-05
    due = 2026-01-12T23:59:00       # a bare date is due at the end of that day
    lms_id = "4711"                 # the assignment's id in the LMS (Canvas's column)
    title = "01 Tokenizer"          # its name in the LMS (default: the lesson's folder name)
    late = { policy = "zero_after_grace", grace_hours = 24 }

    [[students]]                    # optional roster: every student appears in the exports
    lms_id = "10007"                # the id in the LMS's file names (Canvas user id, ...)
    name = "John Smith"
    email = "jsmith@example.edu"
    section = "A"
    sis_user_id = "S123"            # Canvas's SIS User ID / Moodle's ID number
    sis_login_id = "jsmith"
    aliases = ["20007"]             # other ids of this student in file names (Moodle's
                                    # participant ids differ per assignment)

    [[extensions]]
    student = "10008"               # an lms_id
    lesson = "01_tokenizer"
    due = 2026-01-15T23:59:00       # or days = 3

Errors name the file and the key (:class:`CourseFileError`).
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from autograde.course import LESSON_NAME, GraderError
from nanolm_lib.grading.curriculum import GRADED, LESSONS

LMS_KINDS = ("canvas", "moodle", "blackboard", "native")
LATE_POLICIES = ("none", "percent_per_day", "zero_after_grace")
COURSE_FILE = "course.toml"


class CourseFileError(GraderError):
    """course.toml is malformed: the message names the file and the key."""


@dataclass
class LatePolicy:
    policy: str = "none"
    percent: float = 0.0        # per started day late, for percent_per_day
    grace_hours: float = 0.0

    def penalty_percent(self, late_by: timedelta) -> float:
        """The share of the score taken for work ``late_by`` after its due time (0-100)."""
        hours = late_by.total_seconds() / 3600
        if self.policy == "none" or hours <= self.grace_hours:
            return 0.0
        if self.policy == "zero_after_grace":
            return 100.0
        days = math.ceil((hours - self.grace_hours) / 24)  # a started day counts as a day
        return min(100.0, days * self.percent)

    def describe(self) -> str:
        grace = f" after {self.grace_hours:g} h of grace" if self.grace_hours else ""
        if self.policy == "percent_per_day":
            return f"{self.percent:g}% per started day late{grace}"
        if self.policy == "zero_after_grace":
            return f"0 when late{grace}"
        return "no penalty"


@dataclass
class LessonDates:
    due: datetime | None = None      # aware
    release: datetime | None = None
    late: LatePolicy = field(default_factory=LatePolicy)
    lms_id: str = ""
    title: str = ""


@dataclass
class Student:
    lms_id: str
    name: str = ""
    email: str = ""
    section: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    aliases: list[str] = field(default_factory=list)


@dataclass
class CourseFile:
    path: Path | None = None
    timezone: str = "UTC"
    lms: str | None = None          # None: recognised from the download's file names
    pattern: str | None = None
    time_format: str | None = None
    lessons: dict[str, LessonDates] = field(default_factory=dict)
    students: dict[str, Student] = field(default_factory=dict)    # lms_id -> student
    extensions: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def due(self, student: str, lesson: str) -> datetime | None:
        """The due time of ``lesson`` for ``student``: the extension's, else the lesson's."""
        dates = self.lessons.get(lesson)
        return self.extensions.get((student, lesson), dates.due if dates else None)

    def is_due(self, lesson: str, now: datetime) -> bool:
        dates = self.lessons.get(lesson)
        return bool(dates and dates.due and dates.due <= now)

    def week(self, now: datetime) -> str | None:
        """The kit's week by this calendar at ``now``
        (:func:`nanolm_lib.grading.curriculum.check_week`): the first lesson with graded names
        that is not due yet (unlisted lessons are not), so a kit ships the references of due
        lessons only; "all" when every one is due; None without a calendar."""
        if not self.lessons:
            return None
        pending = [lesson for lesson in LESSONS if GRADED[lesson] and not self.is_due(lesson, now)]
        return pending[0][:2] if pending else "all"

    def canonical_id(self, file_id: str) -> str:
        """The roster's lms_id for an id found in a file name (itself, or an alias's owner)."""
        for student in self.students.values():
            if file_id in student.aliases:
                return student.lms_id
        return file_id

    def title(self, lesson: str) -> str:
        dates = self.lessons.get(lesson)
        return (dates.title if dates and dates.title else lesson)


def load_course_file(path: Path | None) -> CourseFile:
    """The course file at ``path``; an empty course (no dates, native zips) when None."""
    if path is None:
        return CourseFile()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CourseFileError(f"{path}: no such course file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CourseFileError(f"{path}: not valid TOML ({error})") from None
    reader = _Reader(path)
    course = CourseFile(path=path)
    reader.known(data, "", ("timezone", "lms", "late", "lessons", "students", "extensions"))
    course.timezone = reader.text(data, "timezone", "UTC")
    try:
        zone = ZoneInfo(course.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CourseFileError(f"{path}: timezone = {course.timezone!r} is not a time zone "
                              "name such as 'UTC' or 'Europe/London'") from None
    _read_lms(reader, reader.table(data, "lms"), course)
    default_late = reader.late(reader.table(data, "late"), "late", LatePolicy())
    for lesson, entry in reader.table(data, "lessons").items():
        course.lessons[lesson] = _read_lesson(reader, lesson, entry, zone, default_late)
    for number, entry in enumerate(reader.array(data, "students")):
        student = _read_student(reader, f"students[{number}]", entry)
        if student.lms_id in course.students:
            reader.fail(f"students[{number}].lms_id = {student.lms_id!r} appears twice")
        course.students[student.lms_id] = student
    for number, entry in enumerate(reader.array(data, "extensions")):
        student, lesson, due = _read_extension(reader, f"extensions[{number}]", entry, course,
                                               zone)
        course.extensions[(student, lesson)] = due
    return course


def _read_lms(reader: _Reader, lms: dict, course: CourseFile) -> None:
    reader.known(lms, "lms", ("kind", "pattern", "time_format"))
    if "kind" in lms:
        course.lms = reader.choice(lms, "lms.kind", "kind", LMS_KINDS, "native")
    course.pattern = lms.get("pattern")
    course.time_format = lms.get("time_format")
    if course.pattern is None:
        return
    try:
        compiled = re.compile(str(course.pattern))
    except re.error as error:
        reader.fail(f"lms.pattern is not a regular expression ({error})")
    if "key" not in compiled.groupindex:
        reader.fail("lms.pattern needs a named group (?P<key>...) for the student's LMS id")


def _read_lesson(reader: _Reader, lesson: str, entry, zone: ZoneInfo,
                 default_late: LatePolicy) -> LessonDates:
    key = f"lessons.{lesson}"
    if not LESSON_NAME.match(lesson):
        reader.fail(f"[{key}]: not a lesson folder name (NN_slug)")
    if not isinstance(entry, dict):
        reader.fail(f"{key} must be a table")
    reader.known(entry, key, ("due", "release", "late", "lms_id", "title"))
    dates = LessonDates(
        due=reader.when(entry, f"{key}.due", "due", zone, required=True),
        release=reader.when(entry, f"{key}.release", "release", zone),
        late=reader.late(entry.get("late", {}), f"{key}.late", default_late),
        lms_id=str(entry.get("lms_id", "")), title=reader.text(entry, "title", "", key))
    if dates.release and dates.release > dates.due:
        reader.fail(f"{key}.release ({dates.release.isoformat()}) is after {key}.due "
                    f"({dates.due.isoformat()})")
    return dates


def _read_student(reader: _Reader, key: str, entry: dict) -> Student:
    reader.known(entry, key, ("lms_id", "name", "email", "section", "sis_user_id",
                              "sis_login_id", "aliases"))
    lms_id = reader.text(entry, "lms_id", "", key)
    if not lms_id:
        reader.fail(f"{key}.lms_id is missing")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list):
        reader.fail(f"{key}.aliases must be a list of ids")
    return Student(lms_id, **{name: reader.text(entry, name, "", key) for name in
                              ("name", "email", "section", "sis_user_id", "sis_login_id")},
                   aliases=[str(a) for a in aliases])


def _read_extension(reader: _Reader, key: str, entry: dict, course: CourseFile,
                    zone: ZoneInfo) -> tuple[str, str, datetime]:
    reader.known(entry, key, ("student", "lesson", "due", "days"))
    student, lesson = (reader.text(entry, name, "", key) for name in ("student", "lesson"))
    if lesson not in course.lessons:
        reader.fail(f"{key}.lesson = {lesson!r} has no [lessons.{lesson}] with a due date")
    if course.students and student not in course.students:
        reader.fail(f"{key}.student = {student!r} is not in the roster")
    if "days" in entry:
        due = course.lessons[lesson].due + timedelta(days=reader.number(entry, "days", key))
    else:
        due = reader.when(entry, f"{key}.due", "due", zone, required=True)
    return student, lesson, due


def find_course_file(course_folder: Path) -> Path | None:
    """``course.toml`` beside ``course_folder`` (``solutions/`` or ``lessons/``), if any."""
    candidate = Path(course_folder).resolve().parent / COURSE_FILE
    return candidate if candidate.is_file() else None


class _Reader:
    """Typed reads of course.toml values; every error names the file and the key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, message: str) -> NoReturn:
        raise CourseFileError(f"{self.path}: {message}")

    def known(self, table: dict, where: str, names: tuple[str, ...]) -> None:
        for name in table:
            if name not in names:
                place = f"{where}.{name}" if where else name
                self.fail(f"unknown key {place} (known here: {', '.join(names)})")

    def table(self, data: dict, key: str) -> dict:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.fail(f"{key} must be a table ([{key}])")
        return value

    def array(self, data: dict, key: str) -> list[dict]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(f"{key} must be an array of tables ([[{key}]])")
        return value

    def text(self, data: dict, name: str, default: str, where: str = "") -> str:
        value = data.get(name, default)
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            self.fail(f"{where + '.' if where else ''}{name} must be text")
        return str(value)

    def number(self, data: dict, name: str, where: str) -> float:
        value = data.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            self.fail(f"{where}.{name} must be a number >= 0, not {value!r}")
        return float(value)

    def choice(self, data: dict, key: str, name: str, choices: tuple, default: str) -> str:
        value = data.get(name, default)
        if value not in choices:
            self.fail(f"{key} = {value!r}: use one of {', '.join(choices)}")
        return value

    def when(self, data: dict, key: str, name: str, zone: ZoneInfo,
             required: bool = False) -> datetime | None:
        value = data.get(name)
        if value is None:
            if required:
                self.fail(f"{key} is missing (a date such as 2026-01-12 or 2026-01-12T23:59:00)")
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                self.fail(f"{key} = {value!r} is not a date or date-time")
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=zone)
        if isinstance(value, date):  # the whole day is allowed
            return datetime.combine(value, time(23, 59, 59), tzinfo=zone)
        self.fail(f"{key} = {value!r} is not a date or date-time")

    def late(self, data, key: str, default: LatePolicy) -> LatePolicy:
        if not isinstance(data, dict):
            self.fail(f"{key} must be a table")
        if not data:
            return default
        self.known(data, key, ("policy", "percent", "grace_hours"))
        policy = self.choice(data, f"{key}.policy", "policy", LATE_POLICIES, default.policy)
        percent = self.number(data, "percent", key) if "percent" in data else default.percent
        grace = (self.number(data, "grace_hours", key) if "grace_hours" in data
                 else default.grace_hours)
        if policy == "percent_per_day" and not percent:
            self.fail(f"{key}.percent is missing: percent_per_day needs the percentage")
        return LatePolicy(policy, percent, grace)


def now_utc() -> datetime:
    return datetime.now(UTC)
