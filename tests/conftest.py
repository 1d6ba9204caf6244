"""Shared pytest fixtures. Tests never download: the hub is offline and the real data comes
from ``NANOLM_DATA`` (CI points it at the shared TinyStories sample)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Set before any test imports nanolm_lib: no progress bars on stderr, no hub retries.
os.environ.setdefault("NANOLM_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# The user's own settings never decide a result: Jupyter, IPython, matplotlib and the hub's
# cache read folders in HOME (a startup script, a kernelspec named like ours, an rc file with
# another backend). Every process the suite starts inherits these empty folders instead.
_SETTINGS = Path(tempfile.mkdtemp(prefix="nanolm-test-settings-"))
for _name, _folder in {
    "JUPYTER_CONFIG_DIR": "jupyter-config",
    "JUPYTER_DATA_DIR": "jupyter-data",
    "IPYTHONDIR": "ipython",
    "MPLCONFIGDIR": "matplotlib",
    "HF_HOME": "huggingface",
}.items():
    os.environ[_name] = str(_SETTINGS / _folder)
atexit.register(shutil.rmtree, _SETTINGS, ignore_errors=True)

REPO = Path(__file__).resolve().parent.parent

# The suite's models are tiny: at their sizes two torch threads mostly wait on each other, and
# on a busy 2-core machine one thread runs these tests many times faster than two.
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
