"""nbgrader's exchange, for the course on JupyterHub (``deploy/jupyterhub``).

``python -m autograde exchange-release NN`` and ``python -m autograde grade --from-exchange
COURSE``. The exchange is nbgrader's folder layout, written and read by nbgrader's own exchange
classes, so that the students' Assignments panel (nbgrader too) finds what they wrote:

* ``COURSE/outbound/NN_slug/``: the released lesson, what students fetch;
* ``COURSE/inbound/<student>+NN_slug+<time>+<random>/``: each submission, with nbgrader's
  ``timestamp.txt`` and ``submission_secret.txt``;
* ``COURSE/feedback/<hash>.html``: the feedback of one submitted notebook, named by a hash of
  that submission's secret, which only the student's own copy of the submission holds: the
  panel's Fetch Feedback finds that student's feedback and no one else's.

Release: lesson NN as the student kit ships it (:data:`autograde.authoring.kit.KIT_SKIP`) goes into
a scratch course directory's ``release/``, and nbgrader's ExchangeReleaseAssignment publishes it.

Grading: nbgrader's ExchangeCollect copies each student's latest submission into
``OUT/collected/submitted/<student>/NN_slug/`` (nbgrader's course directory layout, kept: a
rerun collects only newer submissions, and the grader skips what it graded before). The
collected notebook carries the time of submission that the exchange records (the late policy
reads the notebook's time, as for an LMS zip); on a shared exchange the student's own process
writes that record, as it writes a zip's. The grader grades ``OUT/collected/submitted`` like any
folder of submissions; then each graded submission's feedback goes into
``OUT/collected/feedback/<student>/NN_slug/`` beside that submission's timestamp and secret, and
nbgrader's ExchangeReleaseFeedback publishes it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from autograde.authoring.kit import KIT_SKIP
from autograde.course import (
    LESSON_NAME,
    GraderError,
    course_config,
    create_gradebook,
    safe_copy_tree,
)
from autograde.paths import LESSONS_DIR

COLLECTED = "collected"  # OUT/collected: nbgrader's course directory of the collected work
COURSE_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")  # nbgrader splits the exchange's names on '+'


def exchange_root(given: Path | None) -> Path:
    """The exchange folder: ``--exchange``, else $NANOLM_EXCHANGE (deploy/jupyterhub reads it)."""
    value = given or os.environ.get("NANOLM_EXCHANGE")
    if not value:
        raise GraderError("no exchange folder: pass --exchange DIR (or set NANOLM_EXCHANGE), "
                          "the folder the hub's students fetch from and submit to")
    return Path(value).resolve()


def lesson_name(number: str, lessons_dir: Path = LESSONS_DIR) -> str:
    """``01`` or ``01_tokenizer`` -> ``01_tokenizer``, a lesson of ``lessons_dir``."""
    if not Path(lessons_dir).is_dir():
        raise GraderError(f"{lessons_dir}: no lessons (run `python -m autograde release`)")
    names = sorted(p.name for p in Path(lessons_dir).iterdir()
                   if p.is_dir() and LESSON_NAME.match(p.name))
    found = [name for name in names if number in (name, name[:2])]
    if not found:
        raise GraderError(f"lesson {number!r}: no such lesson in {lessons_dir} "
                          f"(there are {', '.join(names)})")
    return found[0]


def _config(course_root: Path, course_id: str, exchange: Path):
    """nbgrader's settings for a course directory at ``course_root`` and the exchange."""
    if not COURSE_ID.match(course_id or ""):
        raise GraderError(f"course id {course_id!r}: use letters, digits, '_', '.' or '-'")
    course_root.mkdir(parents=True, exist_ok=True)
    config = course_config(course_root, overrides={
        "CourseDirectory": {"course_id": course_id}, "Exchange": {"root": str(exchange)}})
    create_gradebook(config.CourseDirectory.db_url)  # collect reads due dates there
    return config


def _run_exchange(exchange_class, config, lesson: str, **traits) -> list[str]:
    """Run one of nbgrader's exchange steps for ``lesson``; returns its warnings, one line
    each. Its failure becomes a :class:`GraderError` with nbgrader's log."""
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import ExchangeError

    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = lesson
    step = exchange_class(coursedir=coursedir, config=config, **traits)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    step.log.addHandler(handler)
    step.log.propagate = False
    try:
        step.start()
    except ExchangeError as error:
        log = "\n".join(f"{r.levelname} {r.getMessage().strip()}" for r in records)
        raise GraderError(f"nbgrader {exchange_class.__name__} of {lesson}: {error}\n"
                          f"{log[-3000:]}") from error
    finally:
        step.log.removeHandler(handler)
    return [" ".join(r.getMessage().split()) for r in records if r.levelno >= logging.WARNING]


def release(number: str, course_id: str, exchange: Path, scratch: Path,
            lessons_dir: Path = LESSONS_DIR, force: bool = False) -> Path:
    """Publish lesson ``number`` in ``exchange``: ``COURSE/outbound/NN_slug``, as the kit ships
    it. ``scratch`` holds the course directory nbgrader releases from. Returns the folder."""
    from nbgrader.exchange.default import ExchangeReleaseAssignment


    lesson = lesson_name(number, lessons_dir)
    config = _config(scratch, course_id, exchange)
    safe_copy_tree(Path(lessons_dir) / lesson, scratch / "release" / lesson, skip=KIT_SKIP)
    _run_exchange(ExchangeReleaseAssignment, config, lesson, force=force)
    return exchange / course_id / "outbound" / lesson


def submitted_lessons(course_id: str, exchange: Path) -> list[str]:
    """The lessons that have a submission in the exchange's inbound folder."""
    inbound = exchange / course_id / "inbound"
    if not inbound.is_dir():
        raise GraderError(f"{inbound}: no such folder: course {course_id!r} has nothing "
                          f"released in the exchange {exchange} (autograde exchange-release NN)")
    parts = (name.split("+") for name in os.listdir(inbound))
    return sorted({p[1] for p in parts if len(p) >= 3 and LESSON_NAME.match(p[1])})


def collect(course_id: str, exchange: Path, out: Path,
            lessons: list[str] | None = None) -> tuple[Path, list[str]]:
    """Collect each student's latest submission of ``lessons`` (default: every lesson
    submitted) into ``OUT/collected/submitted``. Returns that folder and nbgrader's warnings."""
    from nbgrader.exchange.default import ExchangeCollect
    from nbgrader.utils import parse_utc

    submitted = submitted_lessons(course_id, exchange)
    course_root = Path(out).resolve() / COLLECTED
    config = _config(course_root, course_id, exchange)
    warnings = []
    for lesson in lessons or submitted:
        if lesson not in submitted:
            warnings.append(f"lesson {lesson}: nothing submitted to the exchange")
            continue
        warnings += _run_exchange(ExchangeCollect, config, lesson, update=True)
        for folder in sorted((course_root / "submitted").glob(f"*/{lesson}")):
            stamp = folder / "timestamp.txt"
            notebook = folder / f"{lesson}.ipynb"
            if stamp.is_file() and notebook.is_file():
                when = parse_utc(stamp.read_text().strip()).timestamp()
                os.utime(notebook, (when, when))
    if not (course_root / "submitted").is_dir():
        raise GraderError(f"no submissions in the exchange {exchange} for course {course_id!r}")
    return course_root / "submitted", warnings


def return_feedback(answers: dict, course_id: str, exchange: Path, out: Path) -> list[str]:
    """Publish the feedback of every graded (student, lesson) of ``answers`` (a batch's
    :class:`autograde.batch.answer.Answer` per pair) for the submission collected; returns
    ``student/lesson`` of each one published."""
    from nbgrader.exchange.default import ExchangeReleaseFeedback

    course_root = Path(out).resolve() / COLLECTED
    config = _config(course_root, course_id, exchange)
    published, lessons = [], set()
    for (student, lesson), answer in sorted(answers.items()):
        submission = course_root / "submitted" / student / lesson
        if not (answer.feedback and Path(answer.feedback).is_file()
                and (submission / "submission_secret.txt").is_file()):
            continue  # no feedback made, or not a submission of the exchange
        target = course_root / "feedback" / student / lesson
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        shutil.copyfile(answer.feedback, target / f"{lesson}.html")
        for name in ("timestamp.txt", "submission_secret.txt"):
            shutil.copyfile(submission / name, target / name)
        published.append(f"{student}/{lesson}")
        lessons.add(lesson)
    for lesson in sorted(lessons):
        _run_exchange(ExchangeReleaseFeedback, config, lesson)
    return published
