"""`make gpu-check GPU_CHECK_ARGS=--dry-run`, as the README runs it, on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nanolm_lib.lab.gpu_check import SECTIONS

REPO = Path(__file__).resolve().parents[2]


def nanolm(cwd, *args, timeout=600):
    env = {**os.environ, "NANOLM_PROGRESS": "0", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "nanolm_lib.lab.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_dry_run_writes_the_folder_the_table_and_the_json(tmp_path):
    """Through the README's `make gpu-check GPU_CHECK_ARGS=--dry-run`."""
    env = {**os.environ, "NANOLM_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["make", "--no-print-directory", "gpu-check",
                           f"GPU_CHECK_ARGS=--dry-run --out {tmp_path / 'gpu-check'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = tmp_path / "gpu-check"
    results = json.loads((folder / "results.json").read_text())
    assert results["format"] == "nanolm-gpu-check" and results["dry_run"] is True
    assert list(results["sections"]) == list(SECTIONS) and results["passed"] is True
    for name, section in results["sections"].items():
        assert section["status"] in ("ok", "skipped"), (name, section)
        assert section["summary"] and section["seconds"] >= 0
    sections = results["sections"]
    # what only CUDA shows is marked, not faked
    assert sections["sync_audit"]["status"] == "skipped"
    assert "needs CUDA" in sections["sync_audit"]["summary"]
    if not torch.cuda.is_available():
        assert sections["cuda_tests"]["status"] == "skipped"
        assert sections["cuda_tests"]["passed"] == 0 and sections["cuda_tests"]["skipped"] >= 5
    # the plumbing ran for real on the CPU
    rows = {row["precision"]: row for row in sections["sdpa"]["rows"]}
    assert set(rows) == {"bf16", "fp32"}
    assert rows["fp32"]["math"]["within_tolerance"] and rows["fp32"]["math"]["max_rel_err"] < 1e-5
    assert rows["fp32"]["efficient_attention"]["available"] is False  # a CUDA kernel
    share = sections["profile"]["share"]
    assert sum(share.values()) == pytest.approx(1.0)
    assert all(share[c] > 0 for c in ("matmul", "attention", "layer_norm", "loss", "optimizer"))
    speed = sections["step_speed"]
    assert speed["graph_breaks"] == 0 and speed["recompiles_while_timed"] == 0
    assert speed["compiled_tokens_per_s"] > 0 and speed["eager_tokens_per_s"] > 0
    modern = speed["modern"]  # the modern twin's step, timed in the same run
    assert modern["preset"] == "cpu-modern" and modern["recompiles_while_timed"] == 0
    assert modern["compiled_tokens_per_s"] > 0 and modern["speed_ratio"] > 0
    assert sections["ceiling"]["ceiling_dtype"] == "float32"  # a CPU step runs in fp32
    assert sections["ceiling"]["verdict"] == "no-go"  # a dry run proves no speed
    assert sections["short_train"]["largest_loss_difference"] == 0.0  # exact on the CPU
    assert sections["generation"]["identical_with_and_without_cache"] is True
    # one table: printed and kept, a row per section
    table = (folder / "table.txt").read_text()
    assert table.strip() in done.stdout
    assert [line.split()[0] for line in table.splitlines()[2:]] == list(SECTIONS)
    for plot in ("profile.png", "speed.png"):
        assert (folder / plot).read_bytes().startswith(b"\x89PNG")
