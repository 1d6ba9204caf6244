"""What a grading worker answers for one submission, as one type on both ends of the pipe.

The worker (:mod:`autograde.batch.worker`) sends an :class:`Answer` as one JSON line; the batch
(:mod:`autograde.batch.grade`) parses it back with :meth:`Answer.from_json`, keeps it in
``DIR/.state/`` for resumed runs, and the report (:mod:`autograde.batch.report`) reads its fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

# the comment of a hand-graded answer that has no grade yet (the feedback shows it)
NEEDS_GRADING = "Needs grading by hand: this answer is not counted in the score yet."


@dataclass
class Answer:
    """One graded (student, lesson), or why the grader could not grade it."""

    student: str
    lesson: str
    # test grade_id -> {"score", "max_score", "error"}: the grader's verdict per question
    scores: dict[str, dict] = field(default_factory=dict)
    limits: list[dict] = field(default_factory=list)     # limits the kernel hit
    flags: list[dict] = field(default_factory=list)      # static-scan flags
    problems: list[str] = field(default_factory=list)    # repaired metadata, missing notebook...
    feedback: str | None = None                           # the feedback HTML's path
    submission: dict | None = None                        # the worker's gradebook rows
    seconds: float = 0.0
    # where the seconds went: the worker's steps, then the batch's gradebook write
    phases: dict[str, float] = field(default_factory=dict)
    log_tail: str = ""
    grader_error: str | None = None                       # the grader itself failed

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> Answer:
        """The answer in ``data``; keys this version does not know are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @classmethod
    def from_json(cls, text: str) -> Answer:
        return cls.from_dict(json.loads(text))
