"""Where the course's folders are. Nothing here imports more than ``pathlib``: the sandbox
launcher, which starts once per graded notebook, needs these paths, and importing
:mod:`autograde.course` (nbformat, nbgrader, SQLAlchemy) cost it about 3.5 s each time."""

from __future__ import annotations

from pathlib import Path

AUTOGRADE_DIR = Path(__file__).resolve().parent   # this package, in the repository or a kit
REPO = AUTOGRADE_DIR.parent
SOLUTIONS_DIR = REPO / "solutions"
LESSONS_DIR = REPO / "lessons"
