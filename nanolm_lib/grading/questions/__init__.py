"""Every graded question's hidden cases (what a question is: :mod:`nanolm_lib.grading.question_base`).

``make_cases(gen)`` runs in the grader (it may use the reference: it only draws inputs) and
returns plain data; ``apply(ns, case)`` runs in the grader's run of the student's solution
cells (:mod:`nanolm_lib.grading.hidden_cases`) and in the grader with the reference's names, and
returns plain outputs. Nothing here holds a reference body.

Who decides each property a question checks, and how:

* the answer itself, causality (an output recomputed with a later input changed), gradients
  reaching every input or parameter, inputs left unchanged (the inputs as they are after the
  call), training mode restored: outputs of the grader's run, each compared with the
  reference's on the same inputs (:func:`~nanolm_lib.grading.checks.difference`); a fresh GPT's loss
  is an output too, checked against ln(vocabulary size) instead;
* flash_attention's linear memory: the grader's run sets a data limit (``data_budget_mb``)
  under which only an implementation without a (T, T) tensor answers the ``limited`` case;
* what a solution may or may not call (the fused kernel, the library's own answer): its
  source, read by the grader outside the sandbox (``autograde/scan.py``), never a measurement
  in the student's process. Each such policy is declared with its question (``forbids=`` /
  ``requires=``: dotted names, fnmatch patterns): "uses SDPA" (lesson 04's ``fused_attention``)
  and "counts without building a model" (lesson 05's ``count_parameters``) are two. Each lesson
  states its rules where the exercise is set.
"""

import importlib
import pkgutil

# Every lesson's questions that this installation holds (a student kit holds only those of
# lessons already given out): importing registers them in question_base.QUESTIONS.
for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)
                      if info.name.startswith("lesson_")):
    importlib.import_module(f"{__name__}.{_module}")
