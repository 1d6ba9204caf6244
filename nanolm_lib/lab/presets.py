"""The recipes: model and training settings together, one entry per preset (as nanoGPT's
``config/*.py`` files hold a model and its training run side by side).

    seed-3090   the course's reference run: 22 M parameters, 2 epochs of TinyStories on a GPU
    seed-3090-modern  the same run as a ModernGPT (lesson 08) of the same parameter count
    cpu         five to ten minutes on a 2-core CPU: lesson 05's GPT
    cpu-modern  the same time as a ModernGPT (lesson 08) with RoPE, 3 layers (``make demo``)
    smoke       seconds: tests, CI and nbgrader

The command line, the demo, the benchmarks, the GPU check and the lessons all read this table;
nothing else names a preset's settings. :func:`default_preset` picks the one for this machine
and mode (``NANOLM_SIZE``, smoke mode, a CUDA GPU).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nanolm_lib import utils
from nanolm_lib.course.model import GPTConfig
from nanolm_lib.course.modern import ModernConfig
from nanolm_lib.course.train import TrainConfig
from nanolm_lib.errors import UsageError


@dataclass(frozen=True)
class Preset:
    """One recipe: the model, how to train it, which run size it serves (``utils.SIZES``),
    how many stories per split the demo streams from the hub for it (None: all), and the
    steps of lesson 02's bigram model at this size (``nanolm_lib.course.bigram.train_bigram``)."""

    name: str
    model: GPTConfig
    train: TrainConfig
    size: str
    hub_story_limit: int | None = None
    # about a minute on a 2-core CPU at the cpu size's 2,048 x 2,048 table (~7 steps/s, lr
    # 0.1; its validation loss levels off after ~200); the 10,000-token table is ~5x slower
    bigram_steps: int = 400


# The reference run's training: 2 epochs x 28,000 steps x 64 x 128 tokens = 458,752,000
# tokens, validation after each epoch over the whole validation split (~49 min/epoch on a 3090).
REFERENCE_TRAINING = TrainConfig(
    batch_size=64, max_steps=56_000, steps_per_epoch=28_000, lr=6e-4, min_lr=6e-5,
    warmup_steps=1_000, eval_interval=28_000, eval_batches=None, log_interval=50,
    checkpoint_interval=2_000,
)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    # The reference run: 21,955,584 parameters with the head tied to the token embedding.
    Preset(
        "seed-3090", size="full", bigram_steps=150,
        model=GPTConfig(),
        train=REFERENCE_TRAINING,
    ),
    # The reference run's modern twin for GPU owners (lesson 08's blocks): RMSNorm, RoPE,
    # SwiGLU (2,136 wide) and grouped-query attention, 10 heads of 80 sharing 5 key/value
    # heads, at 22,096,800 parameters (0.6% more than seed-3090: the nearest count whose head
    # size is a multiple of 8, as the fused CUDA attention kernels want, and whose heads
    # share K/V in pairs). The same training run. FLOPs per token: 1.01x seed-3090's;
    # `nanolm gpu-check` times its step beside seed-3090's on the GPU at hand (step_speed):
    # its expected tokens/s there.
    Preset(
        "seed-3090-modern", size="full",
        model=ModernConfig(d_model=800, n_heads=10, n_kv_heads=5),
        train=REFERENCE_TRAINING,
    ),
    # Model: about 0.34 M parameters (d_model 80, 2 layers), chosen by measurement. The wall
    # time, not the model's size, limits this run, so a smaller model that reads more tokens
    # in the time wins. Each run below had about the same wall time (its steps scaled by its
    # measured speed), trained on the TinyStories sample; bits per byte on the real validation
    # stories (`nanolm eval RUN --data valid-sample.txt`):
    #     d_model 128, 4 layers, 1,920 steps: 1.224    d_model 96, 4 layers, 2,560 steps: 1.205
    #     d_model 80, 4 layers, 3,072 steps:  1.197    d_model 64, 4 layers, 3,648 steps: 1.206
    #     the same at lr 8e-3: 1.195 (lr 1.2e-2: 1.198; 2 heads of 40 instead of 4 of 20: 1.203)
    #     (lr 5e-3 above this line, 8e-3 from here on)
    #     d_model 80, 3 layers, 3,780 steps:  1.182    d_model 96, 3 layers, 2,890 steps: 1.188
    #     d_model 80, 2 layers, 4,880 steps:  1.144 (this preset)
    # Around d_model 128 the schedule was already tuned: lr 8e-3, a floor of 0 or of lr/2, no
    # weight decay, and batch 4 (twice the steps) each did worse (1.228 to 1.241). A
    # 2,048-token vocabulary keeps the tied head, the costliest single matmul, small. Context
    # 256 holds a whole typical story (~230 tokens), so a story is written with the KV cache
    # and without sliding the window.
    # Training: 4,880 steps x 8 x 256 = 10 M tokens, about 8.6 epochs of the sample. The budget
    # is kept in steps, so a run is the same on any machine; the step counts above scale with
    # each size's speed measured on two idle cores (this preset 9.6 steps/s, about 9 minutes of
    # training; 4 layers of d_model 80, 6.3 steps/s; d_model 128, 4.1 steps/s). cpu-modern,
    # below, is given the same wall time.
    # Hub: about what five minutes of CPU training can read; tokenizing all 2.1 M stories
    # would take longer than the training itself.
    Preset(
        "cpu", size="cpu", hub_story_limit=30_000,
        model=GPTConfig(vocab_size=2_048, context_length=256, d_model=80, n_layers=2,
                        n_heads=4, d_ff=320),
        train=TrainConfig(
            batch_size=8, max_steps=4_880, lr=8e-3, min_lr=8e-4, warmup_steps=220,
            eval_interval=1_220, eval_batches=20, log_interval=20, checkpoint_interval=256,
            precision="fp32",
        ),
    ),
    # The demo's model (`make demo`): the cpu recipe with lesson 08's one swap that pays at this
    # size, RoPE, and a third layer, at 0.40 M parameters. Searched as the cpu preset was: each
    # run had the cpu preset's wall time (steps = 4,880 x its speed against the cpu preset's,
    # measured alternated on two idle cores), trained on the TinyStories sample; bits per byte
    # on the real validation stories (`nanolm eval RUN --data valid-sample.txt`):
    #     the cpu preset (classic, 2 layers, d_model 80), 4,880 steps:     1.144
    #     2 layers, RoPE instead of the position table, 4,551 steps:     1.097
    #       the same with RMSNorm and no biases, 4,321 steps:            1.124
    #       the same (RoPE only) at lr 1.2e-2, 4,510 steps:              1.101
    #       d_model 96, 4,001 steps: 1.091     d_model 64, 5,330 steps:  1.135
    #     3 layers, RoPE, d_model 80, 3,423 steps:                       1.090 (this preset)
    #     4 layers, RoPE, 2,792 steps: 1.099     3 layers, d_model 64, 4,322 steps: 1.109
    # SwiGLU and GQA stay out, as lesson 08's ablation found: at this size SwiGLU runs at 0.82x
    # the classic speed and loses, GQA lands within noise of the classic block and saves no
    # time. Training: 3,423 steps x 8 x 256 = 7 M tokens, about 6 epochs of the sample.
    Preset(
        "cpu-modern", size="cpu", hub_story_limit=30_000,
        model=ModernConfig(vocab_size=2_048, context_length=256, d_model=80, n_layers=3,
                           n_heads=4, d_ff=320, norm="layernorm", position="rope",
                           mlp="gelu", bias=True),
        train=TrainConfig(
            batch_size=8, max_steps=3_423, lr=8e-3, min_lr=8e-4, warmup_steps=154,
            eval_interval=855, eval_batches=20, log_interval=20, checkpoint_interval=256,
            precision="fp32",
        ),
    ),
    # Seconds: for tests, CI and nbgrader runs.
    Preset(
        "smoke", size="smoke", hub_story_limit=2_000, bigram_steps=30,
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
    (:func:`nanolm_lib.utils.run_size`): the first preset of that size in the table."""
    size = utils.run_size()
    return next(name for name, preset in PRESETS.items() if preset.size == size)


def model_config(name: str) -> GPTConfig | ModernConfig:
    """A fresh copy of the model settings of preset ``name``."""
    return dataclasses.replace(get_preset(name).model)


def gpt_configs() -> dict[str, GPTConfig]:
    """Fresh copies of the model settings of each recipe whose model is lesson 05's GPT, by
    name: the table lesson 05 prints and builds from (lesson 08's ModernConfig recipes are
    left out: lesson 05's ``count_parameters`` does not describe them)."""
    return {name: model_config(name) for name, preset in PRESETS.items()
            if not isinstance(preset.model, ModernConfig)}


def train_preset(name: str, **overrides) -> TrainConfig:
    """The training settings of preset ``name`` with ``overrides`` applied; the result goes
    through :class:`~nanolm_lib.course.train.TrainConfig`'s validation like any other config."""
    return dataclasses.replace(get_preset(name).train, **overrides)
