"""What the review tests share: a toy course with a written answer graded by hand, the
instructor's command line, and readers of the outputs that must agree."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from autograde_toy import (
    TOY_LESSONS,
    locked_cell,
    solution_cell,
    write_toy_solutions,
    written_answer,
)
from autograde_toy import test_cell as grade_cell

from autograde.__main__ import main
from autograde.authoring.release import release


def review_course(root: Path) -> tuple[Path, Path]:
    """Toy lesson 01 with a written answer ``explain`` (2 points, by hand), and a second
    lesson as small (no torch: the cell limit stays short). Returns (solutions, lessons)."""
    lessons = {"01_toy": TOY_LESSONS["01_toy"] + [written_answer(
        "explain", "Why does `add` need no loop?", "Because + adds two numbers.")],
        "02_more": [locked_cell("setup", "import math"),
                    solution_cell("double", "def double(x):\n    ### BEGIN SOLUTION\n"
                                            "    return 2 * x\n    ### END SOLUTION"),
                    grade_cell("test_double", "assert double(2) == 4, 'double(2)'", points=2)]}
    solutions = write_toy_solutions(root / "solutions", lessons)
    release(root / "lessons", solutions)
    return solutions, root / "lessons"


def autograde(capsys, *args: str) -> tuple[int, str, str]:
    """``python -m autograde ARGS`` as the instructor types it: (exit status, stdout,
    stderr)."""
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def grades_csv(out: Path) -> dict[tuple[str, str], dict]:
    with open(out / "grades.csv") as handle:
        return {(row["student_id"], row["assignment"]): row for row in csv.DictReader(handle)}


def report_scores(out: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """(score, max) of every submission line of report.md."""
    found = re.findall(r"^- \*\*(\S+) / (\S+)\*\*: ([\d.]+) / ([\d.]+)",
                       (out / "report.md").read_text(), flags=re.M)
    return {(s, lesson): (float(a), float(b)) for s, lesson, a, b in found}


def assert_outputs_agree(out: Path) -> None:
    """grades.csv, report.md and scores.json give every submission the same score."""
    rows = grades_csv(out)
    reported = report_scores(out)
    scores = json.loads((out / "scores.json").read_text())
    table = {(s, lesson): (sum(e["score"] for e in q.values()),
                           sum(e["max_score"] for e in q.values()))
             for s, per in scores.items() for lesson, q in per.items()}
    assert set(rows) == set(reported) == set(table), (set(rows), set(reported), set(table))
    for key, row in rows.items():
        assert (float(row["raw_score"]), float(row["max_score"])) == reported[key] == \
            pytest.approx(table[key]), key
