"""``nanolm gpu-check``'s CPU side, through the command a user runs: ``--dry-run`` runs every
section's plumbing on tiny CPU inputs, writes the folder (results.json, table, plots) and marks
what only CUDA can show as skipped. The GPU figures themselves come from a GPU machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def in_process(capsys, *args):
    """``nanolm`` in this process (the same main() as the command): no interpreter start."""
    from nanolm_lib.lab.cli import main

    capsys.readouterr()
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, out, err)


def test_bad_arguments_give_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = in_process(capsys, "gpu-check", "--dry-run", "--sections", "versions,warp-speed")
    assert done.returncode == 1
    assert "--sections: unknown warp-speed" in done.stderr and "Traceback" not in done.stderr
    if not torch.cuda.is_available():
        done = in_process(capsys, "gpu-check")
        assert done.returncode == 1 and "no CUDA GPU here" in done.stderr
        assert "--dry-run" in done.stderr


def test_one_section_alone(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = in_process(capsys, "gpu-check", "--dry-run", "--sections", "versions",
                      "--out", "elsewhere")
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "elsewhere" / "results.json").read_text())
    assert list(results["sections"]) == ["versions"]
    assert results["sections"]["versions"]["torch"] == torch.__version__
