"""Lessons 00-03: what neither the nbval run nor the autograder tests reach.

The nbval run of the solution notebooks executes every cell, but CI has no trained run, so
lesson 03's last heat map (the heads of a trained model's first layer) only ever takes its
"no run yet" branch there. Here that cell runs against a real run folder: a checkpoint and
a tokenizer written by the library's own save_checkpoint, as lesson 06 and `make demo` do.
The cell reaches into the model by the contract's names (tok_emb, pos_emb, blocks, ln1, attn,
qkv, config), so a renamed attribute fails here instead of in front of a student.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # conftest selects the Agg backend
import nbformat
import pytest
import torch

from nanolm_lib.data import make_stories
from nanolm_lib.model import GPT, PRESETS
from nanolm_lib.tokenizer import train_fast_tokenizer
from nanolm_lib.train import save_checkpoint

LESSON_03 = Path(__file__).resolve().parent.parent / "solutions/03_attention/03_attention.ipynb"


def _code_cells(path):
    """The notebook's code cells with IPython magics dropped, and their nbgrader metadata."""
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            source = "\n".join("" if line.lstrip().startswith("%") else line
                               for line in cell.source.splitlines())
            yield source, cell.metadata.get("nbgrader", {})


def _cell_containing(path, text):
    matches = [source for source, _ in _code_cells(path) if text in source]
    assert len(matches) == 1, f"{path.name}: expected one code cell containing {text!r}"
    return matches[0]


@pytest.fixture
def trained_run(tmp_path, monkeypatch):
    """A run folder as training leaves it (an untrained smoke model is enough here)."""
    config = PRESETS["smoke"]
    tokenizer = train_fast_tokenizer(make_stories(40), vocab_size=config.vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT(config)
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    save_checkpoint(run / "model.ckpt", model=model, model_config=config, tokenizer=tokenizer)
    monkeypatch.setenv("NANOLM_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("NANOLM_SMOKE", "1")
    return run, config


def test_lesson03_draws_the_heads_of_a_trained_run(trained_run):
    run, config = trained_run
    namespace: dict = {"__name__": "__main__"}
    plt.close("all")
    with torch.random.fork_rng(devices=[]):  # the set-up cell seeds the global generator
        # the set-up and the solutions, then the cells of section 8 the last one builds on
        for source, meta in _code_cells(LESSON_03):
            if meta.get("grade_id") == "setup" or meta.get("solution"):
                exec(compile(source, "<lesson 03>", "exec"), namespace)
        for text in ("def show_heads", "trained_runs = sorted("):
            exec(compile(_cell_containing(LESSON_03, text), "<lesson 03>", "exec"), namespace)

    weights = namespace["trained_weights"]  # (1, H, T, T) from the model's own first layer
    T = namespace["ids"].size(1)
    assert weights.shape == (1, config.n_heads, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, config.n_heads, T))
    assert torch.equal(weights[0, 0] > 0, torch.ones(T, T, dtype=torch.bool).tril())  # causal
    figure = plt.gcf()
    assert figure._suptitle.get_text() == f"layer 0 of {run.name}"
    assert len(figure.axes) == min(config.n_heads, 4)
    plt.close("all")
