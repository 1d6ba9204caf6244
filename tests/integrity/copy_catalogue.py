"""How many copies of the references the copy check finds, by source and by edit.

``python tests/integrity/copy_catalogue.py`` prints, for every graded function of lessons 03,
06 and 07 copied from each reference (``nanolm_lib`` and ``solutions/``) and edited the way
students edit, how many the policy scores 0, how many it only reports, and how many it misses;
then the same for the independent authors' answers (none may be scored).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]  # tests/, the repository

from autograde_toy import independent_answers  # noqa: E402

from autograde.integrity.copycheck import (  # noqa: E402
    PACKAGE_DIR,
    SOLUTIONS_DIR,
    _definition,
    _solution_cells,
    copied_parts,
    load_fingerprints,
)
from nanolm_lib.grading.curriculum import GRADED  # noqa: E402

LESSONS = ("03_attention", "06_training", "07_sampling")


def _verbatim(source: str, name: str) -> str:
    return source


def _stripped(source: str, name: str) -> str:
    """Docstrings and comments gone, every local name renamed (as a student disguises)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str) and len(body) > 1:
            node.body = body[1:]
        if isinstance(node, ast.Name) and node.id not in ("self", "torch", "F", "nn", "math"):
            node.id = f"my_{node.id}" if node.id != name else node.id
        if isinstance(node, ast.arg) and node.arg != "self":
            node.arg = f"my_{node.arg}"
    return ast.unparse(tree)


def _transpose_as_mT(source: str, name: str) -> str:
    return source.replace(".transpose(-2, -1)", ".mT").replace(".transpose(-1, -2)", ".mT")


def _dead_code(source: str, name: str) -> str:
    """One unused statement at the top of every function body."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            node.body.insert(0, ast.parse("unused_total = 0").body[0])
    return ast.unparse(ast.fix_missing_locations(tree))


EDITS = {"verbatim": _verbatim, "stripped and renamed": _stripped,
         ".mT for transpose": _transpose_as_mT, "dead code": _dead_code}


def _sources(name: str, module: str, cells: dict) -> dict[str, str]:
    package = (PACKAGE_DIR / "course" / f"{module}.py").read_text("utf-8")
    node = _definition(ast.parse(package), name)
    found = {"nanolm_lib": ast.get_source_segment(package, node)}
    if name in cells:
        found["solutions"] = "\n".join(line for line in cells[name].splitlines()
                                       if "### " not in line)
    return found


def _outcome(source: str, name: str, prints: dict) -> str:
    matches = copied_parts(source, name, prints)
    if any(m.scored for m in matches):
        return "scored 0"
    return "reported" if matches else "missed"


def catalogue() -> dict[tuple[str, str], dict[str, int]]:
    """(source, edit) -> {"scored 0", "reported", "missed"} counts; ("independent", author)
    likewise for the independent authors' answers."""
    prints, cells = load_fingerprints(), _solution_cells(SOLUTIONS_DIR)
    table: dict[tuple[str, str], dict[str, int]] = {}
    for lesson in LESSONS:
        for name, module in GRADED[lesson].items():
            for origin, source in _sources(name, module, cells).items():
                for edit, apply in EDITS.items():
                    row = table.setdefault((origin, edit), dict.fromkeys(
                        ("scored 0", "reported", "missed"), 0))
                    row[_outcome(apply(source, name), name, prints)] += 1
            for author in ("author_a", "author_b"):
                answer = independent_answers(lesson, author).get(name)
                if answer:
                    row = table.setdefault(("independent", author), dict.fromkeys(
                        ("scored 0", "reported", "missed"), 0))
                    row[_outcome(answer, name, prints)] += 1
    return table


def main() -> None:
    print(f"{'source':<12} {'edit':<22} {'scored 0':>8} {'reported':>8} {'missed':>6}")
    for (origin, edit), row in catalogue().items():
        print(f"{origin:<12} {edit:<22} {row['scored 0']:>8} {row['reported']:>8} "
              f"{row['missed']:>6}")


if __name__ == "__main__":
    main()
