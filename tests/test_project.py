"""The repository's own set-up: conda and pip agree, and ``make setup`` on a CPU machine
installs the pinned CPU torch before the project (so no CUDA build is pulled)."""

from __future__ import annotations

import re
import tomllib

import pytest
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


@pytest.mark.slow  # collects the fast layer in a pytest of its own
def test_make_check_runs_ruff_then_the_fast_tests_only():
    """``make check``'s commands (``make -n``: printed, not run): ruff, then pytest on test
    files that exist, less the tests marked slow (a slow test of those files is not selected)."""
    import subprocess
    import sys

    done = subprocess.run(["make", "-n", "check"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    commands = done.stdout.splitlines()
    ruff_at = next(i for i, c in enumerate(commands) if "ruff check" in c)
    pytest_at = next(i for i, c in enumerate(commands) if "-m pytest" in c)
    assert ruff_at < pytest_at and '-m "not slow"' in commands[pytest_at]
    files = re.findall(r"tests/\S+\.py", commands[pytest_at])
    assert files and [f for f in files if not (REPO / f).is_file()] == []
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                                "-p", "no:cacheprovider", "-m", "not slow", *files], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stdout[-2000:]
    selected = [line for line in collected.stdout.splitlines() if "::" in line]
    assert len(selected) > 100
    slow_one = ("tests/test_presets.py::"
                "test_a_corpus_too_small_for_the_preset_trains_a_model_of_its_vocabulary")
    assert slow_one not in selected and "tests/test_presets.py" in files


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
