"""Static checks of a submission's code cells, reported next to its grades, and each
question's policy (what its solution may not call, or must call), decided here on the source.

The hidden cases compare outputs with the reference's, so patching ``nanolm_lib`` cannot make a
wrong answer pass; these checks still tell the instructor who tried, who handed in the
reference instead of their own code, and who answered with a finished version of the exercise:

* ``patch``: assigning to an attribute of an imported module (``nanolm_lib.x.f = ...``,
  ``torch.allclose = ...``), ``setattr`` / ``delattr`` on one, touching ``sys.modules``,
  ``builtins``, ``importlib.reload`` or the ``nanolm_lib.grading.checks`` module;
* ``reference-use``: code that imports or calls one of the lesson's graded names from
  ``nanolm_lib`` instead of implementing it: directly, through a module alias,
  ``importlib.import_module``, ``getattr(module, "name")``, ``inspect`` (``getsource``) or the
  test helpers' ``reference``/``use_reference``;
* ``copied``: a graded definition that is a reference's code (the package's or the solution
  notebook's), exactly after normalising names, comments, docstrings, strings and formatting,
  or near-exactly by its winnowed fingerprints, and long enough not to be dictated by its
  statement (:mod:`autograde.integrity.copycheck`);
* ``similar``: the same for a definition the statement dictates: reported for a person to read,
  never scored;
* ``policy``: a question's code uses a name its policy forbids, or never calls one it requires
  (``forbids=`` / ``requires=`` of :class:`nanolm_lib.grading.question_base.Question`, declared in
  :mod:`nanolm_lib.grading.questions`), or looks a name up that is computed at run time, so that its
  policy cannot be read;
* ``dynamic``: such a computed lookup anywhere else (``getattr(x, name)``, ``eval``/``exec``,
  ``__import__``/``importlib.import_module`` of a computed name, ``globals()[name]``,
  ``vars(x)[name]``, ``x.__dict__[name]``, ``get_ipython``): reported only.

Every code cell is read, not only the solution cells: the test cells excepted (nbgrader puts
the released ones back), and the course's own cells (the locked set-up cells, and with
``released`` every cell left as released) read for what they define but never flagged. A
question's code is its solution cell, every top-level statement of any cell that binds its name,
and, followed through the names they read (as :mod:`symtable` finds them: a function's
parameters and locals are not followed), every statement that binds one of those. For a policy
the chain goes on through the other graded names too (``count_parameters`` may not build a
model, so reaching the student's own ``GPT``, which uses ``torch``, counts); for the other kinds
it stops there, so that each question answers for its own code. Import aliases and simple
assignments are resolved across the notebook (``import torch.nn.functional as F``,
``from torch.nn.functional import scaled_dot_product_attention as s``, ``F = torch.nn.functional``,
``s = getattr(F, "scaled_dot_product_attention")``); a forbidden name is also found under
another module of the same package (``torch._C._nn.scaled_dot_product_attention``), and a
distinctive one on an object the scan cannot resolve (``self.f.scaled_dot_product_attention``).

``reference-use``, ``copied`` and ``policy`` fall under the course's copy policy (``grade
--copied``): by default the question they are attributed to scores 0; a finding in a cell that
is no question's code names the cell and changes no score. ``patch``, ``dynamic`` and
``similar`` are reported only. A computed lookup is scored only in the code of a question with
a policy, because only there does it hide what the policy must see. What the scan cannot see:
code that a cell reads from a file (``%run``, importing the student's own module), and a required
call placed where it never runs (it is in the source for a reader to find).
"""

from __future__ import annotations

import ast
import fnmatch
import symtable
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass

from autograde.course import REPO, nbgrader_meta
from autograde.integrity.copycheck import copied_parts
from nanolm_lib.grading.curriculum import GRADED
from nanolm_lib.grading.question_base import QUESTIONS

# The kinds the copy policy (grade --copied zero|flag) applies to.
POLICY_KINDS = ("reference-use", "copied", "policy")
# Test helpers that hand over the reference itself.
REFERENCE_HELPERS = ("reference", "use_reference", "use_released")
# Calls that run code or look a name up from a value computed at run time: the argument that
# holds the name (None: any use is one).
COMPUTED_LOOKUPS = {"getattr": 1, "setattr": 1, "delattr": 1, "hasattr": 1, "eval": None,
                    "exec": None, "compile": None, "__import__": 0,
                    "importlib.import_module": 0, "operator.attrgetter": 0,
                    "operator.methodcaller": 0, "get_ipython": None}
NAMESPACES = ("globals", "locals", "vars")
# Room for the scan's recursive walks over the deepest tree Python's parser builds (it refuses
# deeper ones with a RecursionError, so such a cell cannot run either)
DEEPEST_TREE = 50_000
# The links of an attribute chain a check reads, from its base (a module path is a few long)
MAX_CHAIN = 32
# A forbidden name this long also counts on an object the scan cannot resolve (x.optimize)
DISTINCTIVE = 6


@dataclass
class Flag:
    """One finding: which question (or cell), what kind, where, and what."""

    grade_id: str    # the question it counts against, or "code cell N" (no question's code)
    kind: str        # "patch", "reference-use", "copied", "similar", "policy" or "dynamic"
    line: int
    message: str
    cell: int = 0    # the code cell's number in the notebook, from 1 (0: not known)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Cell:
    """One code cell as the scan reads it."""

    grade_id: str | None  # the question of a solution cell, else None
    source: str
    number: int           # among the notebook's code cells, from 1
    given: bool = False   # the course's own: read for its definitions, never flagged

    @property
    def label(self) -> str:
        return self.grade_id or f"code cell {self.number}"


def policy_note(flag: dict, policy: str = "zero") -> str:
    """What a flag means for the student's score under ``policy``, in one sentence."""
    what = {"copied": "copied from the reference",
            "policy": "breaks this question's rule"}.get(flag["kind"], "uses the reference")
    where = (f"code cell {flag['cell']}, " if flag.get("cell") else "") + f"line {flag['line']}"
    if policy == "zero":
        return f"this question will score 0 when graded: {what} ({where}: {flag['message']})"
    return f"flagged for the instructor, points unchanged: {what} ({where}: {flag['message']})"


def policy_notes(flags: list[dict], policy: str = "zero") -> dict[str, list[str]]:
    """The course's copy policy: question (its solution cell's grade_id) -> the notes of the
    flags that count against it (:data:`POLICY_KINDS`). Grading and the self-check both read
    it, so a student sees before grading what grading will do."""
    notes: dict[str, list[str]] = {}
    for flag in flags:
        if flag["kind"] in POLICY_KINDS:
            notes.setdefault(flag["grade_id"], []).append(policy_note(flag, policy))
    return notes


def _is_module(dotted: str) -> bool:
    """True when ``nanolm_lib.x.y`` names a module or package of the library (not a function
    in it)."""

    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


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
            if alias.name == "nanolm_lib.grading.checks":
                self.flag(node, "patch",
                          "imports nanolm_lib.grading.checks (the module the tests use)")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            local = alias.asname or alias.name
            if module.split(".")[0] == "nanolm_lib":
                if alias.name in self.graded_names and not _is_module(f"{module}.{alias.name}"):
                    self.flag(node, "reference-use",
                              f"imports the graded name {alias.name!r} from {module} "
                              "instead of implementing it")
                if module == "nanolm_lib.grading.checks" and alias.name in REFERENCE_HELPERS:
                    self.flag(node, "reference-use", f"imports {alias.name} from "
                              "nanolm_lib.grading.checks (the reference)")
                elif module == "nanolm_lib.grading.checks" or alias.name == "checks":
                    self.flag(node, "patch",
                              "imports from nanolm_lib.grading.checks (the test helpers)")
                # `from nanolm_lib.course import attention` binds a module
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
        if loaded:  # m = importlib.import_module("nanolm_lib.course.attention"): m stands for it
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
        # a chain at once: its links nearest the base (where module paths are), then the base
        # (a hostile chain thousands of links long costs linear time, not quadratic)
        links = []
        while isinstance(node, ast.Attribute):
            links.append(node)
            node = node.value
        for link in links[-MAX_CHAIN:]:
            self._check_attribute(link)
        self.visit(node)

    def _check_attribute(self, node: ast.Attribute) -> None:
        full = self.resolve(_dotted(node))
        if full and isinstance(node.ctx, ast.Load):
            if full.startswith(("sys.modules", "builtins.", "importlib.reload")):
                self.flag(node, "patch", f"uses {full}")
            elif full.startswith("nanolm_lib.grading.checks"):
                if full.rsplit(".", 1)[-1] in REFERENCE_HELPERS:
                    self.flag(node, "reference-use", f"uses {full} (loads the reference)")
                else:
                    self.flag(node, "patch", f"uses {full} (the test helpers)")
            elif full.startswith("nanolm_lib.") and full.rsplit(".", 1)[-1] in self.graded_names:
                self.flag(node, "reference-use",
                          f"uses {full} instead of implementing it")

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
        if full in ("nanolm_lib.grading.checks.reference",) or (
                isinstance(node.func, ast.Name) and self.modules.get(node.func.id)
                == "nanolm_lib.grading.checks.reference"):
            self.flag(node, "reference-use", "loads the reference with checks.reference()")
        self.generic_visit(node)


# ------------------------------------------------------------------------------ reading cells
class _NoAnnotations(ast.NodeTransformer):
    """Annotations are not calls: ``config: GPTConfig`` uses nothing a policy counts."""

    def visit_arg(self, node):
        node.annotation = None
        return node

    def visit_FunctionDef(self, node):
        node.returns = None
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node):
        self.generic_visit(node)
        if node.value is None:
            return ast.Pass()
        return ast.Assign(targets=[node.target], value=node.value)


def _code(source: str) -> str:
    """A cell's Python: IPython magics and shell escapes blanked (a ``%%time`` cell runs the
    rest as it is), line numbers kept."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def _parse(source: str) -> ast.Module | None:
    try:
        tree = ast.parse(_code(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # Python cannot run it either: its own test fails
    return ast.fix_missing_locations(_NoAnnotations().visit(tree))


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _namespace_call(node: ast.AST) -> bool:
    """``globals()``, ``locals()``, ``vars()`` or ``vars(x)``."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
        and node.func.id in NAMESPACES


@dataclass
class _Statement:
    """One top-level statement: the module-level names it binds and reads."""

    cell: Cell
    node: ast.stmt
    binds: set[str]
    uses: set[str]


def _names(node: ast.stmt) -> tuple[set[str], set[str]]:
    """(bound, read) module-level names of one top-level statement: a function's or a class's
    own locals are not read from the module."""
    binds, uses = set(), set()
    try:
        top = symtable.symtable(ast.unparse(node), "<cell>", "exec")
    except (SyntaxError, ValueError):  # e.g. a stray `return`: every name counts
        names = [n for n in ast.walk(node) if isinstance(n, ast.Name)]
        return ({n.id for n in names if isinstance(n.ctx, ast.Store)},
                {n.id for n in names if isinstance(n.ctx, ast.Load)})
    for symbol in top.get_symbols():
        if symbol.is_assigned() or symbol.is_imported():
            binds.add(symbol.get_name())
        if symbol.is_referenced():
            uses.add(symbol.get_name())
    tables = list(top.get_children())
    while tables:
        table = tables.pop()
        tables += table.get_children()
        for symbol in table.get_symbols():
            if symbol.is_global() and symbol.is_referenced():
                uses.add(symbol.get_name())
            if symbol.is_declared_global() and symbol.is_assigned():
                binds.add(symbol.get_name())
    for sub in ast.walk(node):  # globals()["name"] = ...
        if isinstance(sub, ast.Subscript) and isinstance(sub.ctx, ast.Store) \
                and _namespace_call(sub.value) and _literal(sub.slice):
            binds.add(_literal(sub.slice))
    return binds, uses


def _statements(cells: list[Cell]) -> list[_Statement]:
    found = []
    for cell in cells:
        tree = _parse(cell.source)
        for node in tree.body if tree else []:
            found.append(_Statement(cell, node, *_names(node)))
    return found


# ------------------------------------------------------------------------------ resolving names
class _Resolver:
    """What a name or an attribute chain stands for, as dotted paths (``torch.nn.functional``),
    from the notebook's imports and simple assignments, wherever they are (flow-insensitive:
    every binding a name has anywhere counts)."""

    def __init__(self, statements: list[_Statement]):
        self.aliases: dict[str, set[str]] = defaultdict(set)
        self.stars: set[str] = set()
        for _ in range(3):  # an alias may use one bound further down: a few rounds settle it
            before = sum(map(len, self.aliases.values()))
            for statement in statements:
                for node in ast.walk(statement.node):
                    for name, path in self._bindings(node):
                        self.aliases[name].add(path)
            if sum(map(len, self.aliases.values())) == before:
                break

    def _bindings(self, node: ast.AST):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    yield alias.asname, alias.name
                else:
                    yield alias.name.split(".")[0], alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name == "*":
                    self.stars.add(node.module)
                else:
                    yield alias.asname or alias.name, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                yield from self._assigned(target, node.value)
        elif isinstance(node, ast.NamedExpr):
            yield from self._assigned(node.target, node.value)
        elif isinstance(node, ast.For) and isinstance(node.iter, (ast.Tuple, ast.List)):
            for element in node.iter.elts:
                yield from self._assigned(node.target, element)

    def _assigned(self, target: ast.AST, value: ast.AST):
        if isinstance(target, ast.Name):
            for path in self.resolve(value):
                yield target.id, path
        elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(
                value, (ast.Tuple, ast.List)) and len(target.elts) == len(value.elts):
            for one, other in zip(target.elts, value.elts):
                yield from self._assigned(one, other)

    def resolve(self, node: ast.AST) -> set[str]:
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return set(self.aliases[node.id])
            return {f"{module}.{node.id}" for module in self.stars}
        if isinstance(node, ast.Attribute):  # a chain, walked without recursion
            attributes = []
            while isinstance(node, ast.Attribute):
                attributes.append(node.attr)
                node = node.value
            suffix = ".".join(reversed(attributes))
            return {f"{path}.{suffix}" for path in self.resolve(node)}
        if isinstance(node, ast.Call):
            called = self.callee(node)
            if called & {"getattr", "builtins.getattr"} and len(node.args) > 1 \
                    and _literal(node.args[1]):
                return {f"{path}.{_literal(node.args[1])}" for path in self.resolve(node.args[0])}
            if called & {"__import__", "importlib.import_module"} and node.args \
                    and _literal(node.args[0]):
                return {_literal(node.args[0])}
        if isinstance(node, ast.Subscript) and _literal(node.slice):  # x.__dict__["f"]
            owner = node.value
            if isinstance(owner, ast.Attribute) and owner.attr == "__dict__":
                return {f"{p}.{_literal(node.slice)}" for p in self.resolve(owner.value)}
            if _namespace_call(owner) and owner.func.id == "vars" and owner.args:
                return {f"{p}.{_literal(node.slice)}" for p in self.resolve(owner.args[0])}
        return set()

    def callee(self, call: ast.Call) -> set[str]:
        """The function a call calls: its resolved paths and its own dotted name."""
        own = _dotted(call.func)
        return self.resolve(call.func) | ({own} if own else set())

    def computed_lookup(self, node: ast.AST) -> str | None:
        """What makes ``node`` a lookup of a name computed at run time, or None."""
        if isinstance(node, ast.Call):
            for name in self.callee(node):
                name = name.removeprefix("builtins.")
                if name not in COMPUTED_LOOKUPS:
                    continue
                argument = COMPUTED_LOOKUPS[name]
                if argument is None:
                    return f"{name}() runs code or an IPython command built at run time"
                if len(node.args) > argument and _literal(node.args[argument]) is None:
                    return f"{name}() with a name computed at run time"
        if isinstance(node, ast.Name) and node.id == "get_ipython":
            return "get_ipython() runs code or an IPython command built at run time"
        if isinstance(node, ast.Subscript) and _literal(node.slice) is None and (
                _namespace_call(node.value) or (isinstance(node.value, ast.Attribute) and (
                    node.value.attr == "__dict__"
                    or "sys.modules" in self.resolve(node.value)))):
            owner = (f"{node.value.func.id}()" if _namespace_call(node.value)
                     else f".{node.value.attr}")  # no text of the student's in a message
            return f"{owner}[...] with a name computed at run time"
        return None


def _matches(path: str, pattern: str) -> bool:
    """``path`` is ``pattern``, inside it, or the same name under another module of the same
    package (``torch._C._nn.scaled_dot_product_attention`` for
    ``torch.nn.functional.scaled_dot_product_attention``)."""
    if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern + ".*"):
        return True
    wanted, parts = pattern.split("."), path.split(".")
    return (len(wanted) > 1 and not _wild(wanted[-1]) and parts[0] == wanted[0]
            and wanted[-1] in parts[1:] and not pattern.startswith(path + "."))


def _matches_attribute(attribute: str, pattern: str) -> bool:
    """``x.<attribute>`` on an object the scan cannot resolve names ``pattern``'s last part,
    when that name is distinctive enough to mean it."""
    last = pattern.rsplit(".", 1)[-1]
    return "." in pattern and not _wild(last) and len(last) >= DISTINCTIVE and attribute == last


def _wild(text: str) -> bool:
    return any(char in text for char in "*?[")


# ------------------------------------------------------------------------------ whose code
def _scope(question: str, statements: list[_Statement], graded: set[str],
           through_graded: bool) -> dict[int, str | None]:
    """The statements that are ``question``'s code (see the module docstring): index -> the
    name it was reached through (None: its own cell, or a binding of its name)."""
    binders: dict[str, list[int]] = defaultdict(list)
    reached: dict[int, str | None] = {}
    for index, statement in enumerate(statements):
        for name in statement.binds:
            binders[name].append(index)
        if statement.cell.grade_id == question or question in statement.binds:
            reached[index] = None
    queue = list(reached)
    while queue:
        for name in statements[queue.pop()].uses:
            if name == question or (name in graded and not through_graded):
                continue
            for index in binders.get(name, []):
                if index not in reached:
                    reached[index] = name
                    queue.append(index)
    return reached


def _unanswered(question: str, statements: list[_Statement]) -> bool:
    """True when every definition of ``question`` is still the starter: a body (after its
    docstring) that only raises NotImplementedError."""
    definitions = [s.node for s in statements if question in s.binds
                   and isinstance(s.node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for node in definitions:
        body = node.body[1:] if _literal(getattr(node.body[0], "value", None)) else node.body
        if not (len(body) == 1 and isinstance(body[0], ast.Raise)
                and "NotImplementedError" in ast.unparse(body[0])):
            return False
    return True


def _forbidden_use(node: ast.AST, resolver: _Resolver, forbids: tuple[str, ...]):
    """(line, what) for the first use of a forbidden name in ``node``, or None. An import alone
    uses nothing: the name it binds counts where it is read."""
    links = {id(sub.value) for sub in ast.walk(node) if isinstance(sub, ast.Attribute)}
    for sub in ast.walk(node):
        if id(sub) in links or not isinstance(
                sub, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)):
            continue  # a chain is read whole, from its outermost link
        if isinstance(sub, (ast.Name, ast.Attribute)) and not isinstance(sub.ctx, ast.Load):
            continue
        paths = resolver.resolve(sub)
        for path in sorted(paths):
            if any(_matches(path, pattern) for pattern in forbids):
                # names only: a call's or a subscript's text may hold any string
                text = _dotted(sub) or path
                shown = path if text == path else f"{text[:80]} ({path})"
                return sub.lineno, f"uses {shown[:160]}, which this question may not use"
        chain = sub
        while isinstance(chain, ast.Attribute) and not paths:
            hit = next((p for p in forbids if _matches_attribute(chain.attr, p)), None)
            if hit:
                return sub.lineno, (f"uses .{chain.attr} (taken for {hit}), which this "
                                    "question may not use")
            chain = chain.value
    return None


def _calls(node: ast.AST, resolver: _Resolver, pattern: str) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            if any(_matches(path, pattern) for path in resolver.callee(sub)):
                return True
            if isinstance(sub.func, ast.Attribute) and not resolver.resolve(sub.func) \
                    and _matches_attribute(sub.func.attr, pattern):
                return True
    return False


def _policy_flags(question, statements: list[_Statement], resolver: _Resolver,
                  graded: set[str]) -> list[Flag]:
    """The ``policy`` flags of one question (:class:`nanolm_lib.grading.question_base.Question`)."""
    name, forbids, requires = question.name, question.forbids, question.requires
    scope = _scope(name, statements, graded, through_graded=True)
    flags = []
    for index, via in sorted(scope.items()):
        statement = statements[index]
        reached = f" (reached through {via})" if via else ""
        found = _forbidden_use(statement.node, resolver, forbids)
        if found:
            flags.append(Flag(name, "policy", found[0], found[1] + reached,
                              statement.cell.number))
        for sub in ast.walk(statement.node):
            computed = resolver.computed_lookup(sub)
            if computed:
                flags.append(Flag(name, "policy", sub.lineno,
                                  f"{computed}: this question's rule (what it may not call) "
                                  f"cannot be checked through it{reached}",
                                  statement.cell.number))
    for pattern in requires:
        if _unanswered(name, statements):
            break
        if not any(_calls(statements[index].node, resolver, pattern) for index in scope):
            own = next((statements[i] for i, via in scope.items() if via is None
                        and name in statements[i].binds), None)
            flags.append(Flag(name, "policy", own.node.lineno if own else 0,
                              f"never calls {pattern}, which this question must call",
                              own.cell.number if own else 0))
    return flags


def _questions(lesson: str | None, graded: set[str]) -> list:
    """The registered questions of ``lesson`` (found from ``graded`` when not given)."""

    if lesson is None:
        lesson = next((name for name, names in GRADED.items()
                       if graded and set(graded) <= set(names)), None)
    return [q for name, q in QUESTIONS.get(lesson, {}).items() if name in graded]


# ------------------------------------------------------------------------------ the scan
def scan_cells(cells: list, graded_names: set[str], fingerprints: dict | None = None,
               lesson: str | None = None) -> list[Flag]:
    """See :func:`_scan_cells`. The walks recurse once per level of a syntax tree, and a tree
    that Python's parser accepts may be deeper than the default recursion limit allows."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, DEEPEST_TREE))
    try:
        return _scan_cells(cells, graded_names, fingerprints, lesson)
    finally:
        sys.setrecursionlimit(limit)


def _scan_cells(cells: list, graded_names: set[str], fingerprints: dict | None = None,
                lesson: str | None = None) -> list[Flag]:
    """Scan a notebook's code cells, in order: :class:`Cell` objects, or ``(grade_id, source)``
    pairs (solution cells; a None grade_id is an ordinary cell). With ``fingerprints``
    (:func:`autograde.integrity.copycheck.load_fingerprints`) also for copies of the reference; the
    policies are those of ``lesson`` (found from ``graded_names`` when not given).
    """

    cells = [c if isinstance(c, Cell) else Cell(c[0], c[1], number)
             for number, c in enumerate(cells, 1)]
    graded = set(graded_names)
    statements = _statements(cells)
    resolver = _Resolver(statements)
    owners: dict[int, list[str]] = defaultdict(list)  # statement -> the questions it is code of
    for name in sorted(graded):
        for index in _scope(name, statements, graded, through_graded=False):
            owners[index].append(name)

    flags: list[Flag] = []
    modules: dict[str, str] = {}  # module aliases carry over from cell to cell, as in the kernel
    for index, statement in enumerate(statements):
        cell = statement.cell
        scanner = _Scanner(cell.label, graded, modules)
        scanner.visit(statement.node)
        if cell.given:
            continue
        found = scanner.flags + [Flag(cell.label, "dynamic", sub.lineno, computed)
                                 for sub in ast.walk(statement.node)
                                 if (computed := resolver.computed_lookup(sub))]
        for grade_id in owners.get(index) or [cell.label]:
            # one line may import several graded names: each question's own finding first
            for flag in sorted(found, key=lambda f: repr(grade_id) not in f.message):
                flags.append(Flag(grade_id, flag.kind, flag.line, flag.message, cell.number))
    for cell in cells:
        if cell.given:
            continue
        tree = _parse(cell.source)
        defined = {n.name for n in (tree.body if tree else []) if isinstance(
            n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))} & graded
        for name in sorted(defined):
            for match in copied_parts(_code(cell.source), name, fingerprints or {}):
                flags.append(Flag(name, "copied" if match.scored else "similar", match.line,
                                  match.describe() + ("" if match.scored else
                                                      ": dictated by the statement, report only"),
                                  cell.number))
    for question in _questions(lesson, graded):
        if question.forbids or question.requires:
            flags += _policy_flags(question, statements, resolver, graded)
    scored = {(f.grade_id, f.cell, f.line) for f in flags if f.kind == "policy"}
    unique: dict[tuple, Flag] = {}
    for flag in flags:  # one finding per line and kind; a computed lookup scored once
        if flag.kind == "dynamic" and (flag.grade_id, flag.cell, flag.line) in scored:
            continue
        unique.setdefault((flag.grade_id, flag.cell, flag.line, flag.kind), flag)
    return list(unique.values())


def notebook_cells(nb, released=None) -> list[Cell]:
    """The code cells a scan reads (see the module docstring). With the ``released`` notebook,
    its test cells are left out (nbgrader puts them back) and the cells left as released are
    the course's (given); without it, the metadata says which are (the self-check's own copy).
    """

    tests, unchanged = None, set()
    if released is not None:
        tests = {nbgrader_meta(c).get("grade_id") for c in released.cells
                 if nbgrader_meta(c).get("grade")}
        unchanged = {c.source.strip() for c in released.cells if c.cell_type == "code"
                     and not nbgrader_meta(c).get("solution")}
    cells = []
    for number, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if meta.get("grade") and (tests is None or grade_id in tests):
            continue  # a test cell: nbgrader puts the released one back
        solution = bool(meta.get("solution")) and bool(grade_id) and not meta.get("grade")
        if released is not None:
            given = not solution and cell.source.strip() in unchanged
        else:
            given = not solution and bool(meta.get("locked")) and bool(grade_id)
        cells.append(Cell(grade_id if solution else None, cell.source, number, given))
    return cells


def scan_notebook(nb, graded_names: set[str], fingerprints: dict | None = None,
                  released=None, lesson: str | None = None) -> list[Flag]:
    """Scan a submitted notebook (nbformat node); ``released``: the lesson as released, whose
    unchanged cells are the course's."""
    return scan_cells(notebook_cells(nb, released), graded_names, fingerprints, lesson)
