"""A class graded fairly: copying and use of the reference are caught and scored by the stated
policy, the catalogue's genuine alternatives are not, and feedback keeps hidden tests hidden.

The pasted submission is what the issue describes: the reference's source (``inspect``), its
names changed, reformatted, its comments replaced, plus the helper imports it needs.
"""

from __future__ import annotations

import inspect
import json

import nbformat
import pytest
from autograde_toy import INDEPENDENT, independent_cells, write_submission
from grading_catalogue import ALTERNATIVES, apply_variant
from pasted_code import pasted_reference

from autograde.batch.grade import grade_batch
from autograde.course import LESSONS_DIR
from autograde.integrity.copycheck import load_fingerprints
from autograde.integrity.scan import scan_cells
from nanolm_lib.grading.curriculum import GRADED

pytestmark = pytest.mark.filterwarnings("ignore")
FINGERPRINTS = load_fingerprints()


def test_pasted_reference_is_caught_after_renaming_and_reformatting():
    import nanolm_lib.course.attention as attention
    import nanolm_lib.course.model as model
    import nanolm_lib.course.sampling as sampling

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
        "direct import": "from nanolm_lib.course.attention import causal_mask\n",
        "module attribute": "import nanolm_lib.course.attention as a\n"
                            "def causal_mask(T):\n    return a.causal_mask(T)\n",
        "importlib": "import importlib\n"
                     "causal_mask = importlib.import_module('nanolm_lib.course.attention').causal_mask\n",
        "importlib, then getattr": "import importlib\nm = importlib.import_module("
                                   "'nanolm_lib.course.attention')\ncausal_mask = getattr(m, "
                                   "'causal_mask')\n",
        "getattr on a module": "from nanolm_lib.course import attention as m\n"
                               "causal_mask = getattr(m, 'causal_mask')\n",
        "checks.reference": "from nanolm_lib.grading.checks import reference\n"
                            "causal_mask = reference('attention').causal_mask\n",
        "inspect": "import inspect\nimport nanolm_lib.course.attention as a\n"
                   "exec(inspect.getsource(a.causal_mask))\n",
    }
    for route, source in routes.items():
        kinds = {f.kind for f in scan_cells([("causal_mask", source)], graded, FINGERPRINTS)}
        assert "reference-use" in kinds, route


@pytest.mark.parametrize("lesson, grade_id, label", [
    (lesson, grade_id, label) for (lesson, grade_id), variants in ALTERNATIVES.items()
    for label in variants])
def test_catalogue_alternatives_are_not_flagged(lesson, grade_id, label):
    source = apply_variant(lesson, grade_id, ALTERNATIVES[(lesson, grade_id)][label])[grade_id]
    flags = scan_cells([(grade_id, source)], set(GRADED[lesson]), FINGERPRINTS)
    assert [f for f in flags if f.kind != "similar"] == []  # "similar" is report only


def test_policy_flag_reports_without_zeroing_and_bad_policy_is_refused(tmp_path):
    from autograde.course import GraderError
    from autograde.integrity.scan import policy_note

    flag = {"kind": "copied", "line": 3, "message": "GPT is the reference's code"}
    assert policy_note(flag, "zero").startswith("this question will score 0 when graded: "
                                                "copied from the reference")
    assert policy_note(flag, "flag").startswith("flagged for the instructor, points unchanged")
    with pytest.raises(GraderError, match="--copied"):
        grade_batch(tmp_path, tmp_path / "out", copied="halve", show_progress=False)


def test_feedback_notebook_keeps_results_not_hidden_source():
    """What the feedback is made from: the hidden region and the traceback that quotes it go,
    the visible tests and the failure message stay."""
    from autograde.sandbox.preprocessors import HideHiddenTests

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
    from autograde.integrity.copycheck import load_fingerprints
    from autograde.integrity.scan import scan_cells

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
    from autograde.integrity.copycheck import load_fingerprints
    from autograde.integrity.similarity import class_pairs, report_lines, write_csv
    from nanolm_lib.grading.curriculum import GRADED

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
