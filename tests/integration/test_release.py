"""`python -m autograde release [--check]`: lessons/ is nbgrader's student version of
solutions/, byte for byte reproducible, with no solution code and no hidden tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from autograde_toy import write_toy_solutions

from autograde.__main__ import main
from autograde.authoring.release import release
from autograde.course import LESSONS_DIR, SOLUTIONS_DIR, lesson_names

REPO = Path(__file__).resolve().parents[2]


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
    # what a Jupyter session leaves in a lesson folder is not the lesson
    checkpoints = stale / "01_toy" / ".ipynb_checkpoints"
    checkpoints.mkdir()
    (checkpoints / "01_toy-checkpoint.ipynb").write_text("{}")
    (stale / "01_toy" / "notes.txt").write_text("mine")
    args[-1] = str(stale)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "01_toy, 02_toy, 99_orphan" in err
    assert "01_toy: notes.txt (extra)" in err and "checkpoint" not in err
    assert "02_toy: 02_toy.ipynb (differs)" in err and "99_orphan: no solution" in err


@pytest.mark.skipif(not SOLUTIONS_DIR.is_dir(), reason="no solutions/ in this checkout yet")
def test_committed_lessons_are_up_to_date():
    """The real lessons/ equals nbgrader's release of the real solutions/ (CI gate)."""
    result = subprocess.run([sys.executable, "-m", "autograde", "release", "--check"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in LESSONS_DIR.iterdir() if p.is_dir()) == lesson_names()


def _ulps(tensor, steps: int):
    """``tensor`` moved ``steps`` float32 ulps away from zero: what another CPU's rounding does."""
    import torch

    moved = tensor.clone()
    for _ in range(steps):
        moved = torch.nextafter(moved, moved.sign() * float("inf"))
    return moved


def test_fixtures_are_checked_by_value(tmp_path):
    """release --check compares fixtures as the visible tests compare: a value changed beyond
    the tolerance, a missing or extra fixture, another shape, dtype or key make the lesson
    stale; every float moved by a few ulps (another CPU's rounding) does not."""
    import torch

    from autograde.authoring import fixtures

    folder = tmp_path / "fixtures"
    shutil.copytree(LESSONS_DIR / "05_gpt" / "fixtures", folder)
    assert fixtures.stale("05_gpt", folder) == []
    case = torch.load(folder / "GPT.pt", weights_only=True)
    noise = torch.Generator().manual_seed(0)
    for entry in case["cases"]:
        # a few ulps everywhere, and summation-order noise as large as measured between two
        # CPUs (at most 5.4e-7 on logits of order 1, also where a logit is near 0)
        logits = _ulps(entry["logits"], 4)
        entry["logits"] = logits + 5.4e-7 * (2 * torch.rand(logits.shape, generator=noise) - 1)
    torch.save(case, folder / "GPT.pt")
    assert fixtures.stale("05_gpt", folder) == []

    case["cases"][0]["logits"][0, 0, :5] += 0.01  # a visible test would see this
    torch.save(case, folder / "GPT.pt")
    block = torch.load(folder / "Block.pt", weights_only=True)
    block["out"] = block["out"].double()
    torch.save(block, folder / "Block.pt")
    mlp = torch.load(folder / "MLP.pt", weights_only=True)
    mlp["renamed"] = mlp.pop(next(iter(mlp)))
    torch.save(mlp, folder / "MLP.pt")
    (folder / "LayerNorm.pt").unlink()
    (folder / "old.pt").write_bytes((folder / "count_parameters.pt").read_bytes())
    assert fixtures.stale("05_gpt", folder) == [
        "old (extra)", "Block (differs)", "GPT (differs)", "LayerNorm (missing)",
        "MLP (differs)"]


@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_release_with_other_rounding_leaves_the_committed_lessons_unchanged(tmp_path, threads):
    """Another number of threads sums in another order, as another CPU does: the release then
    keeps every committed fixture's bytes, so git stays clean on a machine that did not write
    the lessons."""
    copy = tmp_path / "lessons"
    shutil.copytree(LESSONS_DIR, copy)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    result = subprocess.run([sys.executable, "-m", "autograde", "release", "--lessons",
                             str(copy)], cwd=REPO, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _changed(copy, LESSONS_DIR) == []


def _tracked(folder: Path) -> dict:
    """What git tracks under ``folder`` (all its files outside a git checkout): a file another
    test leaves in the real lessons/ meanwhile is not the release's doing."""
    listed = subprocess.run(["git", "ls-files", "-z", "."], cwd=folder, capture_output=True)
    if listed.returncode != 0:
        return _files(folder)
    names = [name for name in listed.stdout.decode().split("\0") if name]
    return {Path(name): (folder / name).read_bytes() for name in sorted(names)}


def _changed(folder: Path, committed: Path) -> list[str]:
    """The files of ``folder`` whose bytes differ from ``committed``'s, each with what differs:
    a missing or extra file, a notebook, or a fixture (equal by value or not, and its keys
    that differ), so that a failure on another machine says where to look."""
    from autograde.authoring import fixtures

    ours, theirs = _files(folder), _tracked(committed)
    changed = [f"{path} (extra)" for path in sorted(ours.keys() - theirs.keys())]
    changed += [f"{path} (missing)" for path in sorted(theirs.keys() - ours.keys())]
    for path in sorted(ours.keys() & theirs.keys()):
        if ours[path] == theirs[path]:
            continue
        if path.suffix != ".pt":
            changed.append(f"{path} (bytes)")
            continue
        new, old = (fixtures._load(root / path) for root in (folder, committed))
        keys = [key for key in old if key not in new or not fixtures.same(new[key], old[key])]
        verdict = (f"differs in {', '.join(map(str, keys))}: {_first_difference(new, old)}"
                   if keys else "equal, bytes not kept")
        changed.append(f"{path} (by value: {verdict})")
    return changed


def _first_difference(new, old, where: str = "") -> str:
    """Where two fixture contents first differ beyond fixtures.same, and by how much."""
    import torch

    from autograde.authoring import fixtures

    if isinstance(old, dict) and isinstance(new, dict):
        for key in old:
            if key not in new or not fixtures.same(new[key], old[key]):
                return _first_difference(new.get(key), old[key], f"{where}[{key!r}]")
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and len(new) == len(old):
        for index, (a, b) in enumerate(zip(new, old)):
            if not fixtures.same(a, b):
                return _first_difference(a, b, f"{where}[{index}]")
    if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor) \
            and new.shape == old.shape and old.is_floating_point():
        gap = (new.double() - old.double()).norm().item()
        return (f"{where}: relative error {gap / max(old.double().norm().item(), 1e-30):.3g} "
                f"(dtype {new.dtype}, shape {tuple(old.shape)})")
    return f"{where}: {str(new)[:200]!r} against {str(old)[:200]!r}"
