"""A student kit's own environment, made and used as its README tells a student (shared by
the kit's tests and its browser test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KERNEL = "nanolm-kit"
# the interpreter this venv was made from: a student's own Python 3.11
BASE_PYTHON = Path(sys._base_executable).resolve()


def kit_python(kit: Path) -> Path:
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


def kit_env(kit: Path, scratch: Path) -> dict:
    """The environment of a command run with the kit's Python: its venv first, its Jupyter
    kernels, scratch folders for runs and caches, none of the suite's NANOLM_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NANOLM_", "PYTHON"))}
    env.update(PATH=f"{kit / '.venv' / 'bin'}{os.pathsep}{env['PATH']}",
               JUPYTER_PATH=str(kit / ".venv" / "share" / "jupyter"),
               NANOLM_RUNS=str(scratch / "runs"), NANOLM_CACHE=str(scratch / "cache"),
               NANOLM_PROGRESS="0", HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    if os.environ.get("NANOLM_DATA"):
        env["NANOLM_DATA"] = os.environ["NANOLM_DATA"]
    return env
