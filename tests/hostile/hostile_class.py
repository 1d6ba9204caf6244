"""The hostile suite's toy class (one honest, one blank student) that attackers join, and the
fingerprints of what must not change (the fixtures are in conftest.py).

Each attack is a student of the same batch (the class pays one start-up for all of them);
after the batch the tests assert the attacker scored 0 or was refused with a reason, the
honest student kept full marks, nothing outside the sandbox changed, and the batch finished.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from autograde_toy import write_submission, write_toy_solutions

from autograde.authoring.release import release
from autograde.sandbox.kernel import Limits
from autograde.sandbox.launcher import bwrap_path

REPO = Path(__file__).resolve().parents[2]
GOOD_ADD = "def add(a, b):\n    return a + b"
GOOD_SCALE = "def scale(x, factor):\n    return [v * factor for v in x]"
# limits far beyond what the attacks need to be caught by the limit under test (memory and
# processes well within a cell's time, which is well within the notebook's), whatever the load
LIMITS = Limits(cell_timeout_s=30, notebook_timeout_s=240, memory_mb=1500,
                output_bytes=1_000_000, notebook_output_bytes=5_000_000, max_processes=40)

needs_bwrap = pytest.mark.skipif(not bwrap_path(), reason="bubblewrap is not installed")


def tree_digest(folder: Path) -> str:
    """sha256 over names and bytes of the regular files under ``folder`` (nothing followed)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink()
                       and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class ToyClass:
    """Solutions, released lessons, a submissions folder with alice (the solutions) and bob
    (the released notebook, untouched)."""

    def __init__(self, root: Path):
        self.root = root
        self.solutions = write_toy_solutions(root / "solutions")
        self.lessons = root / "lessons"
        release(self.lessons, self.solutions)
        self.subs = root / "submissions"
        self.subs.mkdir()
        self.add("alice", solutions=True)
        self.add("bob")
        self.canary = root / "canary.txt"
        self.canary.write_text("canary")

    def add(self, student: str, sources: dict | None = None, solutions: bool = False,
            lesson: str = "01_toy") -> Path:
        return write_submission(self.lessons, self.subs, student, lesson, sources,
                                solutions_dir=self.solutions if solutions else None)


def total(scores: dict, student: str, lesson: str = "01_toy") -> float:
    return sum(entry["score"] for entry in scores[student][lesson].values())


def read_scores(out: Path) -> dict:
    return json.loads((out / "scores.json").read_text())
