"""`python -m autograde release [--check]`: lessons/ is nbgrader's student version of
solutions/, byte for byte reproducible, with no solution code and no hidden tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from autograde_toy import write_toy_solutions

from autograde.__main__ import main
from autograde.course import LESSONS_DIR, SOLUTIONS_DIR, lesson_names
from autograde.release import release

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    solutions = write_toy_solutions(root / "solutions")
    (solutions / "01_toy" / "helper.txt").write_text("a helper file travels with its lesson\n")
    lessons = root / "lessons"
    assert release(lessons, solutions) == ["01_toy", "02_toy"]
    return solutions, lessons


def _files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_release_is_deterministic_and_strips_solutions(toy, tmp_path):
    solutions, lessons = toy
    release(tmp_path / "again", solutions)
    assert _files(tmp_path / "again") == _files(lessons)  # same bytes every time
    assert (lessons / "01_toy" / "helper.txt").is_file()
    text = (lessons / "01_toy" / "01_toy.ipynb").read_text()
    for forbidden in ("BEGIN SOLUTION", "HIDDEN TESTS", "return a + b", "add(-5, 5)"):
        assert forbidden not in text
    nb = nbformat.read(str(lessons / "01_toy" / "01_toy.ipynb"), as_version=4)
    add_cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "add")
    assert "raise NotImplementedError()" in add_cell.source
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")
    assert "assert add(1, 2) == 3" in text  # the visible test stays


def test_check_names_the_stale_lessons(toy, tmp_path, capsys):
    solutions, lessons = toy
    args = ["release", "--check", "--solutions", str(solutions), "--lessons", str(lessons)]
    assert main(args) == 0
    stale = tmp_path / "stale"
    shutil.copytree(lessons, stale)
    path = stale / "02_toy" / "02_toy.ipynb"
    path.write_text(path.read_text().replace("causal_mask(4)", "causal_mask(5)"))
    (stale / "99_orphan").mkdir()
    args[-1] = str(stale)
    assert main(args) == 1
    assert "02_toy, 99_orphan" in capsys.readouterr().err


@pytest.mark.skipif(not SOLUTIONS_DIR.is_dir(), reason="no solutions/ in this checkout yet")
def test_committed_lessons_are_up_to_date():
    """The real lessons/ equals nbgrader's release of the real solutions/ (CI gate)."""
    result = subprocess.run([sys.executable, "-m", "autograde", "release", "--check"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in LESSONS_DIR.iterdir() if p.is_dir()) == lesson_names()


def test_fixtures_are_checked_by_value(tmp_path):
    """release --check compares fixtures by value: a changed, missing or extra fixture makes
    the lesson stale; bytes written on another machine with rounding-level differences do not."""
    import torch

    from autograde import fixtures

    folder = tmp_path / "fixtures"
    shutil.copytree(LESSONS_DIR / "03_attention" / "fixtures", folder)
    assert fixtures.stale("03_attention", folder) == []
    case = torch.load(folder / "attention_weights.pt", weights_only=True)
    case["no mask"] = case["no mask"] * (1 + 1e-7)  # rounding: still the same fixture
    torch.save(case, folder / "attention_weights.pt")
    assert fixtures.stale("03_attention", folder) == []
    case["no mask"][0, 0, 0, 0] += 0.1
    torch.save(case, folder / "attention_weights.pt")
    (folder / "causal_mask.pt").unlink()
    (folder / "old.pt").write_bytes((folder / "split_heads.pt").read_bytes())
    assert fixtures.stale("03_attention", folder) == [
        "old (extra)", "attention_weights (differs)", "causal_mask (missing)"]
