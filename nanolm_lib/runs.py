"""Which trained model a lesson uses (lessons 03 and 07).

All runs of a working copy live in one folder, :func:`nanolm_lib.utils.runs_dir` (the
``runs/`` beside ``lessons/`` or ``workspace/``), so a lesson finds what lesson 06 or
``make demo`` trained whichever lesson folder it runs in. The order, and why:

1. the student's own lesson-06 run (``lesson06-<preset>``), the newest one: the course is
   about their model;
2. ``demo`` (``make demo``): the course's reference recipe, trained on the same machine;
3. nothing: lesson 07 then trains the tiny smoke model for a few seconds, so that the rest of
   the lesson runs (it writes gibberish with the right shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nanolm_lib.utils import runs_dir

LESSON06_PRESETS = ("smoke", "cpu", "seed-3090")  # lesson 06 writes runs/lesson06-<preset>
CHECKPOINT = "model.ckpt"


@dataclass(frozen=True)
class Candidate:
    folder: Path
    why: str


def candidates(root: Path | None = None) -> list[Candidate]:
    """The run folders holding a checkpoint, in the order the lessons take them."""
    root = runs_dir() if root is None else Path(root)
    own = [root / f"lesson06-{preset}" for preset in LESSON06_PRESETS]
    own = sorted((f for f in own if (f / CHECKPOINT).is_file()),
                 key=lambda f: (f / CHECKPOINT).stat().st_mtime, reverse=True)
    found = [Candidate(f, "your own lesson-06 run" + (" (the newest)" if len(own) > 1 else ""))
             for f in own]
    if (root / "demo" / CHECKPOINT).is_file():
        found.append(Candidate(root / "demo", "make demo's run (no lesson-06 run of yours"
                                              + (" could be loaded)" if own else " yet)")))
    return found


def find_trained_model(device: str = "cpu", root: Path | None = None):
    """``(model, tokenizer, folder, why)`` of the first candidate that loads, or None.

    A checkpoint that does not load (a half-written or foreign file) is reported and skipped.
    """
    from nanolm_lib.train import CheckpointError, load_model

    root = runs_dir() if root is None else Path(root)
    for candidate in candidates(root):
        try:
            model, tokenizer = load_model(candidate.folder, device=device)
        except CheckpointError as error:
            print(f"skipping {candidate.folder}: {error}")
            continue
        return model, tokenizer, candidate.folder, candidate.why
    return None


def train_smoke_model(out_dir: Path, max_steps: int, device: str = "cpu"):
    """Train (or resume) the tiny smoke model into ``out_dir``; ``(model, tokenizer)``."""
    import torch

    from nanolm_lib.data import prepare_corpus
    from nanolm_lib.model import GPT, PRESETS
    from nanolm_lib.train import load_model, train, train_preset

    corpus = prepare_corpus(vocab_size=PRESETS["smoke"].vocab_size, limit=300)
    config = train_preset("smoke", max_steps=max_steps, out_dir=str(out_dir))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        train(GPT(PRESETS["smoke"]), config, corpus.train, corpus.validation,
              tokenizer=corpus.tokenizer, resume=True)
    return load_model(out_dir, device=device)


def model_for_lesson(device: str = "cpu", smoke_steps: int = 200):
    """Lesson 07's model: a trained one (see :func:`find_trained_model`), else the smoke model
    trained now. Prints which one and why; returns ``(model, tokenizer, folder)``."""
    root = runs_dir()
    found = find_trained_model(device, root)
    if found is not None:
        model, tokenizer, folder, why = found
        print(f"using {folder}: {why}")
        return model, tokenizer, folder
    folder = root / "lesson07-smoke"
    print(f"no trained model under {root} (neither a lesson-06 run nor make demo's): "
          f"training the tiny 'smoke' model for {smoke_steps} steps into {folder}")
    model, tokenizer = train_smoke_model(folder, smoke_steps, device)
    return model, tokenizer, folder
