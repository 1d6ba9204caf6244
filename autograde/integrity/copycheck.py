"""Copy check: a graded definition that is a reference's own code, up to cosmetics.

There are two references: the package (``nanolm_lib``) and the instructor's solution notebooks
(``solutions/``). A student's definition of a graded name (the function, or the class; or a
method of a graded class) is compared with both, two ways:

* **exact**: its normal form (:func:`_normalised`) equals a reference's. Both sides lose their
  comments and formatting (only the AST is compared), docstrings, string constants (one
  placeholder), annotations and decorators; every variable, parameter, function and class name
  becomes ``v0, v1, ...`` in order of first appearance, and so does every attribute of ``self``;
  other attributes (``torch.tril``, ``x.view``) and keyword names are kept: they are the API.
* **near-exact**: its winnowed fingerprints (:mod:`autograde.integrity.similarity`) share at least
  :data:`NEAR_EXACT` of a reference's, the starter code left out: one edit (``.mT`` for
  ``.transpose(-2, -1)``, a reordered ``__init__``, dead code) leaves most of them.

Sizes are counted on the normal form, so that stripping docstrings and type hints from a copy
does not take it under the threshold. What the policy (``grade --copied zero``) scores 0 is a
copy of a definition long enough not to be dictated by its statement: at least
:data:`MIN_NODES` normalised nodes for an exact match (of a whole definition or of one method),
at least :data:`MIN_PRINTS` fingerprints and :data:`SCORED_ALIKE` of them shared for a
near-exact one. Shorter matches are what independent students write the same way from the
lesson's text: measured with the two
independent solutions under ``tests/integrity/independent/`` (lessons 01-07, written from the
lesson text alone), which normalise exactly to the reference's ``Block`` (119 nodes),
``pack_stories`` (50) and ``MultiHeadAttention.__init__`` (86), and share 81% of
``train_step``'s 16 fingerprints. Such matches are reported for a person to read, and never
change a score.

The reference side is stored as hashes (:func:`write_fingerprints`), so a staged student kit
runs the check without holding a reference body.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from autograde.course import grade_cells
from autograde.integrity.similarity import STARTER, fingerprints, similarity, strip_definition
from autograde.paths import AUTOGRADE_DIR
from nanolm_lib.grading.curriculum import GRADED

DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

MIN_NODES = 150        # independent exact matches measured up to 119
MIN_PRINTS = 40        # about 180 normalised tokens; independent near matches had 16
TRIVIAL_NODES, TRIVIAL_PRINTS = 20, 8   # smaller matches are not even reported: a line or two
NEAR_EXACT = 0.8       # reported from here
SCORED_ALIKE = 0.9     # scored from here: a correct alternative edited from the reference's
                       # AdamW (another bias-correction form) shares 84%
FINGERPRINTS_FILE = AUTOGRADE_DIR / "reference_fingerprints.json"   # a kit's, from student-kit
ROOT = AUTOGRADE_DIR.parent
PACKAGE_DIR = ROOT / "nanolm_lib"
SOLUTIONS_DIR = ROOT / "solutions"
LESSONS_DIR = ROOT / "lessons"


class _Normaliser(ast.NodeTransformer):
    def __init__(self):
        self.names: dict[str, str] = {}
        self.attributes: dict[str, str] = {}
        self.self_names: set[str] = set()

    def name(self, original: str) -> str:
        return self.names.setdefault(original, f"v{len(self.names)}")

    def visit_FunctionDef(self, node):
        strip_definition(node)
        node.name = self.name(node.name)
        arguments = node.args.posonlyargs + node.args.args
        if getattr(node, "_method", False) and arguments:
            self.self_names.add(arguments[0].arg)
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        strip_definition(node)
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


def _normalised(node: ast.AST) -> dict:
    """The normal form of a function or class definition (see the module docstring) as its
    sha256 ``"hash"``, and its size in ``"nodes"`` (docstrings, annotations and decorators do
    not count)."""
    tree = _Normaliser().visit(copy.deepcopy(node))
    form = ast.dump(tree, annotate_fields=False, include_attributes=False)
    return {"hash": hashlib.sha256(form.encode()).hexdigest(),
            "nodes": sum(1 for _ in ast.walk(tree))}


def _parts(node: ast.AST) -> dict[str, dict]:
    """The definition and, for a class, each method: part -> {"hash", "nodes"}, and the
    definition's winnowed "prints"."""
    parts = {"": _normalised(node)}
    parts[""]["prints"] = sorted(fingerprints(node))
    if isinstance(node, ast.ClassDef):
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                parts[item.name] = _normalised(item)
    return parts


def _definition(tree: ast.Module, name: str) -> ast.AST | None:
    return next((node for node in tree.body if isinstance(node, DEFINITIONS)
                 and node.name == name), None)


def _solution_cells(solutions_dir: Path) -> dict[str, str]:
    """grade_id -> source of every solution cell in the instructor's notebooks."""
    import nbformat


    cells = {}
    for notebook in sorted(Path(solutions_dir).glob("[0-9][0-9]_*/[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(str(notebook), as_version=4)
        cells.update((c["grade_id"], c["source"]) for c in grade_cells(nb)
                     if c["kind"] == "solution")
    return cells


def reference_fingerprints(package_dir: Path = PACKAGE_DIR, solutions_dir: Path = SOLUTIONS_DIR,
                           lessons_dir: Path = LESSONS_DIR) -> dict[str, dict]:
    """``{graded name: {source: {part: {"hash", "nodes", ...}}}}`` for the sources
    ``nanolm_lib`` and ``solutions`` (where a solutions folder exists), with the starter
    code's fingerprints under :data:`STARTER` (``{"prints": [...]}``)."""
    result: dict[str, dict] = {}
    trees: dict[str, ast.Module] = {}
    cells = _solution_cells(solutions_dir) if Path(solutions_dir).is_dir() else {}
    starters = _solution_cells(lessons_dir) if Path(lessons_dir).is_dir() else {}
    for names in GRADED.values():
        for name, module in names.items():
            if module not in trees:
                source = package_dir / "course" / f"{module}.py"
                trees[module] = ast.parse(source.read_text("utf-8"))
            found = {"nanolm_lib": _definition(trees[module], name)}
            try:
                found["solutions"] = _definition(ast.parse(cells.get(name, "")), name)
            except SyntaxError:
                pass
            result[name] = {source: _parts(node) for source, node in found.items() if node}
            result[name][STARTER] = {"prints": sorted(fingerprints(starters.get(name, "")))}
    return result


def write_fingerprints(path: Path, package_dir: Path = PACKAGE_DIR,
                       solutions_dir: Path = SOLUTIONS_DIR,
                       lessons_dir: Path = LESSONS_DIR) -> None:
    """Store the fingerprints (for a staged kit, whose package lacks the reference bodies)."""
    fingerprints = reference_fingerprints(package_dir, solutions_dir, lessons_dir)
    Path(path).write_text(json.dumps(fingerprints, indent=1, sort_keys=True) + "\n")


def load_fingerprints() -> dict[str, dict]:
    """The stored fingerprints where this is a student kit, else computed from the sources."""
    if FINGERPRINTS_FILE.is_file():
        return json.loads(FINGERPRINTS_FILE.read_text())
    return reference_fingerprints()


@dataclass(frozen=True)
class Match:
    """A student's definition that is a reference's code: where, which, how alike."""

    line: int
    what: str          # the graded name, or "Class.method"
    source: str        # "nanolm_lib" or "solutions"
    alike: float       # 1.0 for an exact match, else the fingerprints' similarity
    scored: bool       # the policy applies (long enough, not dictated), else report only

    def describe(self) -> str:
        how = ("is the reference's code up to names, comments, docstrings, strings and "
               "formatting" if self.alike == 1.0 else
               f"shares {self.alike:.0%} of its fingerprints with the reference's code")
        where = "the package" if self.source == "nanolm_lib" else "the solution notebook"
        return f"{self.what} {how} ({where})"


def copied_parts(source: str, name: str, fingerprints: dict[str, dict]) -> list[Match]:
    """The definitions of the graded ``name`` in ``source`` (one solution cell) that are a
    reference's code, exactly or near-exactly (see the module docstring); the starter code's
    fingerprints count for nobody."""
    try:
        node = _definition(ast.parse(source), name)
    except SyntaxError:
        return []
    if node is None or not fingerprints.get(name):
        return []
    mine = _parts(node)
    starter = set(fingerprints[name].get(STARTER, {}).get("prints", []))
    best: dict[str, Match] = {}
    for origin, theirs in sorted(fingerprints[name].items()):
        if origin == STARTER:
            continue
        for part, found in _matches(node, mine, theirs, starter, name, origin).items():
            if part not in best or (found.scored, found.alike) > (best[part].scored,
                                                                   best[part].alike):
                best[part] = found
    if "" in best:  # the whole definition: no need to list its methods too
        return [best[""]]
    return sorted(best.values(), key=lambda m: m.line)


def _matches(node, mine: dict, theirs: dict, starter: set[int], name: str,
             origin: str) -> dict[str, Match]:
    found = {}
    for part, entry in mine.items():
        reference = theirs.get(part)
        if not reference:
            continue
        line = node.lineno if not part else next(
            item.lineno for item in node.body if getattr(item, "name", None) == part)
        what = name if not part else f"{name}.{part}"
        if entry["hash"] == reference["hash"] and entry["nodes"] >= TRIVIAL_NODES:
            found[part] = Match(line, what, origin, 1.0, entry["nodes"] >= MIN_NODES)
        elif not part and "prints" in reference:
            prints = set(reference["prints"]) - starter
            alike = similarity(set(entry["prints"]), prints, starter)
            if alike >= NEAR_EXACT and len(prints) >= TRIVIAL_PRINTS:
                found[part] = Match(line, what, origin, round(alike, 2),
                                    len(prints) >= MIN_PRINTS and alike >= SCORED_ALIKE)
    return found
