"""The repository's own set-up: conda and pip agree, and ``make setup`` on a CPU machine
installs the pinned CPU torch before the project (so no CUDA build is pulled)."""

from __future__ import annotations

import re
import tomllib

import yaml
from conftest import REPO


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e .[dev]" in pip_section, "the pip section must install the project itself"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    listed = [r for r in pip_section if not r.startswith("-e")]
    assert sorted(listed) == sorted(declared), "environment.yml and pyproject.toml differ"
    for package in ("torch", "jupyterlab", "nbgrader", "tokenizers", "datasets", "matplotlib",
                    "ipywidgets", "pytest", "nbval"):
        assert package in {_name(r) for r in declared}, package


def test_make_setup_installs_the_pinned_cpu_torch_first_without_a_gpu(tmp_path):
    """What ``make setup`` would run on a machine without a GPU (``make -n``: printed, not
    run), into a venv that does not exist yet: the pinned CPU torch, then the project."""
    import subprocess

    done = subprocess.run(["make", "-n", "setup", f"VENV={tmp_path / 'venv'}", "HAS_GPU="],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    commands = done.stdout.splitlines()
    torch_at = next(i for i, c in enumerate(commands) if "pip install" in c and "torch==" in c)
    project_at = next(i for i, c in enumerate(commands) if '-e ".[dev]"' in c)
    assert torch_at < project_at  # the project's torch range is then already satisfied
    pinned = re.search(r"torch==[\d.]+", commands[torch_at]).group(0)
    assert "+cu" not in pinned and "cuda" not in commands[torch_at]


def test_notebook_code_that_students_read_fits_in_100_columns():
    """Set-up, demonstration and solution cells (test cells excepted): no line over 100."""
    import nbformat

    long = []
    for path in sorted((REPO / "solutions").glob("*/*.ipynb")):
        for index, cell in enumerate(nbformat.read(str(path), as_version=4).cells):
            if cell.cell_type != "code" or cell.metadata.get("nbgrader", {}).get("grade"):
                continue
            long += [f"{path.parent.name} cell {index}: {len(line)} columns: {line.strip()[:60]}"
                     for line in cell.source.splitlines() if len(line) > 100]
    assert not long, "\n".join(long)
