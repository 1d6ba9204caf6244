"""The install is pinned: constraints.txt (which `make setup` passes to the installer) gives
one exact version of every package pyproject.toml names, each allowed by pyproject.toml; torch
is pinned by the Makefile's TORCH_SPEC instead, so that a GPU machine still gets a CUDA build."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    found = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier  # exactly one clause: name==version
            assert specifier.operator == "==", line
            found[canonicalize_name(requirement.name)] = specifier.version
    return found


def test_every_dependency_is_pinned_to_a_version_pyproject_allows():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [Requirement(r) for extra in project["optional-dependencies"].values()
                 for r in extra]
    pinned = pins()
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        if name == "torch":
            assert name not in pinned  # TORCH_SPEC picks the build: CPU wheel or CUDA
            continue
        assert name in pinned, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {name}=={pinned[name]}, outside pyproject's {requirement}")
    assert len(pinned) > len(declared)  # their own dependencies are pinned too


def test_make_setup_installs_with_the_constraints():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^CONSTRAINTS := \$\(wildcard constraints\.txt\)$", makefile, re.M)
    setup = makefile[makefile.index("$(STAMP):"):].split("\n\n")[0]
    assert "$(CONSTRAINTS)" in setup.splitlines()[0]  # new pins reinstall
    assert "--constraint $(CONSTRAINTS)" in setup and '-e ".[dev]"' in setup
