"""``python -m autograde student-kit OUT``.

``student-kit`` writes what students get: ``lessons/``, ``nanolm_lib/``, the set-up files (with
the student's Jupyter configuration) and this package without ``batch/`` and ``authoring/``
(``check``, ``submit``, ``workspace`` and what they run); never ``solutions/``, the tests, or
the grading pipeline.
``--week NN`` stages the kit for the week students write lesson NN: the references of lesson
NN and every later lesson (by :data:`nanolm_lib.grading.curriculum.GRADED`) are rewritten with
:mod:`ast` into stubs that keep their signature and docstring, raise
:class:`nanolm_lib.grading.staging.NotReleasedError`, and run the student's own version where
there is one (:mod:`nanolm_lib.grading.staging`); the week's own answers never ship, and a later
lesson ships its notebook and its questions' contracts only (no fixtures, no practice cases, no
question code); no lesson ships the code that draws the grader's hidden cases or computed its
fixtures. ``STAGE.json`` in the kit says the week, which lessons students have (``make lab``
copies only those, ``check`` and ``submit`` see only those) and when the kit was built (a kernel
started before says to restart). Building the kit again into the same folder publishes the next
stage; a ``workspace/`` folder there is never touched.
"""

from __future__ import annotations

import ast
import json
import shutil
import time
from pathlib import Path

from autograde.course import LESSONS_DIR, REPO, GraderError, safe_copy_tree
from autograde.integrity.copycheck import write_fingerprints
from autograde.paths import AUTOGRADE_DIR
from autograde.sandbox.staged_library import stage_library
from autograde.student.practice import write_practice
from autograde.student.submit import LEFT_OUT, STAGE_FILE
from nanolm_lib.grading.curriculum import GRADED, week_lessons, week_references

# what a kit ships of a lesson: all but run outputs and caches (its fixtures, *.pt, stay)
KIT_SKIP = tuple(p for p in LEFT_OUT if p != "*.pt")

# constraints.txt: the kit's `make setup` installs the versions the course was tested with
KIT_FILES = ("README.md", "LICENSE", "Makefile", "pyproject.toml", "environment.yml",
             ".gitignore", "constraints.txt")
KIT_FOLDERS = ("jupyter/student",)  # `make lab`'s Jupyter configuration (Validate only)
# The kit's autograde is the package without the instructor's folders: the student's side
# (check, submit), the sandbox and the integrity scans that check runs, and the shared modules.
INSTRUCTOR_FOLDERS = ("batch", "authoring")
# and the instructor's READMEs (the kit's README is STUDENT_README.md, copied to its top)
INSTRUCTOR_FILES = ("README.md", "STUDENT_README.md")


CASES_KEPT_BY_GRADER = ("raise RuntimeError('the hidden cases are drawn by the grader only; "
                       "this kit checks with its stored practice cases')")
FIXTURE_MADE_AT_RELEASE = ("raise RuntimeError('the release computes the fixtures; this kit "
                           "ships them')")
NOT_GIVEN_OUT = "raise RuntimeError('this lesson comes with a later week of the course')"


def _strip_questions(questions: Path, later: list[str]) -> None:
    """The kit's question files keep each question's contract and how it runs and compares,
    not how the grader draws its cases (``@q.cases`` bodies: the kit's check reads stored
    practice cases) or how the release computed its fixture (``@q.fixture``); a lesson not
    given out yet keeps its contract only."""
    bodies = {"q.cases": CASES_KEPT_BY_GRADER, "q.fixture": FIXTURE_MADE_AT_RELEASE}
    for path in sorted(questions.glob("*/*.py")):
        if path.stem == "__init__":
            continue
        stripped = dict(bodies)
        if path.parent.name in later:
            stripped |= {"q.runs": NOT_GIVEN_OUT, "q.checks": NOT_GIVEN_OUT}
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            decorators = [ast.unparse(d) for d in getattr(node, "decorator_list", [])]
            for decorator in decorators:
                if isinstance(node, ast.FunctionDef) and decorator in stripped:
                    node.body = ast.parse(stripped[decorator]).body
        path.write_text(ast.unparse(tree) + "\n", encoding="utf-8")


def _leave_out_later_lessons(kit: Path, later: list[str]) -> None:
    """A kit holds nothing computed for a lesson not given out yet: its notebook stays to be
    read ahead, its fixtures (the reference's outputs) and hidden-case code do not."""
    for lesson in later:
        shutil.rmtree(kit / "lessons" / lesson / "fixtures", ignore_errors=True)
    _strip_questions(kit / "nanolm_lib" / "grading" / "questions", later)


def student_kit(out: Path, repo: Path = REPO, lessons_dir: Path = LESSONS_DIR,
                week: str = "all") -> Path:
    """Write the student kit into ``out``, staged for ``week`` ("all", or "NN": students write
    lesson NN; the references of lessons before NN ship, NN's own and later ones do not).

    ``out`` must be empty or hold an earlier kit (then everything but ``workspace/`` and the
    student's own files is replaced: that publishes the next stage).
    """
    try:
        released_list = week_references(week)
    except ValueError as error:
        raise GraderError(str(error)) from error
    out = Path(out)
    earlier_kit = (out / "nanolm_lib").is_dir() and (out / "autograde").is_dir()
    if out.exists() and any(out.iterdir()) and not earlier_kit:
        raise GraderError(f"student-kit {out}: the folder exists, is not empty and holds no "
                          "earlier kit")
    if not Path(lessons_dir).is_dir():
        raise GraderError(f"{lessons_dir}: no lessons (run `python -m autograde release`)")
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("lessons", "nanolm_lib", "autograde", *KIT_FOLDERS):
        if (out / folder).exists():
            shutil.rmtree(out / folder)
    safe_copy_tree(lessons_dir, out / "lessons", skip=KIT_SKIP)
    safe_copy_tree(Path(repo) / "nanolm_lib", out / "nanolm_lib", skip=LEFT_OUT)
    stage_library(out / "nanolm_lib", released_list)
    given = week_lessons(week)
    _leave_out_later_lessons(out, [lesson for lesson in GRADED if lesson not in given])
    for name in KIT_FILES:
        if (Path(repo) / name).is_file():
            shutil.copyfile(Path(repo) / name, out / name)
    for name in KIT_FOLDERS:
        safe_copy_tree(Path(repo) / name, out / name, skip=KIT_SKIP)
    # the kit's README is the students' own: set-up, make lab, check, submit
    shutil.copyfile(AUTOGRADE_DIR / "STUDENT_README.md", out / "README.md")
    safe_copy_tree(AUTOGRADE_DIR, out / "autograde", skip=(*LEFT_OUT, *INSTRUCTOR_FOLDERS, *INSTRUCTOR_FILES))
    # the self-check's copy check compares with these, not with the (staged) reference bodies
    write_fingerprints(out / "autograde" / "reference_fingerprints.json",
                       Path(repo) / "nanolm_lib", Path(repo) / "solutions", Path(repo) / "lessons")
    # the self-check's practice cases, solved here: the kit has no reference for what is not due
    for lesson in given:
        if lesson in GRADED:
            write_practice(lesson, out / "autograde" / "practice")
    if (out / "RELEASED").is_file():  # the stage file of kits built before STAGE.json
        (out / "RELEASED").unlink()
    stage = {"week": week, "lessons": week_lessons(week), "references": released_list,
             "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "built_ns": time.time_ns()}
    (out / STAGE_FILE).write_text(json.dumps(stage, indent=1) + "\n", encoding="utf-8")
    return out
