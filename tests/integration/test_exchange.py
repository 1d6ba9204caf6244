"""nbgrader's exchange (autograde/batch/exchange.py) without a hub or a browser: the release as the
kit ships it, collect's choice of each student's latest submission and its time, the
feedback's way back to the one student who submitted, and the errors that name bad input.
Students act through nbgrader's own exchange classes, as their Assignments panel does; the
whole path in a browser, grading included: tests/browser/test_jupyterhub_course.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.utils import parse_utc

from autograde.__main__ import main
from autograde.batch.answer import Answer
from autograde.batch.exchange import collect, release, return_feedback

REPO = Path(__file__).resolve().parents[2]
COURSE = "nanolm"
LESSON = "01_tokenizer"


def _release(exchange: Path, lessons: Path):
    """`autograde exchange-release 01` as the instructor runs it (lessons: a copy of ours)."""
    command = [sys.executable, "-m", "autograde", "exchange-release", "01", "--course", COURSE,
               "--exchange", str(exchange), "--lessons", str(lessons)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_release_puts_the_lesson_as_the_kit_ships_it_in_the_outbound_folder(tmp_path, capsys):
    lessons = tmp_path / "lessons"
    shutil.copytree(REPO / "lessons" / LESSON, lessons / LESSON)
    (lessons / LESSON / ".ipynb_checkpoints").mkdir()  # a kit leaves these out
    (lessons / LESSON / ".ipynb_checkpoints" / "old.ipynb").write_text("{}")
    (lessons / LESSON / "runs").mkdir()
    (lessons / LESSON / "runs" / "model.ckpt").write_bytes(b"x")
    exchange = tmp_path / "exchange"

    done = _release(exchange, lessons=lessons)
    assert done.returncode == 0, done.stderr
    outbound = exchange / COURSE / "outbound" / LESSON
    assert _files(outbound) == _files(REPO / "lessons" / LESSON)  # fixtures in, caches out
    assert (outbound / f"{LESSON}.ipynb").read_bytes() == \
        (REPO / "lessons" / LESSON / f"{LESSON}.ipynb").read_bytes()
    assert (exchange / COURSE / "inbound").stat().st_mode & 0o333 == 0o333  # students write

    again = ["exchange-release", "01", "--exchange", str(exchange), "--lessons", str(lessons)]
    assert main(again) == 2
    assert "Destination already exists, add --force" in capsys.readouterr().err
    assert main([*again, "--force"]) == 0


def _student(name: str, root: Path, exchange: Path):
    """nbgrader's settings in a student's server on the hub (deploy/jupyterhub/singleuser)."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    home = root / "homes" / name
    home.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.Exchange.root = str(exchange)
    config.Exchange.cache = str(home / "nbgrader_cache")
    config.Exchange.assignment_dir = str(home)
    config.CourseDirectory.course_id = COURSE
    config.CourseDirectory.student_id = name
    config.CourseDirectory.assignment_id = LESSON
    return home, dict(coursedir=CourseDirectory(config=config),
                      authenticator=Authenticator(config=config), config=config)


def _fetch_and_submit(name: str, root: Path, exchange: Path, answer: str) -> None:
    from nbgrader.exchange.default import ExchangeFetchAssignment, ExchangeSubmit

    home, settings = _student(name, root, exchange)
    if not (home / LESSON).is_dir():
        ExchangeFetchAssignment(**settings).start()
    path = home / LESSON / f"{LESSON}.ipynb"
    notebook = nbformat.read(str(path), as_version=4)
    cell = next(c for c in notebook.cells if "def get_pair_counts" in c.source)
    cell.source = f"def get_pair_counts(ids):\n    return {{}}  # {answer}"
    nbformat.write(notebook, str(path))
    ExchangeSubmit(**settings).start()


def test_collect_takes_each_students_latest_and_feedback_reaches_only_its_student(tmp_path):
    from nbgrader.exchange.default import ExchangeFetchFeedback

    exchange = tmp_path / "exchange"
    release("01", COURSE, exchange, tmp_path / "release")
    _fetch_and_submit("ada", tmp_path, exchange, "# ada, first try")
    _fetch_and_submit("ben", tmp_path, exchange, "# ben's answer")
    _fetch_and_submit("ada", tmp_path, exchange, "# ada, second try")

    out = tmp_path / "graded"
    submitted, _warnings = collect(COURSE, exchange, out)
    assert sorted(p.name for p in submitted.iterdir()) == ["ada", "ben"]
    notebook = submitted / "ada" / LESSON / f"{LESSON}.ipynb"
    assert "ada, second try" in notebook.read_text()
    inbound = sorted((exchange / COURSE / "inbound").glob(f"ada+{LESSON}+*"))
    assert len(inbound) == 2
    stamp = (submitted / "ada" / LESSON / "timestamp.txt").read_text()
    assert stamp in inbound[-1].name  # the later one (names sort by time)
    assert notebook.stat().st_mtime == pytest.approx(parse_utc(stamp).timestamp(), abs=1e-3)

    answers = {}
    for name in ("ada", "ben"):
        page = tmp_path / f"{name}.html"
        page.write_text(f"<html><body>feedback for {name}</body></html>")
        answers[(name, LESSON)] = Answer(name, LESSON, feedback=str(page))
    assert return_feedback(answers, COURSE, exchange, out) == [f"ada/{LESSON}", f"ben/{LESSON}"]
    assert len(list((exchange / COURSE / "feedback").glob("*.html"))) == 2

    for name in ("ada", "ben"):
        home, settings = _student(name, tmp_path, exchange)
        ExchangeFetchFeedback(**settings).start()
        fetched = list((home / LESSON / "feedback").glob("*/*.html"))
        # ada's first submission has no feedback (it was not the one graded)
        assert [p.read_text() for p in fetched] == \
            [f"<html><body>feedback for {name}</body></html>"], fetched


def test_bad_input_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("NANOLM_EXCHANGE", raising=False)
    assert main(["exchange-release", "42", "--exchange", str(tmp_path)]) == 2
    assert "lesson '42': no such lesson" in capsys.readouterr().err
    assert main(["exchange-release", "01", "--course", "a+b", "--exchange", str(tmp_path)]) == 2
    assert "course id 'a+b'" in capsys.readouterr().err
    assert main(["exchange-release", "01"]) == 2
    assert "--exchange DIR" in capsys.readouterr().err
    empty = tmp_path / "empty-exchange"
    empty.mkdir()
    assert main(["grade", "--from-exchange", COURSE, "--exchange", str(empty),
                 "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert str(empty / COURSE / "inbound") in error and "exchange-release" in error, error
    assert main(["grade", str(tmp_path), "--from-exchange", COURSE, "--exchange", str(empty),
                 "--out", str(tmp_path / "out")]) == 2
    assert "no SUBMISSIONS" in capsys.readouterr().err
    assert main(["grade", "--out", str(tmp_path / "out")]) == 2
    assert "--from-exchange COURSE" in capsys.readouterr().err
    assert not os.listdir(empty)  # nothing was written into the exchange
