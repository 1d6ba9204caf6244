"""Reports that always agree, overrides and hand grades, on real graded batches.

The toy course (two lessons, one with a written answer graded by hand) is graded by nbgrader
in the sandbox as a class is; overrides run as ``python -m autograde override`` as the
instructor types it. Then grades.csv, scores.json, report.md, summary.md, lms/ and the
feedback must say the same, whatever was graded in which run. One lesson-01 batch checks
that a limit names the cell and the feedback names each question on a real lesson.
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
from pathlib import Path

import pytest
from autograde_toy import add_cell, independent_answers, write_submission
from graded_outputs import (
    assert_outputs_agree,
    autograde,
    grades_csv,
    report_scores,
    review_course,
)

from autograde.batch.grade import grade_batch
from autograde.sandbox.kernel import Limits

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

REPO = Path(__file__).resolve().parents[2]
LIMITS = Limits(cell_timeout_s=5, notebook_timeout_s=120, memory_mb=1500)
GOOD_ADD = "def add(a, b):\n    return a + b"
LOOP = "while True:\n    pass"


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Ann (the solutions), Bob (add only) and Lou (add loops forever): lesson 01 graded in one
    run, lesson 02 later in a run of its own, as `--lessons` does."""
    root = tmp_path_factory.mktemp("review")
    solutions, lessons = review_course(root)
    subs = root / "submissions"
    write_submission(lessons, subs, "ann", "01_toy", solutions_dir=solutions)
    write_submission(lessons, subs, "bob", "01_toy", {"add": GOOD_ADD})
    write_submission(lessons, subs, "lou", "01_toy", {"add": LOOP})
    write_submission(lessons, subs, "ann", "02_more", solutions_dir=solutions)
    out = root / "out"
    first = grade_batch(subs, out, workers=2, limits=LIMITS, solutions_dir=solutions,
                        lessons=["01_toy"], show_progress=False)
    assert first.ok and first.graded == 3, first.failures
    second = grade_batch(subs, out, limits=LIMITS, solutions_dir=solutions,
                         lessons=["02_more"], show_progress=False)
    assert second.ok and second.graded == 3 and second.skipped == 0, second.failures
    return root, solutions, subs, out


def test_a_run_of_one_lesson_keeps_the_others_in_every_output(batch):
    _, _, _, out = batch
    scores = json.loads((out / "scores.json").read_text())
    assert sorted(scores["ann"]) == ["01_toy", "02_more"]
    summary = (out / "summary.md").read_text()
    assert "| 01_toy | test_add |" in summary and "| 02_more | test_double |" in summary
    assert ("ann", "01_toy") in report_scores(out) and ("ann", "02_more") in report_scores(out)
    assert_outputs_agree(out)


def test_a_batch_of_one_student_keeps_the_class(batch, tmp_path):
    root, solutions, subs, out = batch
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    alone = tmp_path / "alone"
    shutil.copytree(subs / "bob", alone / "bob")
    result = grade_batch(alone, copy, limits=LIMITS, solutions_dir=solutions,
                         lessons=["01_toy"], show_progress=False)
    assert result.skipped == 1 and result.graded == 0
    assert set(report_scores(copy)) == set(report_scores(out))
    assert_outputs_agree(copy)


def test_a_hand_graded_answer_needs_grading_everywhere(batch):
    _, _, _, out = batch
    row = grades_csv(out)[("ann", "01_toy")]
    assert row["needs_grading"] == "explain" and float(row["max_score"]) == 5.0
    entry = json.loads((out / "scores.json").read_text())["ann"]["01_toy"]["explain"]
    assert entry["needs_grading"] and entry["manual"] and entry["score"] == 0
    report = (out / "report.md").read_text()
    assert "## Needs grading by hand (3)" in report and "- ann / 01_toy / explain" in report
    assert "**ann / 01_toy**: 3 / 5, 2 points need grading" in report
    assert "| 01_toy | explain | 2 | 0.00 | 0% | 3 need grading (not counted) |" in \
        (out / "summary.md").read_text()
    feedback = (out / "feedback" / "ann" / "01_toy.html").read_text()
    assert "Needs grading by hand: this answer is not counted in the score yet." in feedback


def test_a_limit_names_the_cell_in_the_report_scores_and_feedback(batch):
    _, _, _, out = batch
    named = "code cell 2 (solution cell add) ran longer than the per-cell limit of 5 s"
    assert named in (out / "report.md").read_text()
    entry = json.loads((out / "scores.json").read_text())["lou"]["01_toy"]["test_add"]
    assert any(named in message for message in entry["limits"]), entry
    feedback = (out / "feedback" / "lou" / "01_toy.html").read_text()
    assert named in feedback and "No reply from kernel" not in feedback


def test_the_feedback_contents_name_each_question(batch):
    _, _, _, out = batch
    feedback = (out / "feedback" / "bob" / "01_toy.html").read_text()
    contents = feedback[feedback.index('<div id="toc">'):feedback.index("</ol>")]
    assert "<code>add</code>: test</a> (Score: 1.0 / 1.0)" in contents
    assert "<code>scale</code>: test</a> (Score: 0.0 / 2.0)" in contents
    assert "<code>explain</code>: your answer, graded by hand" in contents
    assert ">Test cell<" not in contents


def test_overrides_reach_every_output_and_stand_through_regrades(batch, tmp_path, capsys):
    root, solutions, subs, out = batch
    out = shutil.copytree(out, tmp_path / "out")
    status, said, err = autograde(capsys, "override", "bob", "01_toy", "scale", "1.5", "--why",
                                  "right idea, off by one", "--by", "ta-kim", "--out", str(out))
    assert status == 0, err
    assert "bob/01_toy test_scale: 0 -> 1.5 / 2 (override by ta-kim)" in said
    status, _, err = autograde(capsys, "override", "bob", "01_toy", "explain", "2", "--why",
                               "clear", "--out", str(out))
    assert status == 0, err

    row = grades_csv(out)[("bob", "01_toy")]
    assert float(row["score"]) == 4.5 and row["needs_grading"] == ""
    entry = json.loads((out / "scores.json").read_text())["bob"]["01_toy"]["test_scale"]
    assert entry["score"] == 1.5 and entry["autograded"] == 0
    assert entry["override"]["why"] == "right idea, off by one"
    report = (out / "report.md").read_text()
    assert "**bob / 01_toy**: 4.5 / 5" in report
    assert re.search(r"^- \S+ bob / 01_toy / test_scale: 0 -> 1\.5 \(override by ta-kim: "
                     r"right idea, off by one\)$", report, flags=re.M), report
    assert re.search(r"bob / 01_toy / explain: \(needs grading\) -> 2 \(hand grade by ", report)
    with open(out / "lms" / "scores_by_student.csv") as handle:
        wide = {r["lms_id"]: r for r in csv.DictReader(handle)}
    assert wide["bob"]["01_toy"] == "4.5" and wide["bob"]["01_toy needs grading"] == ""
    assert wide["ann"]["01_toy needs grading"] == "explain"  # not graded by hand yet
    with open(out / "lms" / "canvas_grades.csv") as handle:
        canvas = {r["ID"]: r for r in csv.DictReader(handle)}
    column = next(name for name in canvas["bob"] if name.startswith("01"))
    # a partial score is not published: ann's lesson waits for its hand grade
    assert canvas["bob"][column] == "4.5" and canvas["ann"][column] == "", canvas
    feedback = (out / "feedback" / "bob" / "01_toy.html").read_text()
    assert "(Score: 4.5 / 5.0)" in feedback and "right idea, off by one" in feedback
    assert_outputs_agree(out)

    # unchanged work regraded: the overrides stand, nothing is logged
    again = grade_batch(subs, out, limits=LIMITS, solutions_dir=solutions, show_progress=False)
    assert again.graded == 0 and float(grades_csv(out)[("bob", "01_toy")]["score"]) == 4.5
    # changed work: the new autograded score is logged, the override still stands
    write_submission(root / "lessons", subs, "bob", "01_toy",
                     {"add": "def add(a, b):\n    return 0"})
    changed = grade_batch(subs, out, limits=LIMITS, solutions_dir=solutions,
                          lessons=["01_toy"], show_progress=False)
    assert changed.graded == 1, changed.failures
    report = (out / "report.md").read_text()
    assert re.search(r"bob / 01_toy / test_add: 1 -> 0 \(regrade by \S+: regraded", report)
    assert float(grades_csv(out)[("bob", "01_toy")]["score"]) == 3.5  # 0 + 1.5 + 2
    assert_outputs_agree(out)

    status, _, err = autograde(capsys, "override", "bob", "01_toy", "test_scale", "--remove",
                               "--why", "regraded by the rubric", "--out", str(out))
    assert status == 0, err
    assert float(grades_csv(out)[("bob", "01_toy")]["score"]) == 2.0
    assert "bob / 01_toy / test_scale: 1.5 -> 0 (override removed" in \
        (out / "report.md").read_text()
    assert_outputs_agree(out)


@pytest.mark.parametrize("args, says", [
    (["bob", "01_toy", "nosuch", "1"], "bob/01_toy has no question 'nosuch'; its questions: "
                                       "explain, test_add, test_scale"),
    (["bob", "01_toy", "scale", "3"], "POINTS 3.0: bob/01_toy test_scale takes 0 to 2 points"),
    (["zed", "01_toy", "add", "1"], "no graded submission zed/01_toy"),
    (["bob", "01_toy", "add", "--remove"], "bob/01_toy test_add has no override to remove"),
])
def test_a_wrong_override_names_the_input_and_changes_nothing(batch, args, says, capsys):
    _, _, _, out = batch
    before = (out / "grades.csv").read_bytes()
    status, _, err = autograde(capsys, "override", *args, "--why", "x", "--out", str(out))
    assert status == 2 and says in err, err
    assert (out / "grades.csv").read_bytes() == before


def test_a_real_lesson_names_the_timed_out_cell_and_each_question(tmp_path, capsys):
    """Lesson 01 as a student hands it in: honest answers, and a cell of their own at the end
    that never ends."""
    folder = write_submission(REPO / "lessons", tmp_path / "subs", "kim", "01_tokenizer",
                              independent_answers("01_tokenizer"))
    add_cell(folder / "01_tokenizer.ipynb", "while True:  # wait for the plot\n    pass")
    out = tmp_path / "out"
    result = grade_batch(tmp_path / "subs", out, limits=Limits(cell_timeout_s=20,
                                                               notebook_timeout_s=300),
                         show_progress=False)
    assert result.ok, result.failures
    named = re.compile(r"code cell \d+ \('while True:  # wait for the plot'\) ran longer than "
                       r"the per-cell limit of 20 s")
    assert named.search((out / "report.md").read_text())
    feedback = (out / "feedback" / "kim" / "01_tokenizer.html").read_text()
    assert named.search(html.unescape(feedback)) and "No reply from kernel" not in feedback
    contents = feedback[feedback.index('<div id="toc">'):feedback.index("</ol>")]
    for question in ("get_pair_counts", "merge_pair", "train_bpe", "encode", "decode"):
        assert f"<code>{question}</code>: test</a>" in contents, question
    status, _, err = autograde(capsys, "override", "kim", "01_tokenizer", "train_bpe", "1",
                               "--why", "the loop is a typo", "--out", str(out))
    assert status == 0, err
    assert report_scores(out)[("kim", "01_tokenizer")][0] == float(
        grades_csv(out)[("kim", "01_tokenizer")]["score"])
    assert_outputs_agree(out)
