"""A student's path through lessons 06 and 07, as JupyterLab runs it.

`make lab` copies the lessons into ``workspace/`` and opens JupyterLab there; each notebook's
kernel starts in the notebook's own folder. Lesson 06 trains a model, lesson 07 must then
write its stories with that model. Here both notebooks (the solutions, as a student who has
done the exercises hands them in) run in real kernels from ``workspace/06_training/`` and
``workspace/07_sampling/`` of a fresh working copy, with a fresh home folder and none of the
variables the test suite sets for itself (``NANOLM_RUNS``, ``NANOLM_CACHE``, ...).

Two variables stay, and why: ``NANOLM_SMOKE=1``, the size switch the README offers students
(the ``cpu`` size trains for minutes; the size decides the model and the steps, not where
runs go or which one lesson 07 takes), and ``NANOLM_DATA`` / ``HF_HUB_OFFLINE`` when CI sets
them, because this machine cannot reach the Hugging Face hub that a student's would.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from nanolm_lib.lab.checkpoint import load_model

REPO = Path(__file__).resolve().parents[2]
KEPT = {"NANOLM_DATA", "HF_HUB_OFFLINE"}
DIGEST_CELL = """import hashlib
print("MODEL-DIGEST", hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes()
      for t in model.state_dict().values())).hexdigest())"""


def _student_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NANOLM_", "NBGRADER", "MPLBACKEND", "PYTEST"))}
    env.update({k: os.environ[k] for k in KEPT if k in os.environ})
    env.update(HOME=str(home), NANOLM_SMOKE="1")
    env.pop("XDG_CACHE_HOME", None)
    return env


def _run(notebook: Path, env: dict[str, str]) -> str:
    """Execute ``notebook`` in a real kernel started in its own folder; its printed text."""
    nb = nbformat.read(str(notebook), as_version=4)
    if notebook.parent.name == "07_sampling":  # what a student could type in a new cell
        nb.cells.append(nbformat.v4.new_code_cell(DIGEST_CELL))
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute(env=env)
    return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.outputs if out.output_type == "stream")


def _digest(model) -> str:
    return hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes()
                                   for t in model.state_dict().values())).hexdigest()


@pytest.mark.slow
def test_lesson07_writes_with_the_model_lesson06_trained(tmp_path):
    kit = tmp_path / "kit"
    for lesson in ("06_training", "07_sampling"):
        shutil.copytree(REPO / "solutions" / lesson, kit / "workspace" / lesson)
    env = _student_env(tmp_path / "home")
    (tmp_path / "home").mkdir()

    _run(kit / "workspace/06_training/06_training.ipynb", env)
    run = kit / "runs" / "lesson06-smoke"
    assert (run / "model.ckpt").is_file(), sorted(str(p) for p in kit.rglob("*.ckpt"))

    printed = _run(kit / "workspace/07_sampling/07_sampling.ipynb", env)
    assert f"using {run}: your own lesson-06 run" in printed, printed[:2000]
    assert not (kit / "runs" / "lesson07-smoke").exists()
    model, _ = load_model(run)
    assert f"MODEL-DIGEST {_digest(model)}" in printed
    assert not list(kit.glob("workspace/*/runs")), "a lesson wrote runs into its own folder"
