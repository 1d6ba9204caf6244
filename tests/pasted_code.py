"""A reference pasted the way a copier does it: the source taken with ``inspect``, every local
name respelled, reformatted, the comments gone."""

from __future__ import annotations

import ast
import builtins
import inspect

from nanolm_lib.grading.curriculum import GRADED


class _Rename(ast.NodeTransformer):
    """Give every local name and parameter a new spelling (what a copier does first)."""

    def __init__(self, keep: set[str]):
        self.keep = keep

    def _new(self, name: str) -> str:
        return name if name in self.keep or name == "self" else f"my_{name}"

    def visit_Name(self, node):
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self._new(node.arg)
        return node


def pasted_reference(module, name: str) -> str:
    """The reference's definition of ``name``: renamed, reformatted (``ast.unparse`` drops the
    comments and the layout), new comments, and imports of the module-level helpers it uses."""
    source = inspect.getsource(getattr(module, name))
    tree = ast.parse(source)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    helpers = sorted(n for n in used if hasattr(module, n) and not hasattr(builtins, n)
                     and n not in ("torch", "nn", "F", "math") and n != name
                     and not any(n in names for names in GRADED.values()))
    local = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(helpers)
    keep = set(helpers) | {n for n in local if hasattr(builtins, n)} | {
        "torch", "nn", "F", "math", name} | {n for names in GRADED.values() for n in names}
    code = ast.unparse(_Rename(keep).visit(tree))
    imports = f"from {module.__name__} import {', '.join(helpers)}\n" if helpers else ""
    return (f"{imports}import torch.nn.functional as F\n\n# my own {name}, written tonight\n"
            + code.replace("):\n", "):  # here we go\n", 1) + "\n")
