"""No import cycle in nanolm_lib or autograde, the rule between nanolm_lib's audiences (the
packages ``course``, ``lab`` and ``grading`` and the shared modules, ``nanolm_lib.MAY_IMPORT``),
and what the student kit ships of autograde importing nothing it leaves out; read from the
source with ``ast``.

Every import statement counts, those inside functions too: a cycle closed by a function-level
import still ties the modules together (which module's code runs first then depends on who
calls what), and the package's own imports must not need that.
"""

from __future__ import annotations

import ast

from conftest import REPO

from autograde.authoring.kit import INSTRUCTOR_FOLDERS
from nanolm_lib import MAY_IMPORT, SHARED

PACKAGE = "nanolm_lib"

# None: an exception would go here, with the reason it cannot be avoided.
KNOWN_CYCLES: list[set[str]] = []


def _modules(root, package=PACKAGE) -> dict:
    """Dotted module name -> source file, for every module of ``package`` under ``root``."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(module: str, tree: ast.Module, modules) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its source."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package that holds this module, or above
                here = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
                package = ".".join(here.split(".")[: len(here.split(".")) - node.level + 1])
                base = f"{package}.{base}" if base else package
            # `from pkg import name` imports the module pkg.name where there is one
            names |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                      for alias in node.names}
    return {name for name in names if name in modules and name != module}


def import_graph(root=REPO, package=PACKAGE) -> dict[str, set[str]]:
    modules = _modules(root, package)
    return {module: _imported(module, ast.parse(path.read_text()), modules)
            for module, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_at_the_top_and_inside_functions():
    graph = import_graph()
    assert "nanolm_lib.utils" in graph["nanolm_lib.lab.presets"]  # from nanolm_lib import utils
    assert "nanolm_lib.course.model" in graph["nanolm_lib.lab.presets"]  # at the top
    assert "nanolm_lib.lab.checkpoint" in graph["nanolm_lib"]  # inside load_model
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_nanolm_lib_has_no_import_cycle():
    found = [cycle for cycle in cycles(import_graph()) if cycle not in KNOWN_CYCLES]
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def audience(module: str) -> str | None:
    """The audience of ``nanolm_lib.<package>.x`` or ``nanolm_lib.x`` (None: the package
    itself): its package's name, "shared" for the shared modules, else "unknown"."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] in MAY_IMPORT and parts[1] != "shared":
        return parts[1]
    return "shared" if len(parts) == 2 and parts[1] in SHARED else "unknown"


def rule_breaks(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for each import the audiences' rule forbids."""
    return [f"{module} ({audience(module)}) -> {target} ({audience(target)})"
            for module, targets in sorted(graph.items()) for target in sorted(targets)
            if audience(module) and audience(target)
            and audience(target) not in MAY_IMPORT.get(audience(module), ())]


def test_every_module_lives_in_an_audience():
    unplaced = sorted(module for module in import_graph() if audience(module) == "unknown")
    assert not unplaced, ("put these in nanolm_lib/course, lab or grading, or name them in "
                          f"nanolm_lib.SHARED: {unplaced}")


def test_the_course_imports_neither_the_lab_nor_the_grading_and_the_lab_no_grading():
    assert rule_breaks(import_graph()) == []


def test_the_rule_finds_a_lesson_module_that_imports_the_lab_or_the_grading():
    graph = {"nanolm_lib.course.diagrams": {"nanolm_lib.lab.benchmarks", "nanolm_lib.utils"},
             "nanolm_lib.lab.runs": {"nanolm_lib.grading.checks", "nanolm_lib.course.model"},
             "nanolm_lib.grading.staging": {"nanolm_lib.lab.trainer"}}
    assert rule_breaks(graph) == [
        "nanolm_lib.course.diagrams (course) -> nanolm_lib.lab.benchmarks (lab)",
        "nanolm_lib.lab.runs (lab) -> nanolm_lib.grading.checks (grading)"]


# autograde: the kit ships it without these folders, so nothing else may import them
INSTRUCTOR_ONLY = tuple(f"autograde.{folder}" for folder in INSTRUCTOR_FOLDERS)


def kit_breaks(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for each import from what the kit ships into what it leaves out."""
    def instructors(module):
        return module.startswith(tuple(f"{folder}." for folder in INSTRUCTOR_ONLY))
    return [f"{module} -> {target}" for module, targets in sorted(graph.items())
            for target in sorted(targets)
            if not instructors(module) and module != "autograde.__main__" and instructors(target)]


def test_what_the_kit_ships_of_autograde_imports_nothing_it_leaves_out():
    assert kit_breaks(import_graph(package="autograde")) == []


def test_the_kit_rule_finds_the_student_side_importing_the_batch():
    graph = {"autograde.student.selfcheck": {"autograde.batch.grade", "autograde.course"},
             "autograde.batch.grade": {"autograde.sandbox.verdict"}}
    assert kit_breaks(graph) == ["autograde.student.selfcheck -> autograde.batch.grade"]


def test_autograde_has_no_import_cycle():
    found = cycles(import_graph(package="autograde"))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)
