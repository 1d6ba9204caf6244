"""`python -m autograde release [--check]`: lessons/ is nbgrader's student version of
solutions/, byte for byte reproducible, with no solution code and no hidden tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from autograde_toy import write_toy_solutions

from autograde.__main__ import main
from autograde.course import LESSONS_DIR, SOLUTIONS_DIR, lesson_names
from autograde.release import release, stale_lessons

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    solutions = write_toy_solutions(root / "solutions")
    (solutions / "01_toy" / "helper.txt").write_text("a helper file travels with its lesson\n")
    return solutions, root / "lessons"


def test_release_is_deterministic_and_strips_solutions(toy):
    solutions, lessons = toy
    assert release(lessons, solutions) == ["01_toy", "02_toy"]
    first = {p: p.read_bytes() for p in sorted(lessons.rglob("*")) if p.is_file()}
    release(lessons, solutions)
    second = {p: p.read_bytes() for p in sorted(lessons.rglob("*")) if p.is_file()}
    assert first == second
    assert (lessons / "01_toy" / "helper.txt").is_file()
    text = (lessons / "01_toy" / "01_toy.ipynb").read_text()
    for forbidden in ("BEGIN SOLUTION", "HIDDEN TESTS", "return a + b", "add(-5, 5)"):
        assert forbidden not in text
    nb = nbformat.read(str(lessons / "01_toy" / "01_toy.ipynb"), as_version=4)
    add_cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "add")
    assert "raise NotImplementedError()" in add_cell.source
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")
    assert "assert add(1, 2) == 3" in text  # the visible test stays


def test_check_names_the_stale_lesson(toy, capsys):
    solutions, lessons = toy
    release(lessons, solutions)
    args = ["release", "--check", "--solutions", str(solutions), "--lessons", str(lessons)]
    assert main(args) == 0
    path = lessons / "02_toy" / "02_toy.ipynb"
    path.write_text(path.read_text().replace("norm([3, 4])", "norm([6, 8])"))
    assert main(args) == 1
    assert "02_toy" in capsys.readouterr().err
    (lessons / "99_orphan").mkdir()
    assert stale_lessons(lessons, solutions) == ["02_toy", "99_orphan"]
    release(lessons, solutions)  # repairs both
    assert stale_lessons(lessons, solutions) == []


@pytest.mark.skipif(not SOLUTIONS_DIR.is_dir(), reason="no solutions/ in this checkout yet")
def test_committed_lessons_are_up_to_date():
    """The real lessons/ equals nbgrader's release of the real solutions/ (CI gate)."""
    result = subprocess.run([sys.executable, "-m", "autograde", "release", "--check"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in LESSONS_DIR.iterdir() if p.is_dir()) == lesson_names()
