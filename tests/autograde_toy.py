"""A tiny nbgrader course for the autograder's tests: two lessons, small and fast to execute.

Built with nbformat in a temporary folder, so the tests do not depend on the real lessons
(which the lesson tests cover) and stay fast.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def _meta(grade_id: str, *, solution=False, grade=False, locked=False, points=0) -> dict:
    meta = {"grade_id": grade_id, "solution": solution, "grade": grade, "locked": locked,
            "schema_version": 3}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def solution_cell(grade_id: str, source: str):
    return new_code_cell(source, metadata=_meta(grade_id, solution=True))


def test_cell(grade_id: str, source: str, points: int = 1):
    return new_code_cell(source, metadata=_meta(grade_id, grade=True, locked=True, points=points))


def locked_cell(grade_id: str, source: str):
    return new_code_cell(source, metadata=_meta(grade_id, locked=True))


TOY_LESSONS = {
    "01_toy": [
        new_markdown_cell("# Toy lesson\nImplement `add` and `scale`."),
        locked_cell("setup", "import math"),
        solution_cell("add", "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n"
                             "    ### END SOLUTION"),
        test_cell("test_add", "assert add(1, 2) == 3, 'add(1, 2) should be 3'\n"
                              "### BEGIN HIDDEN TESTS\nassert add(-5, 5) == 0, 'add(-5, 5)'\n"
                              "### END HIDDEN TESTS\nprint('add: tests passed')"),
        solution_cell("scale", "def scale(x, factor):\n    ### BEGIN SOLUTION\n"
                               "    return [v * factor for v in x]\n    ### END SOLUTION"),
        test_cell("test_scale", "assert scale([1, 2], 3) == [3, 6], 'scale([1, 2], 3)'\n"
                                "### BEGIN HIDDEN TESTS\nassert scale([], 2) == [], 'scale([])'\n"
                                "### END HIDDEN TESTS", points=2),
    ],
    # A question graded against nanolm_lib's freshly loaded reference, as the real lessons are.
    "02_toy": [
        locked_cell("setup", "import torch"),
        solution_cell("causal_mask", "def causal_mask(T, device=None):\n    ### BEGIN SOLUTION\n"
                                     "    return torch.ones(T, T, dtype=torch.bool).tril()\n"
                                     "    ### END SOLUTION"),
        test_cell("test_causal_mask",
                  "from nanolm_lib.grading.checks import check_close, reference\n"
                  "ref = reference('attention')\n"
                  "check_close(causal_mask(4), ref.causal_mask(4), 'causal_mask(4)')\n"
                  "### BEGIN HIDDEN TESTS\n"
                  "check_close(causal_mask(7), ref.causal_mask(7), 'causal_mask(7)')\n"
                  "### END HIDDEN TESTS", points=2),
    ],
}


def written_answer(grade_id: str, question: str, answer: str, points: int = 2):
    """A Markdown answer graded by hand (nbgrader's "manually graded answer")."""
    return new_markdown_cell(f"{question}\n\n### BEGIN SOLUTION\n{answer}\n### END SOLUTION",
                             metadata=_meta(grade_id, solution=True, grade=True, points=points))


def write_toy_solutions(root: Path, lessons: dict | None = None) -> Path:
    """Write the toy lessons as nbgrader source notebooks under ``root/<lesson>/``."""
    lessons = TOY_LESSONS if lessons is None else lessons
    for name, cells in lessons.items():
        nb = new_notebook(cells=[nbformat.from_dict(c) for c in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(folder / f"{name}.ipynb"))
    return Path(root)


def write_submission(lessons_dir: Path, submissions: Path, student: str, lesson: str,
                     sources: dict[str, str] | None = None, delete: tuple[str, ...] = (),
                     solutions_dir: Path | None = None) -> Path:
    """A student's copy of ``lesson``: the released notebook (or the solution, when
    ``solutions_dir`` is given) with the cells named in ``sources`` replaced (by grade_id) and
    those in ``delete`` removed."""
    base = Path(solutions_dir or lessons_dir) / lesson / f"{lesson}.ipynb"
    nb = nbformat.read(str(base), as_version=4)
    kept = []
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in delete:
            continue
        if grade_id in (sources or {}):
            cell.source = sources[grade_id]
        kept.append(cell)
    nb.cells = kept
    folder = Path(submissions) / student / lesson
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / f"{lesson}.ipynb"))
    return folder


def add_cell(path: Path, source: str, before=None) -> None:
    """A code cell of ``source`` added to the notebook at ``path``: before the first cell whose
    nbgrader metadata ``before(meta)`` accepts, or at the end."""
    nb = nbformat.read(str(path), as_version=4)
    at = next((i for i, c in enumerate(nb.cells)
               if before is not None and before(c.get("metadata", {}).get("nbgrader", {}))),
              len(nb.cells))
    nb.cells.insert(at, new_code_cell(source))
    nbformat.write(nb, str(path))


# --------------------------------------------------------------------------- independent answers
INDEPENDENT = Path(__file__).parent / "integrity" / "independent"


def independent_cells(path: Path) -> list[tuple[str, str]]:
    """``(grade_id, source)`` of a ``# %% grade_id`` file of independent answers, in order."""
    parts = re.split(r"^# %% (\S+)\n", Path(path).read_text(), flags=re.M)[1:]
    return [(grade_id, source.rstrip() + "\n") for grade_id, source in zip(parts[::2], parts[1::2])]


def independent_answers(lesson: str, author: str = "author_b") -> dict[str, str]:
    """grade_id -> an independent author's answer to ``lesson`` (an honest student's work)."""
    return dict(independent_cells(INDEPENDENT / author / f"{lesson}.py"))
