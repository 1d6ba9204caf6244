"""The grader's pieces on the real course: the scan of the solutions, the student kit as
built (and its make test), and the self-check on a released toy lesson."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from autograde_toy import write_submission, write_toy_solutions

from autograde.__main__ import main
from autograde.authoring.kit import student_kit
from autograde.authoring.release import release
from autograde.course import SOLUTIONS_DIR, grade_cells, lesson_names
from autograde.integrity.copycheck import load_fingerprints

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(not SOLUTIONS_DIR.is_dir(), reason="no solutions/ yet")
def test_scan_finds_nothing_in_the_solutions_but_themselves():
    """The solutions break no rule; their only flags say they are the solutions (a student who
    hands in the instructor's notebook is flagged)."""
    from autograde.integrity.scan import scan_notebook

    for lesson in lesson_names():
        nb = nbformat.read(str(SOLUTIONS_DIR / lesson / f"{lesson}.ipynb"), as_version=4)
        graded = {c["grade_id"] for c in grade_cells(nb) if c["kind"] == "solution"}
        released = nbformat.read(str(REPO / "lessons" / lesson / f"{lesson}.ipynb"), as_version=4)
        flags = scan_notebook(nb, graded, load_fingerprints(), released=released)
        assert all(f.kind in ("copied", "similar") and "the solution notebook" in f.message
                   for f in flags), (lesson, flags)


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "lessons").is_dir(), reason="no lessons/ yet")
def test_student_kit_has_no_solutions_or_hidden_tests(tmp_path):
    kit = student_kit(tmp_path / "kit")
    assert (kit / "lessons").is_dir() and (kit / "nanolm_lib" / "grading" / "checks.py").is_file()
    assert (kit / "autograde" / "student" / "selfcheck.py").is_file()
    assert (kit / "jupyter" / "student" / "labconfig" / "page_config.json").is_file()
    assert not (kit / "jupyter" / "instructor").exists()
    assert not (kit / "solutions").exists() and not (kit / "tests").exists()
    for instructors in ("batch", "authoring", "README.md"):
        assert not (kit / "autograde" / instructors).exists()
    for path in kit.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".py", ".md"):
            text = path.read_text(errors="replace")
            assert "### BEGIN HIDDEN TESTS" not in text and "### BEGIN SOLUTION" not in text, path
    result = subprocess.run([sys.executable, "-m", "autograde", "grade", "x", "--out", "y"],
                            cwd=kit, capture_output=True, text=True)
    assert result.returncode == 2 and "instructor command" in result.stderr
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("not a kit")
    assert main(["student-kit", str(tmp_path / "elsewhere")]) == 2  # refuses: not a kit
    assert main(["student-kit", str(kit), "--released", "7"]) == 2  # not a lesson number


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "lessons").is_dir(), reason="no lessons/ yet")
def test_student_kit_make_test_self_checks_the_workspace(tmp_path):
    import os
    import shutil

    kit = student_kit(tmp_path / "kit")
    shutil.copytree(kit / "lessons" / "01_tokenizer", kit / "workspace" / "01_tokenizer")
    venv = Path(sys.executable).parent.parent
    stamp = venv / ".installed"
    if not stamp.is_file():
        pytest.skip(f"{venv} was not made by `make setup` (no .installed stamp)")
    os.utime(stamp)  # set up already: `make` must not reinstall for the kit's newer files
    result = subprocess.run(["make", "test", f"VENV={venv}"], cwd=kit, capture_output=True,
                            text=True, timeout=900)
    out = result.stdout + result.stderr
    assert "file or directory not found" not in out
    assert "01_tokenizer" in out and "total 0 / 8 as grading would score" in out, out[-3000:]
    assert "no record of the hidden tests" not in out, out[-3000:]  # the grader's run ran
    assert "cell(s) that are not tests raised" in out  # the demonstrations of the stubs
    assert result.returncode != 0, out[-3000:]  # the untouched lesson fails its checks


@pytest.mark.slow
def test_check_runs_visible_tests_only(tmp_path, capsys):
    solutions = write_toy_solutions(tmp_path / "solutions")
    lessons = tmp_path / "lessons"
    release(lessons, solutions)
    # passes the visible test of add (1 + 2) but not the hidden one (-5 + 5); the student
    # also edited test_scale to pass, which the self-check undoes
    folder = write_submission(lessons, tmp_path / "ws", "me", "01_toy", {
        "add": "def add(a, b):\n    return a + b if a > 0 else 1",
        "test_scale": "print('fine')"})
    code = main(["check", str(folder / "01_toy.ipynb"), "--lessons", str(lessons),
                 "--cell-timeout", "30"])
    out = capsys.readouterr().out
    assert code == 1
    assert "test_add    1 / 1  passed" in out
    assert "test_scale  0 / 2  FAILED" in out and "NotImplementedError" in out
    assert "total 1 / 3 on the visible tests" in out
    assert main(["check", str(tmp_path / "99_none.ipynb"), "--lessons", str(lessons)]) == 2
