"""What a batch writes besides nbgrader's grades.csv: scores.json, summary.md, summary.png
and report.md.

All of them are made from one source (:mod:`autograde.batch.results`): every submission in the
gradebook, with the scores the gradebook holds (an instructor's override included).

* ``scores.json``: ``{student: {lesson: {grade_id: {"score", "max_score", "error", "limits",
  "autograded", "manual", "needs_grading"[, "override"]}}}}``: ``error`` is the failing test's
  message or the limit the submission hit (None when passed), ``limits`` every limit that
  notebook hit, ``autograded`` the grader's own score, ``override`` the instructor's (points,
  why, by, when); a hand-graded question ``needs_grading`` until it is graded.
* ``summary.md``: per question, the mean score, the pass rate and the most common failure
  messages (numbers masked, so that the same failure with different values counts once).
* ``summary.png``: a histogram of the students' total scores and the pass rate per question.
* ``report.md``: how kernels were isolated, the questions waiting for a hand grade, then per
  student and lesson the score, overrides, the limits hit (naming the cell), problems with
  the submission, and the static-scan flags; last every override and changed regrade.

Every text in the Markdown files that may quote a student (failure messages, file names,
flags, problems) enters through :func:`autograde.batch.markup.markdown_text`: as text, never as
HTML or a link.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from autograde.batch.markup import markdown_text
from autograde.batch.state import Run
from autograde.integrity.scan import POLICY_KINDS
from autograde.sandbox.launcher import UNSAFE_BANNER

TOP_FAILURES = 3


@dataclass
class ReportInput:
    """What the outputs are made of (:func:`autograde.batch.results.write_outputs`): every graded
    submission's answer, with the gradebook's scores, and what the last run said (``run``,
    :class:`autograde.batch.state.Run`; its failures joined by the outputs' own)."""

    out: Path
    answers: dict
    run: Run
    failures: list[str] = field(default_factory=list)
    sections: dict[str, list[str]] = field(default_factory=dict)
    late: dict = field(default_factory=dict)       # (student, lesson) -> (final, penalty %)
    history: list[dict] = field(default_factory=list)


def scores_table(answers: dict, students: list[str], lessons: list[str]) -> dict:
    """``scores.json``'s content: each question's entry, with the limits its notebook hit."""
    table: dict = {}
    for student in students:
        for lesson in lessons:
            answer = answers.get((student, lesson))
            if answer is not None:
                limits = [hit.get("message", "") for hit in answer.limits]
                table.setdefault(student, {})[lesson] = {
                    grade_id: {**entry, "limits": limits}
                    for grade_id, entry in answer.scores.items()}
    return table


def failure_key(message: str) -> str:
    """A failure message reduced to what repeats across students: its first line, numbers
    masked (seeds, values, indices)."""
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    # a number standing alone; digits inside a name (02_data.ipynb, test_k2) are the name
    return re.sub(r"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?(?![\w])", "#", first)[:200]


def question_summary(table: dict) -> list[dict]:
    """Per (lesson, grade_id): count, mean score, max score, pass rate, top failures."""
    rows: dict[tuple[str, str], dict] = {}
    for per_lesson in table.values():
        for lesson, questions in per_lesson.items():
            for grade_id, entry in questions.items():
                row = rows.setdefault((lesson, grade_id), {
                    "lesson": lesson, "grade_id": grade_id, "max_score": entry["max_score"],
                    "scores": [], "failures": Counter(), "waiting": 0})
                if entry.get("needs_grading"):  # no score yet: not a 0
                    row["waiting"] += 1
                    continue
                row["scores"].append(entry["score"])
                if entry["score"] < entry["max_score"]:
                    row["failures"][failure_key(entry.get("error") or "")] += 1
    summary = []
    for (_lesson, _grade_id), row in sorted(rows.items()):
        scores = row["scores"]
        summary.append({
            "lesson": row["lesson"], "grade_id": row["grade_id"], "n": len(scores),
            "max_score": row["max_score"], "needs_grading": row["waiting"],
            "mean": sum(scores) / len(scores) if scores else 0.0,
            "pass_rate": sum(s >= row["max_score"] for s in scores) / len(scores)
            if scores else 0.0,
            "top_failures": row["failures"].most_common(TOP_FAILURES)})
    return summary


def _md_cell(text: str) -> str:
    return markdown_text(text, one_line=True)


def _md_line(text) -> str:
    """The first line of ``text``, as Markdown text."""
    lines = str(text).strip().splitlines()
    return markdown_text(lines[0] if lines else "")


def write_summary_md(path: Path, summary: list[dict], table: dict, isolation: str) -> None:
    lines = ["# Grading summary", "", f"Students: {len(table)}. Isolation: {isolation}", "",
             "| lesson | question | points | mean | pass rate | most common failures |",
             "|---|---|---|---|---|---|"]
    for row in summary:
        failures = "; ".join(f"{count}x {_md_cell(key)}" for key, count in row["top_failures"])
        if row.get("needs_grading"):
            failures = "; ".join(filter(None, [f"{row['needs_grading']} need grading "
                                               "(not counted)", failures]))
        lines.append(f"| {row['lesson']} | {row['grade_id']} | {row['max_score']:g} | "
                     f"{row['mean']:.2f} | {100 * row['pass_rate']:.0f}% | {failures or '-'} |")
    path.write_text("\n".join(lines) + "\n")


def write_summary_png(path: Path, summary: list[dict], table: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = []
    for per_lesson in table.values():
        score = sum(e["score"] for q in per_lesson.values() for e in q.values())
        maximum = sum(e["max_score"] for q in per_lesson.values() for e in q.values())
        totals.append(100 * score / maximum if maximum else 0.0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.hist(totals, bins=range(0, 105, 5), color="tab:blue", edgecolor="white")
    left.set_xlabel("total score (% of the maximum)")
    left.set_ylabel("students")
    left.yaxis.get_major_locator().set_params(integer=True)
    left.set_title(f"Scores of {len(totals)} students")
    labels = [f"{row['lesson'][:2]} {row['grade_id']}" for row in summary]
    right.barh(range(len(summary)), [100 * row["pass_rate"] for row in summary],
               color="tab:green")
    right.set_yticks(range(len(summary)), labels, fontsize=7)
    right.invert_yaxis()
    right.set_xlim(0, 100)
    right.set_xlabel("pass rate (%)")
    right.set_title("Questions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report_md(path: Path, result: ReportInput, students: list[str],
                    lessons: list[str]) -> None:

    policy = result.run.copied
    rule = ("a question whose code uses the reference (imports or calls a graded name "
            "from nanolm_lib, checks.reference, importlib, getattr, inspect), copies it "
            "(the same code after normalising names, comments, docstrings, strings and "
            "formatting) or breaks its policy (a call it may not make or must make, or a name "
            "computed at run time) ")
    rule += ("scores 0 (grade --copied zero)" if policy == "zero"
             else "is flagged below, its points unchanged (grade --copied flag)")

    banner = [f"**{UNSAFE_BANNER}**", ""] if result.run.isolation == UNSAFE_BANNER else []
    lines = banner + ["# Grading report", "", f"Isolation: {result.run.isolation}", "",
             f"Copy policy: {rule}.", "",
             f"Graded in this run: {result.run.graded}; unchanged since an earlier run: "
             f"{result.run.skipped}.", ""]
    if result.failures:
        lines += ["## The grader could not grade", ""]
        lines += [f"- {_md_line(failure)}" for failure in result.failures] + [""]
    not_graded = result.run.not_graded
    if not_graded:
        lines += [f"## Files of the download that were not graded ({len(not_graded)})", ""]
        lines += [f"- {_md_line(why)}" for why in not_graded] + [""]
    if result.run.notes:
        lines += ["## Notes", ""] + [f"- {_md_line(note)}" for note in result.run.notes] + [""]
    waiting = [(student, lesson, gid) for (student, lesson), answer in
               sorted(result.answers.items())
               for gid, e in answer.scores.items() if e.get("needs_grading")]
    if waiting:
        lines += [f"## Needs grading by hand ({len(waiting)})", "",
                  "Not counted in any score until graded: `python -m autograde override "
                  "STUDENT LESSON QUESTION POINTS --why TEXT` (or `python -m autograde review`).",
                  ""]
        lines += [f"- {_md_line(s)} / {lesson} / {gid}" for s, lesson, gid in waiting] + [""]
    for heading, section in result.sections.items():
        lines += [f"## {heading}", ""] + section + [""]
    lines += ["## Overrides and regrades", ""] + (
        [history_line(event) for event in result.history] or ["(none)"]) + [""]
    lines += ["## Submissions", ""]
    for student in students:
        for lesson in lessons:
            answer = result.answers.get((student, lesson))
            if answer is None:
                continue
            score = sum(e["score"] for e in answer.scores.values())
            maximum = sum(e["max_score"] for e in answer.scores.values())
            waiting = [gid for gid, e in answer.scores.items() if e.get("needs_grading")]
            notes = ([f"needs grading: {', '.join(waiting)} (graded by hand: python -m "
                      f"autograde override {_md_line(student)} {lesson} QUESTION POINTS "
                      "--why ...)"] if waiting else [])
            notes += [f"override: {gid} {_points(e['autograded'])} -> "
                      f"{e['override']['points']:g} / {e['max_score']:g} by "
                      f"{_md_line(e['override']['by'])}, {e['override']['when']}: "
                      f"{_md_line(e['override']['why'])}"
                      if not e.get("manual") else
                      f"graded by hand: {gid} {e['override']['points']:g} / "
                      f"{e['max_score']:g} by {_md_line(e['override']['by'])}, "
                      f"{e['override']['when']}: {_md_line(e['override']['why'])}"
                      for gid, e in answer.scores.items() if e.get("override")]
            notes += ([f"limit: {_md_line(hit['message'])}" for hit in answer.limits]
                     + [f"problem: {_md_line(p)}" for p in answer.problems]
                     + [f"flag ({_md_line(f['kind'])}) in {_md_line(f['grade_id'])}, "
                        + (f"code cell {_md_line(f['cell'])}, " if f.get("cell") else "")
                        + f"line {_md_line(f['line'])}: {_md_line(f['message'])}"
                        + (" -> question scored 0" if policy == "zero"
                           and f["kind"] in POLICY_KINDS
                           and f"test_{f['grade_id']}" in answer.scores else "")
                        for f in answer.flags])
            late = result.late.get((student, lesson))
            after = (f" (raw; {late[0]:g} after a {late[1]:g}% late penalty)" if late else "")
            pending = (f", {sum(answer.scores[g]['max_score'] for g in waiting):g} points "
                       "need grading" if waiting else "")
            lines.append(f"- **{_md_line(student)} / {lesson}**: {score:g} / {maximum:g}"
                         f"{after}{pending}")
            lines += [f"  - {note}" for note in notes]
    path.write_text("\n".join(lines) + "\n")


def _points(value) -> str:
    return "(needs grading)" if value is None else f"{value:g}"


def history_line(event: dict) -> str:
    """One event of ``history.jsonl`` (:mod:`autograde.batch.overrides`) as a line of report.md."""
    return (f"- {event['when']} {_md_line(event['student'])} / {event['lesson']} / "
            f"{_md_line(event['question'])}: {_points(event['old'])} -> "
            f"{_points(event['new'])} ({event['kind']} by {_md_line(event['by'])}: "
            f"{_md_line(event['why'])})")


def write_outputs(result: ReportInput, students: list[str], lessons: list[str]) -> None:
    """Write scores.json, summary.md, summary.png and report.md into ``result.out``."""
    out = Path(result.out)
    table = scores_table(result.answers, students, lessons)
    (out / "scores.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    summary = question_summary(table)
    write_summary_md(out / "summary.md", summary, table, result.run.isolation)
    write_summary_png(out / "summary.png", summary, table)
    write_report_md(out / "report.md", result, students, lessons)
