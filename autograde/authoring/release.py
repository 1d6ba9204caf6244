"""``python -m autograde release [--check]``: regenerate ``lessons/`` from ``solutions/``.

Each lesson goes through nbgrader's ``generate_assignment`` in a temporary course directory
(solutions cleared to stubs, hidden tests removed, cells locked, checksums computed), then its
notebooks are rewritten in a stable form (no outputs, no execution counts, sorted JSON keys),
so that the same solutions give the same bytes every time. The visible tests' fixtures
(:mod:`autograde.authoring.fixtures`: fixed inputs and the reference's outputs) are computed into
``<lesson>/fixtures/``. ``--check`` generates into a temporary folder and names every lesson
whose committed copy differs (fixtures: by value, within float rounding).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from autograde.authoring import fixtures
from autograde.course import (
    IGNORED,
    LESSONS_DIR,
    SOLUTIONS_DIR,
    GraderError,
    copy_tree,
    course_config,
    create_gradebook,
    lesson_names,
    make_course,
    normalize_notebook,
    notebook_bytes,
    read_notebook,
    run_nbgrader,
    walk_plain,
)

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


def generate(destination: Path, solutions_dir: Path = SOLUTIONS_DIR,
             lessons: list[str] | None = None, with_fixtures: bool = True) -> list[str]:
    """Write the student version of every lesson into ``destination/<lesson>/``, with its
    fixtures unless ``with_fixtures`` is False."""
    from nbgrader.converters import GenerateAssignment

    lessons = lesson_names(solutions_dir) if lessons is None else lessons
    destination = Path(destination)
    with tempfile.TemporaryDirectory(prefix="autograde-release-") as tmp:
        root = make_course(Path(tmp) / "course", lessons, solutions_dir)
        config = course_config(root)
        create_gradebook(config.CourseDirectory.db_url)
        for lesson in lessons:
            try:
                run_nbgrader(GenerateAssignment, config, assignment_id=lesson)
            except GraderError as error:
                raise GraderError(f"release of lesson {lesson} failed: {error}") from error
            released = root / "release" / lesson
            target = destination / lesson
            previous = Path(tmp) / "previous" / lesson
            if (target / "fixtures").is_dir():
                shutil.copytree(target / "fixtures", previous)
            if target.exists():
                shutil.rmtree(target)
            copy_tree(released, target)
            if with_fixtures:
                fixtures.write(lesson, target / "fixtures", previous)
            for path in sorted(target.rglob("*.ipynb")):
                nb = normalize_notebook(read_notebook(path))
                path.write_bytes(notebook_bytes(nb))
            _assert_student_version(target)
    return lessons


def _assert_student_version(folder: Path) -> None:
    """Fail loudly if a released notebook still holds solution code or hidden tests."""
    for path in folder.rglob("*.ipynb"):
        text = path.read_text(encoding="utf-8")
        for marker in SOLUTION_MARKERS + HIDDEN_MARKERS:
            if marker in text:
                raise GraderError(f"{path}: the released notebook still contains {marker!r}")


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file of a lesson folder but its fixtures (those are compared by value) and what
    a Jupyter session leaves behind (``.ipynb_checkpoints``, caches: :data:`IGNORED`)."""
    if not folder.is_dir():
        return {}
    return {str(relative): (folder / relative).read_bytes()
            for relative, _info in walk_plain(folder, IGNORED + ("fixtures",))}


def _differences(fresh: Path, committed: Path, lesson: str) -> list[str]:
    """What differs between a fresh release of ``lesson`` and the committed one, file by file."""
    new, old = _tree(fresh), _tree(committed)
    found = [f"{name} (missing)" if name not in old else f"{name} (extra)" if name not in new
             else f"{name} (differs)"
             for name in sorted(new.keys() | old.keys()) if new.get(name) != old.get(name)]
    return found + [f"fixtures/{name}" for name in fixtures.stale(lesson, committed / "fixtures")]


def stale_lessons(lessons_dir: Path = LESSONS_DIR,
                  solutions_dir: Path = SOLUTIONS_DIR) -> dict[str, list[str]]:
    """Lessons whose committed student version differs from a fresh release, each with what
    differs (a file, a fixture, or a lesson that has no solution any more)."""
    lessons_dir = Path(lessons_dir)
    with tempfile.TemporaryDirectory(prefix="autograde-check-") as tmp:
        fresh = Path(tmp)
        generated = generate(fresh, solutions_dir, with_fixtures=False)
        stale = {lesson: found for lesson in generated
                 if (found := _differences(fresh / lesson, lessons_dir / lesson, lesson))}
    if lessons_dir.is_dir():
        stale |= {p.name: ["no solution"] for p in sorted(lessons_dir.iterdir())
                  if p.is_dir() and p.name not in generated and not p.name.startswith(".")}
    return stale


def release(lessons_dir: Path = LESSONS_DIR, solutions_dir: Path = SOLUTIONS_DIR) -> list[str]:
    """Regenerate ``lessons_dir`` from ``solutions_dir``; lessons without a solution go."""
    lessons_dir = Path(lessons_dir)
    lessons_dir.mkdir(parents=True, exist_ok=True)
    generated = generate(lessons_dir, solutions_dir)
    for path in lessons_dir.iterdir():
        if path.is_dir() and path.name not in generated and not path.name.startswith("."):
            shutil.rmtree(path)
    return generated
