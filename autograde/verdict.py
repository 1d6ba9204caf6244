"""The grader's verdict: every point of a course lesson is decided here, outside the kernel.

For lesson N of the course (:data:`nanolm_lib.curriculum.GRADED`) the worker:

1. stages a copy of ``nanolm_lib`` once per batch (:func:`stage_library`): the reference
   bodies of lesson N's and every later lesson's graded names are stubs
   (:func:`autograde.kit.stage_library`), so the grading kernel cannot import the answer; the
   earlier lessons' references stay (a lesson builds on them). The lessons' fixtures sit next to
   it, where :func:`nanolm_lib.checks.fixture` looks first;
2. before the kernel starts, draws every question's hidden cases from a seed of its own
   (:func:`secrets.randbits`, kept in this process) and writes only the inputs into a cases
   folder that the kernel may read (:meth:`Verdict.prepare`), and computes the reference's
   outputs on them here;
3. after nbgrader's autograde, reads the outputs the test cells recorded in the kernel's
   scratch folder (:meth:`Verdict.judge`): a record that is missing, not a plain file, larger
   than :data:`nanolm_lib.grading.RECORD_LIMIT_BYTES` or unreadable by a weights-only
   ``torch.load`` scores 0 with the reason. A question earns its points when every case
   matches the reference (all or nothing, as a test cell always did); its message names the
   first case that differs.

The worker writes each verdict into its gradebook as the test cell's manual score, with the
message as the comment of the question's solution cell (the feedback shows both). What the
kernel prints, raises or publishes changes no score. Lessons outside the course (the tests' toy
lessons) keep nbgrader's own scores.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autograde.course import SpecialFileError, read_plain_file
from autograde.paths import LESSONS_DIR, REPO
from nanolm_lib.curriculum import GRADED, LESSONS, lesson_number
from nanolm_lib.grading import ENV_VAR, ERROR_KEY, QUESTIONS, RECORD_LIMIT_BYTES

PACKAGE_DIR = REPO / "nanolm_lib"


def graded_by_verdict(lesson: str) -> bool:
    """True for the course's lessons (their points come from :class:`Verdict`)."""
    return lesson in GRADED


def released_before(lesson: str) -> list[str]:
    """The lessons whose references the grading kernel of ``lesson`` may have."""
    return [other for other in LESSONS if lesson_number(other) < lesson_number(lesson)]


def stage_library(folder: Path, lesson: str, lessons_dir: Path = LESSONS_DIR) -> Path:
    """A copy of ``nanolm_lib`` for grading ``lesson``, at ``folder/<lesson>/nanolm_lib``, with
    the lessons' fixtures at ``folder/<lesson>/lessons/*/fixtures``. Returns ``folder/<lesson>``
    (the folder to put first on the kernel's ``sys.path``)."""
    from autograde.kit import stage_library as stage_package

    root = Path(folder) / lesson
    if root.exists():
        shutil.rmtree(root)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(PACKAGE_DIR, root / "nanolm_lib", ignore=ignore, symlinks=False)
    stage_package(root / "nanolm_lib", released_before(lesson))
    for fixtures in sorted(Path(lessons_dir).glob("*/fixtures")):
        shutil.copytree(fixtures, root / "lessons" / fixtures.parent.name / "fixtures",
                        ignore=ignore)
    return root


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

    @classmethod
    def prepare(cls, lesson: str, cases_dir: Path, records_dir: Path,
                seed: int | None = None) -> Verdict:
        """Draw, write and solve the hidden cases of every question of ``lesson``."""
        import nanolm_lib.questions  # noqa: F401  (registers the questions)
        from nanolm_lib.grading import reference_namespace

        for folder in (cases_dir, records_dir):
            if folder.exists():
                shutil.rmtree(folder)
            (folder / lesson).mkdir(parents=True)
        verdict = cls(lesson, Path(cases_dir), Path(records_dir))
        seed = secrets.randbits(63) if seed is None else seed
        reference = reference_namespace()
        with torch.random.fork_rng(devices=[]):
            for index, (name, question) in enumerate(sorted(QUESTIONS.get(lesson, {}).items())):
                drawn = question.make_cases(torch.Generator().manual_seed(seed + index))
                torch.save({"cases": drawn}, cases_dir / lesson / f"{name}.pt")
                expected = [question.run_case(reference, case) for case in drawn]
                failed = [e[ERROR_KEY] for e in expected if isinstance(e, dict) and ERROR_KEY in e]
                if failed:
                    raise RuntimeError(f"the reference failed on a hidden case of {lesson} "
                                       f"{name}: {failed[0]}")
                verdict.cases[name], verdict.expected[name] = drawn, expected
        for path in cases_dir.rglob("*.pt"):  # bwrap binds them read-only; this is for the rest
            path.chmod(0o444)
        return verdict

    @staticmethod
    def environment_for(cases_dir: Path, records_dir: Path) -> dict[str, str]:
        """What the kernel is told: where the cases are and where to record (known before
        the cases are drawn, since the kernelspec is written first)."""
        return {ENV_VAR: f"{cases_dir}{os.pathsep}{records_dir}"}

    def judge(self) -> dict[str, QuestionVerdict]:
        """test grade_id -> the verdict, from the records the kernel left."""
        import nanolm_lib.questions  # noqa: F401

        verdicts = {}
        for name, drawn in self.cases.items():
            question = QUESTIONS[self.lesson][name]
            outputs, problem = read_record(self.records_dir / self.lesson / f"{name}.pt",
                                           len(drawn))
            if problem:
                verdicts[f"test_{name}"] = QuestionVerdict(f"test_{name}", False, problem)
                continue
            failures = []
            for case, got, expected in zip(drawn, outputs, self.expected[name]):
                message = question.judge(case, got, expected)
                if message:
                    failures.append(f"{case.get('what', name)}: {message}")
            if failures:
                text = (f"hidden tests (run by the grader): {len(failures)} of {len(drawn)} "
                        f"cases differ from the reference; first: {failures[0]}")
            else:
                text = f"hidden tests (run by the grader): all {len(drawn)} cases match"
            verdicts[f"test_{name}"] = QuestionVerdict(f"test_{name}", not failures, text)
        return verdicts


def read_record(path: Path, expected_cases: int) -> tuple[list | None, str | None]:
    """The outputs saved in ``path`` (in the kernel's writable scratch: nothing about it is
    trusted), or (None, why it scores 0)."""
    missing = ("no record of the hidden tests: the test cell stopped before them (see its "
               "error above), or did not run")
    try:
        data = read_plain_file(path, RECORD_LIMIT_BYTES)
    except FileNotFoundError:
        return None, missing
    except SpecialFileError as error:
        return None, f"the record of the hidden tests is refused: {error}"
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:
        return None, (f"the record of the hidden tests is unreadable ({type(error).__name__}: "
                      f"{str(error)[:200]})")
    outputs = loaded.get("outputs") if isinstance(loaded, dict) else None
    if not isinstance(outputs, list) or len(outputs) != expected_cases:
        return None, "the record of the hidden tests does not hold one output per case"
    return outputs, None
