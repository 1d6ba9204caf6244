"""The recipes: model and training settings together, one entry per preset (as nanoGPT's
``config/*.py`` files hold a model and its training run side by side).

    seed-3090   the course's reference run: 22 M parameters, 2 epochs of TinyStories on a GPU
    cpu         about five minutes on a 2-core CPU (``make demo``)
    smoke       seconds: tests, CI and nbgrader

The command line, the demo, the benchmarks, the GPU check and the lessons all read this table;
nothing else names a preset's settings. :func:`default_preset` picks the one for this machine
and mode (``NANOLM_SIZE``, smoke mode, a CUDA GPU).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nanolm_lib import utils
from nanolm_lib.errors import UsageError
from nanolm_lib.model import GPTConfig
from nanolm_lib.train import TrainConfig


@dataclass(frozen=True)
class Preset:
    """One recipe: the model, how to train it, which run size it serves (``utils.SIZES``),
    and how many stories per split the demo streams from the hub for it (None: all)."""

    name: str
    model: GPTConfig
    train: TrainConfig
    size: str
    hub_story_limit: int | None = None


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    # The reference run: 21,955,584 parameters with the head tied to the token embedding;
    # 2 epochs x 28,000 steps x 64 x 128 tokens = 458,752,000 tokens, validation after each
    # epoch over the whole validation split (~49 min/epoch on a 3090).
    Preset(
        "seed-3090", size="full",
        model=GPTConfig(),
        train=TrainConfig(
            batch_size=64, max_steps=56_000, steps_per_epoch=28_000, lr=6e-4, min_lr=6e-5,
            warmup_steps=1_000, eval_interval=28_000, eval_batches=None, log_interval=50,
            checkpoint_interval=2_000,
        ),
    ),
    # Model: about 1.1 M parameters, chosen by measurement: on a 2-core CPU (2 threads, idle)
    # it trains at ~12,800 tokens/s, so five minutes read ~3.7 M tokens. At that budget, with
    # context 128, it reached validation loss 2.97 (1.18 bits/byte) on the TinyStories sample
    # and told recognisable stories, where d_model 192 (2.2 M, 8,000 tokens/s) and 256
    # (3.7 M, 5,200 tokens/s), reading fewer tokens in the same time, reached 3.15 and 3.44:
    # at five minutes the budget, not the size, limits the loss. A 2,048-token vocabulary
    # keeps the tied head, the costliest single matmul, small. Context 256 holds a whole
    # typical story (~230 tokens), so a story is written with the KV cache and without
    # sliding the window; it costs ~10% more time per token than context 128.
    # Training: 1,920 steps x 8 x 256 = 3.9 M tokens. The budget is kept in steps: 1,800
    # steps took five minutes (~12,800 tokens/s, two idle AMD EPYC cores) before the GPT's
    # layer norm was fused, which made a step 1.08x faster (the two interleaved in one run),
    # so 1,920 steps take the same time. Measured on the TinyStories sample at 3.7 M tokens
    # (validation loss): batch 8 / lr 5e-3: 2.98 (1.19 bits/byte); batch 8 / 3e-3: 3.01;
    # batch 16 / 6e-3: 3.06; batch 16 / 3e-3: 3.11; batch 16 / 1.5e-3: 3.29; batch 32 /
    # 3e-3: 3.37. So short runs want many updates: small batches and a high lr.
    # Hub: about what five minutes of CPU training can read (~4 M tokens); tokenizing all
    # 2.1 M stories would take longer than the training itself.
    Preset(
        "cpu", size="cpu", hub_story_limit=20_000,
        model=GPTConfig(vocab_size=2_048, context_length=256, d_model=128, n_layers=4,
                        n_heads=4, d_ff=512),
        train=TrainConfig(
            batch_size=8, max_steps=1_920, lr=5e-3, min_lr=5e-4, warmup_steps=90,
            eval_interval=640, eval_batches=20, log_interval=20, checkpoint_interval=200,
            precision="fp32",
        ),
    ),
    # Seconds: for tests, CI and nbgrader runs.
    Preset(
        "smoke", size="smoke", hub_story_limit=2_000,
        model=GPTConfig(vocab_size=512, context_length=64, d_model=64, n_layers=2, n_heads=4,
                        d_ff=256),
        train=TrainConfig(
            batch_size=8, max_steps=20, lr=3e-3, min_lr=3e-4, warmup_steps=4, eval_interval=10,
            eval_batches=2, log_interval=5, checkpoint_interval=10, eval_batch_size=8,
            precision="fp32",
        ),
    ),
)}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a :class:`UsageError` naming the choices otherwise."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


def default_preset() -> str:
    """The preset for this machine and mode: smoke, cpu, or seed-3090 on a CUDA GPU
    (:func:`nanolm_lib.utils.run_size`)."""
    size = utils.run_size()
    return next(name for name, preset in PRESETS.items() if preset.size == size)


def model_config(name: str) -> GPTConfig:
    """A fresh copy of the model settings of preset ``name``."""
    return dataclasses.replace(get_preset(name).model)


def train_preset(name: str, **overrides) -> TrainConfig:
    """The training settings of preset ``name`` with ``overrides`` applied; the result goes
    through :class:`~nanolm_lib.train.TrainConfig`'s validation like any other config."""
    return dataclasses.replace(get_preset(name).train, **overrides)
