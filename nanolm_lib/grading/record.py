"""Hidden tests whose outputs the grader, not the student's notebook, produces and judges.

A test cell's hidden part is one line, ``record("03_attention", "causal_mask", globals())``.
What it does depends on where it runs:

* **In the notebook's kernel while it is graded** (the environment variable :data:`ENV_VAR` is
  :data:`DEFERRED`): nothing. That kernel never sees the hidden cases or their records; the
  grader runs them afterwards in a process of its own (:mod:`nanolm_lib.grading.hidden_cases`, which
  reads the cases and saves the records with :func:`load_cases` and :func:`save_record`), on
  the student's solution cells alone, and judges the outputs (``autograde/sandbox/verdict.py``).
* **Anywhere else** (the repository's own runs of the solution notebooks, the test harness):
  it draws fresh cases, computes the reference's outputs in-process and raises
  :class:`~nanolm_lib.grading.checks.CheckFailed` with the grader's message when they differ,
  so that a maintainer sees the same verdict the grader would give.

What a question is: :mod:`nanolm_lib.grading.question_base`; every question:
:mod:`nanolm_lib.grading.questions`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

import nanolm_lib.grading.questions  # noqa: F401  (registers the questions)
from nanolm_lib.grading.checks import CheckFailed, fresh_generator
from nanolm_lib.grading.question_base import ERROR_KEY, QUESTIONS, reference_namespace

ENV_VAR = "NANOLM_GRADING"   # set to DEFERRED in the notebook's kernel while it is graded
DEFERRED = "deferred"        # the grader runs the hidden cases itself, apart from the notebook
RECORD_LIMIT_BYTES = 64 << 20  # the grader refuses a larger record


# --------------------------------------------------------------------------- the grader's run
def load_cases(cases_dir: Path, lesson: str, name: str) -> list[dict]:
    """The grader's inputs for question ``name`` of ``lesson``, saved by the grader."""
    loaded = torch.load(Path(cases_dir) / lesson / f"{name}.pt", map_location="cpu",
                        weights_only=True)
    return loaded["cases"]


def save_record(records_dir: Path, lesson: str, name: str, outputs: list) -> None:
    """Save one question's outputs where the grader reads them."""
    target = Path(records_dir) / lesson
    target.mkdir(parents=True, exist_ok=True)
    torch.save({"outputs": outputs}, target / f"{name}.pt")


def record(lesson: str, name: str, namespace: dict) -> None:
    """A hidden test: nothing while the notebook is graded (the grader runs the cases apart),
    else compared with the reference here (see the module docstring)."""
    __tracebackhide__ = True  # noqa: F841  (read by IPython and pytest)
    if os.environ.get(ENV_VAR) == DEFERRED:
        return
    spec = QUESTIONS[lesson][name]

    gen, seed = fresh_generator()
    # a memory-limited case needs the grader's limit; the visible test measures the same
    drawn = [case for case in spec.make_cases(gen) if not case.get("limited")]
    reference = reference_namespace()
    for case in drawn:
        with torch.random.fork_rng(devices=[]):
            expected = spec.run_case(reference, case)
        if isinstance(expected, dict) and ERROR_KEY in expected:
            raise RuntimeError(f"the reference failed on {case.get('what')}: "
                               f"{expected[ERROR_KEY]}")
        with torch.random.fork_rng(devices=[]):
            got = spec.run_case(namespace, case)
        message = spec.judge(case, got, expected)
        if message:
            raise CheckFailed(f"hidden test, {case.get('what', name)}: {message}\n"
                              f"(cases from seed {seed})")

