"""One grading worker: its own nbgrader course directory and gradebook, one submission at a time.

nbgrader grades one submission at a time and one SQLite gradebook takes one writer, so the
batch (:mod:`autograde.batch.grade`) runs N workers as separate processes, each owning a course
directory under ``OUT/.work/<batch or shard>/worker-K/``. A worker copies a submission into
``submitted/<student>/<lesson>/``, runs nbgrader's ``autograde`` (with
:class:`autograde.sandbox.preprocessors.LimitedExecute` and the sandboxed kernel of
:mod:`autograde.sandbox.launcher`) and ``generate_feedback``, and answers with everything the batch
needs to merge the result into the main gradebook (an :class:`autograde.batch.answer.Answer`):
scores, failure messages, limits hit and static-scan flags. For a course lesson the scores are
the grader's verdict (:mod:`autograde.sandbox.verdict`): the hidden cases are drawn before the
kernel starts, and the kernel's records judged after autograde, before the feedback is made.

Protocol (``python -m autograde.batch.worker SETTINGS.json``): one JSON job per line on stdin,
``{"student", "lesson", "folder"}``; one :class:`~autograde.batch.answer.Answer` (as JSON) per
job on stdout, on a line starting with :data:`ANSWER_PREFIX`. Anything else the libraries print
is ignored by the batch.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nbformat

from autograde.batch.answer import NEEDS_GRADING, Answer
from autograde.batch.markup import SanitizeFeedback, feedback_overrides, markdown_text
from autograde.course import (
    GraderError,
    SpecialFileError,
    copy_plain_file,
    course_config,
    grade_cells,
    make_course,
    nbgrader_meta,
    read_json_file,
    read_notebook,
    run_nbgrader,
    walk_plain,
)
from autograde.integrity.copycheck import load_fingerprints
from autograde.integrity.scan import policy_notes, scan_notebook
from autograde.sandbox.kernel import (
    KERNEL_NAME,
    Limits,
    cell_failure,
    prepare_kernel,
)
from autograde.sandbox.preprocessors import HideHiddenTests, LimitedExecute
from autograde.sandbox.verdict import Verdict, stage_grading_library

ANSWER_PREFIX = "@@autograde-answer@@ "
ERROR_CHARS = 1500   # longest failure message kept per question
MAX_NOTEBOOK_BYTES = 50 << 20   # a lesson notebook with outputs is a few MB
__all__ = ["KERNEL_NAME", "Limits", "Worker", "WorkerSettings"]


@dataclass
class WorkerSettings:
    """Everything a worker process needs, written by the batch as JSON."""

    root: str                  # this worker's folder
    lessons: list[str]
    solutions_dir: str
    template_db: str           # a gradebook with the lessons' assignments, copied per worker
    feedback_dir: str          # where feedback HTML goes: <feedback_dir>/<student>/<lesson>.html
    limits: Limits = field(default_factory=Limits)
    kernel_threads: int = 0    # CPU threads per kernel (0: the libraries' default)
    release_dir: str = ""      # the student versions (release/<lesson>/<lesson>.ipynb)
    copied: str = "zero"       # copy policy: "zero" the question, or only "flag" it
    show_hidden_tests: bool = False  # feedback shows the hidden tests' source
    # lesson -> the staged library its kernel imports (autograde.sandbox.verdict); a lesson without
    # one (not a course lesson) is graded by nbgrader's own scores
    library_dirs: dict[str, str] = field(default_factory=dict)
    autograded_dir: str = ""   # where the graded notebooks the feedback is made from are kept

    @classmethod
    def load(cls, path: Path) -> WorkerSettings:
        data = json.loads(Path(path).read_text())
        data["limits"] = Limits(**data.get("limits", {}))
        return cls(**data)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))


def autograde_overrides(limits: Limits) -> dict:
    """nbgrader config for grading under ``limits`` (on top of nbgrader_config.py)."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )


    return {
        # nbgrader's own pipeline with Execute replaced by LimitedExecute.
        "Autograde": {"autograde_preprocessors": [
            LimitedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
            SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]},
        "LimitedExecute": {"timeout": limits.cell_timeout_s,
                           "max_output_bytes": limits.output_bytes,
                           "max_notebook_output_bytes": limits.notebook_output_bytes,
                           "kernel_name": KERNEL_NAME,
                           "startup_timeout": 120},
        **feedback_overrides(),
    }


class Worker:
    """A course directory that grades one submission at a time."""

    def __init__(self, settings: WorkerSettings):
        from sqlalchemy.exc import SAWarning

        # nbgrader's add_submission trips SQLAlchemy 2's autoflush warnings; they are harmless.
        warnings.filterwarnings("ignore", category=SAWarning)
        self.settings = settings
        self.root = Path(settings.root).resolve()
        self.course = self.root / "course"
        if self.course.exists():
            shutil.rmtree(self.course)
        make_course(self.course, settings.lessons, Path(settings.solutions_dir))
        shutil.copyfile(settings.template_db, self.course / "gradebook.db")
        self.config = course_config(self.course, overrides=autograde_overrides(settings.limits))

        self.fingerprints = load_fingerprints()
        self.db_url = self.config.CourseDirectory.db_url
        self.graded_names = {lesson: self._graded_names(lesson) for lesson in settings.lessons}
        self.grade_ids = {lesson: self._grade_ids(lesson) for lesson in settings.lessons}
        self.manual_ids = {lesson: {c["grade_id"] for c in grade_cells(
            self._source_notebook(lesson)) if c["kind"] == "manual"}
            for lesson in settings.lessons}
        self.released = {lesson: self._released_notebook(lesson) for lesson in settings.lessons}
        self.released_metadata = {lesson: self._released_metadata(lesson)
                                  for lesson in settings.lessons}

    def _source_notebook(self, lesson: str):
        return read_notebook(self.course / "source" / lesson / f"{lesson}.ipynb")

    def _graded_names(self, lesson: str) -> set[str]:
        return {c["grade_id"] for c in grade_cells(self._source_notebook(lesson))
                if c["kind"] == "solution"}

    def _released_notebook(self, lesson: str):
        path = Path(self.settings.release_dir or "") / lesson / f"{lesson}.ipynb"
        return read_notebook(path) if path.is_file() else self._source_notebook(lesson)

    def _released_metadata(self, lesson: str) -> dict[str, dict]:
        nb = self.released[lesson]
        return {nbgrader_meta(cell)["grade_id"]: {"meta": dict(nbgrader_meta(cell)),
                                                  "id": cell.get("id")}
                for cell in nb.cells if nbgrader_meta(cell).get("grade_id")}

    def _grade_ids(self, lesson: str) -> list[str]:
        """The lesson's questions: its test cells and its hand-graded answers, in order."""
        return [c["grade_id"] for c in grade_cells(self._source_notebook(lesson))
                if c["kind"] in ("test", "manual")]

    # ------------------------------------------------------------------------------ grading
    def grade(self, student: str, lesson: str, folder: str | None) -> Answer:
        """Grade one submission; returns the answer the batch merges (see module docstring)."""
        from nbgrader.converters import Autograde

        started = time.monotonic()
        lap = _Laps()
        submitted = self.course / "submitted" / student / lesson
        autograded = self.course / "autograded" / student / lesson
        feedback = self.course / "feedback" / student / lesson
        for path in (submitted, autograded, feedback):
            if path.exists():
                shutil.rmtree(path)
        submitted.mkdir(parents=True)
        notebook = submitted / f"{lesson}.ipynb"
        problems, flags = self._take_and_scan(lesson, folder, submitted)
        run, verdict = self._prepare_kernel(student, lesson, notebook)
        lap("collect, scan, sandbox")
        log = ""
        if notebook.is_file():
            try:
                log = run_nbgrader(Autograde, self.config, assignment_id=lesson,
                                   student_id=student)
            except GraderError as error:
                problems.append(f"nbgrader autograde failed: {str(error)[:ERROR_CHARS]}")
        submission = self._ensure_submission(student, lesson)
        lap("kernel and cells (nbgrader autograde)")
        limit_hits = read_json_file(run.limits_report, [])
        verdicts = {}
        # a lesson without questions (00) has no hidden cases: no sandboxed run for nothing
        if verdict is not None and verdict.cases and (autograded / f"{lesson}.ipynb").is_file():
            verdicts = self._run_verdict(verdict, student, lesson, notebook, limit_hits)
            self._apply_verdicts(student, lesson, verdicts)
        policy_notes = self._apply_copy_policy(student, lesson, flags)
        scores = self._scores(student, lesson, autograded, submission, problems, limit_hits,
                              policy_notes, verdicts)
        self._note_needs_grading(student, lesson, scores)
        submission = self._ensure_submission(student, lesson)  # with the verdicts' scores
        lap("hidden cases and scores")

        feedback_file = self._write_feedback(student, lesson, problems)
        return Answer(student=student, lesson=lesson, scores=scores, limits=limit_hits,
                      flags=flags, problems=problems, feedback=feedback_file,
                      submission=submission, seconds=round(time.monotonic() - started, 2),
                      phases=lap("feedback"), log_tail=log[-2000:])

    def _take_and_scan(self, lesson: str, folder: str | None,
                       submitted: Path) -> tuple[list[str], list[dict]]:
        """Copy the submission's notebook into nbgrader's ``submitted`` folder, scan it and
        repair its nbgrader metadata; ``(problems, flags)``. A malformed notebook is removed,
        so the lesson is graded as missing."""
        problems: list[str] = []
        notebook = submitted / f"{lesson}.ipynb"
        refusal = _take_notebook(Path(folder) if folder else None, lesson, submitted)
        if refusal:
            return [refusal], []
        if not notebook.is_file():
            return [f"missing notebook: the submission has no {lesson}.ipynb"], []
        try:
            nb = read_notebook(notebook)
        except GraderError as error:
            notebook.unlink()  # nbgrader would stop on it; grade the lesson as missing
            return [f"malformed notebook: {str(error).split(': ', 1)[-1]}"], []

        flags = [f.to_dict() for f in scan_notebook(
            nb, self.graded_names[lesson], self.fingerprints,
            released=self.released[lesson], lesson=lesson)]
        repaired = repair_metadata(nb, self.released_metadata[lesson])
        if repaired:
            problems.append("nbgrader metadata repaired: " + "; ".join(repaired))
            nbformat.write(nb, str(notebook))
        return problems, flags

    def _write_feedback(self, student: str, lesson: str, problems: list[str]) -> str | None:
        """The feedback page of a graded notebook (hidden tests kept hidden), copied to the
        batch's feedback folder; its path, or None. A failure here is a problem noted, never
        lost scores."""
        from nbgrader.converters import GenerateFeedback

        autograded = self.course / "autograded" / student / lesson / f"{lesson}.ipynb"
        if not autograded.is_file():
            return None
        try:
            _feedback_notebook(autograded, self.settings.show_hidden_tests)
            kept = self.settings.autograded_dir
            if kept:  # what an override's feedback is made from (autograde.batch.overrides)
                target = Path(kept) / student / lesson / f"{lesson}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(autograded, target)
            run_nbgrader(GenerateFeedback, self.config, assignment_id=lesson,
                         student_id=student)
            html = self.course / "feedback" / student / lesson / f"{lesson}.html"
            if not html.is_file():
                return None
            target = Path(self.settings.feedback_dir) / student / f"{lesson}.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(html, target)
            return str(target)
        except Exception as error:  # the scores are in: no feedback is no reason to lose them
            problems.append(f"feedback could not be generated: {str(error)[:300]}")
            return None

    def _apply_verdicts(self, student: str, lesson: str, verdicts: dict) -> None:
        """The grader's verdicts into the gradebook: each test cell's score (a manual score:
        nbgrader's own from the kernel no longer counts) and, as the comment of the question's
        solution cell, the verdict's message, which the feedback shows (a comment is
        Markdown, and the message quotes what the student's code raised or returned)."""
        from nbgrader.api import Gradebook, MissingEntry


        with Gradebook(self.db_url) as gb:
            for grade_id, verdict in verdicts.items():
                try:
                    grade = gb.find_grade(grade_id, lesson, lesson, student)
                except MissingEntry:
                    continue
                grade.manual_score = grade.max_score if verdict.passed else 0.0
                grade.needs_manual_grade = False
                try:
                    comment = gb.find_comment(grade_id.removeprefix("test_"), lesson, lesson,
                                              student)
                except MissingEntry:
                    continue
                comment.manual_comment = markdown_text(verdict.message)
            gb.db.commit()

    def _note_needs_grading(self, student: str, lesson: str, scores: dict) -> None:
        """A hand-graded answer's comment, until it is graded, says that its 0 is no grade
        (the feedback shows it; :func:`autograde.batch.overrides.apply_overrides` replaces it)."""
        from nbgrader.api import Gradebook, MissingEntry

        waiting = [gid for gid, entry in scores.items() if entry.get("needs_grading")]
        if not waiting:
            return
        with Gradebook(self.db_url) as gb:
            for grade_id in waiting:
                try:
                    gb.find_comment(grade_id, lesson, lesson, student).manual_comment = \
                        NEEDS_GRADING
                except MissingEntry:
                    continue
            gb.db.commit()

    def _prepare_kernel(self, student: str, lesson: str, notebook: Path):
        """The next kernel's folders (its own copy of the notebook and of the released
        lesson's files) and kernelspec; the grader's report paths in this worker's config.
        For a course lesson also its hidden cases, in the grader's folders, which the kernel
        never sees: returns (the run, the Verdict or None)."""

        root = self.root / "runs" / f"{student}--{lesson}"
        library = self.settings.library_dirs.get(lesson, "")
        run = prepare_kernel(root / "notebook", Path(self.settings.release_dir or "") / lesson,
                             notebook, self.settings.limits, self.root / "jupyter",
                             threads=self.settings.kernel_threads, library_dir=library,
                             extra_env=Verdict.KERNEL_ENV if library else None)
        verdict = (Verdict.prepare(lesson, self.root / "cases" / f"{student}--{lesson}",
                                   root / "hidden") if library else None)
        self.config.LimitedExecute.limits_report = str(run.limits_report)
        self.config.LimitedExecute.status_file = str(run.status_file)
        self.config.LimitedExecute.kernelspec_dir = str(self.root / "jupyter" / "kernels")
        return run, verdict

    def _run_verdict(self, verdict, student: str, lesson: str, notebook: Path,
                     limit_hits: list[dict]) -> dict:
        """The hidden cases run by the grader on the notebook's solution cells, then judged;
        a limit that stopped that run joins the notebook's limit hits."""
        # never the source notebook: a solution cell the student deleted is run as released
        released = Path(self.settings.release_dir or "") / lesson / f"{lesson}.ipynb"
        if not released.is_file():
            raise GraderError(f"{lesson}: no released notebook at {released} for the grader's "
                              "run of the hidden cases")
        runs = self.root / "runs" / f"{student}--{lesson}"

        def run(library: str, folder: str, questions: list[str] | None = None) -> None:
            status = verdict.run(notebook, released, runs / folder, self.settings.limits,
                                 library, self.settings.kernel_threads, questions)
            if status:
                limit_hits.append({**status, "message": "the grader's run of the hidden "
                                   "cases: " + str(status.get("message", ""))})

        run(self.settings.library_dirs[lesson], "hidden")
        return verdict.isolate(verdict.judge(), lambda name, helpers: run(
            self._library_with(lesson, helpers), f"hidden-{name}", [name]))

    def _library_with(self, lesson: str, helpers: list[str]) -> str:
        """The staged library of ``lesson`` with the reference of ``helpers`` (made once)."""

        folder = self.root / "libraries" / "+".join(helpers)
        if not (folder / lesson).is_dir():
            stage_grading_library(folder, lesson, keep=helpers)
        return str(folder / lesson)

    def _ensure_submission(self, student: str, lesson: str) -> dict:
        """The submission's rows in this worker's gradebook, created with zero scores when
        nbgrader could not grade the notebook (missing, malformed)."""
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(self.db_url) as gb:
            gb.update_or_create_student(student)
            try:
                submission = gb.find_submission(lesson, student)
            except MissingEntry:
                submission = gb.add_submission(lesson, student)
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        grade.auto_score = 0.0
                        grade.needs_manual_grade = False
                gb.db.commit()
            return {
                "timestamp": submission.timestamp.isoformat() if submission.timestamp else None,
                "notebooks": {
                    notebook.name: {
                        "flagged": notebook.flagged,
                        "grades": {grade.name: {"auto_score": grade.auto_score,
                                                "manual_score": grade.manual_score,
                                                "needs_manual_grade": grade.needs_manual_grade}
                                   for grade in notebook.grades},
                        "comments": {comment.name: comment.auto_comment
                                     for comment in notebook.comments},
                        "manual_comments": {comment.name: comment.manual_comment
                                            for comment in notebook.comments},
                    }
                    for notebook in submission.notebooks
                },
            }

    def _apply_copy_policy(self, student: str, lesson: str, flags: list[dict]) -> dict[str, str]:
        """The course's copy policy on the gradebook: for each question whose code uses or
        copies the reference, or breaks the question's policy
        (:func:`autograde.integrity.scan.policy_notes`), a comment on that cell saying so (it shows in the feedback) and, under ``zero``, a score
        of 0 for its test cell. Returns test grade_id ->
        the note."""
        from nbgrader.api import Gradebook, MissingEntry


        notes = policy_notes(flags, self.settings.copied)
        if not notes:
            return {}
        with Gradebook(self.db_url) as gb:
            for grade_id, texts in notes.items():
                note = "; ".join(texts)
                try:
                    if self.settings.copied == "zero":
                        gb.find_grade(f"test_{grade_id}", lesson, lesson, student).manual_score = 0
                    comment = gb.find_comment(grade_id, lesson, lesson, student)
                    comment.manual_comment = "\n\n".join(  # after the verdict's message
                        filter(None, [comment.manual_comment, markdown_text(note)]))
                except MissingEntry:
                    continue  # not a graded cell of this lesson: the report still lists it
            gb.db.commit()
        return {f"test_{grade_id}": "; ".join(texts) for grade_id, texts in notes.items()}

    def _scores(self, student, lesson, autograded, submission, problems, limit_hits,
                policy_notes: dict[str, str] | None = None,
                verdicts: dict | None = None) -> dict:
        """``{grade_id: {"score", "max_score", "error"}}`` for the lesson's test cells."""
        from nbgrader.api import Gradebook

        errors = _cell_errors(autograded / f"{lesson}.ipynb", self.settings.limits)
        scores = {}
        with Gradebook(self.db_url) as gb:
            sub = gb.find_submission(lesson, student)
            for notebook in sub.notebooks:
                for grade in notebook.grades:
                    if grade.name not in self.grade_ids[lesson]:
                        continue
                    score = float(grade.score or 0.0)
                    error = None
                    if grade.name in self.manual_ids[lesson]:
                        # an answer graded by hand (autograde.batch.overrides), never by the grader
                        scores[grade.name] = {
                            "score": score, "max_score": float(grade.max_score),
                            "error": None, "manual": True,
                            "needs_grading": grade.manual_score is None}
                        continue
                    if grade.name in (policy_notes or {}) and self.settings.copied == "zero":
                        error = policy_notes[grade.name]
                    elif score < grade.max_score:
                        error = errors.get(grade.name) or (
                            problems[0] if problems else
                            "test cell missing from the submitted notebook (deleted or changed?)")
                        if grade.name in (verdicts or {}):  # the grader's reason comes first
                            error = verdicts[grade.name].message + (
                                f" [the test cell: {errors[grade.name]}]"
                                if grade.name in errors else "")
                        limit_notes = [hit["message"] for hit in limit_hits
                                       if hit["message"] not in error]
                        if limit_notes:  # the failure may follow from a limit hit earlier
                            error += " [limits hit in this notebook: " + "; ".join(
                                limit_notes) + "]"
                    scores[grade.name] = {"score": score, "max_score": float(grade.max_score),
                                          "error": error}
        return {gid: scores[gid] for gid in self.grade_ids[lesson] if gid in scores}


class _Laps:
    """Seconds per step of one grading: each call closes the step named, returns them all."""

    def __init__(self):
        self.mark, self.seconds = time.monotonic(), {}

    def __call__(self, step: str) -> dict[str, float]:
        now = time.monotonic()
        self.seconds[step] = round(now - self.mark, 3)
        self.mark = now
        return self.seconds


def _take_notebook(folder: Path | None, lesson: str, submitted: Path) -> str | None:
    """Put the submission's notebook (only that) into nbgrader's ``submitted`` folder, with a
    timestamp the grader trusts: the file's own modification time (for an LMS zip, the
    zip's, see :mod:`autograde.batch.collect`), never the student's ``timestamp.txt``. Returns why
    the submission is refused, or None."""
    if folder is None or not folder.is_dir():
        return None
    try:
        for _relative in walk_plain(folder, skip=()):
            pass
    except SpecialFileError as error:
        return (f"refused: {error}; a submission holds regular files only (nothing of it "
                "was graded)")
    source = folder / f"{lesson}.ipynb"
    try:
        info = os.lstat(source)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    if info.st_size > MAX_NOTEBOOK_BYTES:
        return (f"refused: {source.name} is {info.st_size >> 20} MB, more than the "
                f"{MAX_NOTEBOOK_BYTES >> 20} MB a notebook may have (clear its outputs)")
    copy_plain_file(source, submitted / source.name)
    when = datetime.fromtimestamp(info.st_mtime, tz=UTC)
    (submitted / "timestamp.txt").write_text(when.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
    return None


def _feedback_notebook(notebook: Path, show_hidden_tests: bool) -> None:
    """The feedback is made from the autograded notebook, once the scores are in the
    gradebook: sanitise the student's markdown and outputs (no script, event handler or
    javascript: URL: :class:`autograde.batch.markup.SanitizeFeedback`, and the rendered Markdown
    once more by :class:`autograde.batch.markup.FeedbackExporter`), and take the hidden tests'
    source (and the tracebacks that quote it) out unless they are to be shown."""

    nb = read_notebook(notebook)
    SanitizeFeedback().preprocess(nb, {})
    if not show_hidden_tests:
        HideHiddenTests().preprocess(nb, {})
    nbformat.write(nb, str(notebook))


def repair_metadata(nb, released: dict[str, dict]) -> list[str]:
    """Give every nbgrader cell of a submission the metadata of the released lesson (in place).

    nbgrader refuses a whole notebook over one bad cell (a changed schema version, a missing
    field, a copied test cell). ``released`` maps grade_id -> {"meta", "id"}. A cell whose
    grade_id the lesson knows gets the released metadata back; when a grade_id appears more
    than once, the cell with the released cell id (else the first) keeps it and the copies
    become plain cells, as do cells with an unknown grade_id. Returns what was changed.
    """

    def grade_id_of(cell):
        return nbgrader_meta(cell).get("grade_id")

    keeper: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        grade_id = grade_id_of(cell)
        if grade_id in released and (grade_id not in keeper
                                     or cell.get("id") == released[grade_id]["id"]):
            keeper[grade_id] = index
    changes = []
    for index, cell in enumerate(nb.cells):
        if not isinstance(cell.get("metadata"), dict) or "nbgrader" not in cell.metadata:
            continue
        grade_id = grade_id_of(cell)
        if keeper.get(grade_id) == index:
            if cell.metadata["nbgrader"] != released[grade_id]["meta"]:
                cell.metadata["nbgrader"] = copy.deepcopy(released[grade_id]["meta"])
                changes.append(f"cell {index} ({grade_id}) restored")
        else:
            del cell.metadata["nbgrader"]
            changes.append(f"cell {index} ({grade_id or 'no grade_id'}) is not a lesson cell "
                           "or repeats one: graded as a plain cell")
    return changes


def _cell_errors(path: Path, limits: Limits) -> dict[str, str]:
    """The failure message of each test cell of an autograded notebook."""
    if not path.is_file():
        return {}
    nb = read_notebook(path)
    errors = {}
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if not meta.get("grade") or cell.cell_type != "code":
            continue
        message = cell_failure(cell, limits)
        if message:
            errors[meta["grade_id"]] = message[:ERROR_CHARS]
    return errors


def main(argv: list[str]) -> int:
    """Serve jobs from stdin until it closes (see the module docstring)."""
    settings = WorkerSettings.load(Path(argv[0]))
    # Answers go to the real stdout; anything the libraries print goes to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        worker = Worker(settings)
    except Exception:
        answers.write(ANSWER_PREFIX + json.dumps({"fatal": traceback.format_exc()}) + "\n")
        return 1
    answers.write(ANSWER_PREFIX + json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            answer = worker.grade(job["student"], job["lesson"], job.get("folder"))
        except Exception:
            answer = Answer(student=job["student"], lesson=job["lesson"],
                            grader_error=traceback.format_exc()[-ERROR_CHARS:])
        answers.write(ANSWER_PREFIX + answer.to_json() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
