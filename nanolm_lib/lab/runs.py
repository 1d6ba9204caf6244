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

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from nanolm_lib.course.data import prepare_corpus
from nanolm_lib.course.model import GPT
from nanolm_lib.course.modern import build_model, config_from_dict, parameter_count
from nanolm_lib.course.train import TrainConfig
from nanolm_lib.errors import CheckpointError, UsageError
from nanolm_lib.lab.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_family,
    load_checkpoint,
    load_model,
)
from nanolm_lib.lab.presets import PRESETS, default_preset, model_config, train_preset
from nanolm_lib.lab.trainer import setup_distributed, train
from nanolm_lib.utils import runs_dir


@dataclass(frozen=True)
class Candidate:
    folder: Path
    why: str


def candidates(root: Path | None = None) -> list[Candidate]:
    """The run folders holding a checkpoint, in the order the lessons take them."""

    root = runs_dir() if root is None else Path(root)
    own = [root / f"lesson06-{preset}" for preset in PRESETS]  # lesson 06's run folders
    own = sorted((f for f in own if (f / CHECKPOINT_NAME).is_file()),
                 key=lambda f: (f / CHECKPOINT_NAME).stat().st_mtime, reverse=True)
    found = [Candidate(f, "your own lesson-06 run" + (" (the newest)" if len(own) > 1 else ""))
             for f in own]
    if (root / "demo" / CHECKPOINT_NAME).is_file():
        found.append(Candidate(root / "demo", "make demo's run (no lesson-06 run of yours"
                                              + (" could be loaded)" if own else " yet)")))
    return found


def find_trained_model(device: str = "cpu", root: Path | None = None,
                       family: str | None = None):
    """``(model, tokenizer, folder, why)`` of the first candidate that loads, or None.

    A checkpoint that does not load (a half-written or foreign file, or with ``family``
    "gpt" or "modern" a model of the other family) is reported and skipped.
    """

    root = runs_dir() if root is None else Path(root)
    for candidate in candidates(root):
        try:
            model, tokenizer = load_model(candidate.folder, device=device, family=family)
        except CheckpointError as error:
            print(f"skipping {candidate.folder}: {error}")
            continue
        return model, tokenizer, candidate.folder, candidate.why
    return None


def train_smoke_model(out_dir: Path, max_steps: int, device: str = "cpu"):
    """Train (or resume) the tiny smoke model into ``out_dir``; ``(model, tokenizer)``."""
    import torch


    smoke = model_config("smoke")
    corpus = prepare_corpus(vocab_size=smoke.vocab_size, limit=300)
    config = train_preset("smoke", max_steps=max_steps, out_dir=str(out_dir))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        train(GPT(smoke), config, corpus.train, corpus.validation,
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


# -------------------------------------------------------------------------------------------
# Training a preset into a run folder: what `nanolm train` and `make demo` both do


@dataclass
class PresetRun:
    """A preset made ready to train into ``out_dir``: its settings and its prepared corpus
    (:func:`plan_preset_run`). :meth:`train` trains, resumes or replaces the run there."""

    preset: str
    out_dir: Path
    model_config: object  # GPTConfig or ModernConfig
    config: object  # TrainConfig
    corpus: object  # PreparedCorpus
    data: object = None  # the data source asked for (None: NANOLM_DATA, the hub, generated)

    @property
    def parameters(self) -> int:

        return parameter_count(self.model_config)

    def data_info(self) -> dict:
        """Where the tokens came from, as the checkpoint and config.json keep it."""
        corpus = self.corpus
        return {"preset": self.preset, "source": None if self.data is None else str(self.data),
                "corpus": str(corpus.path), "described": corpus.meta.get("source"),
                "bytes_per_token": corpus.bytes_per_token("validation")}

    def train(self, *, resume: bool = False, overwrite: bool = False) -> list[dict]:
        """Seed, build the model (a GPT or a ModernGPT), train (see
        :func:`nanolm_lib.lab.trainer.train`); the history."""
        import torch


        corpus = self.corpus
        torch.manual_seed(self.config.seed)  # the same initial weights for the same seed
        return train(build_model(self.model_config), self.config, corpus.train, corpus.validation,
                     tokenizer=corpus.tokenizer,
                     bytes_per_token=corpus.bytes_per_token("validation"), resume=resume,
                     overwrite=overwrite, data_info=self.data_info())


def plan_preset_run(preset: str | None, out_dir: Path | None = None, *, data=None,
                    limit: int | None = None, resume: bool = False, **overrides) -> PresetRun:
    """The settings and the prepared corpus of a run of ``preset`` in ``out_dir``.

    ``preset`` None is the one for this machine (:func:`nanolm_lib.lab.presets.default_preset`);
    ``out_dir`` None is the folder named after it in :func:`nanolm_lib.utils.runs_dir`.
    Resuming a run (``resume`` and a checkpoint in ``out_dir``) without naming a preset keeps
    the run's own settings, preset and data. ``overrides`` are :func:`training_overrides`'
    keywords. The corpus is prepared once per job: under ``torchrun`` rank 0 prepares it
    while the others wait, then read it from the cache.
    """

    named = preset or default_preset()
    out_dir = runs_dir() / named if out_dir is None else Path(out_dir)
    ckpt = out_dir / CHECKPOINT_NAME
    if resume and preset is None and ckpt.exists():
        state = load_checkpoint(ckpt)
        saved = state["extra"].get("data", {})
        preset = saved.get("preset") or named
        data = data if data is not None else saved.get("source")
        model = config_from_dict(checkpoint_family(state, path=ckpt), state["model_config"])
        config = TrainConfig(**state["train_config"])
    else:
        preset = named
        model, config = model_config(preset), train_preset(preset)
    config = training_overrides(config, out_dir=str(out_dir), **overrides)
    corpus = _prepared_once(data, model.vocab_size, limit, config.device)
    model = _vocabulary_for(corpus, model, preset)
    return PresetRun(preset, out_dir, model, config, corpus, data)


def _vocabulary_for(corpus, model, preset: str):
    """The model settings with the corpus tokenizer's vocabulary. A corpus too small to fill
    the preset's vocabulary (the generated stories: about 1,300 distinct tokens) trains a
    model with the smaller vocabulary, said in one line; any other mismatch is refused."""


    found = corpus.tokenizer.vocab_size
    if found == model.vocab_size:
        return model
    if found > model.vocab_size:
        raise UsageError(f"the corpus tokenizer has {found} tokens but the model expects "
                         f"vocab_size={model.vocab_size}")
    print(f"nanolm: the tokenizer of {corpus.meta.get('source', 'the corpus')} has only "
          f"{found:,} tokens, so the {preset!r} model uses a {found:,}-token vocabulary "
          f"instead of {model.vocab_size:,}")
    return dataclasses.replace(model, vocab_size=found)


def training_overrides(config, *, out_dir: str | None = None, device: str | None = None,
                       compile: bool = False, batch_size: int | None = None,
                       lr: float | None = None, min_lr: float | None = None,
                       steps: int | None = None, epochs: float | None = None):
    """``config`` with what the command line asks for, validated as any TrainConfig is.

    ``lr`` alone keeps the recipe's ratio of ``min_lr`` to ``lr`` (one tenth in every preset);
    ``steps`` or ``epochs`` set the run's length, and the evaluation, log and checkpoint
    intervals shrink to fit a shorter run.
    """

    changes: dict = {"compile": compile or config.compile}
    if out_dir is not None:
        changes["out_dir"] = out_dir
    if device:
        changes["device"] = device
    if batch_size is not None:
        changes["batch_size"] = batch_size
    if lr is not None:
        changes["lr"] = lr
        changes["min_lr"] = min_lr if min_lr is not None else lr * config.min_lr / config.lr
    elif min_lr is not None:
        changes["min_lr"] = min_lr
    max_steps = config.max_steps
    if steps is not None:
        max_steps = changes["max_steps"] = steps
        changes["eval_interval"] = min(config.eval_interval, steps)
    if epochs is not None:
        per_epoch = config.steps_per_epoch or config.eval_interval
        max_steps = changes["max_steps"] = round(epochs * per_epoch)
        changes["steps_per_epoch"] = per_epoch
    changes["checkpoint_interval"] = min(config.checkpoint_interval, max_steps)
    changes["log_interval"] = min(config.log_interval, max_steps)
    return dataclasses.replace(config, **changes)


def _prepared_once(data, vocab_size: int, limit: int | None, device: str | None):
    """:func:`nanolm_lib.course.data.prepare_corpus`, by rank 0 first under ``torchrun``."""

    dist_info = setup_distributed(device)
    if dist_info.is_main:
        corpus = prepare_corpus(data, vocab_size, limit=limit)
    if dist_info.enabled:
        import torch.distributed as dist

        dist.barrier()
    if not dist_info.is_main:  # now a cache hit
        corpus = prepare_corpus(data, vocab_size, limit=limit)
    return corpus
