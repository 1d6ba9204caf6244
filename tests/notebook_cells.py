"""Running chosen cells of a solution notebook in-process, for the branches nbval never takes
(a trained run present, a widget clicked, a cell run twice)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import torch

from nanolm_lib.course.model import GPT
from nanolm_lib.course.modern import ModernConfig, ModernGPT
from nanolm_lib.course.stories import make_stories
from nanolm_lib.course.tokenizer import train_fast_tokenizer
from nanolm_lib.lab.checkpoint import save_checkpoint
from nanolm_lib.lab.presets import model_config

SOLUTIONS = Path(__file__).resolve().parent.parent / "solutions"


def code_cells(path):
    """(source without IPython magics, nbgrader metadata) of each code cell, in order."""
    for cell in nbformat.read(str(path), as_version=4).cells:
        if cell.cell_type == "code":
            source = "\n".join("" if line.lstrip().startswith("%") else line
                               for line in cell.source.splitlines())
            yield source, cell.metadata.get("nbgrader", {})


def cell_containing(path, text):
    """The source of the one code cell that contains ``text``."""
    matches = [source for source, _ in code_cells(path) if text in source]
    assert len(matches) == 1, f"{path.name}: expected one code cell containing {text!r}"
    return matches[0]


def run_cells(path, namespace, *texts, setup=True):
    """Execute the set-up cell and the solution cells (when ``setup``), then the cells
    containing each of ``texts``, in one namespace, as a kernel would."""
    with torch.random.fork_rng(devices=[]):  # the set-up cell seeds the global generator
        if setup:
            for source, meta in code_cells(path):
                if meta.get("grade_id") == "setup" or meta.get("solution"):
                    exec(compile(source, f"<{path.name}>", "exec"), namespace)
        for text in texts:
            exec(compile(cell_containing(path, text), f"<{path.name}>", "exec"), namespace)
    return namespace


def save_smoke_run(folder: Path, seed: int = 0, family: str = "gpt") -> GPT | ModernGPT:
    """A run folder as training leaves it: an (untrained) smoke-size model of ``family``
    ("gpt": lesson 05's GPT; "modern": lesson 08's ModernGPT, as `make demo` trains) and its
    tokenizer."""
    config = model_config("smoke")
    if family == "modern":
        config = ModernConfig(**vars(config))
    tokenizer = train_fast_tokenizer(make_stories(40), vocab_size=config.vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ModernGPT(config) if family == "modern" else GPT(config)
    folder.mkdir(parents=True)
    save_checkpoint(folder / "model.ckpt", model=model, model_config=config, tokenizer=tokenizer)
    return model
