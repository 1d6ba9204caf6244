"""The recipes (nanolm_lib.lab.presets) and the overrides the command line applies to them: one
table serves the command line, the demo, the benchmarks and the lessons, and every override
goes through TrainConfig's validation."""

from __future__ import annotations

import pytest

from nanolm_lib import utils
from nanolm_lib.course.model import GPTConfig
from nanolm_lib.course.modern import ModernConfig
from nanolm_lib.course.train import TrainConfig
from nanolm_lib.errors import UsageError
from nanolm_lib.lab import presets
from nanolm_lib.lab.runs import training_overrides
from nanolm_lib.lab.tables import reference_tokens


def test_each_preset_holds_a_model_and_its_training_and_serves_one_run_size():
    assert {p.size for p in presets.PRESETS.values()} == set(utils.SIZES)
    for name, preset in presets.PRESETS.items():
        assert preset.name == name
        assert isinstance(preset.model, GPTConfig) and isinstance(preset.train, TrainConfig)


def test_lesson_05_tabulates_the_gpt_recipes_and_no_modern_one():
    """Lesson 05's table: the recipes whose model is its GPT (its count_parameters does not
    describe lesson 08's ModernGPT), as fresh GPTConfig copies of the recipes' settings."""
    configs = presets.gpt_configs()
    assert list(configs) == ["seed-3090", "cpu", "smoke"]
    for name, config in configs.items():
        assert type(config) is GPTConfig, name
        assert config == presets.PRESETS[name].model and config is not presets.PRESETS[name].model
    assert configs["seed-3090"] == GPTConfig()  # the reference run: GPTConfig's defaults
    assert isinstance(presets.PRESETS["cpu-modern"].model, ModernConfig)


def test_the_reference_recipe_has_a_modern_twin_of_its_size():
    """seed-3090-modern: lesson 08's blocks at the reference run's parameter count (within 1%)
    and FLOPs per token (within 2%), heads the fused CUDA kernels take (a size a multiple of
    8), K/V shared by groups, and the same training run."""
    from nanolm_lib.course.modern import build_model, parameter_count, training_flops_per_token

    classic, modern = presets.model_config("seed-3090"), presets.model_config("seed-3090-modern")
    assert isinstance(modern, ModernConfig) and modern.position == "rope"
    assert modern.head_dim % 8 == 0 and 1 < modern.n_heads // modern.n_kv_heads
    assert (modern.vocab_size, modern.context_length, modern.n_layers) == (
        classic.vocab_size, classic.context_length, classic.n_layers)
    built = sum(p.numel() for p in build_model(modern).parameters())
    assert built == parameter_count(modern)
    assert parameter_count(modern) == pytest.approx(parameter_count(classic), rel=0.01)
    assert training_flops_per_token(modern) == pytest.approx(training_flops_per_token(classic),
                                                             rel=0.02)
    assert presets.train_preset("seed-3090-modern") == presets.train_preset("seed-3090")


@pytest.mark.parametrize("size, expected", [("smoke", "smoke"), ("cpu", "cpu"),
                                            ("full", "seed-3090")])
def test_default_preset_follows_the_run_size(monkeypatch, size, expected):
    monkeypatch.setenv("NANOLM_SIZE", size)
    monkeypatch.delenv("NANOLM_SMOKE", raising=False)
    assert presets.default_preset() == expected


@pytest.mark.parametrize("size, expected", [(None, "cpu-modern"), ("smoke", "smoke"),
                                            ("full", "seed-3090")])
def test_make_demo_trains_the_searched_modern_recipe_unless_a_size_is_asked_for(
        monkeypatch, size, expected):
    """cpu-modern won the demo's search (presets.py): lesson 08's RoPE in a classic block, 3
    layers, on the cpu preset's wall time, so fewer steps than the cpu preset's."""
    from nanolm_lib.lab.demo import demo_preset

    monkeypatch.delenv("NANOLM_SMOKE", raising=False)
    if size:
        monkeypatch.setenv("NANOLM_SIZE", size)
    else:
        monkeypatch.delenv("NANOLM_SIZE", raising=False)
    assert demo_preset() == expected
    demo = presets.get_preset("cpu-modern")
    assert (demo.model.position, demo.model.norm, demo.model.mlp) == ("rope", "layernorm", "gelu")
    assert demo.size == "cpu" and demo.train.max_steps < presets.train_preset("cpu").max_steps


def test_the_reference_recipe_reads_two_epochs_of_458_million_tokens():
    seed = presets.train_preset("seed-3090")
    assert (seed.batch_size, seed.max_steps, seed.steps_per_epoch) == (64, 56_000, 28_000)
    assert seed.eval_interval == seed.steps_per_epoch and seed.epochs == 2
    assert reference_tokens() == 458_752_000  # the figure the reference README reports


def test_presets_are_copied_and_unknown_names_are_a_usage_error():
    fresh = presets.train_preset("smoke", max_steps=3)
    assert fresh.max_steps == 3 and presets.PRESETS["smoke"].train.max_steps == 20
    assert presets.model_config("cpu") is not presets.PRESETS["cpu"].model
    with pytest.raises(UsageError, match="unknown preset 'huge'.*seed-3090"):
        presets.get_preset("huge")
    with pytest.raises(UsageError, match=r"TrainConfig.max_steps=0"):
        presets.train_preset("smoke", max_steps=0)


def test_overrides_are_validated_and_keep_the_recipe_s_schedule():
    recipe = presets.train_preset("cpu")
    shorter = training_overrides(recipe, steps=50)
    assert shorter.max_steps == 50 and shorter.eval_interval == 50
    assert shorter.checkpoint_interval <= 50 and shorter.log_interval == recipe.log_interval
    tiny = training_overrides(recipe, steps=7)
    assert (tiny.log_interval, tiny.checkpoint_interval) == (7, 7)
    # --lr alone keeps the recipe's min_lr : lr ratio; --min-lr says it outright
    faster = training_overrides(recipe, lr=1e-2)
    assert faster.min_lr == pytest.approx(1e-2 * recipe.min_lr / recipe.lr)
    assert training_overrides(recipe, lr=1e-2, min_lr=0.0).min_lr == 0.0
    for bad, message in (({"steps": 0}, "max_steps=0"), ({"batch_size": 0}, "batch_size=0"),
                         ({"lr": 1e-3, "min_lr": 2e-3}, "min_lr"),
                         ({"epochs": 0.0}, "max_steps=0")):
        with pytest.raises(UsageError, match=message):
            training_overrides(recipe, **bad)
    assert training_overrides(recipe) == recipe  # nothing asked, nothing changed


def test_nanolm_train_help_names_every_preset():
    from nanolm_lib.lab.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    help_text = commands.choices["train"].format_help()
    assert all(name in help_text for name in presets.PRESETS), help_text


def test_lesson_00_quotes_the_reference_model_s_parameter_count():
    """Lesson 00 states the reference model's size as a figure (lesson 05's count_parameters is
    not released in a kit's early weeks); the figure is the count."""
    import json
    import re
    from pathlib import Path

    from nanolm_lib.course.model import count_parameters

    notebook = Path(__file__).resolve().parents[2] / "solutions" / "00_setup" / "00_setup.ipynb"
    source = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"])
    quoted = re.search(r"^parameters = ([\d_]+)", source, re.MULTILINE)
    assert quoted and int(quoted[1]) == count_parameters(presets.model_config("seed-3090"))
