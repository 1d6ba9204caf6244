"""``python -m autograde grade SUBMISSIONS --out DIR``: grade a class in one command.

1. Collect the submissions (:mod:`autograde.batch.collect`): student folders or LMS zips, named
   as the LMS (``--lms`` or ``course.toml``'s ``[lms] kind``) names them. With a course file
   (:mod:`autograde.batch.course_file`), only the lessons already due are graded unless
   ``--lessons`` names others.
2. Build a template gradebook holding the lessons' assignments (nbgrader
   ``generate_assignment`` of ``solutions/``), and the main gradebook (``DIR/gradebook.db``, or
   any SQLAlchemy URL given with ``--db``).
3. Skip every submission graded before with the same content hash (``DIR/.state/``): an
   interrupted batch resumes where it stopped, and nothing already graded is lost.
4. Grade the rest with N worker processes (:mod:`autograde.batch.worker`), each with its own course
   directory and gradebook; merge each answer into the main gradebook as it arrives (one
   writer), with a progress bar over submissions.
5. Write ``grades.csv`` (nbgrader's CSV export), ``scores.json``, ``summary.md`` /
   ``summary.png`` and ``report.md`` (:mod:`autograde.batch.report`), and the LMS exports with the
   late policy applied (``lms/``, :mod:`autograde.batch.lms_export`), for every submission in the
   gradebook, from the gradebook and ``DIR/.state/`` (:mod:`autograde.batch.results`): a run of some
   lessons or some students keeps the others, and overrides (:mod:`autograde.batch.overrides`)
   stand through a regrade.

The batch exits 0 whenever every submission was graded, even to zero; a submission that the
grader itself could not handle, and every file of the download that was not graded, is named
in the report and makes the exit status non-zero.

On a cluster the same batch is split (:class:`Shard`): ``--shard K/N`` grades the K-th of N
deterministic shares into the same ``DIR`` (a folder every shard sees) and the same gradebook
(``--db postgresql+psycopg://...`` for shards on several hosts), and writes no report; then
``--merge N`` grades nothing and writes ``grades.csv`` and the reports once, from the gradebook
and ``DIR/.state/``, naming any submission whose shard has not finished. A shard run again
skips what it graded before (the same content hashes), so a shard that died loses nothing.
:mod:`autograde.batch.slurm` submits the shards as one Slurm array job and the merge after it.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from autograde.batch import results
from autograde.batch.answer import Answer
from autograde.batch.collect import Collected, Submission, gather
from autograde.batch.course_file import CourseFile, now_utc
from autograde.batch.override_log import load_overrides
from autograde.batch.overrides import apply_overrides, log_regrade
from autograde.batch.state import Run, default_gradebook, load_answer
from autograde.batch.worker import ANSWER_PREFIX, WorkerSettings
from autograde.course import (
    REPO,
    SOLUTIONS_DIR,
    GraderError,
    course_config,
    create_gradebook,
    ensure_tools_on_path,
    lesson_names,
    make_course,
    run_nbgrader,
)
from autograde.integrity import similarity
from autograde.integrity.copycheck import load_fingerprints
from autograde.sandbox.kernel import Limits, require_isolation
from autograde.sandbox.launcher import die_with_parent, isolation_level
from autograde.sandbox.verdict import graded_by_verdict, stage_grading_library
from nanolm_lib.grading.curriculum import GRADED
from nanolm_lib.utils import atomic_write, progress

STATE_VERSION = 1


@dataclass
class BatchResult:
    """What a batch did: answers per (student, lesson) and the submissions it could not grade."""

    out: Path
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    graded: int = 0           # graded in this run
    skipped: int = 0          # unchanged since an earlier run
    failures: list[str] = field(default_factory=list)   # "student/lesson: why"
    notes: list[str] = field(default_factory=list)
    not_graded: list[str] = field(default_factory=list)  # files of the download left out
    sections: dict[str, list[str]] = field(default_factory=dict)  # report: heading -> lines
    late: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # final, %
    isolation: str = ""
    copied: str = "zero"      # the copy policy this batch graded under
    shard: Shard | None = None
    unfinished_shards: list[int] = field(default_factory=list)  # --merge: shards to rerun

    @property
    def ok(self) -> bool:
        return not self.failures and not self.not_graded


@dataclass(frozen=True)
class Shard:
    """The K-th of N shares of a batch (K from 1): the (student, lesson) pairs in sorted order,
    dealt round-robin, so every shard computes the same split from the same submissions."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in str(text).split("/"))
        except ValueError:
            raise GraderError(f"--shard {text!r}: write K/N, e.g. 1/4") from None
        if not 1 <= index <= count:
            raise GraderError(f"--shard {text!r}: K must be between 1 and N")
        return cls(index, count)

    @staticmethod
    def of(position: int, count: int) -> int:
        """The shard (1..count) that grades the pair at ``position`` of the sorted pairs."""
        return position % count + 1

    def takes(self, position: int) -> bool:
        return self.of(position, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


# --------------------------------------------------------------------------- worker processes
class WorkerProcess:
    """A ``python -m autograde.batch.worker`` subprocess, restarted when it dies."""

    def __init__(self, settings: WorkerSettings, log_path: Path):
        self.settings = settings
        self.settings_path = Path(settings.root).with_suffix(".json")
        Path(settings.root).mkdir(parents=True, exist_ok=True)
        settings.save(self.settings_path)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autograde.batch.worker", str(self.settings_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True, preexec_fn=functools.partial(die_with_parent, os.getpid()))
        log.close()
        ready = self._read_answer()
        if not ready or not ready.get("ready"):
            detail = (ready or {}).get("fatal") or self._log_tail()
            self.stop()
            raise GraderError(f"a grading worker could not start:\n{detail}")

    def _read_answer(self) -> dict | None:
        """The worker's next message: its greeting, or an answer's fields."""
        for line in self.process.stdout:
            if line.startswith(ANSWER_PREFIX):
                return json.loads(line[len(ANSWER_PREFIX):])
        return None

    def _log_tail(self) -> str:
        try:
            return Path(self.log_path).read_text()[-3000:]
        except OSError:
            return ""

    def run(self, job: dict, timeout: float) -> Answer | None:
        """Send one job; the answer, or None when the worker died or overran ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        watchdog = threading.Timer(timeout, self.stop)
        watchdog.start()
        try:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
            answer = self._read_answer()
        except (BrokenPipeError, OSError, ValueError):
            answer = None
        finally:
            watchdog.cancel()
        if answer is None:
            self.stop()
            return None
        return Answer.from_dict(answer)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process and process.poll() is None:
            try:
                os.killpg(process.pid, 9)  # the worker and any kernel it started
            except OSError:
                process.kill()
            process.wait()


# --------------------------------------------------------------------------- gradebooks
def _generate_assignments(course_root: Path, lessons: list[str], db_url: str) -> None:
    from nbgrader.converters import GenerateAssignment

    create_gradebook(db_url)
    config = course_config(course_root, db_url=db_url)
    for lesson in lessons:
        try:
            run_nbgrader(GenerateAssignment, config, assignment_id=lesson)
        except GraderError as error:
            raise GraderError(f"the solution notebook of lesson {lesson} could not be "
                              f"prepared for grading: {error}") from error


def merge_submission(db_url: str, student: str, lesson: str, submission: dict) -> None:
    """Copy one graded submission (a worker's answer) into the main gradebook."""

    from nbgrader.api import Gradebook, MissingEntry
    from sqlalchemy.exc import SAWarning

    # nbgrader's add_submission trips SQLAlchemy 2's autoflush warnings; they are harmless.
    with Gradebook(db_url) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        gb.update_or_create_student(student)
        try:
            gb.remove_submission(lesson, student)
        except MissingEntry:
            pass
        kwargs = {"timestamp": submission["timestamp"]} if submission.get("timestamp") else {}
        sub = gb.add_submission(lesson, student, **kwargs)
        for notebook in sub.notebooks:
            data = submission["notebooks"].get(notebook.name, {})
            notebook.flagged = bool(data.get("flagged"))
            for grade in notebook.grades:
                values = data.get("grades", {}).get(grade.name, {})
                grade.auto_score = values.get("auto_score", 0.0)
                grade.manual_score = values.get("manual_score")
                grade.needs_manual_grade = bool(values.get("needs_manual_grade", False))
            for comment in notebook.comments:
                comment.auto_comment = data.get("comments", {}).get(comment.name)
                comment.manual_comment = data.get("manual_comments", {}).get(comment.name)
        gb.db.commit()


MERGE_ATTEMPTS = 3


def _merge_with_retries(db_url: str, key: tuple[str, str], answer: Answer,
                        attempts: int = MERGE_ATTEMPTS) -> str | None:
    """Merge one answer, retrying a gradebook that is busy (``database is locked``, another
    process inside a transaction); the last error when every attempt failed, else None. The
    seconds it took join the answer's phases."""

    from sqlalchemy.exc import SQLAlchemyError

    error, started = None, time.monotonic()
    for attempt in range(attempts):
        try:
            merge_submission(db_url, key[0], key[1], answer.submission)
            answer.phases["gradebook write"] = round(time.monotonic() - started, 3)
            return None
        except SQLAlchemyError as caught:
            error = str(caught).splitlines()[0][:300]
            time.sleep(0.5 * 2 ** attempt)  # back off (sqlite also waits 5 s per attempt)
    return error


def _submitted_pairs(db_url: str) -> set[tuple[str, str]]:
    """(student, lesson) of every submission in the gradebook, in one query (a class of a
    thousand would otherwise open a connection per submission)."""
    from nbgrader.api import Assignment, Gradebook, Student, SubmittedAssignment

    with Gradebook(db_url) as gb:
        rows = (gb.db.query(Student.id, Assignment.name)
                .join(SubmittedAssignment, SubmittedAssignment.student_id == Student.id)
                .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id))
        return {(student, lesson) for student, lesson in rows}


# --------------------------------------------------------------------------- the batch
def grade_batch(submissions: Path, out: Path, workers: int = 1, db_url: str | None = None,
                limits: Limits | None = None, lessons: list[str] | None = None,
                solutions_dir: Path = SOLUTIONS_DIR, show_progress: bool = True,
                copied: str = "zero", show_hidden_tests: bool = False,
                course: CourseFile | None = None, lms: str | None = None,
                now: datetime | None = None, shard: Shard | None = None,
                merge: int | None = None) -> BatchResult:
    """Grade every submission under ``submissions`` into ``out`` (see the module docstring).

    ``copied``: the copy policy, ``"zero"`` (a question whose solution uses or copies the
    reference scores 0) or ``"flag"`` (reported, points unchanged). ``show_hidden_tests``: the
    feedback shows the hidden tests' source (by default only their results). ``course``: the
    course file (dates, late policy, roster); ``lms`` overrides its kind; ``now``: the time
    that decides which lessons are due (default: the clock). ``shard``: grade only that share
    and write no report; ``merge=N``: grade nothing, write the outputs of the N shards' work.
    """
    if copied not in ("zero", "flag"):
        raise GraderError(f"--copied {copied!r}: use zero or flag")
    if shard is not None and merge is not None:
        raise GraderError("--shard grades a share and --merge writes the outputs: use one")
    if merge is not None and merge < 1:
        raise GraderError(f"--merge {merge}: the number of shards is at least 1")

    ensure_tools_on_path()
    limits = limits or Limits()
    require_isolation(limits)
    out = Path(out).resolve()
    submissions = Path(submissions).resolve()
    solutions_dir = Path(solutions_dir).resolve()
    # each shard has its own scratch: shards of one batch may run at once on one machine
    work = out / ".work" / (f"shard-{shard.index}-of-{shard.count}" if shard else "batch")
    out.mkdir(parents=True, exist_ok=True)
    result = BatchResult(out=out, isolation=isolation_level(limits.use_bwrap), copied=copied,
                         shard=shard)

    course = course or CourseFile()
    collected = gather(submissions, work / "collected", lms or course.lms, course.pattern,
                       course.time_format, ZoneInfo(course.timezone), course.canonical_id)
    found = collected.found
    result.notes, result.not_graded = collected.notes, collected.not_graded
    lessons = _choose_lessons(found, lessons, solutions_dir, result.notes, course,
                              now or now_utc())
    students = sorted(found)
    if students and not lessons and course.lessons:
        raise GraderError(f"no lesson submitted in {submissions} is due yet by "
                          f"{course.path}: " + "; ".join(result.notes))
    if not students or not lessons:
        raise GraderError(f"no submissions found in {submissions} (expected "
                          "<student>/<NN_slug>/<NN_slug>.ipynb folders or <student>_*.zip files)")
    if merge is None:
        template, main_db = _prepare_gradebooks(work / "template", out, lessons,
                                                solutions_dir, students, db_url, course)
    else:  # the shards prepared the gradebook; what they did not grade is named below
        template, main_db = None, db_url or f"sqlite:///{out / 'gradebook.db'}"
    policy = {"copied": copied, "show_hidden_tests": show_hidden_tests}
    todo = _pending(found, students, lessons, solutions_dir, limits, out / ".state", main_db,
                    result, policy, shard, collected.blocked)
    if merge is not None:
        _name_unfinished(todo, students, lessons, merge, result)
    elif todo:
        _grade_pending(todo, work, template, lessons, solutions_dir, out, limits, workers,
                       copied, show_hidden_tests, main_db, result, show_progress)

    if shard is None:  # one report per batch: the merge writes it for the shards
        _write_outputs(result, main_db, course, collected, found, students, lessons)
    if result.ok:
        shutil.rmtree(work, ignore_errors=True)
        try:
            work.parent.rmdir()  # .work, when no other shard is using it
        except OSError:
            pass
    return result


def _grade_pending(todo, work: Path, template: Path, lessons: list[str], solutions_dir: Path,
                   out: Path, limits: Limits, workers: int, copied: str,
                   show_hidden_tests: bool, main_db: str, result: BatchResult,
                   show_progress: bool) -> None:
    """Grade ``todo`` with up to ``workers`` worker processes, merging into ``main_db``."""

    # one staged library per course lesson: its kernel imports no reference of that lesson
    libraries = {lesson: str(stage_grading_library(work / "library", lesson))
                 for lesson in lessons if graded_by_verdict(lesson)}
    settings = [WorkerSettings(root=str(work / f"worker-{k}"), lessons=lessons,
                               solutions_dir=str(solutions_dir),
                               template_db=str(template / "gradebook.db"),
                               release_dir=str(template / "release"),
                               feedback_dir=str(out / "feedback"),
                               autograded_dir=str(out / "autograded"),
                               limits=limits, copied=copied,
                               show_hidden_tests=show_hidden_tests,
                               library_dirs=libraries,
                               # parallel kernels share the cores instead of each taking all
                               kernel_threads=max(1, (os.cpu_count() or 1) // workers)
                               if workers > 1 else 0)
                for k in range(max(1, min(workers, len(todo))))]
    _run_workers(todo, settings, limits, main_db, out / ".state", result, show_progress)


def _name_unfinished(todo, students: list[str], lessons: list[str], shards: int,
                     result: BatchResult) -> None:
    """--merge: each submission no shard has graded is a failure naming its shard."""
    position = {pair: k for k, pair in enumerate(_pairs(students, lessons))}
    unfinished = set()
    for submission, _digest in todo:
        index = Shard.of(position[(submission.student, submission.lesson)], shards)
        unfinished.add(index)
        result.failures.append(f"{submission.student}/{submission.lesson}: not graded yet: "
                               f"shard {index}/{shards} has not finished it; run that shard "
                               "again (it resumes), then the merge")
    result.unfinished_shards = sorted(unfinished)


def _write_outputs(result: BatchResult, main_db: str, course: CourseFile,
                   collected: Collected, found: dict, students: list[str],
                   lessons: list[str]) -> None:
    """Every output, for every submission in the gradebook (:mod:`autograde.batch.results`): this
    run's are added to those of earlier runs, none is dropped."""

    results.save_records(result.out, collected.records)
    _write_similarity(result, found, students, lessons)
    own = main_db == default_gradebook(result.out)  # follows DIR if it moves
    run = Run(db_url="" if own else main_db, isolation=result.isolation, copied=result.copied,
                      graded=result.graded, skipped=result.skipped, failures=result.failures,
                      notes=result.notes, not_graded=result.not_graded,
                      similarity=result.sections.pop("Similarity", []),
                      course=str(course.path) if course.path else None, lms=collected.lms,
                      lessons=lessons)
    run.save(result.out)
    written = results.write_outputs(result.out, run, course)
    result.answers, result.failures = written.answers, written.failures
    result.sections, result.late = written.sections, written.late


def _write_similarity(result: BatchResult, found: dict, students: list[str],
                      lessons: list[str]) -> None:
    """``similarity.csv`` and the report's table of the most alike pairs of students."""

    folders = {(student, lesson): found[student].get(lesson)
               for student in students for lesson in lessons}
    pairs = similarity.class_pairs(folders, GRADED, load_fingerprints())
    try:
        similarity.write_csv(result.out / "similarity.csv", pairs)
    except OSError as error:
        result.failures.append(f"similarity.csv could not be written ({error})")
    result.sections["Similarity"] = similarity.report_lines(pairs)


def _choose_lessons(found: dict, lessons: list[str] | None, solutions_dir: Path,
                    notes: list[str], course: CourseFile | None = None,
                    now: datetime | None = None) -> list[str]:
    """The lessons to grade: those asked for, else every submitted lesson with a solution
    (with a course file: only those already due)."""
    available = lesson_names(solutions_dir)
    submitted = {lesson for per_student in found.values() for lesson in per_student}
    for lesson in sorted(submitted - set(available)):
        notes.append(f"lesson folder {lesson!r} has no solution in {solutions_dir}; not graded")
    if lessons is None and course is not None and course.lessons:
        due = set()
        for lesson in sorted(submitted & set(available)):
            if course.is_due(lesson, now):
                due.add(lesson)
                continue
            dates = course.lessons.get(lesson)
            when = (f"due {dates.due.isoformat(timespec='minutes')}" if dates
                    else f"no due date in {course.path}")
            notes.append(f"lesson {lesson} is not graded: {when} (--lessons {lesson} grades "
                         "it anyway)")
        return sorted(due)
    if lessons is None:
        return sorted(submitted & set(available))
    missing = [lesson for lesson in lessons if lesson not in available]
    if missing:
        raise GraderError(f"no solution notebook for lesson(s) {', '.join(missing)} "
                          f"in {solutions_dir}")
    return list(lessons)


def _prepare_gradebooks(template: Path, out: Path, lessons: list[str], solutions_dir: Path,
                        students: list[str], db_url: str | None,
                        course: CourseFile | None = None) -> tuple[Path, str]:
    """A template course (assignments generated, copied by every worker) and the main
    gradebook with the assignments and the students. Returns (template, main URL)."""
    from nbgrader.api import Gradebook

    if template.exists():
        shutil.rmtree(template)
    make_course(template, lessons, solutions_dir)
    _generate_assignments(template, lessons, f"sqlite:///{template / 'gradebook.db'}")
    main_db = db_url or f"sqlite:///{out / 'gradebook.db'}"
    # shards starting together would each create the same assignments and students (a
    # unique-key error in PostgreSQL): one at a time, with a lock in the folder they share
    roster = course.students if course else {}
    with open(out / ".gradebook.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if db_url is None and not (out / "gradebook.db").exists():
            shutil.copyfile(template / "gradebook.db", out / "gradebook.db")  # no students yet
        else:
            _generate_assignments(template, lessons, main_db)
        with Gradebook(main_db) as gb:
            known = {student.id for student in gb.students}
            for student in students:
                entry = roster.get(student)
                if student in known and entry is None:
                    continue
                first, _, last = entry.name.rpartition(" ") if entry else ("", "", "")
                details = ({"first_name": first or None, "last_name": last or None,
                            "email": entry.email or None} if entry else {})
                gb.update_or_create_student(student, **details)
    return template, main_db


def _pairs(students: list[str], lessons: list[str]) -> list[tuple[str, str]]:
    """Every (student, lesson) of the batch in one fixed order: what shards are dealt from."""
    return [(student, lesson) for student in students for lesson in lessons]


def _pending(found: dict, students: list[str], lessons: list[str], solutions_dir: Path,
             limits: Limits, state_dir: Path, main_db: str,
             result: BatchResult, policy: dict | None = None,
             shard: Shard | None = None,
             blocked: dict | None = None) -> list[tuple[Submission, str]]:
    """Submissions to grade (of ``shard``'s share, when given): new, changed, or missing from
    the main gradebook. Those graded before and unchanged go straight into ``result``; those
    collection could not decide (``blocked``) are failures."""
    salts = {lesson: _salt(solutions_dir, lesson, limits, policy) for lesson in lessons}
    in_gradebook = _submitted_pairs(main_db)
    todo = []
    for position, (student, lesson) in enumerate(_pairs(students, lessons)):
        if shard is not None and not shard.takes(position):
            continue
        if (student, lesson) in (blocked or {}):
            result.failures.append(f"{student}/{lesson}: NOT GRADED: "
                                   f"{blocked[(student, lesson)]}")
            continue
        submission = Submission(student, lesson, found[student].get(lesson))
        digest = submission.content_hash(salts[lesson])
        state_file = state_dir / student / f"{lesson}.json"
        if state_file.is_file():
            saved = json.loads(state_file.read_text())
            if saved.get("hash") == digest and (student, lesson) in in_gradebook:
                result.answers[(student, lesson)] = Answer.from_dict(saved["answer"])
                result.skipped += 1
                continue
        todo.append((submission, digest))
    return todo


def _run_workers(todo: list[tuple[Submission, str]], settings: list[WorkerSettings],
                 limits: Limits, main_db: str, state_dir: Path, result: BatchResult,
                 show_progress: bool) -> None:
    """Grade ``todo`` with one worker process per settings; merge each answer as it comes."""

    jobs: queue.Queue = queue.Queue()
    for item in todo:
        jobs.put(item)
    answers: queue.Queue = queue.Queue()
    stopping = threading.Event()
    job_timeout = limits.notebook_timeout_s + 300  # the notebook's limit plus nbgrader's work
    pool = [WorkerProcess(s, log_path=Path(s.root).with_suffix(".log")) for s in settings]

    def serve(worker: WorkerProcess) -> None:
        while not stopping.is_set():
            try:
                submission, digest = jobs.get_nowait()
            except queue.Empty:
                return
            job = {"student": submission.student, "lesson": submission.lesson,
                   "folder": str(submission.folder) if submission.folder else None}
            answer = None
            try:
                for _attempt in range(2):  # a worker that died is restarted once per job
                    if stopping.is_set():
                        return
                    answer = worker.run(job, job_timeout)
                    if answer is not None:
                        break
                else:
                    answer = Answer(job["student"], job["lesson"],
                                    grader_error="the grading worker died twice on this "
                                                 f"submission; see {worker.log_path}")
            except Exception as error:  # never leave the batch waiting for this answer
                answer = Answer(job["student"], job["lesson"],
                                grader_error=f"{type(error).__name__}: {error}")
            answers.put((submission, digest, answer))

    threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in pool]
    for thread in threads:
        thread.start()
    try:
        bar = progress(total=len(todo), desc="grading", unit="notebook",
                       **({} if show_progress else {"disable": True}))
        for _ in range(len(todo)):
            submission, digest, answer = answers.get()
            key = (submission.student, submission.lesson)
            if answer.grader_error:
                result.failures.append(f"{key[0]}/{key[1]}: {answer.grader_error}")
            elif (error := _merge_with_retries(main_db, key, answer)) is not None:
                result.failures.append(f"{key[0]}/{key[1]}: graded, but the gradebook "
                                       f"{main_db} could not be written ({error}); run the "
                                       "same command again to merge it")
            else:
                before = load_answer(state_dir.parent, *key)
                _write_state(state_dir / key[0] / f"{key[1]}.json", digest, answer)
                _keep_overrides(state_dir.parent, main_db, before, answer)
                result.answers[key] = answer
                result.graded += 1
            bar.update(1)
        bar.close()
    finally:
        stopping.set()
        for worker in pool:
            worker.stop()


def _keep_overrides(out: Path, main_db: str, before: Answer | None, answer: Answer) -> None:
    """After a regrade: the instructor's overrides on top of the grader's new rows, and every
    autograded score it changed in the history (:mod:`autograde.batch.overrides`)."""

    if load_overrides(out).get(f"{answer.student}/{answer.lesson}"):
        apply_overrides(out, main_db, answer.student, answer.lesson)
    if before is not None and not before.grader_error:
        log_regrade(out, before, answer)


def _write_state(path: Path, digest: str, answer: Answer) -> None:
    """A graded submission's state, written atomically: a crash never leaves half a file."""
    state = json.dumps({"version": STATE_VERSION, "hash": digest, "answer": answer.to_dict()})
    atomic_write(path, lambda temp: temp.write_text(state))


def _salt(solutions_dir: Path, lesson: str, limits: Limits, policy: dict | None = None) -> bytes:
    """What else decides a grade besides the submission: the lesson's source, the limits and
    the policies (copying, hidden tests in the feedback)."""

    digest = hashlib.sha256(json.dumps([asdict(limits), policy or {}], sort_keys=True).encode())
    library = REPO / "nanolm_lib"
    # how hidden cases are drawn and judged
    for path in [library / "grading" / "record.py",
                 *sorted((library / "grading" / "questions").rglob("*.py"))]:
        digest.update(path.read_bytes())
    for path in sorted((solutions_dir / lesson).rglob("*")):
        if path.is_file() and ".ipynb_checkpoints" not in path.parts:
            digest.update(str(path.relative_to(solutions_dir)).encode())
            digest.update(path.read_bytes())
    return digest.digest()
