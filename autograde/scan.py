"""Static checks of a submission's solution cells, reported next to its grades.

The test cells compare against a freshly loaded reference (``nanolm_lib.checks.reference``), so
patching ``nanolm_lib`` cannot make a wrong answer pass; these checks still tell the instructor
who tried, and who handed in the reference instead of their own code:

* ``patch``: assigning to an attribute of an imported module (``nanolm_lib.x.f = ...``,
  ``torch.allclose = ...``), ``setattr`` / ``delattr`` on one, touching ``sys.modules``,
  ``builtins``, ``importlib.reload`` or the ``nanolm_lib.checks`` module;
* ``reference-use``: a solution cell that imports or calls one of the lesson's graded names
  from ``nanolm_lib`` instead of implementing it: directly, through a module alias,
  ``importlib.import_module``, ``getattr(module, "name")``, ``inspect`` (``getsource``) or the
  test helpers' ``reference``/``use_reference``;
* ``copied``: a graded definition that is a reference's code (the package's or the solution
  notebook's), exactly after normalising names, comments, docstrings, strings and formatting,
  or near-exactly by its winnowed fingerprints, and long enough not to be dictated by its
  statement (:mod:`autograde.copycheck`);
* ``similar``: the same for a definition the statement dictates: reported for a person to read,
  never scored.

``reference-use`` and ``copied`` fall under the course's copy policy (``grade --copied``):
by default the question they occur in scores 0. ``patch`` is reported only: the tests cannot
be fooled by it.
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass

# The kinds the copy policy (grade --copied zero|flag) applies to.
POLICY_KINDS = ("reference-use", "copied")
# Test helpers that hand over the reference itself.
REFERENCE_HELPERS = ("reference", "use_reference", "use_released")


@dataclass
class Flag:
    """One finding: in which solution cell, what kind, and the offending line."""

    grade_id: str
    kind: str        # "patch", "reference-use", "copied" or "similar"
    line: int
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def policy_note(flag: dict, policy: str = "zero") -> str:
    """What a flag means for the student's score under ``policy``, in one sentence."""
    what = "copied from the reference" if flag["kind"] == "copied" else "uses the reference"
    if policy == "zero":
        return (f"this question will score 0 when graded: {what} "
                f"(line {flag['line']}: {flag['message']})")
    return (f"flagged for the instructor, points unchanged: {what} "
            f"(line {flag['line']}: {flag['message']})")


def _is_module(dotted: str) -> bool:
    """True when ``nanolm_lib.x`` names a module of the package (not a function in it)."""
    from autograde.course import REPO

    parts = dotted.split(".")
    return len(parts) == 2 and (REPO / parts[0] / f"{parts[1]}.py").is_file()


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, grade_id: str, graded_names: set[str], modules: dict[str, str]):
        self.grade_id = grade_id
        self.graded_names = graded_names
        self.modules = modules  # local name -> module it stands for (across the notebook)
        self.flags: list[Flag] = []

    def flag(self, node: ast.AST, kind: str, message: str) -> None:
        self.flags.append(Flag(self.grade_id, kind, getattr(node, "lineno", 0), message))

    def resolve(self, dotted: str | None) -> str | None:
        """The full module path a dotted name refers to, when it starts at an imported module."""
        if not dotted:
            return None
        head, _, rest = dotted.partition(".")
        if head not in self.modules:
            return None
        return self.modules[head] + ("." + rest if rest else "")

    # imports --------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.modules[alias.asname] = alias.name
            else:
                self.modules[alias.name.split(".")[0]] = alias.name.split(".")[0]
            if alias.name == "nanolm_lib.checks":
                self.flag(node, "patch", "imports nanolm_lib.checks (the module the tests use)")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            local = alias.asname or alias.name
            if module.split(".")[0] == "nanolm_lib":
                if alias.name in self.graded_names and not _is_module(f"{module}.{alias.name}"):
                    self.flag(node, "reference-use",
                              f"imports the graded name {alias.name!r} from {module} "
                              "instead of implementing it")
                if module == "nanolm_lib.checks" and alias.name in REFERENCE_HELPERS:
                    self.flag(node, "reference-use",
                              f"imports {alias.name} from nanolm_lib.checks (the reference)")
                elif module == "nanolm_lib.checks" or alias.name == "checks":
                    self.flag(node, "patch", "imports from nanolm_lib.checks (the test helpers)")
                # `from nanolm_lib import attention` binds a module
                self.modules[local] = f"{module}.{alias.name}"
            elif module in ("sys", "builtins", "importlib") and alias.name in (
                    "modules", "reload", "__import__", "import_module"):
                self.modules[local] = f"{module}.{alias.name}"
                self.flag(node, "patch", f"imports {module}.{alias.name}")
            elif module:
                self.modules[local] = f"{module}.{alias.name}"
        self.generic_visit(node)

    # patching -------------------------------------------------------------------------
    def _check_target(self, target: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._check_target(element)
            return
        base = target.value if isinstance(target, ast.Subscript) else target
        if isinstance(base, ast.Attribute):
            full = self.resolve(_dotted(base))
            if full:
                self.flag(target, "patch", f"assigns to {full} (monkey-patching a module)")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target)
        loaded = self._imported_module(node.value)
        if loaded:  # m = importlib.import_module("nanolm_lib.attention"): m stands for it
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.modules[target.id] = loaded
        self.generic_visit(node)

    def _imported_module(self, node: ast.AST) -> str | None:
        """The module a call to import_module / __import__ with a constant name returns."""
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            name = self.resolve(_dotted(node.func)) or _dotted(node.func) or ""
            if name in ("importlib.import_module", "__import__"):
                return node.args[0].value
        return None

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_target(node.target)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._check_target(target)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        full = self.resolve(_dotted(node))
        if full and isinstance(node.ctx, ast.Load):
            if full.startswith(("sys.modules", "builtins.", "importlib.reload")):
                self.flag(node, "patch", f"uses {full}")
            elif full.startswith("nanolm_lib.checks"):
                if full.rsplit(".", 1)[-1] in REFERENCE_HELPERS:
                    self.flag(node, "reference-use", f"uses {full} (loads the reference)")
                else:
                    self.flag(node, "patch", f"uses {full} (the test helpers)")
            elif full.startswith("nanolm_lib.") and full.rsplit(".", 1)[-1] in self.graded_names:
                self.flag(node, "reference-use",
                          f"uses {full} instead of implementing it")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func) or ""
        full = self.resolve(name) or name
        if full in ("setattr", "delattr") and node.args:
            if self.resolve(_dotted(node.args[0])):
                self.flag(node, "patch", f"{full}() on the module {self.resolve(_dotted(node.args[0]))}")
        loaded = self._imported_module(node)
        if loaded and loaded.split(".")[0] == "nanolm_lib":
            self.flag(node, "reference-use", f"imports {loaded} through {full}()")
        elif full in ("__import__", "importlib.import_module", "importlib.reload"):
            self.flag(node, "patch", f"calls {full}()")
        if full in ("getattr", "vars") and node.args:
            base = self.resolve(_dotted(node.args[0])) or self._imported_module(node.args[0])
            name = node.args[1].value if len(node.args) > 1 and isinstance(
                node.args[1], ast.Constant) else None
            if base and base.split(".")[0] == "nanolm_lib" and (
                    name is None or name in self.graded_names):
                self.flag(node, "reference-use",
                          f"{full}() on {base}" + (f" for the graded name {name!r}" if name else ""))
        if full.startswith("inspect.") and any(
                (self.resolve(_dotted(arg)) or "").startswith("nanolm_lib")
                for arg in node.args):
            self.flag(node, "reference-use", f"{full}() of the reference")
        if full in ("nanolm_lib.checks.reference",) or (
                isinstance(node.func, ast.Name) and self.modules.get(node.func.id)
                == "nanolm_lib.checks.reference"):
            self.flag(node, "reference-use", "loads the reference with checks.reference()")
        self.generic_visit(node)


def scan_cells(cells: list[tuple[str, str]], graded_names: set[str],
               fingerprints: dict | None = None) -> list[Flag]:
    """Scan ``(grade_id, source)`` solution cells, in notebook order; with ``fingerprints``
    (:func:`autograde.copycheck.load_fingerprints`) also for copies of the reference.

    Module aliases carry over from one cell to the next, as they do in the kernel; a cell that
    does not parse is skipped (its own test fails anyway).
    """
    from autograde.copycheck import copied_parts

    modules: dict[str, str] = {}
    flags: list[Flag] = []
    for grade_id, source in cells:
        for match in copied_parts(source, grade_id, fingerprints or {}):
            flags.append(Flag(grade_id, "copied" if match.scored else "similar", match.line,
                              match.describe() + ("" if match.scored else
                                                  ": dictated by the statement, report only")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        scanner = _Scanner(grade_id, graded_names, modules)
        scanner.visit(tree)
        flags.extend(scanner.flags)
    unique: dict[tuple, Flag] = {}
    for flag in flags:  # one finding per line and kind
        unique.setdefault((flag.grade_id, flag.line, flag.kind), flag)
    return list(unique.values())


def scan_notebook(nb, graded_names: set[str], fingerprints: dict | None = None) -> list[Flag]:
    """Scan the solution cells of a submitted notebook (nbformat node)."""
    from autograde.course import grade_cells

    cells = [(cell["grade_id"], cell["source"]) for cell in grade_cells(nb)
             if cell["kind"] == "solution"]
    return scan_cells(cells, graded_names, fingerprints)
