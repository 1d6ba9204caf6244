"""The grader's verdict: every point of a course lesson is decided here, outside the kernel.

For lesson N of the course (:data:`nanolm_lib.grading.curriculum.GRADED`) the worker:

1. stages a copy of ``nanolm_lib`` once per batch (:func:`stage_grading_library`): the reference
   bodies of lesson N's and every later lesson's graded names are stubs
   (:func:`autograde.sandbox.staged_library.stage_library`), so the grading kernel cannot import the
   answer; the earlier lessons' references stay (a lesson builds on them). The lessons' fixtures sit
   next to it, where :func:`nanolm_lib.grading.checks.fixture` looks first;
2. draws every question's hidden cases from a seed of its own (:func:`secrets.randbits`,
   kept in this process), writes only the inputs into a cases folder, and computes the
   reference's outputs on them here (:meth:`Verdict.prepare`). The notebook's kernel runs the
   visible tests only (``record()`` does nothing there) and never sees this folder;
3. after nbgrader's autograde, runs the hidden cases in a sandboxed process of its own
   (:meth:`Verdict.run`, :mod:`nanolm_lib.grading.hidden_cases`): the released lesson's set-up
   cells and the code of the student's solution cells, read from the notebook file here, then
   each question's cases. No cell the student added runs there, and nothing the notebook did can
   reach that process;
4. reads the outputs that run left (:meth:`Verdict.judge`). A record is hostile input: one
   that is missing, not a plain file, larger than
   :data:`nanolm_lib.grading.record.RECORD_LIMIT_BYTES` (also once uncompressed: a compressed entry is refused before anything is inflated),
   unreadable by a weights-only ``torch.load`` or holding anything but plain data
   (:func:`read_record`) scores 0 with the reason, as does a question whose judging raises.
   A question earns its points when every case matches the reference (all or nothing, as a
   test cell always did); its message names the first case that differs.

What decides each property a question checks (inputs left unchanged, causality, gradients,
training mode, linear memory) is said with the question in :mod:`nanolm_lib.grading.questions`: each
is an output of the grader's run compared with the reference's, or a limit that run sets.
What a solution may not call is decided on its source (:mod:`autograde.integrity.scan`).

The worker writes each verdict into its gradebook as the test cell's manual score, with the
message as the comment of the question's solution cell (the feedback shows both). What the
kernel prints, raises or publishes changes no score. Lessons outside the course (the tests' toy
lessons) keep nbgrader's own scores.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autograde.course import (
    SpecialFileError,
    nbgrader_meta,
    read_json_file,
    read_notebook,
    read_plain_file,
)
from autograde.paths import LESSONS_DIR, REPO
from autograde.sandbox.kernel import Limits, prepare_run
from autograde.sandbox.launcher import ENV_VAR as SANDBOX_ENV_VAR
from autograde.sandbox.staged_library import stage_library as stage_package
from nanolm_lib.grading.curriculum import GRADED, LESSONS, lesson_number
from nanolm_lib.grading.hidden_cases import CELL_ERRORS
from nanolm_lib.grading.question_base import ERROR_KEY, QUESTIONS, reference_namespace
from nanolm_lib.grading.record import (  # registers the questions
    DEFERRED,
    ENV_VAR,
    RECORD_LIMIT_BYTES,
)

PACKAGE_DIR = REPO / "nanolm_lib"
MESSAGE_CHARS = 600       # the longest message kept of one case
RECORD_DEPTH = 32         # containers in a record nest at most this deep
RECORD_VALUES = 1_000_000  # values (container items) in one record, all levels together
PLAIN_DTYPES = frozenset({
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.complex64, torch.complex128})


def graded_by_verdict(lesson: str) -> bool:
    """True for the course's lessons (their points come from :class:`Verdict`)."""
    return lesson in GRADED


def released_before(lesson: str) -> list[str]:
    """The lessons whose references the grading kernel of ``lesson`` may have."""
    return [other for other in LESSONS if lesson_number(other) < lesson_number(lesson)]


def stage_grading_library(folder: Path, lesson: str, lessons_dir: Path = LESSONS_DIR,
                  keep=()) -> Path:
    """A copy of ``nanolm_lib`` for grading ``lesson``, at ``folder/<lesson>/nanolm_lib``, with
    the lessons' fixtures at ``folder/<lesson>/lessons/*/fixtures``; the graded names in
    ``keep`` keep their reference (a question's helpers, for :meth:`Verdict.isolate`). Returns
    ``folder/<lesson>`` (the folder to put first on the kernel's ``sys.path``)."""

    root = Path(folder) / lesson
    if root.exists():
        shutil.rmtree(root)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(PACKAGE_DIR, root / "nanolm_lib", ignore=ignore, symlinks=False)
    stage_package(root / "nanolm_lib", released_before(lesson), keep)
    for fixtures in sorted(Path(lessons_dir).glob("*/fixtures")):
        shutil.copytree(fixtures, root / "lessons" / fixtures.parent.name / "fixtures",
                        ignore=ignore)
    return root


HIDDEN_PREFIX = "hidden tests (run by the grader): "  # how a verdict's message begins


@dataclass
class QuestionVerdict:
    """The grader's decision on one test cell."""

    grade_id: str
    passed: bool
    message: str


@dataclass
class Verdict:
    """One submission's hidden cases (inputs written for the kernel, expected outputs kept
    here) and, after the kernel ran, the decision on each question."""

    lesson: str
    cases_dir: Path
    records_dir: Path
    cases: dict[str, list] = field(default_factory=dict)
    expected: dict[str, list] = field(default_factory=dict)
    # question -> the lesson's other graded names its cases run (question_base.helpers)
    helpers_of: dict[str, set] = field(default_factory=dict)
    untouched: set = field(default_factory=set)   # solution cells left as released
    cells: list = field(default_factory=list)     # the grader's run's program (first run)

    @classmethod
    def prepare(cls, lesson: str, cases_dir: Path, records_dir: Path,
                seed: int | None = None) -> Verdict:
        """Draw, write and solve the hidden cases of every question of ``lesson``."""
        seed = secrets.randbits(63) if seed is None else seed
        return cls.from_drawn(lesson, cases_dir, records_dir, draw_cases(lesson, seed))

    @classmethod
    def from_drawn(cls, lesson: str, cases_dir: Path, records_dir: Path,
                   drawn: dict[str, dict]) -> Verdict:
        """A verdict on cases already drawn and solved (:func:`draw_cases`): their inputs are
        written into ``cases_dir`` for the run, the expected outputs kept here."""
        for folder in (cases_dir, records_dir):
            if folder.exists():
                shutil.rmtree(folder)
            (folder / lesson).mkdir(parents=True)
        verdict = cls(lesson, Path(cases_dir), Path(records_dir))
        for name, solved in drawn.items():
            torch.save({"cases": solved["cases"]}, cases_dir / lesson / f"{name}.pt")
            verdict.cases[name], verdict.expected[name] = solved["cases"], solved["expected"]
            verdict.helpers_of[name] = set(solved["helpers"])
        for path in cases_dir.rglob("*.pt"):  # bwrap binds them read-only; this is for the rest
            path.chmod(0o444)
        return verdict

    # the notebook's kernel: record() does nothing there
    KERNEL_ENV = {ENV_VAR: DEFERRED}

    def run(self, notebook: Path, released: Path, root: Path, limits: Limits,
            library_dir: str, threads: int = 0, questions: list[str] | None = None) -> dict | None:
        """Run the hidden cases on ``notebook``'s solution cells in a fresh sandbox under
        ``root`` (``released``: the lesson's released notebook, whose set-up cells and
        files it gets; ``questions``: only these). Returns the launcher's status when a limit
        stopped the run, else None. The notebooks are read once: a rerun (:meth:`isolate`)
        runs the same cells."""
        if not self.cells:
            released_nb = read_notebook(released)
            self.cells = hidden_program(read_notebook(notebook), released_nb)
            as_released = {nbgrader_meta(c).get("grade_id"): c.source for c in released_nb.cells}
            self.untouched = {c["grade_id"] for c in self.cells if c["kind"] == "solution"
                              and c["source"] == as_released.get(c["grade_id"])}
        questions = sorted(questions or self.cases)
        seconds = limits.cell_timeout_s
        run, settings = prepare_run(
            root, released.parent, None, limits, threads=threads, library_dir=library_dir,
            cases_dir=str(self.cases_dir), execution="autograde",
            wall_s=min(limits.notebook_timeout_s, seconds * (len(questions) + 2)))
        self.records_dir = run.sandbox / "records"
        program = self.cases_dir / f"program-{Path(root).name}.json"  # bound read-only
        program.write_text(json.dumps({
            "lesson": self.lesson, "cells": self.cells, "questions": questions,
            "cases_dir": str(self.cases_dir), "records_dir": str(self.records_dir),
            "question_timeout_s": seconds}))
        command = [sys.executable, "-m", "autograde.sandbox.launcher", "--run", "--",
                   sys.executable, "-m", "nanolm_lib.grading.hidden_cases", str(program)]
        env = dict(os.environ, JPY_PARENT_PID=str(os.getpid()),
                   **{SANDBOX_ENV_VAR: settings.to_env()})
        subprocess.run(command, env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        return read_json_file(run.status_file, None)

    def isolate(self, verdicts: dict[str, QuestionVerdict], rerun) -> dict[str, QuestionVerdict]:
        """One bug costs one question. A question that failed and runs other graded names of
        its lesson (:attr:`helpers_of`) is run again alone, in a fresh run whose library holds
        the reference of those helpers (``rerun(name, helpers)`` runs it), and gets its points
        when either run matches. Nothing else is judged from that run: the helpers' own
        questions keep their verdicts, so having their reference there earns them nothing. The
        message names the helpers that differ. A solution cell left as released is not rerun."""
        failed = {name for name in self.cases if not verdicts[f"test_{name}"].passed}
        isolated, reruns = dict(verdicts), {}
        for name in sorted(failed - self.untouched):
            helpers = sorted(self.helpers_of.get(name, set()))
            if helpers:
                rerun(name, helpers)
                reruns[name] = (helpers, self.judge([name])[f"test_{name}"])
                isolated[f"test_{name}"] = reruns[name][1]
        # a helper "differs" when its own question fails after its own rerun
        wrong_of = {name for name in failed if not isolated[f"test_{name}"].passed}
        for helpers, again in reruns.values():
            if again.passed:
                wrong = [helper for helper in helpers if helper in wrong_of]
                yours = (f"your {', '.join(wrong)} differ{'s' if len(wrong) == 1 else ''}: "
                         f"see {'that question' if len(wrong) == 1 else 'those questions'}"
                         if wrong else "yours pass their own questions but not as this one "
                         "uses them")
                note = (f"{again.message} with the reference's {', '.join(helpers)} in place "
                        f"of yours ({yours})")
            else:
                note = (f"{again.message} (also with the reference's {', '.join(helpers)} in "
                        "place of yours)")
            isolated[again.grade_id] = QuestionVerdict(again.grade_id, again.passed, note)
        return isolated

    def judge(self, names: list[str] | None = None) -> dict[str, QuestionVerdict]:
        """test grade_id -> the verdict, from the records the grader's run left. A question whose
        judging raises (strange data in its record, a check that fails on it) scores 0 with
        the reason; the other questions are judged as usual."""
        verdicts = {}
        cell_errors = read_json_file(self.records_dir / self.lesson / CELL_ERRORS, {})
        for name, drawn in self.cases.items():
            if names is not None and name not in names:
                continue
            try:
                passed, text = self._judge_question(name, drawn, cell_errors)
            except Exception as error:  # the record is the student's: anything may raise
                passed, text = False, (f"the grader could not judge the record of {name}: "
                                       f"{_describe(error)}; scored 0")
            verdicts[f"test_{name}"] = QuestionVerdict(f"test_{name}", passed, text)
        return verdicts

    def _judge_question(self, name: str, drawn: list, cell_errors) -> tuple[bool, str]:
        """(passed, message) for question ``name`` from its record; ``cell_errors`` (from the
        grader's run, written where the student's code could: only ever quoted) says why a
        solution cell raised there."""
        question = QUESTIONS[self.lesson][name]
        outputs, problem = read_record(self.records_dir / self.lesson / f"{name}.pt", len(drawn))
        if problem:
            return False, problem
        failures = []
        for case, got, expected in zip(drawn, outputs, self.expected[name]):
            message = question.judge(case, got, expected)
            if message:
                failures.append(f"{case.get('what', name)}: {str(message)[:MESSAGE_CHARS]}")
        if failures:
            text = (f"{HIDDEN_PREFIX}{len(failures)} of {len(drawn)} "
                    f"cases differ from the reference; first: {failures[0]}")
            if isinstance(cell_errors, dict) and isinstance(cell_errors.get(name), str):
                text += (f" (your solution cell raised {cell_errors[name][:300]} when the "
                         "grader ran it with the lesson's set-up cell only: a helper it uses "
                         "must be defined in a solution cell)")
            return False, text
        return True, f"{HIDDEN_PREFIX}all {len(drawn)} cases match"


def draw_cases(lesson: str, seed: int) -> dict[str, dict]:
    """Every question of ``lesson``: cases drawn from ``seed`` (question i from ``seed + i``),
    the reference's outputs on them, and the lesson's other graded names they run
    (``{name: {"cases", "expected", "helpers"}}``)."""
    reference = reference_namespace()
    drawn = {}
    with torch.random.fork_rng(devices=[]):
        for index, (name, question) in enumerate(sorted(QUESTIONS.get(lesson, {}).items())):
            cases = question.make_cases(torch.Generator().manual_seed(seed + index))
            reference.helpers_used = set()
            expected = [question.run_case(reference, case) for case in cases]
            failed = [e[ERROR_KEY] for e in expected if isinstance(e, dict) and ERROR_KEY in e]
            if failed:
                raise RuntimeError(f"the reference failed on a hidden case of {lesson} "
                                   f"{name}: {failed[0]}")
            helpers = (reference.helpers_used & set(GRADED[lesson])) - {name}
            drawn[name] = {"cases": cases, "expected": expected, "helpers": sorted(helpers)}
    return drawn


def read_record(path: Path, expected_cases: int) -> tuple[list | None, str | None]:
    """The outputs saved in ``path`` (in the kernel's writable scratch: nothing about it is
    trusted), or (None, why it scores 0). The grader runs without a memory limit, so the
    archive is checked before ``torch.load`` inflates anything (:func:`stored_archive`), and
    what it loads must be plain data (:func:`plain_data_problem`)."""
    missing = ("no record of the hidden tests: the grader's run of them stopped before this "
               "question (a limit, or a crash in an earlier question)")
    refused = "the record of the hidden tests is refused: "
    try:
        data = read_plain_file(path, RECORD_LIMIT_BYTES)
    except FileNotFoundError:
        return None, missing
    except SpecialFileError as error:
        return None, refused + str(error)
    try:
        archive = stored_archive(data, RECORD_LIMIT_BYTES)
    except RecordRefused as error:
        return None, refused + str(error)
    try:
        loaded = torch.load(archive, map_location="cpu", weights_only=True)
    except Exception as error:
        return None, (f"the record of the hidden tests is unreadable ({type(error).__name__}: "
                      f"{str(error)[:200]})")
    outputs = loaded.get("outputs") if type(loaded) is dict else None
    if type(outputs) is not list or len(outputs) != expected_cases:
        return None, "the record of the hidden tests does not hold one output per case"
    problem = plain_data_problem(outputs)
    if problem:
        return None, (refused + problem + "; a record holds only dense CPU tensors of plain "
                      "dtypes, numbers, strings, None, and lists, tuples and dicts of them")
    return outputs, None


def hidden_program(submitted, released) -> list[dict]:
    """The cells of the grader's run, in the released lesson's order: each locked cell that
    is neither a solution nor a test (the set-up) as released, each solution cell as the
    student wrote it (as released when the submission lacks it). Markdown cells and every
    cell the student added are left out."""
    theirs = {}
    for cell in submitted.cells:
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") == "code" and meta.get("solution") and meta.get("grade_id"):
            theirs.setdefault(meta["grade_id"], cell.get("source", ""))
    cells = []
    for cell in released.cells:
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if cell.get("cell_type") != "code" or not grade_id or meta.get("grade"):
            continue
        if meta.get("solution"):
            cells.append({"kind": "solution", "grade_id": grade_id,
                          "source": theirs.get(grade_id, cell.source)})
        elif meta.get("locked"):
            cells.append({"kind": "setup", "grade_id": grade_id, "source": cell.source})
    return cells


class RecordRefused(Exception):
    """Why a record's archive is not read."""


def stored_archive(data: bytes, limit: int) -> io.BytesIO:
    """``data``, a ``torch.save`` zip, written again entry by entry once every entry is known
    to be stored uncompressed (as ``torch.save`` writes them: a deflated entry could inflate
    about 1000 times) with its real size equal to its declared one, and the sizes sum to at
    most ``limit``. ``torch.load`` then reads exactly what was checked. Raises RecordRefused."""
    try:
        source = zipfile.ZipFile(io.BytesIO(data))
        entries = source.infolist()
    except Exception as error:  # zipfile raises more than BadZipFile on crafted archives
        raise RecordRefused(f"it is not a torch.save file ({_describe(error)})") from None
    names = [entry.filename for entry in entries]
    packed = [entry.filename for entry in entries if entry.compress_type != zipfile.ZIP_STORED]
    declared = sum(entry.file_size for entry in entries)
    if packed:
        raise RecordRefused(f"its entry {packed[0][:80]!r} is compressed (torch.save stores "
                            "every entry uncompressed)")
    if declared > limit:
        raise RecordRefused(f"its entries declare {declared >> 20} MB uncompressed, over the "
                            f"{limit >> 20} MB limit")
    if len(set(names)) != len(names):
        raise RecordRefused("it holds an entry twice")
    copy = io.BytesIO()
    with zipfile.ZipFile(copy, "w", zipfile.ZIP_STORED) as target:
        for entry in entries:
            try:
                content = source.read(entry)  # checks the CRC
            except Exception as error:
                raise RecordRefused(f"its entry {entry.filename[:80]!r} is damaged "
                                    f"({_describe(error)})") from None
            if len(content) != entry.file_size or entry.compress_size != entry.file_size:
                raise RecordRefused(f"its entry {entry.filename[:80]!r} declares "
                                    f"{entry.file_size} bytes and holds {len(content)}")
            target.writestr(entry.filename, content)
    copy.seek(0)
    return copy


def plain_data_problem(value) -> str | None:
    """What in ``value`` (loaded from a record) is not plain data, or None: plain data is
    dense, strided CPU tensors of :data:`PLAIN_DTYPES` (exactly ``torch.Tensor``, no
    subclass), bool/int/float/complex, str, None, and lists, tuples and dicts (str or int
    keys) of them, at most :data:`RECORD_DEPTH` deep and :data:`RECORD_VALUES` values in all
    (a record may share or nest one list in itself)."""
    pending = [(value, "the output", 0)]
    counted = 1
    while pending:
        item, where, depth = pending.pop()
        kind = type(item)
        if depth > RECORD_DEPTH:
            return f"{where} is nested more than {RECORD_DEPTH} deep"
        if kind is torch.Tensor:
            problem = _tensor_problem(item)
            if problem:
                return f"{where} is {problem}"
        elif kind in (list, tuple, dict):
            counted += len(item)
            if counted > RECORD_VALUES:
                return f"it holds more than {RECORD_VALUES:,} values"
            pairs = item.items() if kind is dict else enumerate(item)
            for key, child in pairs:
                if type(key) not in (str, int):
                    return f"{where} has a key of type {type(key).__name__}"
                pending.append((child, f"{where}[{_short_key(key)}]", depth + 1))
        elif kind not in (bool, int, float, complex, str, type(None)):
            return f"{where} is a {kind.__name__}"
    return None


def _tensor_problem(tensor: torch.Tensor) -> str | None:
    if tensor.is_nested:
        return "a nested tensor"
    if tensor.device.type != "cpu":
        return f"a tensor on the {tensor.device.type} device"
    if tensor.layout != torch.strided:
        return f"a {str(tensor.layout).removeprefix('torch.')} tensor"
    if tensor.is_quantized or tensor.dtype not in PLAIN_DTYPES:
        return f"a tensor of dtype {str(tensor.dtype).removeprefix('torch.')}"
    if tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes():
        return "a tensor larger than its storage (expanded or overlapping)"
    return None


def _short_key(key) -> str:
    if type(key) is int:
        return str(key) if abs(key) < 10**12 else "<a large int>"
    return repr(key[:40]) + ("..." if len(key) > 40 else "")


def _describe(error: BaseException) -> str:
    """An exception, one short line (its text may be anything the record made it say)."""
    try:
        text = str(error)
    except Exception:
        text = "(no message)"
    lines = text.strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__
