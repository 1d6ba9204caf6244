"""Practice cases: the grader's own verdict on a student's solution, before grading.

``autograde check`` judges every question of a course lesson as grading does (the grader's run
of the student's solution cells in a sandbox of its own, the same question code, the same
comparison: :class:`autograde.sandbox.verdict.Verdict`), on cases that are not the grader's: grading
draws new ones, from a seed it keeps, for every submission.

In the repository the reference is at hand, so the cases are drawn fresh for every check. A
student kit holds no reference for the lessons not yet due, so ``student-kit`` draws one set
per question when it builds the kit (a seed of its own) and stores the inputs with the
reference's outputs in ``autograde/practice/NN_slug/NAME.pt``. Those outputs give away no code,
and knowing them earns nothing at grading, which never uses them.
"""

from __future__ import annotations

import contextlib
import io
import secrets
from pathlib import Path

import torch

from autograde.paths import AUTOGRADE_DIR
from autograde.sandbox.verdict import draw_cases

PRACTICE_DIR = AUTOGRADE_DIR / "practice"   # a kit's, written by student-kit


def write_practice(lesson: str, folder: Path = PRACTICE_DIR, seed: int | None = None) -> int:
    """Draw and solve a set of cases for every question of ``lesson`` into
    ``folder/lesson/``; returns how many questions."""
    seed = secrets.randbits(63) if seed is None else seed
    drawn = _quiet_draw(lesson, seed)
    target = Path(folder) / lesson
    target.mkdir(parents=True, exist_ok=True)
    for name, solved in drawn.items():
        torch.save(solved, target / f"{name}.pt")
    return len(drawn)


def stored_practice(lesson: str, folder: Path = PRACTICE_DIR) -> list[Path]:
    """The stored practice files of ``lesson`` (a kit's), none in the repository."""
    return sorted((Path(folder) / lesson).glob("*.pt"))


def practice_cases(lesson: str, folder: Path = PRACTICE_DIR) -> dict[str, dict]:
    """The practice cases of ``lesson``: the stored set in a kit, else drawn fresh (the
    repository has the reference)."""
    stored = stored_practice(lesson, folder)
    if not stored:
        return _quiet_draw(lesson, secrets.randbits(63))
    return {path.stem: torch.load(path, map_location="cpu", weights_only=True)
            for path in stored}


def _quiet_draw(lesson: str, seed: int) -> dict[str, dict]:
    """:func:`draw_cases` without the reference's progress bars on the student's terminal."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return draw_cases(lesson, seed)
