"""``python -m autograde submit`` and ``python -m autograde student-kit OUT``.

``submit`` zips the lesson folders of the student's ``workspace/`` into
``<student>_nanolm_<YYYYmmdd-HHMMSS>.zip`` (the name :mod:`autograde.collect` expects from an
LMS download; the student id is everything before the first underscore, so it may not contain
one). In a staged kit only the lessons of its week go in (``--all`` for every lesson). Run
outputs, checkpoints, caches and files over :data:`MAX_FILE_BYTES` stay out.

``student-kit`` writes what students get: ``lessons/``, ``nanolm_lib/``, the set-up files (with
the student's Jupyter configuration) and the student half of this package (``check``,
``submit``, ``workspace``); never ``solutions/``, the tests, or the grading pipeline.
``--week NN`` stages the kit for the week students write lesson NN: the references of lesson
NN and every later lesson (by :data:`nanolm_lib.grading.curriculum.GRADED`) are rewritten with
:mod:`ast` into stubs that keep their signature and docstring, raise
:class:`nanolm_lib.grading.staging.NotReleasedError`, and run the student's own version where
there is one (:mod:`nanolm_lib.grading.staging`); the week's own answers never ship, and a later
lesson ships its notebook and its questions' contracts only (no fixtures, no practice cases, no
question code); no lesson ships the code that draws the grader's hidden cases or computed its
fixtures. ``STAGE.json`` in the kit
says the week, which lessons students have (``make lab`` copies only those, ``check`` and
``submit`` see only those) and when the kit was built (a kernel started before says to restart).
Building the kit again into the same folder publishes the next stage; a ``workspace/`` folder
there is never touched.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shutil
import struct
import time
import zipfile
from pathlib import Path

from autograde.course import (
    IGNORED,
    LESSON_NAME,
    LESSONS_DIR,
    REPO,
    GraderError,
    safe_copy_tree,
)

SUBMIT_STUDENT_ID = re.compile(r"^[A-Za-z0-9.\-]+$")
MAX_FILE_BYTES = 20 << 20
# a submission also leaves out large binaries (a lesson's fixtures are the kit's own)
LEFT_OUT = (*IGNORED, "*.pt", "*.bin", ".cache", "*.npy", "*.arrow")
# what a kit ships of a lesson: all but run outputs and caches (its fixtures, *.pt, stay)
KIT_SKIP = tuple(p for p in LEFT_OUT if p != "*.pt")

# constraints.txt: the kit's `make setup` installs the versions the course was tested with
KIT_FILES = ("README.md", "LICENSE", "Makefile", "pyproject.toml", "environment.yml",
             ".gitignore", "constraints.txt")
KIT_FOLDERS = ("jupyter/student",)  # `make lab`'s Jupyter configuration (Validate only)
# The student half of autograde: the self-check and submit, and what they import.
KIT_AUTOGRADE = ("__init__.py", "__main__.py", "answer.py", "copycheck.py", "course.py",
                 "kernel.py", "kit.py", "nbgrader_config.py", "paths.py", "practice.py",
                 "preprocessors.py", "sandbox.py", "scan.py", "selfcheck.py", "similarity.py",
                 "verdict.py", "worker.py", "workspace.py")
STAGE_FILE = "STAGE.json"  # a kit's week: {"week", "lessons", "references", "built"}


def _left_out(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in LEFT_OUT)


def read_stage(root: Path = REPO) -> dict | None:
    """The stage of the kit at ``root`` (its STAGE.json), or None outside a staged kit."""
    path = Path(root) / STAGE_FILE
    if not path.is_file():
        return None
    try:
        stage = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        stage = error
    if not isinstance(stage, dict) or not {"week", "lessons"} <= set(stage):
        raise GraderError(f"{path}: not a kit's stage file; build the kit again with "
                          "student-kit")
    return stage


def stage_lessons(found: list[str], stage: dict | None) -> tuple[list[str], list[str]]:
    """``found`` lessons split into (those of the kit's stage, those after it)."""
    if stage is None or stage["week"] == "all":
        return list(found), []
    return ([lesson for lesson in found if lesson in stage["lessons"]],
            [lesson for lesson in found if lesson not in stage["lessons"]])


def workspace_lessons(workspace: Path) -> list[str]:
    """The lesson folders ``NN_slug/NN_slug.ipynb`` of ``workspace``, in order."""
    return sorted(p.name for p in Path(workspace).iterdir()
                  if p.is_dir() and LESSON_NAME.match(p.name)
                  and (p / f"{p.name}.ipynb").is_file())


def submit(workspace: Path, student: str | None = None, out_dir: Path = Path("."),
           now: float | None = None, lessons: list[str] | None = None) -> Path:
    """Zip the lesson folders of ``workspace`` (``lessons`` of them, default all); returns the
    zip's path."""
    workspace = Path(workspace)
    student = student or os.environ.get("NANOLM_STUDENT")
    if not student:
        raise GraderError("give your student id: --student ID (the id your instructor uses "
                          "for you; letters, digits, '.' and '-'), or set NANOLM_STUDENT")
    if not SUBMIT_STUDENT_ID.match(student):
        suggestion = re.sub(r"[^A-Za-z0-9.\-]+", "-", student).strip("-")
        raise GraderError(f"student id {student!r}: use letters, digits, '.' and '-' only "
                          "(no '_' or spaces: the LMS file name is <student>_<anything>.zip)"
                          + (f", e.g. --student {suggestion}" if suggestion else ""))
    if not workspace.is_dir():
        raise GraderError(f"workspace {workspace}: no such folder (run `make lab` first, "
                          "or pass --workspace)")
    found = workspace_lessons(workspace)
    if not found:
        raise GraderError(f"workspace {workspace}: no lesson folders NN_slug/NN_slug.ipynb")
    lessons = found if lessons is None else lessons
    if not lessons:
        raise GraderError(f"workspace {workspace}: no lesson to submit")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{student}_nanolm_{stamp}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for lesson in lessons:
            _add_lesson(zf, workspace, workspace / lesson)
    return archive


def _add_lesson(zf: zipfile.ZipFile, workspace: Path, lesson: Path) -> None:
    for path in sorted(lesson.rglob("*")):
        relative = path.relative_to(workspace)
        if any(_left_out(part) for part in relative.parts) or not path.is_file():
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            continue
        info = zipfile.ZipInfo.from_file(path, str(relative))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.extra = _extended_timestamp(path.stat().st_mtime)
        with open(path, "rb") as source, zf.open(info, "w") as sink:
            shutil.copyfileobj(source, sink)


# Info-ZIP's extra field that keeps a member's modification time as Unix time: the grader
# reads when the work was saved without guessing the student's time zone.
EXTENDED_TIMESTAMP = 0x5455


def _extended_timestamp(mtime: float) -> bytes:
    return struct.pack("<HHBi", EXTENDED_TIMESTAMP, 5, 1, int(mtime))


# Ungraded helpers of the library that answer a graded question: staged with that question's
# lesson, so that neither a kit nor the grader of that lesson hands the answer over under
# another name. module -> {helper: (lesson, the graded name it answers)}. In a staged library
# the helper runs the student's own answer where the library needs it
# (:data:`nanolm_lib.grading.staging.STAND_INS`: ``train`` keeps training, on the student's
# ``train_step`` and ``get_batch``), else raises NotReleasedError. (The fast tokenizer stays:
# lesson 01's own later cells use it; the source policy of ``encode`` forbids it.)
ANSWERING_HELPERS = {
    "course.tokenizer": {"_encode_piece": ("01_tokenizer", "encode"),
                         "_most_frequent_pair": ("01_tokenizer", "train_bpe"),
                         "_merge_in_words": ("01_tokenizer", "train_bpe")},
    # get_batch is randint starts + gather_windows; BatchStream draws them as get_batch does
    "course.data": {"gather_windows": ("02_data", "get_batch")},
    "course.attention": {"torch_multihead_attention": ("03_attention", "MultiHeadAttention"),
                         "native_mha_inference": ("03_attention", "MultiHeadAttention")},
    "course.modern": {"count_modern_parameters": ("05_gpt", "count_parameters")},
    "course.train": {"optimize": ("06_training", "train_step")},
    "lab.trainer": {"BatchStream": ("02_data", "get_batch")},
}


def stage_source(source: str, module: str, released: list[str], keep=()) -> str:
    """``source`` of ``nanolm_lib.<module>`` (``course.attention``, ``lab.trainer``) with every
    graded definition of a lesson not in ``released`` (but the names in ``keep``), and every
    helper that answers one
    (:data:`ANSWERING_HELPERS`; kept with the name it answers), replaced by a stub: the same
    ``def``/``class`` line and docstring, a body that raises ``NotReleasedError``, decorated
    with ``not_released`` so that the student's own version runs instead when there is one.
    Everything else keeps its text, comments included.
    """
    from nanolm_lib.grading.curriculum import GRADED

    staged = {name: lesson for lesson, names in GRADED.items() if lesson not in released
              for name, home in names.items() if f"course.{home}" == module and name not in keep}
    staged.update(_answering_helpers(module, released, keep))
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    replacements = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in staged:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            replacements.append((first, node.end_lineno, _stub(node, staged[node.name], source)))
    if not replacements:
        return source
    for first, last, stub in sorted(replacements, reverse=True):
        lines[first - 1:last] = [stub]
    future = [n for n in tree.body
              if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    at = future[-1].end_lineno if future else 0
    # the lines before `at` are untouched: graded definitions come after the imports
    lines[at:at] = ["from nanolm_lib.grading import staging as _staging  # this kit is staged\n"]
    return "".join(lines)


def _stub(node, lesson: str, source: str) -> str:
    """The source of the stub that replaces one graded function or class."""
    if isinstance(node, ast.ClassDef):
        bases = ", ".join(ast.unparse(b) for b in node.bases + node.keywords)
        head = f"class {node.name}({bases}):" if bases else f"class {node.name}:"
    else:
        returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
        head = f"def {node.name}({ast.unparse(node.args)}){returns}:"
    first = node.body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
        and isinstance(first.value.value, str)
    # the docstring keeps its text and layout: it is the specification, not the answer
    body = [f"    {ast.get_source_segment(source, first)}\n" if has_doc else ""]
    if isinstance(node, ast.ClassDef):
        body.append("    def __new__(cls, *args, **kwargs):\n    ")
    body.append(f"    raise _staging.NotReleasedError.for_name({lesson!r}, {node.name!r})\n")
    return f"@_staging.not_released({lesson!r})\n{head}\n" + "".join(body)


def _answering_helpers(module: str, released: list[str], keep=()) -> dict[str, str]:
    """The helpers of ``module`` to stage (:data:`ANSWERING_HELPERS`): helper -> lesson."""
    return {helper: lesson for helper, (lesson, answers)
            in ANSWERING_HELPERS.get(module, {}).items()
            if lesson not in released and answers not in keep}


def stage_library(library: Path, released: list[str], keep=()) -> list[str]:
    """Stage every module of the package at ``library`` in place (the graded names in
    ``keep`` keep their reference); returns the names staged (graded names, and the helpers
    that answer them as ``module.helper``)."""
    from nanolm_lib.grading.curriculum import GRADED

    staged = []
    modules = {f"course.{home}" for names in GRADED.values() for home in names.values()}
    for module in sorted(modules | set(ANSWERING_HELPERS)):
        path = Path(library, *module.split(".")).with_suffix(".py")
        text = path.read_text(encoding="utf-8")
        new = stage_source(text, module, released, keep)
        if new != text:
            path.write_text(new, encoding="utf-8")
            staged += [name for lesson, names in GRADED.items() if lesson not in released
                       for name, home in names.items()
                       if f"course.{home}" == module and name not in keep]
            staged += [f"{module}.{helper}"
                       for helper in _answering_helpers(module, released, keep)]
    return staged


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
    from nanolm_lib.grading.curriculum import GRADED, week_lessons, week_references

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
    shutil.copyfile(Path(__file__).with_name("STUDENT_README.md"), out / "README.md")
    (out / "autograde").mkdir()
    for name in KIT_AUTOGRADE:
        shutil.copyfile(Path(__file__).with_name(name), out / "autograde" / name)
    # the self-check's copy check compares with these, not with the (staged) reference bodies
    from autograde.copycheck import write_fingerprints

    write_fingerprints(out / "autograde" / "reference_fingerprints.json",
                       Path(repo) / "nanolm_lib", Path(repo) / "solutions", Path(repo) / "lessons")
    # the self-check's practice cases, solved here: the kit has no reference for what is not due
    from autograde.practice import write_practice

    for lesson in given:
        if lesson in GRADED:
            write_practice(lesson, out / "autograde" / "practice")
    if (out / "RELEASED").is_file():  # the stage file of kits built before STAGE.json
        (out / "RELEASED").unlink()
    stage = {"week": week, "lessons": week_lessons(week), "references": released_list,
             "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "built_ns": time.time_ns()}
    (out / STAGE_FILE).write_text(json.dumps(stage, indent=1) + "\n", encoding="utf-8")
    return out
