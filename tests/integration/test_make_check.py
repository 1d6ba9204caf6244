"""`make check`, the inner loop: ruff, then the fast layer (tests/unit), which holds no test
marked slow; every other test file lives in a layer that make test runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

LAYERS = ("unit", "integration", "hostile", "browser")


@pytest.mark.slow  # collects the fast layer in a pytest of its own
def test_make_check_runs_ruff_then_the_unit_layer_which_holds_no_slow_test():
    """``make check``'s commands (``make -n``: printed, not run): ruff, then pytest on
    tests/unit; collected with ``-m slow``, that layer selects nothing."""
    done = subprocess.run(["make", "-n", "check"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    commands = done.stdout.splitlines()
    ruff_at = next(i for i, c in enumerate(commands) if "ruff check" in c)
    pytest_at = next(i for i, c in enumerate(commands) if "-m pytest" in c)
    assert ruff_at < pytest_at and commands[pytest_at].rstrip().endswith("tests/unit")

    def collect(*marker):
        done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                               "-p", "no:cacheprovider", *marker, "tests/unit"], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode in (0, 5), done.stdout[-2000:]  # 5: nothing selected
        return [line for line in done.stdout.splitlines() if "::" in line]

    assert len(collect()) > 300
    assert collect("-m", "slow") == [], "a slow test belongs in tests/integration"


def test_every_test_file_sits_in_a_layer():
    """No test file at the top of tests/: there are only the shared helpers."""
    top = sorted(p.name for p in (REPO / "tests").glob("test_*.py"))
    assert top == [], f"test files outside the layers {LAYERS}: {top}"
    for layer in LAYERS:
        assert list((REPO / "tests" / layer).glob("test_*.py")), layer
