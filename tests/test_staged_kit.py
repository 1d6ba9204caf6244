"""A staged student kit (``student-kit OUT --released 02``), used the way a student uses it.

The kit gets its own virtual environment whose only ``nanolm_lib`` is the kit's (a path entry,
what ``pip install -e`` of the kit adds), and its own Jupyter kernel. A student's workspace
holds their notebooks: here the solutions with the released (visible-only) test cells, i.e. a
student who did the work.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from autograde_toy import independent_answers

from autograde.course import SOLUTIONS_DIR, grade_cells
from autograde.kit import student_kit
from nanolm_lib.curriculum import GRADED

pytestmark = pytest.mark.filterwarnings("ignore")
REPO = Path(__file__).resolve().parent.parent
KERNEL = "nanolm-kit"
# the interpreter this venv was made from: a student's own Python 3.11
BASE_PYTHON = Path(sys._base_executable).resolve()


def _kit_python(kit: Path) -> Path:
    """The kit's own environment, made as its README tells a student: ``make setup`` in the
    kit (a fresh venv of Python 3.11 without the base interpreter's packages, the pinned CPU
    torch, then the kit itself with the versions in the kit's constraints.txt). Then a
    kernelspec for the tests' notebook runs, bound to that venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NANOLM_", "PYTHON"))}
    subprocess.run(["make", "-C", str(kit), "setup", f"PYTHON={BASE_PYTHON}"], check=True,
                   env=env, capture_output=True)
    python = kit / ".venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL],
                   check=True, capture_output=True)
    return python


def _kit_env(kit: Path, scratch: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NANOLM_", "PYTHON"))}
    env.update(PATH=f"{kit / '.venv' / 'bin'}{os.pathsep}{env['PATH']}",
               JUPYTER_PATH=str(kit / ".venv" / "share" / "jupyter"),
               NANOLM_RUNS=str(scratch / "runs"), NANOLM_CACHE=str(scratch / "cache"),
               NANOLM_PROGRESS="0", HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    if os.environ.get("NANOLM_DATA"):
        env["NANOLM_DATA"] = os.environ["NANOLM_DATA"]
    return env


def _student_notebook(kit: Path, lesson: str, finished: bool = True) -> Path:
    """workspace/<lesson>/<lesson>.ipynb: a student's own finished work (independent author
    B's answers; the solution notebook would be a copy, and fills in only what the author
    did not write, such as lesson 06's AdamW, added later) or the untouched lesson, with the
    kit's test cells."""
    nb = nbformat.read(str(kit / "lessons" / lesson / f"{lesson}.ipynb"), as_version=4)
    if finished:
        solution = nbformat.read(str(SOLUTIONS_DIR / lesson / f"{lesson}.ipynb"), as_version=4)
        answers = {cell["grade_id"]: cell["source"] for cell in grade_cells(solution)
                   if cell["kind"] == "solution"}
        answers.update(independent_answers(lesson))
        for cell in nb.cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id in answers and cell.metadata["nbgrader"].get("solution"):
                cell.source = answers[grade_id]
    folder = kit / "workspace" / lesson
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / f"{lesson}.ipynb"))
    return folder / f"{lesson}.ipynb"


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("staged") / "kit"
    student_kit(root, released="02")
    _kit_python(root)
    return root


def _graded_nodes(path: Path, names: list[str]) -> dict[str, ast.AST]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names}


def test_kit_holds_no_body_of_a_later_graded_function(kit):
    for lesson, names in GRADED.items():
        for name, module in names.items():
            original = _graded_nodes(REPO / "nanolm_lib" / f"{module}.py", [name])[name]
            staged = _graded_nodes(kit / "nanolm_lib" / f"{module}.py", [name])[name]
            text = (kit / "nanolm_lib" / f"{module}.py").read_text()
            body = original.body[1:] if ast.get_docstring(original) else original.body
            body_lines = {line.strip() for stmt in body
                          for line in ast.unparse(stmt).splitlines() if len(line.strip()) > 30}
            if int(lesson[:2]) <= 2:
                assert ast.dump(staged) == ast.dump(original), f"{name} (released) was changed"
                continue
            statements = [s for s in staged.body if not (
                isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            if isinstance(staged, ast.ClassDef):  # only a __new__ that raises
                assert [s.name for s in statements] == ["__new__"], name
                statements = statements[0].body
            assert len(statements) == 1 and isinstance(statements[0], ast.Raise), name
            assert "NotReleasedError" in ast.unparse(statements[0]), name
            # no line of the reference body survives anywhere in the staged module, except
            # lines the module also uses outside the graded definitions
            others = "\n".join(ast.unparse(n) for n in ast.parse(text).body
                               if getattr(n, "name", None) not in names)
            leaked = [line for line in body_lines if line in text and line not in others]
            assert not leaked, (name, leaked[:3])


def test_later_names_raise_not_released_and_helpers_work(kit):
    script = textwrap.dedent("""
        import torch
        from nanolm_lib.data import get_batch, pack_stories
        from nanolm_lib.model import GPT, GPTConfig
        from nanolm_lib.presets import model_config
        from nanolm_lib.staging import NotReleasedError
        from nanolm_lib.train import TrainConfig, lr_at
        import numpy as np
        tokens = np.arange(100, dtype=np.uint16)
        x, y = get_batch(tokens, 4, 8)          # lesson 02: released
        print("get_batch", tuple(x.shape))
        for call in (lambda: GPT(model_config("smoke")), lambda: lr_at(3, TrainConfig())):
            try:
                call()
            except NotReleasedError as error:
                print("NotReleasedError:", error)
        """)
    result = subprocess.run([str(kit / ".venv" / "bin" / "python"), "-c", script], cwd=kit,
                            capture_output=True, text=True, env=_kit_env(kit, kit / "scratch"))
    assert result.returncode == 0, result.stderr
    assert "get_batch (4, 8)" in result.stdout
    assert ("the reference of lesson 05's GPT is released after lesson 05 is due; use your own "
            "from lesson 05") in result.stdout
    assert "lesson 06's lr_at is released after lesson 06 is due" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("finished", [True, False], ids=["solution", "stub"])
def test_lesson_03_visible_tests_in_the_kit(kit, finished, tmp_path):
    """The student's self-check, run with the kit's own Python: the visible tests pass on the
    solution and fail on the untouched lesson, without the reference of lesson 03."""
    notebook = _student_notebook(kit, "03_attention", finished)
    result = subprocess.run([str(kit / ".venv" / "bin" / "python"), "-m", "autograde", "check",
                             str(notebook)], cwd=kit, capture_output=True, text=True,
                            env=_kit_env(kit, tmp_path))
    lines = [line for line in result.stdout.splitlines() if line.startswith("  test_")]
    assert len(lines) == len(GRADED["03_attention"]), result.stdout + result.stderr
    # the grader's own verdict on the kit's practice cases (solved when the kit was built)
    practice = {p.stem for p in (kit / "autograde" / "practice" / "03_attention").glob("*.pt")}
    assert practice == set(GRADED["03_attention"])
    verdicts = [line for line in result.stdout.splitlines() if "the grader's check:" in line]
    assert len(verdicts) == len(lines), result.stdout
    if finished:
        assert result.returncode == 0 and all("passed" in line for line in lines), result.stdout
        assert all("cases match" in line for line in verdicts), result.stdout
    else:
        assert result.returncode == 1 and all("FAILED" in line for line in lines), result.stdout
        assert "NotReleasedError" not in result.stdout  # failures are the student's stubs


@pytest.mark.slow
def test_lesson_06_runs_in_the_kit_with_the_students_earlier_work(kit, tmp_path):
    """Lesson 06 at smoke size in a kit released up to 02: GPT (05) and MultiHeadAttention
    (03) are the student's own, loaded from their earlier notebooks by the set-up cell."""
    for lesson in ("02_data", "03_attention", "05_gpt"):
        _student_notebook(kit, lesson)
    notebook = _student_notebook(kit, "06_training")
    executed = tmp_path / "06_executed.ipynb"
    env = dict(_kit_env(kit, tmp_path), NANOLM_SMOKE="1")
    result = subprocess.run(
        [str(kit / ".venv" / "bin" / "python"), "-m", "jupyter", "nbconvert", "--to", "notebook",
         "--execute", "--allow-errors", f"--ExecutePreprocessor.kernel_name={KERNEL}",
         "--ExecutePreprocessor.timeout=600", "--output", str(executed), notebook.name],
        cwd=notebook.parent, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    nb = nbformat.read(str(executed), as_version=4)
    errors = [f"cell {i}: {o.ename}: {o.evalue}" for i, cell in enumerate(nb.cells)
              for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    text = json.dumps([cell.get("outputs", []) for cell in nb.cells])
    assert "05_gpt: your own LayerNorm, MLP, Block, GPT, count_parameters" in text
    assert "03_attention: your own" in text
    for name in GRADED["06_training"]:
        assert f"{name}: all visible tests passed" in text, name


def test_rebuilding_the_kit_publishes_the_next_stage_and_keeps_the_workspace(tmp_path):
    kit = student_kit(tmp_path / "kit", released="02")
    work = kit / "workspace" / "03_attention" / "03_attention.ipynb"
    work.parent.mkdir(parents=True)
    work.write_text("my work")
    assert "raise _staging.NotReleasedError" in (kit / "nanolm_lib" / "attention.py").read_text()
    student_kit(kit, released="03")
    assert work.read_text() == "my work"
    attention = (kit / "nanolm_lib" / "attention.py").read_text()
    assert "NotReleasedError.for_name('03_attention'" not in attention
    assert "NotReleasedError.for_name('04_fused_attention'" in attention
    assert (kit / "RELEASED").read_text().strip() == "03"


def test_released_all_is_the_full_library(tmp_path):
    kit = student_kit(tmp_path / "kit")
    for module in ("tokenizer", "data", "attention", "model", "train", "sampling"):
        assert (kit / "nanolm_lib" / f"{module}.py").read_bytes() == \
            (REPO / "nanolm_lib" / f"{module}.py").read_bytes()
    assert (kit / "lessons" / "03_attention" / "fixtures" / "causal_mask.pt").is_file()
