"""Copy check: a graded definition that is the reference's own code, up to cosmetics.

Both sides are reduced to a normal form before they are compared (:func:`normal_form`):

* comments and formatting: gone with the parse (only the AST is compared);
* docstrings: removed (from the function, the class and every method);
* string constants and f-strings: replaced by one placeholder;
* type annotations and decorators: removed;
* names: every variable, parameter, function and class name becomes ``v0, v1, ...`` in order
  of first appearance, and so does every attribute of ``self`` (``self.qkv`` -> ``self.a0``);
  other attributes (``torch.tril``, ``x.view``) and keyword names are kept: they are the API.

A student's definition of a graded name (the function, or the class) whose normal form equals
the reference's is "copied from the reference"; so is a method of a graded class that equals
the reference class's method of the same name. Definitions smaller than :data:`MIN_NODES` AST
nodes (methods: :data:`MIN_METHOD_NODES`) are never flagged: a one-line ``torch.tril(...)`` or a
constructor that creates the layers the lesson names is what anyone writes.

The reference side is a fingerprint (a SHA-256 of the normal form), so a staged student kit can
run the check without the reference bodies: :func:`write_fingerprints` stores them at kit time.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
from pathlib import Path

from nanolm_lib.curriculum import GRADED

MIN_NODES = 40
MIN_METHOD_NODES = 80
FINGERPRINTS_FILE = Path(__file__).with_name("reference_fingerprints.json")
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "nanolm_lib"


class _Normaliser(ast.NodeTransformer):
    def __init__(self):
        self.names: dict[str, str] = {}
        self.attributes: dict[str, str] = {}
        self.self_names: set[str] = set()

    def name(self, original: str) -> str:
        return self.names.setdefault(original, f"v{len(self.names)}")

    def _strip_body(self, node):
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:] or [ast.Pass()]
        node.body = body
        node.decorator_list = []

    def visit_FunctionDef(self, node):
        self._strip_body(node)
        node.returns = None
        node.name = self.name(node.name)
        arguments = node.args.posonlyargs + node.args.args
        if getattr(node, "_method", False) and arguments:
            self.self_names.add(arguments[0].arg)
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self._strip_body(node)
        node.name = self.name(node.name)
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                item._method = True
        self.generic_visit(node)
        return node

    def visit_arg(self, node):
        node.arg = self.name(node.arg)
        node.annotation = None
        return node

    def visit_AnnAssign(self, node):
        self.generic_visit(node)
        return ast.Assign(targets=[node.target], value=node.value or ast.Constant(None))

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and node.value.id in self.self_names:
            node.attr = self.attributes.setdefault(node.attr, f"a{len(self.attributes)}")
        self.generic_visit(node)
        return node

    def visit_Name(self, node):
        node.id = self.name(node.id)
        return node

    def visit_Global(self, node):
        node.names = [self.name(n) for n in node.names]
        return node

    visit_Nonlocal = visit_Global

    def visit_Constant(self, node):
        if isinstance(node.value, (str, bytes)):
            return ast.Constant("")
        return node

    def visit_JoinedStr(self, node):
        return ast.Constant("")


def normal_form(node: ast.AST) -> str:
    """The normal form of a function or class definition (see the module docstring)."""
    tree = _Normaliser().visit(copy.deepcopy(node))
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def size(node: ast.AST) -> int:
    return sum(1 for _ in ast.walk(node))


def _fingerprint(node: ast.AST) -> str:
    return hashlib.sha256(normal_form(node).encode()).hexdigest()


def _parts(node: ast.AST) -> dict[str, dict]:
    """The definition and, for a class, each method: name -> {"hash", "nodes"}."""
    parts = {"": {"hash": _fingerprint(node), "nodes": size(node)}}
    if isinstance(node, ast.ClassDef):
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                parts[item.name] = {"hash": _fingerprint(item), "nodes": size(item)}
    return parts


def reference_fingerprints(package_dir: Path = PACKAGE_DIR) -> dict[str, dict]:
    """``{graded name: {part: {"hash", "nodes"}}}`` from the reference package's source."""
    result = {}
    trees: dict[str, ast.Module] = {}
    for names in GRADED.values():
        for name, module in names.items():
            if module not in trees:
                trees[module] = ast.parse((package_dir / f"{module}.py").read_text("utf-8"))
            for node in trees[module].body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                    result[name] = _parts(node)
    return result


def write_fingerprints(path: Path, package_dir: Path = PACKAGE_DIR) -> None:
    """Store the fingerprints (for a staged kit, whose package lacks the reference bodies)."""
    Path(path).write_text(json.dumps(reference_fingerprints(package_dir), indent=1,
                                     sort_keys=True) + "\n")


def load_fingerprints() -> dict[str, dict]:
    """The stored fingerprints where this is a student kit, else computed from the package."""
    if FINGERPRINTS_FILE.is_file():
        return json.loads(FINGERPRINTS_FILE.read_text())
    return reference_fingerprints()


def copied_parts(source: str, name: str, fingerprints: dict[str, dict]) -> list[tuple[int, str]]:
    """``(line, what)`` for each definition in ``source`` (one solution cell) of the graded
    ``name`` that is the reference's, up to the normalisations above."""
    reference = fingerprints.get(name)
    if not reference:
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name != name:
            continue
        for part, mine in _parts(node).items():
            theirs = reference.get(part)
            smallest = MIN_METHOD_NODES if part else MIN_NODES
            if theirs and mine["hash"] == theirs["hash"] and mine["nodes"] >= smallest:
                what = name if not part else f"{name}.{part}"
                line = node.lineno
                if part:
                    line = next(item.lineno for item in node.body
                                if getattr(item, "name", None) == part)
                found.append((line, what))
                if not part:
                    break  # the whole class: no need to list its methods too
    return found
