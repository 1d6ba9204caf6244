"""Every graded question, one file each (what a question is:
:mod:`nanolm_lib.grading.question_base`).

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
  source, read by the grader outside the sandbox (``autograde/integrity/scan.py``), never a
  measurement in the student's process. Each such policy is declared with its question (``forbids=``
  / ``requires=``: dotted names, fnmatch patterns): "uses SDPA" (lesson 04's ``fused_attention``)
  and "counts without building a model" (lesson 05's ``count_parameters``) are two. Each lesson
  states its rules where the exercise is set.

A question file imports the course inside its functions, never at its top: in a staged kit each
course module imports :mod:`nanolm_lib.grading.staging` first thing, which reads the contract
from these files, so a course import here would import a course module in the middle of its
own import.
"""

import importlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _lesson_folders() -> list[Path]:
    """The course's lessons, one folder each (``03_attention``), in order; a lesson's folder
    holds one file per graded question (``4_split_heads.py``: the 4th its notebook asks)."""
    return sorted(path for path in HERE.iterdir()
                  if path.is_dir() and path.name[:2].isdigit() and (path / "__init__.py").is_file())


def _question_files(folder: Path) -> list[Path]:
    files = [path for path in folder.glob("*.py") if path.stem != "__init__"]
    return sorted(files, key=lambda path: int(path.stem.split("_", 1)[0]))


LESSONS = [folder.name for folder in _lesson_folders()]

# Importing each question file registers it in question_base.QUESTIONS, in notebook order.
for _folder in _lesson_folders():
    for _path in _question_files(_folder):
        importlib.import_module(f"{__name__}.{_folder.name}.{_path.stem}")
