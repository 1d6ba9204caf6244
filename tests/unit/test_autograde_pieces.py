"""Autograder pieces without a full batch: static scan, collecting submissions and LMS zips,
submit and the student kit, the self-check, the summary, and the command line's errors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from autograde_toy import write_submission, write_toy_solutions

from autograde.__main__ import main
from autograde.authoring.kit import student_kit
from autograde.authoring.release import release
from autograde.batch.collect import collect
from autograde.batch.report import failure_key, question_summary
from autograde.integrity.scan import scan_cells
from autograde.sandbox.launcher import isolation_level
from autograde.student.submit import submit

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- static scan
def test_scan_flags_patching_and_reference_use():
    cells = [
        ("causal_mask", "import nanolm_lib.course.attention as A\nimport torch\n"
                        "A.causal_mask = lambda T: None\n"
                        "def causal_mask(T):\n    return A.causal_mask(T)\n"),
        ("attention", "from nanolm_lib.course.attention import attention\n"),
        ("split_heads", "import sys\nsys.modules['nanolm_lib.grading.checks'] = None\n"
                        "setattr(torch, 'allclose', lambda *a: True)\n"),
        ("merge_heads", "from nanolm_lib.course import attention as module\n"
                        "def merge_heads(x):\n    return module.merge_heads(x)\n"),
        ("MultiHeadAttention", "def broken(:\n"),  # does not parse: skipped
    ]
    graded = {"causal_mask", "attention", "split_heads", "merge_heads", "MultiHeadAttention"}
    found = {(f.grade_id, f.kind, f.line) for f in scan_cells(cells, graded)}
    assert found == {
        ("causal_mask", "patch", 3),                 # assigns to nanolm_lib.course.attention.causal_mask
        ("causal_mask", "reference-use", 5),         # calls the reference's causal_mask
        ("attention", "reference-use", 1),           # imports the graded name
        ("split_heads", "patch", 2),                 # sys.modules
        ("split_heads", "patch", 3),                 # setattr on torch (imported in cell 1)
        ("merge_heads", "reference-use", 3),         # through a module alias
    }


def test_scan_leaves_honest_code_alone():
    cells = [("Block", "from nanolm_lib.course.attention import MultiHeadAttention\nimport torch\n"
                       "class Block(torch.nn.Module):\n    pass\n"),
             ("GPT", "import math\nx = math.sqrt(2)\nmodel = {}\nmodel['a'] = 1\n")]
    assert scan_cells(cells, {"Block", "GPT"}) == []


# --------------------------------------------------------------------------- collecting
def test_collect_folders_and_zips(tmp_path):
    folders = tmp_path / "folders"
    (folders / "amy" / "01_toy").mkdir(parents=True)
    (folders / "amy" / "01_toy" / "01_toy.ipynb").write_text("{}")
    (folders / "bad name!" / "01_toy").mkdir(parents=True)
    found, notes = collect(folders, tmp_path / "x")
    assert list(found) == ["amy"] and list(found["amy"]) == ["01_toy"]
    assert "bad name!" in notes[0]

    zips = tmp_path / "zips"
    zips.mkdir()
    with zipfile.ZipFile(zips / "bo_12345_nanolm.zip", "w") as zf:
        zf.writestr("workspace/01_toy/01_toy.ipynb", "{\"v\": 1}")
        zf.writestr("workspace/01_toy/helper.py", "x = 1")
        zf.writestr("../evil/01_toy/01_toy.ipynb", "{}")          # never extracted
    with zipfile.ZipFile(zips / "bo_99999_later.zip", "w") as zf:  # sorts last: wins
        zf.writestr("01_toy/01_toy.ipynb", "{\"v\": 2}")
    (zips / "cy_broken.zip").write_bytes(b"not a zip")
    (zips / "noseparator.zip").write_bytes(b"")
    found, notes = collect(zips, tmp_path / "extracted")
    assert sorted(found) == ["bo", "cy"] and found["cy"] == {}
    assert json.loads((found["bo"]["01_toy"] / "01_toy.ipynb").read_text()) == {"v": 2}
    assert not (tmp_path / "evil").exists()
    assert any("cy_broken.zip" in n for n in notes)
    assert any("noseparator.zip" in n for n in notes)


def test_submit_zip_round_trips_through_collect(tmp_path):
    workspace = tmp_path / "workspace"
    (workspace / "01_toy" / ".ipynb_checkpoints").mkdir(parents=True)
    (workspace / "01_toy" / "01_toy.ipynb").write_text("{\"cells\": []}")
    (workspace / "01_toy" / "notes.txt").write_text("mine")
    (workspace / "01_toy" / ".ipynb_checkpoints" / "01_toy-checkpoint.ipynb").write_text("{}")
    (workspace / "01_toy" / "model.ckpt").write_bytes(b"weights")
    archive = submit(workspace, student="jo.doe", out_dir=tmp_path / "up", now=0)
    assert archive.name.startswith("jo.doe_nanolm_") and archive.suffix == ".zip"
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["01_toy/01_toy.ipynb", "01_toy/notes.txt"]
    found, _ = collect(tmp_path / "up", tmp_path / "x")
    assert (found["jo.doe"]["01_toy"] / "notes.txt").read_text() == "mine"
    assert main(["submit", "--workspace", str(workspace), "--student", "jo_doe"]) == 2
    assert main(["submit", "--workspace", str(tmp_path / "nowhere"), "--student", "jo"]) == 2


# --------------------------------------------------------------------------- student kit


@pytest.mark.skipif(not (REPO / "lessons").is_dir(), reason="no lessons/ yet")
def test_student_kit_readme_is_for_students(tmp_path):
    readme = (student_kit(tmp_path / "kit") / "README.md").read_text()
    for step in ("make lab", "make test", "autograde check", "autograde submit"):
        assert step in readme, step
    for instructor in ("autograde grade", "autograde release", "student-kit", "solutions/"):
        assert instructor not in readme, instructor


# --------------------------------------------------------------------------- self-check


# --------------------------------------------------------------------------- reports and CLI
def test_summary_groups_failures_by_message():
    table = {
        "a": {"03": {"test_x": {"score": 0.0, "max_score": 2.0,
                                "error": "CheckFailed: x(q): relative error 0.5 > 1e-05\nseed 17"}}},
        "b": {"03": {"test_x": {"score": 0.0, "max_score": 2.0,
                                "error": "CheckFailed: x(q): relative error 0.25 > 1e-05\nseed 3"}}},
        "c": {"03": {"test_x": {"score": 2.0, "max_score": 2.0, "error": None}}},
    }
    (row,) = question_summary(table)
    assert row["mean"] == pytest.approx(2 / 3) and row["pass_rate"] == pytest.approx(1 / 3)
    assert row["top_failures"] == [(failure_key(table["a"]["03"]["test_x"]["error"]), 2)]


def test_grading_without_bubblewrap_needs_the_unsafe_flag(tmp_path, capsys, monkeypatch):
    """Without bwrap on PATH (as on a machine without it), grade and check refuse with a
    clear message; the flag is the only way in, and the report then says so on top."""
    solutions = write_toy_solutions(tmp_path / "solutions")
    release(tmp_path / "lessons", solutions)
    write_submission(tmp_path / "lessons", tmp_path / "subs", "amy", "01_toy")
    no_bwrap = tmp_path / "bin"
    no_bwrap.mkdir()
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{no_bwrap}")
    assert isolation_level(use_bwrap=True).startswith("UNSAFE")
    notebook = tmp_path / "subs" / "amy" / "01_toy" / "01_toy.ipynb"
    for argv in (["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "o"),
                  "--solutions", str(solutions)],
                 ["check", str(notebook), "--lessons", str(tmp_path / "lessons")]):
        assert main(argv) == 2
        assert "--unsafe-no-isolation" in capsys.readouterr().err
    assert not (tmp_path / "o" / "report.md").exists()


def test_grade_reports_what_it_cannot_do(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "subs" / "amy" / "42_unknown").mkdir(parents=True)
    solutions = write_toy_solutions(tmp_path / "solutions")
    assert main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "o"),
                 "--solutions", str(solutions), "--lessons", "42_unknown"]) == 2
    assert "42_unknown" in capsys.readouterr().err


def test_only_warnings_are_forgiven_on_stderr():
    """nbgrader scores a test cell that writes to stderr 0; the config drops stderr that is
    nothing but Python warnings (IgnorePattern), and keeps anything else."""
    import re

    from autograde.course import load_config

    pattern = re.compile(load_config().IgnorePattern.pattern)
    warning = ('/tmp/ipykernel_7/123.py:3: UserWarning: careful\n  warnings.warn("careful")\n'
               "/x/torch/nn/modules/module.py:1: FutureWarning: `x` is deprecated\n  return y\n")
    assert pattern.search(warning)
    assert pattern.search("/a.py:9: torch.jit.TracerWarning: odd\n")
    for not_a_warning in ("warn\n", warning + "and then something else\n",
                          "Traceback (most recent call last):\n  File x\nValueError: no\n"):
        assert not pattern.search(not_a_warning), not_a_warning


# --------------------------------------------------------------------------- sandbox launcher
def _children(pid: int) -> list[int]:
    return [int(child) for child in
            Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_launcher_imports_nothing_heavy():
    """The sandbox launcher starts once per graded notebook, so what it imports is paid per
    notebook: importing autograde.course (nbformat, nbgrader, SQLAlchemy) for two paths once
    cost every kernel start about 3.5 s."""
    heavy = ("nbformat", "nbgrader", "sqlalchemy", "jsonschema", "torch", "numpy")
    code = ("import sys\nimport autograde.sandbox.launcher as sandbox\n"
            "sandbox.kernel_mounts(sandbox.SandboxSettings())\n"
            f"print(sorted({{name.split('.')[0] for name in sys.modules}} & set({heavy!r})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]", f"the launcher imports {done.stdout.strip()}"


def _wait_for_kernel_info(client, launcher: subprocess.Popen, timeout: float = 120) -> None:
    """Until the kernel answers a kernel_info request (its launcher still running). Not
    ``client.wait_for_ready``: without a kernel manager that also needs a heartbeat within a
    second, which a loaded machine may not give."""
    import queue
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and launcher.poll() is None:
        client.kernel_info()
        try:
            if client.get_shell_msg(timeout=1)["msg_type"] == "kernel_info_reply":
                return
        except queue.Empty:
            pass
    raise AssertionError(f"the kernel never answered (launcher exit code {launcher.poll()})")


def test_the_launcher_takes_sigterm_as_a_requested_stop(tmp_path):
    """jupyter_client ends a kernel it no longer needs with SIGTERM to the launcher (the grader,
    once a notebook has run): the kernel goes at once, and the launcher exits 0 recording
    nothing, since no limit was hit and nothing died. Run without bubblewrap, the launcher's
    own path."""
    import os
    import signal

    from jupyter_client import BlockingKernelClient
    from jupyter_client.connect import write_connection_file

    from autograde.sandbox.launcher import ENV_VAR, SandboxSettings

    connection, _ = write_connection_file(str(tmp_path / "kernel.json"))
    status = tmp_path / "kernel-status.json"
    settings = SandboxSettings(use_bwrap=False, status_file=str(status), env=dict(os.environ))
    launcher = subprocess.Popen([sys.executable, "-m", "autograde.sandbox.launcher", connection],
                                env=dict(os.environ, **{ENV_VAR: settings.to_env()}), cwd=REPO)
    client = BlockingKernelClient()
    try:
        client.load_connection_file(connection)
        client.start_channels(hb=False)
        _wait_for_kernel_info(client, launcher)
        (kernel,) = _children(launcher.pid)
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 0
    finally:
        client.stop_channels()
        launcher.kill()
        launcher.wait()
    assert not Path(f"/proc/{kernel}").exists(), "the kernel outlived its launcher"
    assert not status.exists(), status.read_text()


def test_summary_failure_keys_mask_numbers_not_names():
    """summary.md counts a failure once whatever its numbers, and keeps the names in it."""
    from autograde.batch.report import failure_key

    assert failure_key("missing notebook: the submission has no 02_data.ipynb") == \
        "missing notebook: the submission has no 02_data.ipynb"
    assert failure_key("expected 3.5, got -1e-05 at index 12\nmore") == \
        "expected #, got # at index #"
    assert failure_key("test_k2 of 01_tokenizer: add(1, 2)") == "test_k2 of 01_tokenizer: add(#, #)"
