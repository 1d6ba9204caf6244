"""Shared pytest fixtures. Tests never download: the hub is offline and the real data comes
from ``NANOLM_DATA`` (CI points it at the shared TinyStories sample)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before any test imports nanolm_lib: no progress bars on stderr, no hub retries.
os.environ.setdefault("NANOLM_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent

# The suite's models are tiny: on a 2-core machine two torch threads mostly wait on each other
# (measured here: single-threaded tests ran many times faster while the machine was busy).
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a CUDA GPU: skipped without one (``nanolm gpu-check`` runs
    them on a GPU machine; so does ``make test`` there)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run by nanolm gpu-check)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def tinystories_path() -> Path:
    """The real TinyStories sample named by NANOLM_DATA; skips when it is not there."""
    value = os.environ.get("NANOLM_DATA")
    if not value or not Path(value).exists():
        pytest.skip("NANOLM_DATA is not set to the TinyStories sample (CI sets it)")
    return Path(value)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Prepared corpora and runs go to a per-session temporary folder, never ~/.cache."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("NANOLM_CACHE", str(root / "nanolm-cache"))
    monkeypatch.setenv("NANOLM_RUNS", str(root / "nanolm-runs"))
