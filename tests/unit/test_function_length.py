"""Functions fit on a screen: none in nanolm_lib/ or autograde/ is over 80 lines without its
docstring (ruff holds their complexity to 15; this holds their length)."""

from __future__ import annotations

import ast

from conftest import REPO

MAX_LINES = 80


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the end of the function."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def long_functions(root=REPO) -> list[str]:
    found = []
    for package in ("nanolm_lib", "autograde"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = body_lines(node)
                    if lines > MAX_LINES:
                        found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: "
                                     f"{lines} lines")
    return found


def test_no_function_is_over_80_lines_without_its_docstring():
    assert long_functions() == [], "split these into named steps"


def test_the_rule_counts_the_body_and_not_the_docstring():
    source = "def f():\n    '''doc\n    more'''\n" + "    x = 1\n" * 81
    node = ast.parse(source).body[0]
    assert body_lines(node) == 81
    node = ast.parse("def g():\n    '''doc'''\n    return 1\n").body[0]
    assert body_lines(node) == 1
