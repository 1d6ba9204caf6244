"""The lessons' test cells, exercised in-process against bug variants and valid alternatives.

For every graded function of the course contract (nanolm_lib/grading/curriculum.py), a
submission with one typical bug must lose points in that question and only there; a valid
alternative solution (einsum instead of matmul, sort instead of topk, a loop instead of
vectorized code) must get full marks. The
harness (tests/autograde_harness.py) runs a solution notebook's set-up, solution and test cells
(hidden tests included) in one namespace with one solution cell replaced.

The variants themselves are the catalogue, tests/grading_catalogue.py.
"""

from __future__ import annotations

import pytest
from autograde_harness import SOLUTIONS, failing, lesson_cells, run_lesson
from grading_catalogue import ALTERNATIVES, BUGS, apply_variant

pytestmark = pytest.mark.filterwarnings("ignore")


def _cases(table):
    for (lesson, grade_id), variants in table.items():
        for label, variant in variants.items():
            marks = ()
            if not (SOLUTIONS / lesson / f"{lesson}.ipynb").is_file():
                marks = pytest.mark.skip(reason=f"solutions/{lesson} not written yet")
            yield pytest.param(lesson, grade_id, variant, id=f"{lesson}-{grade_id}-{label}",
                               marks=marks)


def _solution_lessons() -> list[str]:
    return sorted(p.name for p in SOLUTIONS.iterdir()
                  if (p / f"{p.name}.ipynb").is_file()) if SOLUTIONS.is_dir() else []


@pytest.mark.parametrize("lesson", _solution_lessons())
def test_solution_passes_every_test_cell(lesson):
    outcomes = run_lesson(lesson)
    assert not failing(outcomes), {g: o.message for g, o in outcomes.items() if not o.passed}


@pytest.mark.parametrize("lesson, grade_id, variant", list(_cases(BUGS)))
def test_a_bug_costs_its_own_question_only(lesson, grade_id, variant):
    outcomes = run_lesson(lesson, apply_variant(lesson, grade_id, variant))
    assert failing(outcomes) == {f"test_{grade_id}"}, {
        g: o.message[:300] for g, o in outcomes.items() if not o.passed}
    ename, _, detail = outcomes[f"test_{grade_id}"].message.partition(": ")
    assert detail.strip(), f"{ename} without a message: the student would not know what differs"


# Bugs that only the hidden tests catch, each because the lesson's text says so.
HIDDEN_ONLY: dict[tuple[str, str, str], str] = {}


@pytest.mark.parametrize("lesson, grade_id, variant", list(_cases(BUGS)))
def test_the_visible_tests_catch_every_bug_the_hidden_tests_catch(lesson, grade_id, variant,
                                                                  request):
    """Hidden tests try new inputs and edge cases, not new requirements: a bug that costs
    points at grading already fails the self-check the student runs."""
    label = request.node.callspec.id.removeprefix(f"{lesson}-{grade_id}-")
    outcomes = run_lesson(lesson, apply_variant(lesson, grade_id, variant), hidden=False)
    caught = f"test_{grade_id}" in failing(outcomes)
    if (lesson, grade_id, label) in HIDDEN_ONLY:
        assert not caught, f"{label}: listed as hidden-only, but the visible tests catch it"
        return
    assert caught, (f"{lesson}/{grade_id}: the bug {label!r} passes the visible tests "
                    "(the hidden tests catch it)")


@pytest.mark.parametrize("lesson, grade_id, variant", list(_cases(ALTERNATIVES)))
def test_a_valid_alternative_gets_full_marks(lesson, grade_id, variant):
    outcomes = run_lesson(lesson, apply_variant(lesson, grade_id, variant))
    assert not failing(outcomes), {g: o.message[:300] for g, o in outcomes.items()
                                   if not o.passed}


@pytest.mark.parametrize("lesson", _solution_lessons())
def test_every_graded_function_has_a_bug_variant(lesson):
    graded = {gid for kind, gid, _ in lesson_cells(lesson) if kind == "solution"}
    missing = sorted(g for g in graded if (lesson, g) not in BUGS)
    assert not missing, f"{lesson}: no bug variant for {missing}"
