"""A class graded fairly: copying and use of the reference are caught and scored by the stated
policy, the catalogue's genuine alternatives are not, and feedback keeps hidden tests hidden.

The pasted submission is what the issue describes: the reference's source (``inspect``), its
names changed, reformatted, its comments replaced, plus the helper imports it needs.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import json
from pathlib import Path

import nbformat
import pytest
from autograde_toy import INDEPENDENT, independent_cells, write_submission
from test_autograde_variants import ALTERNATIVES, _apply

from autograde.__main__ import main
from autograde.copycheck import load_fingerprints
from autograde.course import LESSONS_DIR, SOLUTIONS_DIR
from autograde.grade import grade_batch
from autograde.scan import scan_cells
from autograde.worker import Limits
from nanolm_lib.curriculum import GRADED

pytestmark = pytest.mark.filterwarnings("ignore")
FINGERPRINTS = load_fingerprints()


class _Rename(ast.NodeTransformer):
    """Give every local name and parameter a new spelling (what a copier does first)."""

    def __init__(self, keep: set[str]):
        self.keep = keep

    def _new(self, name: str) -> str:
        return name if name in self.keep or name == "self" else f"my_{name}"

    def visit_Name(self, node):
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self._new(node.arg)
        return node


def pasted_reference(module, name: str) -> str:
    """The reference's definition of ``name``: renamed, reformatted (``ast.unparse`` drops the
    comments and the layout), new comments, and imports of the module-level helpers it uses."""
    source = inspect.getsource(getattr(module, name))
    tree = ast.parse(source)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    helpers = sorted(n for n in used if hasattr(module, n) and not hasattr(builtins, n)
                     and n not in ("torch", "nn", "F", "math") and n != name
                     and not any(n in names for names in GRADED.values()))
    local = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(helpers)
    keep = set(helpers) | {n for n in local if hasattr(builtins, n)} | {
        "torch", "nn", "F", "math", name} | {n for names in GRADED.values() for n in names}
    code = ast.unparse(_Rename(keep).visit(tree))
    imports = f"from {module.__name__} import {', '.join(helpers)}\n" if helpers else ""
    return (f"{imports}import torch.nn.functional as F\n\n# my own {name}, written tonight\n"
            + code.replace("):\n", "):  # here we go\n", 1) + "\n")


def test_pasted_reference_is_caught_after_renaming_and_reformatting():
    import nanolm_lib.attention as attention
    import nanolm_lib.model as model
    import nanolm_lib.sampling as sampling

    # Block is as long as an independent author's identical Block: reported, not scored
    for module, lesson, name, kind in [
            (attention, "03_attention", "MultiHeadAttention", "copied"),
            (model, "05_gpt", "GPT", "copied"), (model, "05_gpt", "Block", "similar"),
            (sampling, "07_sampling", "generate", "copied")]:
        pasted = pasted_reference(module, name)
        assert inspect.getsource(getattr(module, name)) not in pasted  # it was changed
        flags = scan_cells([(name, pasted)], set(GRADED[lesson]), FINGERPRINTS)
        assert [(f.grade_id, f.kind) for f in flags] == [(name, kind)], (name, flags)


def test_reference_use_by_every_route_is_caught():
    graded = set(GRADED["03_attention"])
    routes = {
        "direct import": "from nanolm_lib.attention import causal_mask\n",
        "module attribute": "import nanolm_lib.attention as a\n"
                            "def causal_mask(T):\n    return a.causal_mask(T)\n",
        "importlib": "import importlib\n"
                     "causal_mask = importlib.import_module('nanolm_lib.attention').causal_mask\n",
        "importlib, then getattr": "import importlib\nm = importlib.import_module("
                                   "'nanolm_lib.attention')\ncausal_mask = getattr(m, "
                                   "'causal_mask')\n",
        "getattr on a module": "from nanolm_lib import attention as m\n"
                               "causal_mask = getattr(m, 'causal_mask')\n",
        "checks.reference": "from nanolm_lib.checks import reference\n"
                            "causal_mask = reference('attention').causal_mask\n",
        "inspect": "import inspect\nimport nanolm_lib.attention as a\n"
                   "exec(inspect.getsource(a.causal_mask))\n",
    }
    for route, source in routes.items():
        kinds = {f.kind for f in scan_cells([("causal_mask", source)], graded, FINGERPRINTS)}
        assert "reference-use" in kinds, route


@pytest.mark.parametrize("lesson, grade_id, label", [
    (lesson, grade_id, label) for (lesson, grade_id), variants in ALTERNATIVES.items()
    for label in variants])
def test_catalogue_alternatives_are_not_flagged(lesson, grade_id, label):
    source = _apply(lesson, grade_id, ALTERNATIVES[(lesson, grade_id)][label])[grade_id]
    flags = scan_cells([(grade_id, source)], set(GRADED[lesson]), FINGERPRINTS)
    assert [f for f in flags if f.kind != "similar"] == []  # "similar" is report only


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

    import nanolm_lib.attention as attention

    fused = write_submission(LESSONS_DIR, tmp_path / "subs", "fused", "03_attention",
                             independent_answers("03_attention"))
    _with_plain_cell_after(fused, "03_attention", "attention", SDPA_IN_A_PLAIN_CELL)
    pasted = pasted_reference(attention, "MultiHeadAttention")
    folder = write_submission(LESSONS_DIR, tmp_path / "subs", "copier", "03_attention",
                              {"MultiHeadAttention": pasted}, solutions_dir=SOLUTIONS_DIR)
    notebook = folder / "03_attention.ipynb"
    # a student's notebook holds the released (visible-only) test cells
    from autograde.selfcheck import restore_test_cells
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


def test_policy_flag_reports_without_zeroing_and_bad_policy_is_refused(tmp_path):
    from autograde.course import GraderError
    from autograde.scan import policy_note

    flag = {"kind": "copied", "line": 3, "message": "GPT is the reference's code"}
    assert policy_note(flag, "zero").startswith("this question will score 0 when graded: "
                                                "copied from the reference")
    assert policy_note(flag, "flag").startswith("flagged for the instructor, points unchanged")
    with pytest.raises(GraderError, match="--copied"):
        grade_batch(tmp_path, tmp_path / "out", copied="halve", show_progress=False)


def test_feedback_notebook_keeps_results_not_hidden_source():
    """What the feedback is made from: the hidden region and the traceback that quotes it go,
    the visible tests and the failure message stay."""
    from autograde.preprocessors import HideHiddenTests

    cell = nbformat.v4.new_code_cell(
        "check(f(1) == 1, 'f(1)', 'wrong')\nprint('visible passed')\n"
        "### BEGIN HIDDEN TESTS\ncheck(f(-7) == 49, 'f(-7)', 'wrong')\n### END HIDDEN TESTS")
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "test_f", "points": 1}
    cell.outputs = [nbformat.v4.new_output(
        "error", ename="CheckFailed", evalue="f(-7): wrong",
        traceback=["----> 4 check(f(-7) == 49, 'f(-7)', 'wrong')", "CheckFailed: f(-7): wrong"])]
    nb = nbformat.v4.new_notebook(cells=[cell])
    HideHiddenTests().preprocess(nb, {})
    text = json.dumps(nb)
    assert "f(-7) == 49" not in text and "BEGIN HIDDEN" not in text
    assert "f(1) == 1" in text and "CheckFailed: f(-7): wrong" in text


# --------------------------------------------------------------------------- independent work
@pytest.mark.parametrize("author", sorted(p.name for p in INDEPENDENT.glob("author_*")))
def test_independent_solutions_are_never_scored_as_copies(author):
    """Two authors who never saw the reference solved lessons 01-07 from the lesson text: the
    copy check may report a short answer the statement dictates as similar, never score one."""
    from autograde.copycheck import load_fingerprints
    from autograde.scan import scan_cells

    fingerprints = load_fingerprints()
    files = sorted((INDEPENDENT / author).glob("[0-9][0-9]_*.py"))
    assert len(files) == 7, files
    scored = []
    for path in files:
        cells = independent_cells(path)
        flags = scan_cells(cells, {grade_id for grade_id, _ in cells}, fingerprints)
        scored += [f"{path.name}: {f}" for f in flags if f.kind == "copied"]
    assert scored == [], scored


def test_a_colluding_pair_ranks_first_in_the_class_table(tmp_path):
    """Three students hand in lesson 03: authors A and B wrote theirs apart, C handed in A's
    answers renamed and reformatted. The class table ranks A and C first on every long
    question, and A against B lower; the CSV holds every pair and each student against the
    references."""
    from autograde.copycheck import load_fingerprints
    from autograde.similarity import class_pairs, report_lines, write_csv
    from nanolm_lib.curriculum import GRADED

    lesson = "03_attention"
    answers = {author: dict(independent_cells(INDEPENDENT / author / f"{lesson}.py"))
               for author in ("author_a", "author_b")}
    renamed = {gid: source.replace("scores", "att").replace("weights", "probs")
               .replace("    ", "  ") for gid, source in answers["author_a"].items()}
    folders = {}
    for student, sources in (("ann", answers["author_a"]), ("ben", answers["author_b"]),
                             ("cat", renamed)):
        folders[(student, lesson)] = write_submission(LESSONS_DIR, tmp_path, student, lesson,
                                                      sources)
    pairs = class_pairs(folders, GRADED, load_fingerprints())
    students = [p for p in pairs if not p.second.startswith("reference:")]
    long_question = [p for p in students if p.question == "MultiHeadAttention"]
    assert (long_question[0].first, long_question[0].second) == ("ann", "cat"), long_question
    assert long_question[0].similarity > 0.9 > long_question[1].similarity, long_question
    assert {p.second for p in pairs} >= {"reference:nanolm_lib", "reference:solutions"}
    write_csv(tmp_path / "similarity.csv", pairs)
    assert len((tmp_path / "similarity.csv").read_text().splitlines()) == len(pairs) + 1
    table = "\n".join(report_lines(pairs))
    assert "| 03_attention | MultiHeadAttention | ann, cat |" in table, table


def test_copies_of_both_references_are_found_and_no_independent_answer_is_scored():
    """The catalogue behind the closing figures (tests/integrity/copy_catalogue.py): every
    verbatim or disguised (docstrings gone, names changed) copy of lessons 03, 06 and 07 from
    either reference is scored 0 or reported, but perplexity's one dictated line; no
    independent answer is scored."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "copy_catalogue", INDEPENDENT.parent / "copy_catalogue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.catalogue()
    for origin in ("nanolm_lib", "solutions"):
        for edit in ("verbatim", "stripped and renamed"):
            row = table[(origin, edit)]
            assert row["missed"] == 1 and row["scored 0"] >= 4, (origin, edit, row)
    for author in ("author_a", "author_b"):
        assert table[("independent", author)]["scored 0"] == 0, table[("independent", author)]
