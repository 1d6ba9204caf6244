"""A staged student kit (``student-kit OUT --week 03``), used the way a student uses it.

The kit gets its own virtual environment whose only ``nanolm_lib`` is the kit's (a path entry,
what ``pip install -e`` of the kit adds), and its own Jupyter kernel. A student's workspace
holds their notebooks: here the solutions with the released (visible-only) test cells, i.e. a
student who did the work.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import nbformat
import pytest
from autograde_toy import independent_answers
from kit_env import BASE_PYTHON, KERNEL, kit_env, kit_python

from autograde.authoring.kit import student_kit
from autograde.course import SOLUTIONS_DIR, grade_cells
from nanolm_lib.grading.curriculum import GRADED

pytestmark = pytest.mark.filterwarnings("ignore")
REPO = Path(__file__).resolve().parents[2]
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
    student_kit(root, week="03")
    kit_python(root)
    return root


def _graded_nodes(path: Path, names: list[str]) -> dict[str, ast.AST]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names}


def test_kit_holds_no_body_of_a_later_graded_function(kit):
    for lesson, names in GRADED.items():
        for name, module in names.items():
            original = _graded_nodes(REPO / "nanolm_lib" / "course" / f"{module}.py", [name])[name]
            staged = _graded_nodes(kit / "nanolm_lib" / "course" / f"{module}.py", [name])[name]
            text = (kit / "nanolm_lib" / "course" / f"{module}.py").read_text()
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
        from nanolm_lib.course.data import get_batch, pack_stories
        from nanolm_lib.course.model import GPT, GPTConfig
        from nanolm_lib.lab.presets import model_config
        from nanolm_lib.grading.staging import NotReleasedError
        from nanolm_lib.course.train import TrainConfig, lr_at
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
                            capture_output=True, text=True, env=kit_env(kit, kit / "scratch"))
    assert result.returncode == 0, result.stderr
    assert "get_batch (4, 8)" in result.stdout
    # no set-up cell asked for lesson 05's work here: the message says so, not to load it
    assert ("the reference of lesson 05's GPT is released after lesson 05 is due, and this "
            "notebook's set-up cell does not load your own: this cell needs lesson 05, which "
            "is not released at this kit's stage") in result.stdout
    assert "lesson 06's lr_at is released after lesson 06 is due" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("finished", [True, False], ids=["solution", "stub"])
def test_lesson_03_visible_tests_in_the_kit(kit, finished, tmp_path):
    """The student's self-check, run with the kit's own Python: the visible tests pass on the
    solution and fail on the untouched lesson, without the reference of lesson 03."""
    notebook = _student_notebook(kit, "03_attention", finished)
    result = subprocess.run([str(kit / ".venv" / "bin" / "python"), "-m", "autograde", "check",
                             str(notebook)], cwd=kit, capture_output=True, text=True,
                            env=kit_env(kit, tmp_path))
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
    """Lesson 06 opened early, at smoke size, in the kit of week 03: GPT (05) and
    MultiHeadAttention (03) are the student's own, loaded from their earlier notebooks by the
    set-up cell; its visible tests, whose fixtures the kit does not hold yet, say when they
    come."""
    for lesson in ("02_data", "03_attention", "05_gpt"):
        _student_notebook(kit, lesson)
    notebook = _student_notebook(kit, "06_training")
    executed = tmp_path / "06_executed.ipynb"
    env = dict(kit_env(kit, tmp_path), NANOLM_SMOKE="1")
    result = subprocess.run(
        [str(kit / ".venv" / "bin" / "python"), "-m", "jupyter", "nbconvert", "--to", "notebook",
         "--execute", "--allow-errors", f"--ExecutePreprocessor.kernel_name={KERNEL}",
         "--ExecutePreprocessor.timeout=600", "--output", str(executed), notebook.name],
        cwd=notebook.parent, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    nb = nbformat.read(str(executed), as_version=4)
    errors = [f"cell {i}: {o.ename}: {o.evalue}" for i, cell in enumerate(nb.cells)
              for o in cell.get("outputs", []) if o.output_type == "error"]
    later = "lesson 06's visible tests come with the kit of week 06 (this kit is week 03)"
    assert errors and all(later in error for error in errors), errors
    text = json.dumps([cell.get("outputs", []) for cell in nb.cells])
    assert "05_gpt: your own LayerNorm, MLP, Block, GPT, count_parameters" in text
    assert "03_attention: your own" in text


def _bodies(path, decorator: str) -> list:
    """The bodies of the functions of a question file registered with ``decorator``."""
    return [node.body for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef)
            and decorator in map(ast.unparse, node.decorator_list)]


def _only_raises(body) -> bool:
    return len(body) == 1 and isinstance(body[0], ast.Raise)


def test_a_later_lesson_ships_its_notebook_and_nothing_computed_for_it(kit):
    """Week 03: lessons 04-08 are there to read, without fixtures (the reference's outputs),
    practice cases or question code (their question files keep the contract only); lessons
    01-03 have all three, their questions without the code that draws the grader's cases or
    computed the fixtures."""
    from nanolm_lib.grading.curriculum import week_lessons

    given = week_lessons("03")
    questions = kit / "nanolm_lib" / "grading" / "questions"
    for lesson in GRADED:
        folder = kit / "lessons" / lesson
        assert (folder / f"{lesson}.ipynb").is_file(), lesson
        files = sorted((questions / lesson).glob("[0-9]*.py"))
        assert len(files) == len(GRADED[lesson]), lesson  # every contract ships
        has = [(folder / "fixtures").exists(),
               (kit / "autograde" / "practice" / lesson).exists(),
               any(not _only_raises(body) for path in files for body in _bodies(path, "q.runs"))]
        if lesson == "00_setup":
            continue  # no graded questions
        assert has == ([True] * 3 if lesson in given else [False] * 3), (lesson, has)
    for path in questions.glob("*/[0-9]*.py"):
        generators = _bodies(path, "q.cases") + _bodies(path, "q.fixture")
        assert generators and all(_only_raises(body) for body in generators), path


def test_rebuilding_the_kit_publishes_the_next_stage_and_keeps_the_workspace(tmp_path):
    kit = student_kit(tmp_path / "kit", week="03")
    work = kit / "workspace" / "03_attention" / "03_attention.ipynb"
    work.parent.mkdir(parents=True)
    work.write_text("my work")
    assert "raise _staging.NotReleasedError" in (kit / "nanolm_lib" / "course" / "attention.py").read_text()
    student_kit(kit, week="04")
    assert work.read_text() == "my work"
    attention = (kit / "nanolm_lib" / "course" / "attention.py").read_text()
    assert "NotReleasedError.for_name('03_attention'" not in attention
    assert "NotReleasedError.for_name('04_fused_attention'" in attention
    stage = json.loads((kit / "STAGE.json").read_text())
    assert stage["week"] == "04" and stage["lessons"][-1] == "04_fused_attention"
    assert stage["references"][-1] == "03_attention"


def test_released_all_is_the_full_library(tmp_path):
    kit = student_kit(tmp_path / "kit")
    for module in ("tokenizer", "data", "attention", "model", "train", "sampling"):
        assert (kit / "nanolm_lib" / "course" / f"{module}.py").read_bytes() == \
            (REPO / "nanolm_lib" / "course" / f"{module}.py").read_bytes()
    assert (kit / "lessons" / "03_attention" / "fixtures" / "causal_mask.pt").is_file()


# --------------------------------------------------------------------------- the kit's week
def _kit_command(kit: Path, *args: str, cwd: Path | None = None, stdin: str | None = None):
    """``python -m autograde ARGS`` with the kit's Python in ``cwd`` (default the kit: the
    commands its README gives)."""
    return subprocess.run([str(kit / ".venv" / "bin" / "python"), "-m", "autograde", *args],
                          cwd=cwd or kit, capture_output=True, text=True, input=stdin,
                          env=kit_env(kit, kit / "scratch"))


def test_the_week_never_ships_its_own_lesson(kit):
    """--week 03: lesson 03's references are stubs, 02's are there. (The old spelling,
    --released 02, is the rebuild of test_make_lab_copies_the_week_...)"""
    from nanolm_lib.grading.curriculum import week_lessons, week_of_released, week_references

    assert week_references("03") == ["00_setup", "01_tokenizer", "02_data"]
    assert week_lessons("03")[-1] == "03_attention" and week_of_released("02") == "03"
    assert week_of_released("08") == "all"
    attention = (kit / "nanolm_lib" / "course" / "attention.py").read_text()
    assert "NotReleasedError.for_name('03_attention', 'causal_mask')" in attention
    assert "NotReleasedError.for_name('02_data'" not in (kit / "nanolm_lib" / "course" / "data.py").read_text()
    assert json.loads((kit / "STAGE.json").read_text())["week"] == "03"
    result = subprocess.run([sys.executable, "-m", "autograde", "student-kit",
                             str(kit.parent / "bad"), "--week", "3"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--week '3'" in result.stderr
    assert not (kit.parent / "bad").exists()


def test_get_batch_ships_under_no_other_name_and_training_uses_the_students(tmp_path):
    """Before lesson 02's week ends, gather_windows (get_batch's windows) is a stub, and the
    training loop's BatchStream draws each batch with the student's own get_batch."""
    from autograde.sandbox.staged_library import stage_library
    from nanolm_lib.grading.curriculum import week_references

    library = tmp_path / "nanolm_lib"
    shutil.copytree(REPO / "nanolm_lib", library,
                    ignore=shutil.ignore_patterns("__pycache__"))
    staged = stage_library(library, week_references("02"))
    assert {"course.data.gather_windows", "lab.trainer.BatchStream", "get_batch"} <= set(staged)
    data = (library / "course" / "data.py").read_text()
    assert "np.arange(context_length + 1)" not in data  # the body of gather_windows
    script = textwrap.dedent("""
        import torch
        from nanolm_lib.course.data import gather_windows
        from nanolm_lib.grading.staging import NotReleasedError
        from nanolm_lib.lab.trainer import BatchStream, Distributed

        calls = []
        def get_batch(tokens, batch_size, context_length, generator=None, device="cpu"):
            calls.append(batch_size)  # the student's own
            x = torch.zeros(batch_size, context_length, dtype=torch.long)
            return x, x + 1
        stream = BatchStream(torch.arange(50), 4, 8, torch.Generator(), "cpu",
                             Distributed(rank=0, world_size=1, local_rank=0))
        x, y = stream.next()
        print("stream", tuple(x.shape), int(y.sum()), calls)
        try:
            gather_windows(torch.arange(50), torch.tensor([0]), 8)
        except NotReleasedError as error:
            print("gather_windows:", error)
        """)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "stream (4, 8) 32 [4]" in result.stdout
    assert "gather_windows: the reference of lesson 02's gather_windows is released after " \
           "lesson 02 is due" in result.stdout


def test_make_lab_copies_the_week_and_announces_corrections_and_rebuilds(kit, tmp_path):
    """What `make lab` runs (autograde workspace): the week's lessons only, never a student's
    notebook overwritten; after the kit is rebuilt with a corrected lesson 03 it names that
    lesson and says to restart kernels; update-lesson brings the correction in with the
    student's answers kept; a kernel started before the rebuild says to restart."""
    copy = tmp_path / "kit"
    shutil.copytree(kit, copy, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", "workspace", "scratch"))
    (copy / ".venv").symlink_to(kit / ".venv")
    first = _kit_command(copy, "workspace")
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (copy / "workspace").iterdir() if p.is_dir()) == \
        ["00_setup", "01_tokenizer", "02_data", "03_attention"]
    assert "not released yet at this kit's week 03: 04_fused_attention" in first.stdout
    mine = _student_notebook(copy, "03_attention")  # the student's answers
    answer = next(c.source for c in nbformat.read(str(mine), as_version=4).cells
                  if c.metadata.get("nbgrader", {}).get("grade_id") == "causal_mask")
    # a kernel of the kit running before the rebuild
    kernel = subprocess.Popen(
        [str(copy / ".venv" / "bin" / "python"), "-c",
         "import sys; from nanolm_lib.utils import is_smoke; is_smoke(); print('ready', "
         "flush=True); sys.stdin.readline(); is_smoke(); is_smoke()"],
        cwd=copy, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=kit_env(copy, tmp_path))
    assert kernel.stdout.readline().strip() == "ready"
    corrected = tmp_path / "lessons"
    shutil.copytree(REPO / "lessons", corrected)
    lesson = nbformat.read(str(corrected / "03_attention" / "03_attention.ipynb"), as_version=4)
    lesson.cells[0].source += "\n\nA corrected sentence."
    nbformat.write(lesson, str(corrected / "03_attention" / "03_attention.ipynb"))
    # the instructor's rebuild, in the old spelling: --released 03 is the kit of week 04
    rebuild = subprocess.run([sys.executable, "-m", "autograde", "student-kit", str(copy),
                              "--released", "03", "--lessons", str(corrected)], cwd=REPO,
                             capture_output=True, text=True)
    assert rebuild.returncode == 0, rebuild.stderr
    assert "--released 03 ships lesson 03's own answers too" in rebuild.stderr
    assert "the old spelling of --week 04" in rebuild.stderr
    assert json.loads((copy / "STAGE.json").read_text())["week"] == "04"
    _, stderr = kernel.communicate("go\n", timeout=60)
    assert stderr.count("this kit was rebuilt after this kernel started") == 1, stderr
    assert "restart the kernel" in stderr
    before = mine.read_bytes()
    second = _kit_command(copy, "workspace")
    assert second.returncode == 0, second.stderr
    assert mine.read_bytes() == before
    assert (copy / "workspace" / "04_fused_attention" / "04_fused_attention.ipynb").is_file()
    assert "03_attention: the kit's lesson was corrected since you started it" in second.stdout
    assert "update-lesson 03_attention" in second.stdout
    assert "02_data" not in second.stdout  # unchanged lessons say nothing
    assert "the kit was rebuilt since your last `make lab`: restart" in second.stdout
    update = _kit_command(copy, "update-lesson", "03_attention")
    assert update.returncode == 0, update.stderr
    merged = nbformat.read(str(mine), as_version=4)
    assert "A corrected sentence." in merged.cells[0].source
    assert next(c.source for c in merged.cells if c.metadata.get("nbgrader", {})
                .get("grade_id") == "causal_mask") == answer
    assert list((copy / "workspace" / "before-update").iterdir())[0].read_bytes() == before
    third = _kit_command(copy, "workspace")
    assert "corrected" not in third.stdout and "rebuilt" not in third.stdout, third.stdout


def test_submit_packs_the_week_and_needs_the_students_id(kit, tmp_path):
    workspace = tmp_path / "workspace"
    for lesson in ("02_data", "03_attention", "05_gpt"):  # 05 opened early
        (workspace / lesson).mkdir(parents=True)
        shutil.copyfile(kit / "lessons" / lesson / f"{lesson}.ipynb",
                        workspace / lesson / f"{lesson}.ipynb")
    nameless = _kit_command(kit, "submit", "--workspace", str(workspace), "--out", str(tmp_path))
    assert nameless.returncode == 2 and "give your student id: --student ID" in nameless.stderr
    underscore = _kit_command(kit, "submit", "--workspace", str(workspace), "--student",
                              "jo_doe")
    assert underscore.returncode == 2 and "e.g. --student jo-doe" in underscore.stderr
    result = _kit_command(kit, "submit", "--workspace", str(workspace), "--student", "jo-doe",
                          "--out", str(tmp_path / "up"))
    assert result.returncode == 0, result.stderr
    assert "left out: 05_gpt (not released yet at this kit's week" in result.stdout
    with zipfile.ZipFile(next((tmp_path / "up").glob("jo-doe_nanolm_*.zip"))) as zf:
        assert sorted({n.split("/")[0] for n in zf.namelist()}) == ["02_data", "03_attention"]
    everything = _kit_command(kit, "submit", "--workspace", str(workspace), "--student",
                              "jo-doe", "--all", "--out", str(tmp_path / "all"))
    with zipfile.ZipFile(next((tmp_path / "all").glob("*.zip"))) as zf:
        assert {n.split("/")[0] for n in zf.namelist()} == {"02_data", "03_attention", "05_gpt"}
    assert everything.returncode == 0


@pytest.mark.slow
def test_make_test_checks_the_week_and_a_crash_is_never_silent(kit):
    """The kit's `make test`: lessons after the week are skipped by name, not failed; lesson
    00 (no questions) run with a cell that raises reports the cell, not a silent 0 / 0."""
    workspace = kit / "workspace"
    if workspace.exists():
        shutil.rmtree(workspace)
    notebook = _student_notebook(kit, "00_setup", finished=False)
    nb = nbformat.read(str(notebook), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('my experiment broke')"))
    nbformat.write(nb, str(notebook))
    _student_notebook(kit, "05_gpt", finished=False)  # opened early: not checked
    env = dict(kit_env(kit, kit / "scratch"), PATH=os.environ["PATH"])
    result = subprocess.run(["make", "-C", str(kit), "test", f"PYTHON={BASE_PYTHON}"],
                            capture_output=True, text=True, env=env)
    output = result.stdout + result.stderr
    assert "not checked: 05_gpt (not released yet at this kit's week 03)" in output, output
    assert "RuntimeError: my experiment broke" in output, output
    assert "cell(s) that are not tests raised" in output
    assert result.returncode != 0
    shutil.rmtree(workspace)
