"""A staged copy of ``nanolm_lib``: the references of lessons not released yet rewritten into
stubs (a student kit's week, or the grader's library for one lesson).

Every graded definition of a lesson not released, and every helper that answers one
(:data:`ANSWERING_HELPERS`), is rewritten with :mod:`ast` into a stub that keeps its signature
and docstring, raises :class:`nanolm_lib.grading.staging.NotReleasedError`, and runs the
student's own version where there is one (:mod:`nanolm_lib.grading.staging`).
"""

from __future__ import annotations

import ast
from pathlib import Path

from nanolm_lib.grading.curriculum import GRADED

# Ungraded helpers of the library that answer a graded question: staged with that question's
# lesson, so that neither a kit nor the grader of that lesson hands the answer over under
# another name. module -> {helper: (lesson, the graded name it answers)}. In a staged library
# the helper runs the student's own answer where the library needs it
# (:data:`nanolm_lib.grading.staging.STAND_INS`: ``train`` keeps training, on the student's
# ``train_step`` and ``get_batch``), else raises NotReleasedError. (The fast tokenizer stays:
# lesson 01's own later cells use it; the source policy of ``encode`` forbids it.)
ANSWERING_HELPERS = {
    "course.tokenizer": {"_encode_piece": ("01_tokenizer", "encode"),
                         "_most_frequent_pair": ("01_tokenizer", "train_bpe"),
                         "_merge_in_words": ("01_tokenizer", "train_bpe")},
    # get_batch is randint starts + gather_windows; BatchStream draws them as get_batch does
    "course.data": {"gather_windows": ("02_data", "get_batch")},
    "course.attention": {"torch_multihead_attention": ("03_attention", "MultiHeadAttention"),
                         "native_mha_inference": ("03_attention", "MultiHeadAttention")},
    "course.modern": {"count_modern_parameters": ("05_gpt", "count_parameters")},
    "course.train": {"optimize": ("06_training", "train_step")},
    "lab.trainer": {"BatchStream": ("02_data", "get_batch")},
}


def stage_source(source: str, module: str, released: list[str], keep=()) -> str:
    """``source`` of ``nanolm_lib.<module>`` (``course.attention``, ``lab.trainer``) with every
    graded definition of a lesson not in ``released`` (but the names in ``keep``), and every
    helper that answers one
    (:data:`ANSWERING_HELPERS`; kept with the name it answers), replaced by a stub: the same
    ``def``/``class`` line and docstring, a body that raises ``NotReleasedError``, decorated
    with ``not_released`` so that the student's own version runs instead when there is one.
    Everything else keeps its text, comments included.
    """
    staged = {name: lesson for lesson, names in GRADED.items() if lesson not in released
              for name, home in names.items() if f"course.{home}" == module and name not in keep}
    staged.update(_answering_helpers(module, released, keep))
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    replacements = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in staged:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            replacements.append((first, node.end_lineno, _stub(node, staged[node.name], source)))
    if not replacements:
        return source
    for first, last, stub in sorted(replacements, reverse=True):
        lines[first - 1:last] = [stub]
    future = [n for n in tree.body
              if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    at = future[-1].end_lineno if future else 0
    # the lines before `at` are untouched: graded definitions come after the imports
    lines[at:at] = ["from nanolm_lib.grading import staging as _staging  # this kit is staged\n"]
    return "".join(lines)


def _stub(node, lesson: str, source: str) -> str:
    """The source of the stub that replaces one graded function or class."""
    if isinstance(node, ast.ClassDef):
        bases = ", ".join(ast.unparse(b) for b in node.bases + node.keywords)
        head = f"class {node.name}({bases}):" if bases else f"class {node.name}:"
    else:
        returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
        head = f"def {node.name}({ast.unparse(node.args)}){returns}:"
    first = node.body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
        and isinstance(first.value.value, str)
    # the docstring keeps its text and layout: it is the specification, not the answer
    body = [f"    {ast.get_source_segment(source, first)}\n" if has_doc else ""]
    if isinstance(node, ast.ClassDef):
        body.append("    def __new__(cls, *args, **kwargs):\n    ")
    body.append(f"    raise _staging.NotReleasedError.for_name({lesson!r}, {node.name!r})\n")
    return f"@_staging.not_released({lesson!r})\n{head}\n" + "".join(body)


def _answering_helpers(module: str, released: list[str], keep=()) -> dict[str, str]:
    """The helpers of ``module`` to stage (:data:`ANSWERING_HELPERS`): helper -> lesson."""
    return {helper: lesson for helper, (lesson, answers)
            in ANSWERING_HELPERS.get(module, {}).items()
            if lesson not in released and answers not in keep}


def stage_library(library: Path, released: list[str], keep=()) -> list[str]:
    """Stage every module of the package at ``library`` in place (the graded names in
    ``keep`` keep their reference); returns the names staged (graded names, and the helpers
    that answer them as ``module.helper``)."""
    staged = []
    modules = {f"course.{home}" for names in GRADED.values() for home in names.values()}
    for module in sorted(modules | set(ANSWERING_HELPERS)):
        path = Path(library, *module.split(".")).with_suffix(".py")
        text = path.read_text(encoding="utf-8")
        new = stage_source(text, module, released, keep)
        if new != text:
            path.write_text(new, encoding="utf-8")
            staged += [name for lesson, names in GRADED.items() if lesson not in released
                       for name, home in names.items()
                       if f"course.{home}" == module and name not in keep]
            staged += [f"{module}.{helper}"
                       for helper in _answering_helpers(module, released, keep)]
    return staged
