"""A class graded fairly, through one real nbgrader batch: a pasted reference scores zero
and the feedback keeps the hidden tests hidden."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from autograde_toy import write_submission
from pasted_code import pasted_reference

from autograde.__main__ import main
from autograde.batch.grade import grade_batch
from autograde.batch.worker import Limits
from autograde.course import LESSONS_DIR, SOLUTIONS_DIR

pytestmark = pytest.mark.filterwarnings("ignore")


SDPA_IN_A_PLAIN_CELL = """import torch.nn.functional as F

def attention(q, k, v, mask=None):  # redefined in a plain cell, through PyTorch's fused kernel
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), attention_weights(q, k, mask)
"""


def _with_plain_cell_after(folder: Path, lesson: str, grade_id: str, source: str) -> None:
    path = folder / f"{lesson}.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    at = next(i for i, c in enumerate(nb.cells)
              if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source))
    nbformat.write(nb, str(path))


@pytest.mark.slow
def test_pasted_reference_scores_zero_and_feedback_hides_hidden_tests(tmp_path, capsys):
    """One real nbgrader batch: lesson 03 with MultiHeadAttention pasted from the reference;
    the question scores 0, report.md and the feedback say why, the self-check says so before,
    and the feedback holds none of the hidden tests' source. In the same batch, an honest
    student's attention redefined through SDPA in a plain cell breaks lesson 03's policy:
    attention, and MultiHeadAttention which runs it, score 0; the rest stands."""
    from autograde_toy import independent_answers

    import nanolm_lib.course.attention as attention

    fused = write_submission(LESSONS_DIR, tmp_path / "subs", "fused", "03_attention",
                             independent_answers("03_attention"))
    _with_plain_cell_after(fused, "03_attention", "attention", SDPA_IN_A_PLAIN_CELL)
    pasted = pasted_reference(attention, "MultiHeadAttention")
    folder = write_submission(LESSONS_DIR, tmp_path / "subs", "copier", "03_attention",
                              {"MultiHeadAttention": pasted}, solutions_dir=SOLUTIONS_DIR)
    notebook = folder / "03_attention.ipynb"
    # a student's notebook holds the released (visible-only) test cells
    from autograde.student.selfcheck import restore_test_cells
    nb = nbformat.read(str(notebook), as_version=4)
    restore_test_cells(nb, nbformat.read(str(LESSONS_DIR / "03_attention" / "03_attention.ipynb"),
                                         as_version=4))
    nbformat.write(nb, str(notebook))

    assert main(["check", str(notebook)]) == 1
    out = capsys.readouterr().out
    assert "test_MultiHeadAttention  0 / 3  FAILED" in out, out
    assert "this question will score 0 when graded: copied from the reference" in out

    result = grade_batch(tmp_path / "subs", tmp_path / "out", show_progress=False,
                         limits=Limits(cell_timeout_s=300, notebook_timeout_s=600))
    assert result.ok, result.failures
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Similarity" in report and (tmp_path / "out" / "similarity.csv").is_file()
    assert "reference:solutions" in (tmp_path / "out" / "similarity.csv").read_text()
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())["copier"]["03_attention"]
    assert scores["test_MultiHeadAttention"]["score"] == 0
    assert "copied from the reference" in scores["test_MultiHeadAttention"]["error"]
    assert all(entry["score"] == entry["max_score"] for gid, entry in scores.items()
               if gid != "test_MultiHeadAttention"), scores
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Copy policy:" in report and "scores 0 (grade --copied zero)" in report
    assert "flag (copied) in MultiHeadAttention" in report and "question scored 0" in report

    fused_scores = json.loads((tmp_path / "out" / "scores.json").read_text())["fused"][
        "03_attention"]
    for gid, entry in fused_scores.items():
        if gid in ("test_attention", "test_MultiHeadAttention"):
            assert entry["score"] == 0 and "breaks this question's rule" in entry["error"], entry
            assert "scaled_dot_product_attention" in entry["error"], entry
        else:
            assert entry["score"] == entry["max_score"], (gid, entry)
    assert "flag (policy) in attention, code cell" in report

    html = Path(result.answers[("copier", "03_attention")].feedback).read_text()
    assert "copied from the reference" in html  # the comment on the cell
    solution = nbformat.read(str(SOLUTIONS_DIR / "03_attention" / "03_attention.ipynb"),
                             as_version=4)
    for cell in solution.cells:
        if "### BEGIN HIDDEN TESTS" in cell.source:
            hidden = cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN")[0]
            for line in hidden.splitlines():
                line = line.strip()
                if len(line) > 25 and line not in cell.source.split("### BEGIN HIDDEN")[0]:
                    assert html.count(_html_escape(line)) == 0, line
    assert "BEGIN HIDDEN TESTS" not in html


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=False)
