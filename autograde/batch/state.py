"""What a batch keeps in ``DIR/.state/``: each submission's answer and what the last run said
(:class:`Run`). The batch writes them; the results, the report, the overrides and the review
read them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autograde.batch.answer import Answer
from autograde.course import GraderError
from nanolm_lib.utils import atomic_write


def state_dir(out: Path) -> Path:
    return Path(out) / ".state"


def state_path(out: Path, student: str, lesson: str) -> Path:
    return state_dir(out) / student / f"{lesson}.json"


def load_answer(out: Path, student: str, lesson: str) -> Answer | None:
    """The grader's answer for one submission as the state keeps it, or None."""
    path = state_path(out, student, lesson)
    try:
        return Answer.from_dict(json.loads(path.read_text())["answer"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_json(path: Path, data) -> None:
    text = json.dumps(data, indent=1, sort_keys=True, default=str) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temp: temp.write_text(text))


@dataclass
class Run:
    """What the last batch said besides the scores (report.md's first sections), and what the
    outputs need to be written again without it (the gradebook's URL, the course file, the LMS,
    the lessons it exported)."""

    db_url: str = ""                 # "": DIR/gradebook.db, wherever DIR is now (gradebook())
    isolation: str = ""
    copied: str = "zero"
    graded: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    not_graded: list[str] = field(default_factory=list)
    similarity: list[str] = field(default_factory=list)   # report lines
    course: str | None = None        # the course file's path
    lms: str = "native"
    lessons: list[str] = field(default_factory=list)      # graded in the run: the LMS exports

    def gradebook(self, out: Path) -> str:
        return self.db_url or default_gradebook(out)

    def save(self, out: Path) -> None:
        write_json(state_dir(out) / "run.json", asdict(self))

    @classmethod
    def load(cls, out: Path) -> Run:
        path = state_dir(out) / "run.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            raise GraderError(f"{out} holds no graded batch ({path} is missing): run "
                              "`python -m autograde grade ... --out DIR` first") from None
        return cls(**{key: value for key, value in data.items()
                      if key in cls.__dataclass_fields__})


def default_gradebook(out: Path) -> str:
    return f"sqlite:///{Path(out).resolve() / 'gradebook.db'}"
