"""The project's own modules and the standard library are imported at the top of a module; an
import of the project inside a function needs a reason, stated here and in a comment where it
is (the standard library never does)."""

from __future__ import annotations

import ast
import fnmatch
import sys

from conftest import REPO

REASONS = {
    "autograde/__main__.py": "the student kit has no batch/ or authoring/ to import",
    "nanolm_lib/lab/cli.py": "`nanolm --help` answers without loading what the commands run",
    "nanolm_lib/__init__.py": "every test cell imports the package; it must not load the lab",
    "nanolm_lib/grading/staging.py": "a staged course module imports staging first thing",
    "nanolm_lib/grading/questions/*": "a staged course module imports staging, which reads "
                                      "these files",
}


OWN = {"nanolm_lib", "autograde"}
STANDARD = set(sys.stdlib_module_names) - {"__future__"}


def inner_imports(root=REPO, of=OWN) -> dict[str, list[int]]:
    """File -> lines of the imports of the packages ``of`` inside a function."""
    found: dict[str, list[int]] = {}
    for package in ("nanolm_lib", "autograde"):
        for path in sorted((root / package).rglob("*.py")):
            for function in ast.walk(ast.parse(path.read_text())):
                if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(function):
                    if isinstance(node, ast.Import):
                        modules = [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and not node.level:
                        modules = [node.module or ""]
                    else:
                        continue
                    if any(m.split(".")[0] in of for m in modules):
                        found.setdefault(str(path.relative_to(root)), []).append(node.lineno)
    return found


def test_an_import_of_the_project_inside_a_function_has_a_reason():
    unexplained = {path: lines for path, lines in inner_imports().items()
                   if not any(fnmatch.fnmatch(path, pattern) for pattern in REASONS)}
    assert not unexplained, f"move these imports to the top, or give a reason: {unexplained}"


def test_the_standard_library_is_imported_at_the_top():
    assert inner_imports(of=STANDARD) == {}


def test_the_check_finds_an_import_inside_a_function(tmp_path):
    (tmp_path / "autograde").mkdir()
    (tmp_path / "nanolm_lib").mkdir()
    (tmp_path / "autograde" / "x.py").write_text("def f():\n    from autograde import y\n")
    assert inner_imports(tmp_path) == {"autograde/x.py": [2]}
