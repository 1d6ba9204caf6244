"""Winnowed similarity of solution code, measured the way MOSS and Dolos measure it.

A definition becomes a stream of tokens with everything a copier changes for free taken out
(:func:`tokens`): comments, docstrings, annotations and layout go with the parse, every name
becomes ``V``, every string ``S``; keywords, operators, numbers and the attributes after a dot
(``torch.tril``, ``x.view``: the API) stay. Each run of :data:`K` tokens is hashed, and from
each window of :data:`WINDOW` consecutive hashes the smallest is kept (winnowing, Schleimer,
Wilkerson and Aiken, SIGMOD 2003): any match of at least ``K + WINDOW - 1`` tokens shares a
fingerprint, and a renamed, reformatted or reordered copy keeps most of them.

The similarity of two fingerprint sets is ``2 |A & B| / (|A| + |B|)`` (1.0: the same code up to
the changes above). Fingerprints of the lesson's starter code (the signature the notebook
hands out) are left out of both sides, so that what every student was given counts for nobody.
Hashes are BLAKE2b, not Python's ``hash``: the same code has the same fingerprints on every
machine and in every process.
"""

from __future__ import annotations

import ast
import copy
import csv
import hashlib
import io
import itertools
import keyword
import tokenize
from dataclasses import dataclass
from pathlib import Path

from autograde.course import grade_cells

STARTER = "starter"   # the key of the starter code's fingerprints, beside the sources
K = 12       # tokens per k-gram: shorter matches (a line of indexing) are noise
WINDOW = 8   # every match of K + WINDOW - 1 = 19 tokens is found


def strip_definition(node: ast.AST) -> None:
    """Take a definition's (or module's) docstring, decorators and return annotation out, in
    place: nothing a copier must keep. The copy check's normal form starts the same way."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        node.body = body[1:] or [ast.Pass()]
    if hasattr(node, "decorator_list"):
        node.decorator_list = []
    if hasattr(node, "returns"):
        node.returns = None


class _Strip(ast.NodeTransformer):
    """Docstrings, annotations and decorators out, everywhere in a tree."""

    def _body(self, node):
        strip_definition(node)
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Module = _body

    def visit_arg(self, node):
        node.annotation = None
        return node

    def visit_AnnAssign(self, node):
        self.generic_visit(node)
        if node.value is None:
            return None
        return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)


def tokens(code: str | ast.AST) -> list[str]:
    """The normalised token stream of ``code`` (source text or a parsed node); [] when it
    does not parse."""
    try:
        tree = ast.parse(code) if isinstance(code, str) else code
        text = ast.unparse(_Strip().visit(ast.fix_missing_locations(copy.deepcopy(tree))))
    except (SyntaxError, ValueError, RecursionError):
        return []
    stream, previous = [], ""
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        kind, value = token.type, token.string
        if kind == tokenize.NAME:
            value = value if keyword.iskeyword(value) or previous == "." else "V"
        elif kind == tokenize.STRING or kind == getattr(tokenize, "FSTRING_START", -1):
            value = "S"
        elif kind == tokenize.NEWLINE:
            value = ";"
        elif kind == tokenize.INDENT:
            value = "{"
        elif kind == tokenize.DEDENT:
            value = "}"
        elif kind not in (tokenize.OP, tokenize.NUMBER):
            continue
        stream.append(value)
        previous = token.string
    return stream


def _hash(gram: tuple[str, ...]) -> int:
    digest = hashlib.blake2b("\x1f".join(gram).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def fingerprints(code: str | ast.AST) -> set[int]:
    """The winnowed fingerprints of ``code`` (see the module docstring)."""
    stream = tokens(code)
    hashes = [_hash(tuple(stream[i:i + K])) for i in range(len(stream) - K + 1)]
    if len(hashes) <= WINDOW:  # shorter than one window: its smallest hash, if any
        return {min(hashes)} if hashes else set()
    return {min(hashes[i:i + WINDOW]) for i in range(len(hashes) - WINDOW + 1)}


def similarity(first: set[int], second: set[int], ignore: set[int] = frozenset()) -> float:
    """``2 |A & B| / (|A| + |B|)`` after leaving out ``ignore`` (the starter code's)."""
    first, second = set(first) - ignore, set(second) - ignore
    if not first or not second:
        return 0.0
    return 2 * len(first & second) / (len(first) + len(second))


# --------------------------------------------------------------------------- a batch's table
@dataclass(frozen=True)
class Pair:
    """Two sources of one question and how alike they are."""

    lesson: str
    question: str
    first: str      # a student, or "reference:nanolm_lib" / "reference:solutions"
    second: str
    similarity: float
    shared: int     # fingerprints in common (starter code left out)
    sizes: tuple[int, int]


def ranked_pairs(cells: dict[tuple[str, str], dict[str, str]],
                 references: dict[tuple[str, str], dict[str, set[int]]],
                 starters: dict[tuple[str, str], set[int]]) -> list[Pair]:
    """Every pair of students, and every student against each reference, per question.

    ``cells``: (lesson, question) -> {student: the solution cell's source};
    ``references``: (lesson, question) -> {source name: fingerprints};
    ``starters``: (lesson, question) -> the starter code's fingerprints.
    Ranked by similarity, most alike first."""
    pairs = []
    for key, by_student in sorted(cells.items()):
        ignore = starters.get(key, set())
        printed = {student: fingerprints(source) - ignore
                   for student, source in sorted(by_student.items())}
        others = [(f"reference:{name}", prints - ignore)
                  for name, prints in sorted(references.get(key, {}).items())]
        for (a, fa), (b, fb) in itertools.chain(
                itertools.combinations(printed.items(), 2),
                ((item, other) for item in printed.items() for other in others)):
            if fa and fb:
                pairs.append(Pair(key[0], key[1], a, b, round(similarity(fa, fb), 4),
                                  len(fa & fb), (len(fa), len(fb))))
    return sorted(pairs, key=lambda p: (-p.similarity, p.lesson, p.question, p.first, p.second))


def write_csv(path: Path, pairs: list[Pair]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lesson", "question", "first", "second", "similarity",
                         "shared_fingerprints", "first_fingerprints", "second_fingerprints"])
        for p in pairs:
            writer.writerow([p.lesson, p.question, p.first, p.second, f"{p.similarity:.4f}",
                             p.shared, *p.sizes])


# --------------------------------------------------------------------------- a graded class
MAX_NOTEBOOK_BYTES = 20 << 20   # a bigger file is not read for the table (its grade stands)
TABLE_ROWS = 15                 # pairs shown in the report; every pair is in the CSV


def _student_cells(notebook: Path, questions: set[str]) -> dict[str, str]:
    """grade_id -> source of the solution cells of ``notebook`` named in ``questions``; nothing
    for a file that is not a plain, readable notebook of a sane size."""
    import nbformat


    if notebook.is_symlink() or not notebook.is_file() \
            or notebook.stat().st_size > MAX_NOTEBOOK_BYTES:
        return {}
    try:
        nb = nbformat.read(str(notebook), as_version=4)
        return {c["grade_id"]: c["source"] for c in grade_cells(nb)
                if c["kind"] == "solution" and c["grade_id"] in questions}
    except Exception:  # a broken notebook is the grade's business, not the table's
        return {}


def class_pairs(folders: dict[tuple[str, str], Path | None], graded: dict[str, dict],
                reference_prints: dict[str, dict]) -> list[Pair]:
    """The ranked pairs of a graded class: ``folders`` (student, lesson) -> the submitted
    folder; ``graded`` the course's lesson -> graded names; ``reference_prints`` the copy
    check's stored fingerprints (:func:`autograde.integrity.copycheck.load_fingerprints`)."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for (student, lesson), folder in sorted(folders.items()):
        if folder is None:
            continue
        names = set(graded.get(lesson, {}))
        for question, source in _student_cells(folder / f"{lesson}.ipynb", names).items():
            cells.setdefault((lesson, question), {})[student] = source

    references, starters = {}, {}
    for lesson, question in cells:
        known = reference_prints.get(question, {})
        starters[(lesson, question)] = set(known.get(STARTER, {}).get("prints", []))
        references[(lesson, question)] = {
            origin: set(parts[""].get("prints", [])) for origin, parts in known.items()
            if origin != STARTER and "" in parts}
    return ranked_pairs(cells, references, starters)


def report_lines(pairs: list[Pair], rows: int = TABLE_ROWS) -> list[str]:
    """The report's section: the most alike pairs of students, most alike first."""
    students = [p for p in pairs if not p.second.startswith("reference:")]
    if not students:
        return ["(fewer than two students answered any question)"]
    lines = ["Every pair of students per question, by winnowed fingerprints of the solution "
             "cell (names, strings, comments and layout erased; the starter code left out). "
             "A high score is a reason to read both answers, not a verdict: short answers "
             "that the statement dictates look alike. All pairs, and each student against "
             "the references: `similarity.csv`.", "",
             "| lesson | question | students | similarity | shared fingerprints |",
             "|---|---|---|---:|---:|"]
    for p in students[:rows]:
        lines.append(f"| {p.lesson} | {p.question} | {p.first}, {p.second} | "
                     f"{p.similarity:.2f} | {p.shared} |")
    return lines
