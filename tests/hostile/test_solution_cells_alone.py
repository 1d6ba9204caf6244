"""Points come from the grader's own run of the solution cells and from their source.

Four attacks that scored full marks while the kernel ran the hidden cases and wrote the
records (issue rows of the grading round): a naive lesson-04 student who adds a plain cell that
records for itself and forges the records (memory, "uses SDPA"); a lesson-05 student who
pastes the reference LayerNorm and MLP into ordinary cells and leaves the solution cells as
released; lesson 06's train_step through the library's optimize; lesson 01's encode through
the fast tokenizer. One real batch under bubblewrap, beside an honest student (independent
author B's answers, as are the last two attackers' other answers).
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers

from autograde_toy import add_cell, independent_answers, write_submission  # noqa: E402

import nanolm_lib.course.model  # noqa: E402
from autograde.batch.grade import grade_batch  # noqa: E402
from autograde.batch.worker import Limits  # noqa: E402
from autograde.course import LESSONS_DIR  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]
FUSED = "04_fused_attention"
GPT = "05_gpt"
TRAINING, TOKENIZER = "06_training", "01_tokenizer"
THROUGH_OPTIMIZE = ("import nanolm_lib.course.train as t\n"
                    "def train_step(model, optimizer, x, y, grad_clip=1.0):\n"
                    "    return t.optimize(model, optimizer, x, y, grad_clip).item()\n")
THROUGH_FAST_TOKENIZER = ("from nanolm_lib.course.tokenizer import FastTokenizer\n"
                          "def encode(text, merges):\n"
                          "    return FastTokenizer.from_merges(merges, special_tokens=[])"
                          ".encode(text)\n")

# Naive attention in both of lesson 04's answers: right values, a (T, T) tensor, no SDPA.
NAIVE = {
    "fused_attention": "def fused_attention(q, k, v):\n"
                       "    T = q.size(-2)\n"
                       "    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))\n"
                       "    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), "
                       "float('-inf'))\n"
                       "    return torch.softmax(s, -1) @ v\n",
    "flash_attention": "def flash_attention(q, k, v, block_size=64):\n"
                       "    T = q.size(-2)\n"
                       "    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))\n"
                       "    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), "
                       "float('-inf'))\n"
                       "    return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)\n",
}
# A plain cell at the end: it records for itself, then forges every record it can find,
# as the kernel-run hidden cases allowed (the measured properties rewritten to pass).
FORGER = """
import glob, os, torch
import nanolm_lib.grading.record as grading
os.environ.pop("NANOLM_GRADING", None)
for name in ("fused_attention", "flash_attention"):
    try:
        grading.record("04_fused_attention", name, globals())
    except Exception as error:
        print("record:", type(error).__name__)
forged = {"called scaled_dot_product_attention": True, "T=256": 1, "T=1024": 2}
for path in glob.glob("/**/records/**/*.pt", recursive=True):
    try:
        torch.save({"outputs": [forged] * 8}, path)
    except OSError:
        pass
"""


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("alone")
    submissions = root / "submissions"
    write_submission(LESSONS_DIR, submissions, "honest", FUSED, independent_answers(FUSED))
    folder = write_submission(LESSONS_DIR, submissions, "forger", FUSED, NAIVE)
    add_cell(folder / f"{FUSED}.ipynb", FORGER)
    # the reference classes pasted into an ordinary cell; the solution cells as released
    pasted = "\n\n".join(inspect.getsource(getattr(nanolm_lib.course.model, name))
                         for name in ("LayerNorm", "MLP"))
    folder = write_submission(LESSONS_DIR, submissions, "paster", GPT)
    # after the set-up cell, before the first solution cell
    add_cell(folder / f"{GPT}.ipynb", pasted, before=lambda meta: meta.get("solution"))
    write_submission(LESSONS_DIR, submissions, "optimizer", TRAINING,
                     {**independent_answers(TRAINING), "train_step": THROUGH_OPTIMIZE})
    write_submission(LESSONS_DIR, submissions, "fasttokenizer", TOKENIZER,
                     {**independent_answers(TOKENIZER), "encode": THROUGH_FAST_TOKENIZER})
    result = grade_batch(submissions, root / "out", workers=2, show_progress=False,
                         limits=Limits(cell_timeout_s=120, notebook_timeout_s=600))
    return result, json.loads((root / "out" / "scores.json").read_text())


def _score(scores, student, lesson, name):
    return scores[student][lesson][f"test_{name}"]


def test_honest_student_keeps_full_marks(batch):
    result, scores = batch
    assert result.ok, result.failures
    entries = scores["honest"][FUSED]
    assert all(e["score"] == e["max_score"] for e in entries.values()), entries


def test_records_forged_in_the_notebook_earn_nothing(batch):
    _, scores = batch
    for name in NAIVE:
        entry = _score(scores, "forger", FUSED, name)
        assert entry["score"] == 0, entry
    flash = _score(scores, "forger", FUSED, "flash_attention")["error"]
    assert "T = 8,192 within 128 MB" in flash and "can't allocate memory" in flash, flash


def test_reference_pasted_into_ordinary_cells_earns_nothing(batch):
    _, scores = batch
    for name in ("LayerNorm", "MLP"):
        entry = _score(scores, "paster", GPT, name)
        assert entry["score"] == 0, entry
        assert "hidden tests (run by the grader)" in entry["error"], entry


@pytest.mark.parametrize("student, lesson, name, call", [
    ("optimizer", TRAINING, "train_step", "nanolm_lib.course.train.optimize"),
    ("fasttokenizer", TOKENIZER, "encode", "FastTokenizer"),
])
def test_an_answer_through_the_library_scores_zero_and_costs_nothing_else(batch, student,
                                                                          lesson, name, call):
    _, scores = batch
    entry = _score(scores, student, lesson, name)
    assert entry["score"] == 0 and call in entry["error"], entry
    kept = _score(scores, student, lesson, "cross_entropy_loss" if lesson == TRAINING
                  else "get_pair_counts")
    assert kept["score"] == kept["max_score"], kept
