"""One bug costs one question, in a real batch: the grading rows that cost 3-4 times their
question when the hidden cases ran the student's own helpers.

Each student is independent author B's answers with one typical bug from the variant
catalogue (tests/test_autograde_variants.py) in a function that other questions of the lesson
run: a SyntaxError in lesson 01's merge_pair (encode and train_bpe run it), no 1/sqrt(D) in
lesson 03's attention_weights (attention, MultiHeadAttention), a summed loss in lesson 06's
cross_entropy_loss (train_step, evaluate), k + 1 tokens kept by lesson 07's top_k_filter
(sample_next_token, generate). The points lost are that question's, and the feedback of a
question that runs the buggy helper names it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from autograde_toy import independent_answers, write_submission
from test_autograde_variants import BUGS

from autograde.course import LESSONS_DIR
from autograde.grade import grade_batch
from autograde.worker import Limits

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
