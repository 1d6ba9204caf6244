"""The instructor's data path: course.toml, LMS downloads in, LMS grades out.

The downloads are real zips of real student notebooks (the toy course's, built by nbformat),
named as Canvas, Moodle and Blackboard name them. Collection and the exports run without a
kernel; one end-to-end run goes through ``python -m autograde grade`` as an instructor types it.
"""

from __future__ import annotations

import csv
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from autograde_toy import write_submission, write_toy_solutions

from autograde.__main__ import main
from autograde.authoring.release import release
from autograde.batch.answer import Answer
from autograde.batch.collect import LMS_PATTERNS, gather
from autograde.batch.course_file import CourseFileError, LatePolicy, Student, load_course_file
from autograde.batch.lms_export import CANVAS_COLUMNS, MOODLE_COLUMNS, late_grades, write_exports

GOOD_ADD = "def add(a, b):\n    return a + b"
GOOD_SCALE = "def scale(x, factor):\n    return [v * factor for v in x]"
DUE = datetime(2026, 1, 12, 23, 59, tzinfo=UTC)

COURSE_TOML = """
timezone = "UTC"

[lms]
kind = "canvas"

[late]
policy = "percent_per_day"
percent = 10

[lessons.01_toy]
due = 2026-01-12T23:59:00
lms_id = "4711"
title = "Toy one"

[lessons.02_toy]
due = 2099-01-01
late = { policy = "zero_after_grace", grace_hours = 24 }

[[students]]
lms_id = "10007"
name = "John Smith"
email = "john.smith.a@example.edu"
section = "A"
sis_user_id = "S7"
sis_login_id = "jsmith7"

[[students]]
lms_id = "10008"
name = "John Smith"
email = "john.smith.b@example.edu"
section = "B"

[[students]]
lms_id = "10011"
name = "Ann Adams"
email = "ann@example.edu"

[[students]]
lms_id = "10012"
name = "Olu Late"
email = "olu@example.edu"

[[students]]
lms_id = "10013"
name = "Ext Ended"
email = "ext@example.edu"

[[students]]
lms_id = "10099"
name = "Nobody Handedin"
email = "nobody@example.edu"

[[extensions]]
student = "10013"
lesson = "01_toy"
days = 4
"""


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy course released, and notebooks: a complete one and an untouched one."""
    root = tmp_path_factory.mktemp("lms")
    solutions = write_toy_solutions(root / "solutions")
    release(root / "lessons", solutions)
    work = root / "work"
    full = write_submission(root / "lessons", work, "full", "01_toy",
                            {"add": GOOD_ADD, "scale": GOOD_SCALE})
    blank = write_submission(root / "lessons", work, "blank", "01_toy")
    two = write_submission(root / "lessons", work, "two", "02_toy")
    (root / "course.toml").write_text(COURSE_TOML)
    return root, solutions, {"full": full, "blank": blank, "two": two}


def lms_zip(path: Path, lesson_folder: Path, when: datetime, top: str = "") -> Path:
    """A student's zip of one lesson folder, its members dated ``when`` (the zip format keeps
    wall-clock time without a zone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(lesson_folder.rglob("*")):
            if file.is_file():
                name = f"{top}{lesson_folder.name}/{file.relative_to(lesson_folder)}"
                info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
                zf.writestr(info, file.read_bytes())
    return path


def canvas_download(folder: Path, notebooks: dict[str, Path]) -> Path:
    """A Canvas "Download Submissions" of lesson 01_toy: two students both named John Smith
    (user ids 10007, 10008), a resubmission renamed with Canvas's -1 suffix and a later
    attachment id, a LATE one, an extension, a stray file."""
    on_time = DUE - timedelta(hours=2)
    lms_zip(folder / "smithjohn_10007_900_01_toy.zip", notebooks["full"], on_time)
    lms_zip(folder / "smithjohn_10008_901_01_toy.zip", notebooks["blank"], on_time)
    lms_zip(folder / "adamsann_10011_902_01_toy.zip", notebooks["blank"], on_time)
    lms_zip(folder / "adamsann_10011_950_01_toy-1.zip", notebooks["full"], on_time)  # resubmit
    lms_zip(folder / "lateolu_LATE_10012_903_01_toy.zip", notebooks["full"],
            DUE + timedelta(days=2, hours=3))                   # 3 started days late
    lms_zip(folder / "endedext_LATE_10013_904_01_toy.zip", notebooks["full"],
            DUE + timedelta(days=3))                            # inside a 4-day extension
    (folder / "smithjohn_10007_905_notes.txt").write_text("my notes")
    (folder / ".DS_Store").write_bytes(b"")   # the instructor's machine's, not a student's
    return folder


def test_course_file_reads_dates_policies_roster_and_extensions(toy):
    root, _, _ = toy
    course = load_course_file(root / "course.toml")
    assert course.lms == "canvas" and course.lessons["01_toy"].due == DUE
    assert course.lessons["02_toy"].due == datetime(2099, 1, 1, 23, 59, 59, tzinfo=UTC)
    assert course.lessons["01_toy"].late == LatePolicy("percent_per_day", 10, 0)
    assert course.lessons["02_toy"].late.policy == "zero_after_grace"
    assert course.due("10013", "01_toy") == DUE + timedelta(days=4)
    assert course.due("10007", "01_toy") == DUE
    assert course.students["10008"].section == "B"
    assert course.is_due("01_toy", datetime.now(UTC)) and not course.is_due("02_toy", DUE)


@pytest.mark.parametrize("text, names", [
    ("[lessons.01_toy]\nrelease = 2026-01-01\n", ("lessons.01_toy.due", "missing")),
    ("[late]\npolicy = 'half'\n", ("late.policy", "'half'")),
    ("[late]\npolicy = 'percent_per_day'\n", ("late.percent",)),
    ("[lessons.01_toy]\ndue = 2026-01-01\ndeu = 2026-01-02\n", ("lessons.01_toy.deu",)),
    ("timezone = 'Mars/Olympus'\n", ("timezone",)),
    ("[lms]\nkind = 'sakai'\n", ("lms.kind",)),
    ("[lms]\npattern = '(?P<name>.*)'\n", ("lms.pattern", "key")),
    ("[[extensions]]\nstudent = '1'\nlesson = '03_x'\ndays = 2\n", ("extensions[0].lesson",)),
    ("[[students]]\nlms_id = '1'\n[[students]]\nlms_id = '1'\n", ("students[1].lms_id",)),
    ("due = [", ("not valid TOML",)),
    ("[lms]\npattern = '(?P<key>'\n", ("lms.pattern", "not a regular expression")),
    ("[[students]]\nlms_id = '1'\naliases = '2'\n", ("students[0].aliases",)),
    ("[[students]]\nname = 'Ann'\n", ("students[0].lms_id", "missing")),
    ("[lessons.tokenizer]\ndue = 2026-01-01\n", ("lessons.tokenizer", "NN_slug")),
    ("[lessons.01_toy]\nrelease = 2026-02-01\ndue = 2026-01-01\n",
     ("lessons.01_toy.release", "after lessons.01_toy.due")),
    ("[[extensions]]\nstudent = '1'\nlesson = '01_toy'\ndays = 2\n"
     "[lessons.01_toy]\ndue = 2026-01-01\n[[students]]\nlms_id = '2'\n",
     ("extensions[0].student", "not in the roster")),
])
def test_course_file_errors_name_the_file_and_key(tmp_path, text, names):
    path = tmp_path / "course.toml"
    path.write_text(text)
    with pytest.raises(CourseFileError) as caught:
        load_course_file(path)
    assert str(path) in str(caught.value)
    for name in names:
        assert name in str(caught.value), caught.value


def test_late_policies():
    ten = LatePolicy("percent_per_day", 10, 0)
    assert ten.penalty_percent(timedelta(0)) == 0
    assert ten.penalty_percent(timedelta(minutes=1)) == 10       # a started day
    assert ten.penalty_percent(timedelta(days=2, hours=3)) == 30
    assert ten.penalty_percent(timedelta(days=30)) == 100
    graced = LatePolicy("zero_after_grace", 0, 24)
    assert graced.penalty_percent(timedelta(hours=23)) == 0
    assert graced.penalty_percent(timedelta(hours=25)) == 100
    assert LatePolicy().penalty_percent(timedelta(days=9)) == 0


def test_canvas_download_loses_and_merges_no_one(toy, tmp_path):
    root, _, notebooks = toy
    course = load_course_file(root / "course.toml")
    download = canvas_download(tmp_path / "canvas", notebooks)
    collected = gather(download, tmp_path / "x", "canvas", canonical=course.canonical_id)
    assert sorted(collected.found) == ["10007", "10008", "10011", "10012", "10013"]
    # two John Smiths stay two students, each with their own notebook
    full = (notebooks["full"] / "01_toy.ipynb").read_bytes()
    blank = (notebooks["blank"] / "01_toy.ipynb").read_bytes()
    assert (collected.found["10007"]["01_toy"] / "01_toy.ipynb").read_bytes() == full
    assert (collected.found["10008"]["01_toy"] / "01_toy.ipynb").read_bytes() == blank
    # the resubmission (later attachment id, -1 suffix) wins and the first is listed
    assert (collected.found["10011"]["01_toy"] / "01_toy.ipynb").read_bytes() == full
    assert collected.records[("10011", "01_toy")].file == "adamsann_10011_950_01_toy-1.zip"
    assert any("adamsann_10011_902_01_toy.zip" in n and "superseded" in n
               for n in collected.notes)
    # the stray file is listed with its reason
    assert collected.not_graded == ["skipped smithjohn_10007_905_notes.txt: not a zip "
                                    "(students upload the zip that `python -m autograde "
                                    "submit` writes)"]
    (download / "extracted_by_hand").mkdir()
    again = gather(download, tmp_path / "x", "canvas", canonical=course.canonical_id)
    assert "skipped folder extracted_by_hand/" in again.not_graded[0]
    (download / "extracted_by_hand").rmdir()
    late = collected.records[("10012", "01_toy")]
    assert late.lms_late and late.submitted == DUE + timedelta(days=2, hours=3)
    assert late.time_source.startswith("zip members")
    # without --lms the names are recognised as Canvas's, never keyed by the name "smithjohn"
    recognised = gather(download, tmp_path / "y", None)
    assert recognised.lms == "canvas" and "--lms canvas" in recognised.notes[0]
    assert {"10007", "10008"} <= set(recognised.found)


def test_a_copied_zip_keeps_its_submission_time(toy, tmp_path):
    """The time comes from the zip's members: copying the download changes nothing."""
    import os
    import shutil

    root, _, notebooks = toy
    download = canvas_download(tmp_path / "canvas", notebooks)
    copy = tmp_path / "copied"
    shutil.copytree(download, copy)
    for path in copy.iterdir():
        os.utime(path, (0, 0))
    first = gather(download, tmp_path / "x", "canvas").records
    second = gather(copy, tmp_path / "y", "canvas").records
    assert {k: r.submitted for k, r in first.items()} == {k: r.submitted
                                                           for k, r in second.items()}


def test_moodle_names_with_spaces_folders_and_undecidable_duplicates(toy, tmp_path):
    root, _, notebooks = toy
    download = tmp_path / "moodle"
    when = DUE - timedelta(days=1)
    lms_zip(download / "Gina Green_10009_assignsubmission_file_01_toy.zip", notebooks["full"],
            when)
    lms_zip(download / "John Smith_10010_assignsubmission_file_01_toy.zip", notebooks["full"],
            when)
    lms_zip(download / "John Smith_10014_assignsubmission_file_01_toy.zip", notebooks["blank"],
            when)
    # the "download as folders" layout
    lms_zip(download / "Hal Hill_10015_assignsubmission_file" / "work.zip", notebooks["full"],
            when, top="workspace/")
    # one participant, two files, no attempt order: neither is graded, and it says so
    lms_zip(download / "Ivy Ives_10016_assignsubmission_file_a.zip", notebooks["full"], when)
    lms_zip(download / "Ivy Ives_10016_assignsubmission_file_b.zip", notebooks["blank"], when)
    course = load_course_file(None)
    course.students["777"] = Student("777", "Gina Green", aliases=["10009", "20009"])
    lms_zip(download / "Gina Green_20009_assignsubmission_file_02_toy.zip", notebooks["two"],
            when)  # lesson 02's assignment: another participant id, the same student
    collected = gather(download, tmp_path / "x", "moodle", canonical=course.canonical_id)
    assert sorted(collected.found) == ["10010", "10014", "10015", "10016", "777"]
    assert collected.records[("777", "01_toy")].name == "Gina Green"
    assert collected.records[("777", "02_toy")].file.startswith("Gina Green_20009")
    assert "01_toy" in collected.found["10015"]
    assert "01_toy" not in collected.found["10016"]
    why = collected.blocked[("10016", "01_toy")]
    assert "_a.zip" in why and "_b.zip" in why and not collected.not_graded


def test_blackboard_attempts_are_ordered_by_their_recorded_time(toy, tmp_path):
    root, _, notebooks = toy
    download = tmp_path / "bb"
    member_time = DUE + timedelta(days=5)  # the student's clock is wrong: not used
    lms_zip(download / "Toy One_kim_attempt_2026-01-12-20-00-00_01_toy.zip", notebooks["blank"],
            member_time)
    lms_zip(download / "Toy One_kim_attempt_2026-01-12-22-30-00_01_toy.zip", notebooks["full"],
            member_time)
    (download / "Toy One_kim_attempt_2026-01-12-22-30-00.txt").write_text("Date Submitted")
    collected = gather(download, tmp_path / "x", "blackboard")
    record = collected.records[("kim", "01_toy")]
    assert record.submitted == datetime(2026, 1, 12, 22, 30, tzinfo=UTC)
    assert record.time_source == "LMS record (file name)" and not collected.not_graded
    notebook = collected.found["kim"]["01_toy"] / "01_toy.ipynb"
    assert notebook.read_bytes() == (notebooks["full"] / "01_toy.ipynb").read_bytes()
    assert notebook.stat().st_mtime == record.submitted.timestamp()


def test_a_custom_pattern_reads_its_own_groups(toy, tmp_path):
    root, _, notebooks = toy
    lms_zip(tmp_path / "d" / "s-42--t-2026-01-10T10:00:00.zip", notebooks["full"], DUE)
    collected = gather(tmp_path / "d", tmp_path / "x", "native",
                       pattern=r"^s-(?P<key>\d+)--t-(?P<time>[^.]+)\.zip$")
    assert collected.records[("42", "01_toy")].submitted == datetime(2026, 1, 10, 10,
                                                                      tzinfo=UTC)
    assert set(LMS_PATTERNS) == {"native", "canvas", "moodle", "blackboard"}


def _answer(student, lesson, score):
    return Answer(student, lesson, scores={
        "test_add": {"score": min(score, 1.0), "max_score": 1.0, "error": None},
        "test_scale": {"score": max(score - 1.0, 0.0), "max_score": 2.0, "error": None}})


def test_exports_apply_the_late_policy_and_match_the_import_formats(toy, tmp_path):
    root, _, notebooks = toy
    course = load_course_file(root / "course.toml")
    download = canvas_download(tmp_path / "canvas", notebooks)
    collected = gather(download, tmp_path / "x", "canvas", canonical=course.canonical_id)
    students = sorted(collected.found)
    answers = {(s, "01_toy"): _answer(s, "01_toy", 0.0 if s == "10008" else 3.0)
               for s in students}
    for student in students:  # feedback as the grader writes it
        html = tmp_path / "feedback" / student / "01_toy.html"
        html.parent.mkdir(parents=True)
        html.write_text(f"<p>{student}</p>")
    grades = late_grades(course, answers, collected.records, students, ["01_toy"])
    assert grades[("10012", "01_toy")].penalty_percent == 30
    assert grades[("10012", "01_toy")].final == pytest.approx(2.1)
    assert grades[("10013", "01_toy")].penalty_percent == 0       # the extension
    lines = write_exports(tmp_path / "lms", course, "canvas", grades, students, ["01_toy"],
                          collected.records, tmp_path / "feedback")
    assert any("10099" in line for line in lines)                  # on the roster, no file

    with open(tmp_path / "lms" / "canvas_grades.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == CANVAS_COLUMNS + ["Toy one (4711)"]
    by_id = {row[1]: row for row in rows[1:]}
    assert sorted(by_id) == ["10007", "10008", "10011", "10012", "10013"]  # 10099: no file
    assert by_id["10007"] == ["John Smith", "10007", "S7", "jsmith7", "A", "3"]
    assert by_id["10008"][-1] == "0" and by_id["10012"][-1] == "2.1"

    with open(tmp_path / "lms" / "moodle_grades.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == MOODLE_COLUMNS + ["Toy one"]
    assert ["John", "Smith", "", "john.smith.b@example.edu", "0"] in rows

    with open(tmp_path / "lms" / "scores_by_student.csv") as handle:
        wide = {row["lms_id"]: row for row in csv.DictReader(handle)}
    assert wide["10012"]["01_toy raw"] == "3" and wide["10012"]["01_toy"] == "2.1"
    assert wide["10012"]["01_toy late penalty %"] == "30"
    assert wide["10012"]["01_toy submitted"] == "2026-01-15T02:59:00+00:00"
    assert wide["10099"]["name"] == "Nobody Handedin" and wide["10099"]["01_toy"] == ""

    with zipfile.ZipFile(tmp_path / "lms" / "feedback_01_toy.zip") as zf:
        names = sorted(zf.namelist())
    assert "adamsann_10011_950_01_toy-1-feedback.html" in names and len(names) == 5


def test_grade_command_grades_a_canvas_download_end_to_end(toy, tmp_path, capsys):
    """`python -m autograde grade` on a Canvas download with course.toml: only the due lesson,
    the right attempt, the late policy, the stray file reported and the exit status 1."""
    root, solutions, notebooks = toy
    download = canvas_download(tmp_path / "canvas", notebooks)
    lms_zip(download / "adamsann_10011_960_02_toy.zip", notebooks["two"], DUE)  # not due
    out = tmp_path / "out"
    # course.toml is found beside lessons/ and solutions/, as in the repository
    status = main(["grade", str(download), "--out", str(out), "--solutions", str(solutions),
                   "--lms", "canvas", "--workers", "2",
                   "--cell-timeout", "30", "--notebook-timeout", "120"])
    captured = capsys.readouterr()
    assert f"course file: {root / 'course.toml'}" in captured.out
    assert status == 1, captured.err                      # the stray file was not graded
    assert "NOT GRADED: 1 file(s)" in captured.err and "notes.txt" in captured.err
    assert "lesson 02_toy is not graded: due 2099" in captured.out
    with open(out / "lms" / "canvas_grades.csv") as handle:
        rows = {row["ID"]: row for row in csv.DictReader(handle)}
    assert list(rows["10007"])[-1] == "Toy one (4711)"    # no column for 02_toy
    scores = {key: row["Toy one (4711)"] for key, row in rows.items()}
    assert scores == {"10007": "3", "10008": "0", "10011": "3", "10012": "2.1", "10013": "3"}
    with open(out / "grades.csv") as handle:            # nbgrader's long CSV, with names
        long = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert long["10012"]["raw_score"] == "3.0" and long["10007"]["email"].startswith("john")
    assert float(long["10012"]["late_submission_penalty"]) == pytest.approx(0.9)
    assert float(long["10012"]["score"]) == pytest.approx(2.1)
    assert long["10012"]["duedate"].startswith("2026-01-12 23:59:00")
    assert float(long["10013"]["late_submission_penalty"]) == 0            # the extension
    with zipfile.ZipFile(out / "lms" / "feedback_01_toy.zip") as zf:
        assert "lateolu_LATE_10012_903_01_toy-feedback.html" in zf.namelist()
    report = (out / "report.md").read_text()
    assert "smithjohn_10007_905_notes.txt" in report
    assert "10012 / 01_toy: submitted 2026-01-15T02:59:00+00:00 (time from zip members" in report
    assert "**10012 / 01_toy**: 3 / 3 (raw; 2.1 after a 30% late penalty)" in report
    assert "late penalty 30%: raw 3 -> 2.1 / 3" in report


def test_submit_zips_keep_the_save_time_in_unix_time(tmp_path):
    """`submit` records each file's modification time as Unix time: the grader reads the
    same instant whatever the course's or the student's time zone."""
    import os

    from autograde.student.submit import submit

    notebook = tmp_path / "ws" / "01_toy" / "01_toy.ipynb"
    notebook.parent.mkdir(parents=True)
    notebook.write_text("{}")
    saved = int(DUE.timestamp())
    os.utime(notebook, (saved, saved))
    submit(tmp_path / "ws", student="amy", out_dir=tmp_path / "up")
    for zone in ("UTC", "Pacific/Auckland"):
        collected = gather(tmp_path / "up", tmp_path / "x", zone=ZoneInfo(zone))
        assert collected.records[("amy", "01_toy")].submitted == DUE


def test_a_lesson_collection_could_not_decide_is_not_graded_and_fails_the_batch(toy, tmp_path):
    from autograde.batch.grade import BatchResult, _pending
    from autograde.sandbox.kernel import Limits

    root, solutions, notebooks = toy
    found = {"5": {"01_toy": notebooks["full"]}, "6": {}}
    result = BatchResult(out=tmp_path)
    todo = _pending(found, ["5", "6"], ["01_toy"], solutions, Limits(), tmp_path / ".state",
                    "sqlite://", result, blocked={("6", "01_toy"): "two files: a.zip, b.zip"})
    assert [(s.student, s.lesson) for s, _ in todo] == [("5", "01_toy")]
    assert result.failures == ["6/01_toy: NOT GRADED: two files: a.zip, b.zip"]
    assert not result.ok


def test_only_due_lessons_are_graded_unless_asked(toy):
    from autograde.batch.grade import _choose_lessons

    root, solutions, _ = toy
    course = load_course_file(root / "course.toml")
    found = {"1": {"01_toy": root, "02_toy": root}}
    notes = []
    assert _choose_lessons(found, None, solutions, notes, course,
                           DUE - timedelta(seconds=1)) == []  # not yet due
    assert _choose_lessons(found, None, solutions, notes, course,
                           DUE) == ["01_toy"]
    assert "lesson 02_toy is not graded: due 2099-01-01T23:59+00:00" in notes[-1]
    assert _choose_lessons(found, ["02_toy"], solutions, [], course, DUE) == ["02_toy"]
    roster_only = load_course_file(None)  # no calendar: every submitted lesson
    assert _choose_lessons(found, None, solutions, [], roster_only, DUE) == ["01_toy", "02_toy"]


def test_the_calendar_gives_the_kit_s_week(tmp_path):
    """Without a calendar no week; with one, the first lesson with graded names not due yet
    (an unlisted lesson is not due), or all once every one is due."""
    from nanolm_lib.grading.curriculum import GRADED

    now = datetime(2026, 3, 1, tzinfo=UTC)
    path = tmp_path / "course.toml"
    path.write_text("[lessons.01_tokenizer]\ndue = 2026-02-01\n[lessons.02_data]\n"
                    "due = 2026-02-08\n[lessons.03_attention]\ndue = 2026-03-08\n")
    assert load_course_file(None).week(now) is None
    assert load_course_file(path).week(now) == "03"
    assert load_course_file(path).week(datetime(2026, 1, 1, tzinfo=UTC)) == "01"
    assert load_course_file(path).week(datetime(2026, 4, 1, tzinfo=UTC)) == "04"  # unlisted
    path.write_text("".join(f"[lessons.{lesson}]\ndue = 2026-02-01\n" for lesson in GRADED))
    assert load_course_file(path).week(now) == "all"


def test_student_kit_takes_its_week_from_the_calendar(tmp_path, capsys):
    """`student-kit OUT` beside a course.toml builds the kit of the calendar's week (said on
    stderr); --week overrides it."""
    import json
    import shutil

    from autograde.course import LESSONS_DIR

    lessons = tmp_path / "course" / "lessons"
    shutil.copytree(LESSONS_DIR, lessons)
    (lessons.parent / "course.toml").write_text(
        "[lessons.01_tokenizer]\ndue = 2020-01-01\n[lessons.02_data]\ndue = 2020-01-08\n"
        "[lessons.03_attention]\ndue = 2999-01-01\n")
    assert main(["student-kit", str(tmp_path / "kit"), "--lessons", str(lessons)]) == 0
    assert "week 03 from the calendar" in capsys.readouterr().err
    assert json.loads((tmp_path / "kit" / "STAGE.json").read_text())["week"] == "03"
