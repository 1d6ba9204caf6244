"""The lessons as nbgrader sees them: a static check of the notebooks, and one real nbgrader
batch in which every test cell passes on the solution and fails on the untouched lesson.

The static check reads the course's contract, ``nanolm_lib/grading/curriculum.py``: each graded function is defined in its solution
cell (grade_id = the function's name) and has a test cell ``test_<function>`` (locked, with
points) holding visible tests and hidden tests. Notebooks are committed without outputs.
"""

from __future__ import annotations

import ast
import json
import re

import nbformat
import pytest

from autograde.batch.grade import grade_batch
from autograde.batch.worker import Limits
from autograde.course import LESSONS_DIR, SOLUTIONS_DIR, grade_cells
from nanolm_lib.grading.curriculum import GRADED as CURRICULUM
from nanolm_lib.grading.curriculum import SIGNATURES

pytestmark = pytest.mark.filterwarnings("ignore")

# The course's contract: lesson -> graded names (nanolm_lib/grading/curriculum.py).
GRADED = {lesson: list(names) for lesson, names in CURRICULUM.items()}
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)


def _notebook(folder, lesson):
    path = folder / lesson / f"{lesson}.ipynb"
    if not path.is_file():
        pytest.fail(f"{path} is missing (nanolm_lib/grading/curriculum.py lists {lesson})")
    return nbformat.read(str(path), as_version=4)


def _code_without_comments(source: str) -> str:
    return "\n".join(line for line in source.splitlines()
                     if line.strip() and not line.strip().startswith("#"))


@pytest.mark.parametrize("lesson", sorted(GRADED))
def test_graded_functions_have_visible_and_hidden_tests(lesson):
    nb = _notebook(SOLUTIONS_DIR, lesson)
    cells = {c["grade_id"]: c for c in grade_cells(nb)}
    problems = []
    for name in GRADED[lesson]:
        solution = cells.get(name)
        if not solution or solution["kind"] != "solution":
            problems.append(f"no solution cell with grade_id {name!r}")
        else:
            defined = {node.name for node in ast.walk(ast.parse(solution["source"]))
                       if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
            if name not in defined:
                problems.append(f"solution cell {name!r} does not define {name}")
            if "### BEGIN SOLUTION" not in solution["source"]:
                problems.append(f"solution cell {name!r} has no ### BEGIN SOLUTION block")
        test = cells.get(f"test_{name}")
        if not test or test["kind"] != "test" or test["points"] <= 0:
            problems.append(f"no graded test cell test_{name} with points")
            continue
        hidden = HIDDEN.findall(test["source"])
        visible = _code_without_comments(HIDDEN.sub("", test["source"]))
        if not visible:
            problems.append(f"test_{name} has no visible tests")
        if not hidden or not _code_without_comments("".join(hidden)):
            problems.append(f"test_{name} has no hidden tests")
        if f"{name}(" not in visible:
            problems.append(f"test_{name}'s visible tests never call {name}")
    extra = sorted(c["grade_id"] for c in cells.values()
                   if c["kind"] == "solution" and c["grade_id"] not in GRADED[lesson])
    if extra:
        problems.append(f"solution cells not in nanolm_lib/grading/curriculum.py: {extra}")
    assert not problems, f"{lesson}: " + "; ".join(problems)


def _signature_in(source: str, name: str, method: str = "forward") -> str | None:
    """The signature of ``name`` as the contract writes it, from a cell's source (for a class:
    its constructor and ``method``, ``forward`` or an optimiser's ``step``)."""
    code = "\n".join(line for line in source.splitlines() if not line.startswith(("%", "!")))
    for node in ast.parse(code).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return f"({ast.unparse(node.args)})"
        if isinstance(node, ast.ClassDef) and node.name == name:
            methods = {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}
            if "__init__" not in methods or method not in methods:
                return f"(a class without __init__ or {method})"
            init, second = (ast.unparse(methods[m].args).removeprefix("self, ")
                            for m in ("__init__", method))
            return f"({init}); {method}({second})"
    return None


def _accepts(reference, contract: str) -> str | None:
    """Why ``reference`` (a function) cannot be called as ``contract`` says, or None: the same
    parameters in the same order with the same defaults; any more must have defaults."""
    import inspect

    wanted = ast.parse(f"def f{contract}: pass").body[0].args
    names = [a.arg for a in wanted.args]
    defaults = dict(zip(names[len(names) - len(wanted.defaults):],
                        (ast.literal_eval(d) for d in wanted.defaults)))
    params = [p for p in inspect.signature(reference).parameters.values() if p.name != "self"]
    if [p.name for p in params[:len(names)]] != names:
        return f"takes {[p.name for p in params]}, the contract {names}"
    for p in params[:len(names)]:
        expected = defaults.get(p.name, inspect.Parameter.empty)
        if p.default != expected:
            return f"{p.name} defaults to {p.default!r}, the contract to {expected!r}"
    extra = [p.name for p in params[len(names):] if p.default is inspect.Parameter.empty
             and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return f"also requires {extra}" if extra else None


@pytest.mark.parametrize("lesson", sorted(GRADED))
def test_solutions_and_references_keep_the_contract_s_signatures(lesson):
    """nanolm_lib/grading/curriculum.py pins each graded signature: the solution defines exactly it
    (the lesson's stub is generated from the solution), and the reference accepts it."""
    import importlib

    nb = _notebook(SOLUTIONS_DIR, lesson)
    cells = {c["grade_id"]: c for c in grade_cells(nb)}
    problems = []
    for name, module in CURRICULUM[lesson].items():
        parts = SIGNATURES[name].split("; ")
        method = parts[1].split("(")[0] if len(parts) == 2 else "forward"
        written = _signature_in(cells[name]["source"], name, method)
        if written != SIGNATURES[name]:
            problems.append(f"the solution writes {name}{written}, the contract "
                            f"{name}{SIGNATURES[name]}")
        reference = getattr(importlib.import_module(f"nanolm_lib.course.{module}"), name)
        checks = [(reference, parts[0])]
        if len(parts) == 2:  # a class: its constructor and its forward (or step)
            checks = [(reference.__init__, parts[0]),
                      (getattr(reference, method), parts[1].removeprefix(method))]
        for function, contract in checks:
            why = _accepts(function, contract)
            if why:
                problems.append(f"the reference {module}.{name} {why}")
    assert not problems, f"{lesson}: " + "; ".join(problems)


@pytest.mark.parametrize("folder", [SOLUTIONS_DIR, LESSONS_DIR], ids=["solutions", "lessons"])
def test_notebooks_carry_no_outputs(folder):
    if not folder.is_dir():
        pytest.fail(f"{folder} is missing")
    dirty = []
    for path in sorted(folder.glob("*/*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
                dirty.append(f"{path.relative_to(folder.parent)} cell {index}")
    assert not dirty, "notebooks committed with outputs: " + ", ".join(dirty[:10])


@pytest.mark.slow
@pytest.mark.timeout(1500)  # 16 notebooks: about 3 min alone, up to 10 on a loaded 2-core CI
def test_every_test_cell_passes_on_the_solution_and_fails_on_the_untouched_lesson(tmp_path):
    """One nbgrader batch: a student who hands in the solutions, one who hands in the
    lessons untouched. A notebook that hangs is the grader's to report (its cell limit, far
    below this test's timeout), naming the student, the lesson and the cell."""
    import shutil

    submissions = tmp_path / "submissions"
    for lesson in sorted(GRADED):
        shutil.copytree(SOLUTIONS_DIR / lesson, submissions / "solution" / lesson)
        shutil.copytree(LESSONS_DIR / lesson, submissions / "untouched" / lesson)
    # the solutions stand in for a correct student: their copy flags are reported, not scored
    # (the copy policy has its own tests in tests/unit/test_fair_grading.py)
    result = grade_batch(submissions, tmp_path / "out", workers=2, show_progress=False,
                         limits=Limits(cell_timeout_s=120, notebook_timeout_s=300),
                         copied="flag")
    assert result.ok, result.failures
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    wrong = []
    for lesson, names in GRADED.items():
        solution, untouched = scores["solution"][lesson], scores["untouched"][lesson]
        assert sorted(solution) == sorted(f"test_{n}" for n in names), lesson
        for grade_id, entry in solution.items():
            if entry["score"] != entry["max_score"] or entry["max_score"] <= 0:
                wrong.append(f"solution {lesson}/{grade_id}: {entry}")
        for grade_id, entry in untouched.items():
            if entry["score"] != 0 or not entry["error"]:
                wrong.append(f"untouched {lesson}/{grade_id}: {entry}")
    assert not wrong, "\n".join(wrong)
    # the solutions break no rule: their only flags say they are the solution notebook
    flags = [f for answer in result.answers.values() for f in answer.flags
             if f["kind"] not in ("copied", "similar") or "(the solution notebook)" not in
             f["message"]]
    assert not flags, f"the static scan flags the solutions themselves: {flags}"


def test_readme_course_table_matches_the_contract():
    """The README's course table lists each lesson's graded names as the contract does."""
    from autograde.course import REPO

    rows = {}
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`\d\d_[a-z_]+`", cells[1]):
            rows[cells[1].strip("`")] = re.findall(r"`(\w+)`", cells[2])
    assert rows == GRADED


@pytest.mark.parametrize("lesson", sorted(GRADED))
def test_visible_tests_read_fixtures_not_the_reference(lesson):
    """A staged kit has no reference of the running lesson: visible tests compare with the
    release's fixtures (nanolm_lib.grading.checks.fixture); only hidden tests load the reference."""
    nb = _notebook(SOLUTIONS_DIR, lesson)
    loading = []
    for cell in grade_cells(nb):
        if cell["kind"] != "test":
            continue
        visible = HIDDEN.sub("", cell["source"])
        if re.search(r"\breference\(|\buse_reference\(|\bref\.", visible):
            loading.append(cell["grade_id"])
    assert not loading, f"{lesson}: visible tests load the reference in {loading}"


@pytest.mark.parametrize("lesson", sorted(GRADED))
def test_lessons_hand_over_no_reference_of_their_own(lesson):
    """The set-up cell imports none of its lesson's graded names from nanolm_lib, and no text
    before a graded function's solution cell points to the reference of that function."""
    nb = _notebook(SOLUTIONS_DIR, lesson)
    own = GRADED[lesson]
    written_at = {c["grade_id"]: c["index"] for c in grade_cells(nb) if c["kind"] == "solution"}
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for name in own:
                if index < written_at.get(name, len(nb.cells)) and re.search(
                        rf"nanolm_lib(\.\w+)*\.{name}\b", cell.source):
                    problems.append(f"cell {index} points to the reference {name}")
        elif cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "setup":
            source = "\n".join(line for line in cell.source.splitlines()
                               if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                        "nanolm_lib"):
                    handed = [alias.name for alias in node.names if alias.name in own]
                    if handed:
                        problems.append(f"the set-up cell imports {handed} from {node.module}")
    assert not problems, f"{lesson}: " + "; ".join(problems)
