"""Lessons 00-03: what neither the nbval run nor the autograder tests reach.

The nbval run of the solution notebooks executes every cell, but CI has no trained run, so
lesson 03's last heat map (the heads of a trained model's first layer) only ever takes its
"no run yet" branch there. Here that cell runs against a real run folder: a checkpoint and
a tokenizer written by the library's own save_checkpoint, as lesson 06 and `make demo` do.
The cell reaches into the model by the contract's names (tok_emb, pos_emb, blocks, ln1, attn,
qkv, config), so a renamed attribute fails here instead of in front of a student.
"""

from __future__ import annotations

import matplotlib.pyplot as plt  # conftest selects the Agg backend
import pytest
import torch
from notebook_cells import SOLUTIONS, run_cells, save_smoke_run

LESSON_03 = SOLUTIONS / "03_attention/03_attention.ipynb"


@pytest.fixture
def trained_run(tmp_path, monkeypatch):
    """A run folder as training leaves it (an untrained smoke model is enough here)."""
    run = tmp_path / "runs" / "lesson06-smoke"
    model = save_smoke_run(run, seed=0)
    config = model.config
    monkeypatch.setenv("NANOLM_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("NANOLM_SMOKE", "1")
    return run, config


def test_lesson03_draws_the_heads_of_a_trained_run(trained_run):
    run, config = trained_run
    namespace: dict = {"__name__": "__main__"}
    plt.close("all")
    # the set-up and the solutions, then the cells of section 8 the last one builds on
    run_cells(LESSON_03, namespace, "def show_heads", "found = find_trained_model(")

    weights = namespace["trained_weights"]  # (1, H, T, T) from the model's own first layer
    T = namespace["ids"].size(1)
    assert weights.shape == (1, config.n_heads, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, config.n_heads, T))
    assert torch.equal(weights[0, 0] > 0, torch.ones(T, T, dtype=torch.bool).tril())  # causal
    figure = plt.gcf()
    assert figure._suptitle.get_text() == f"layer 0 of {run.name}"
    assert len(figure.axes) == min(config.n_heads, 4)
    plt.close("all")


def test_lesson03_skips_make_demos_modern_gpt_and_says_so(tmp_path, monkeypatch, capsys):
    """`make demo` trains lesson 08's ModernGPT, which has no pos_emb: the cell passes it by."""
    runs = tmp_path / "runs"
    save_smoke_run(runs / "demo", family="modern")
    monkeypatch.setenv("NANOLM_RUNS", str(runs))
    monkeypatch.setenv("NANOLM_SMOKE", "1")
    namespace: dict = {"__name__": "__main__"}
    run_cells(LESSON_03, namespace, "def show_heads", "found = find_trained_model(")
    out = capsys.readouterr().out
    assert f"skipping {runs / 'demo'}" in out and "not a classic GPT (lesson 05)" in out
    assert f"No trained GPT under {runs} yet" in out
    assert "trained_weights" not in namespace
