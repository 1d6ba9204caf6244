"""One bug costs one question, in a real batch: the grading rows that cost 3-4 times their
question when the hidden cases ran the student's own helpers.

Each student is independent author B's answers with one typical bug from the variant
catalogue (tests/grading_catalogue.py) in a function that other questions of the lesson
run: a SyntaxError in lesson 01's merge_pair (encode and train_bpe run it), no 1/sqrt(D) in
lesson 03's attention_weights (attention, MultiHeadAttention), a summed loss in lesson 06's
cross_entropy_loss (train_step, evaluate), k + 1 tokens kept by lesson 07's top_k_filter
(sample_next_token, generate). The points lost are that question's, and the feedback of a
question that runs the buggy helper names it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from autograde_toy import independent_answers, write_submission
from grading_catalogue import BUGS

from autograde.batch.grade import grade_batch
from autograde.batch.worker import Limits
from autograde.course import LESSONS_DIR

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]

ONE_BUG = {  # student -> (lesson, the question holding the bug, its source, a question running it)
    "merge_syntax": ("01_tokenizer", "merge_pair",
                     "def merge_pair(ids, pair, new_id):\n    return [new_id for\n", "encode"),
    "weights_scale": ("03_attention", "attention_weights",
                      BUGS[("03_attention", "attention_weights")]["no 1/sqrt(d) scale"],
                      "attention"),
    "loss_sum": ("06_training", "cross_entropy_loss",
                 BUGS[("06_training", "cross_entropy_loss")]["sum instead of mean"],
                 "train_step"),
    "topk_plus1": ("07_sampling", "top_k_filter",
                   BUGS[("07_sampling", "top_k_filter")]["keeps k + 1"], "sample_next_token"),
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("onebug")
    for student, (lesson, name, source, _) in ONE_BUG.items():
        write_submission(LESSONS_DIR, root / "subs", student, lesson,
                         {**independent_answers(lesson), name: source})
    result = grade_batch(root / "subs", root / "out", workers=2, show_progress=False,
                         limits=Limits(cell_timeout_s=120, notebook_timeout_s=600))
    return result, json.loads((root / "out" / "scores.json").read_text())


@pytest.mark.parametrize("student", sorted(ONE_BUG))
def test_points_lost_are_the_buggy_question_s_only(batch, student):
    result, scores = batch
    assert result.ok, result.failures
    lesson, name, _, user = ONE_BUG[student]
    entries = scores[student][lesson]
    assert entries[f"test_{name}"]["score"] == 0, entries[f"test_{name}"]
    answered = {f"test_{grade_id}" for grade_id in independent_answers(lesson)}
    lost = {gid: e for gid, e in entries.items()
            if gid in answered and gid != f"test_{name}" and e["score"] < e["max_score"]}
    assert not lost, lost
    html = Path(result.answers[(student, lesson)].feedback).read_text()
    assert f"your {name} differs" in html, user


@pytest.mark.parametrize("student", ["merge_syntax", "topk_plus1"])
def test_the_self_check_gives_the_grading_s_verdict_before_grading(batch, student, tmp_path):
    """`autograde check` on the same notebook: the grader's own run, staged library, rerun
    and question code on practice cases (not the grader's), so each question's points are
    the batch's, the buggy question's entry says what differs, and a question rescued by the
    rerun says it was judged with the reference's in place of the student's."""
    _, scores = batch
    lesson, name, source, user = ONE_BUG[student]
    folder = write_submission(LESSONS_DIR, tmp_path, student, lesson,
                              {**independent_answers(lesson), name: source})
    done = subprocess.run([sys.executable, "-m", "autograde", "check",
                           str(folder / f"{lesson}.ipynb")], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, "NANOLM_PROGRESS": "0"})
    out = done.stdout
    assert done.returncode == 1 and "as grading would score these cases" in out, out + done.stderr
    entries = dict(re.findall(r"^  (test_\w+) (.*?)(?=^  test_|^total)", out, re.M | re.S))
    assert set(entries) == set(scores[student][lesson]), out
    for grade_id, entry in scores[student][lesson].items():
        assert float(entries[grade_id].split("/")[0]) == entry["score"], (grade_id, out)
    assert "cases differ from the reference" in entries[f"test_{name}"], out
    reruns = [" ".join(entry.split()) for entry in entries.values() if "in place of" in entry]
    assert reruns and all(f"your {name} differs" in entry for entry in reruns), out
