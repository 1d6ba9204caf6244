"""``nanolm ablate``: the classic GPT against each lesson-08 swap alone and all of them, on the
same wall-clock budget per run (lesson 08).

Each variant is the preset's model with one piece changed. First every variant's speed is
measured on this machine, in rounds that alternate the variants (a few steps each, the median
of the rounds kept), so that a burst of load from elsewhere hits them all alike. Each variant's
steps are then the budget times its speed, so a faster variant reads more tokens in the same
time, as the cpu preset's search scaled steps to the same wall time; the result does not
depend on the load while it trains. It trains (the preset's schedule, warm-up scaled with the
steps), and ``nanolm eval`` scores it on a held-out text file. Compare the rows with each
other, not with a table from another machine.

    classic   the preset's GPT (LayerNorm, learned positions, GELU MLP, biases)
    rmsnorm   RMSNorm in place of LayerNorm
    rope      rotary positions in place of the learned position table
    swiglu    SwiGLU (8/3 d_model wide) in place of the GELU MLP
    gqa       half as many key/value heads as query heads
    modern    all four, and no biases
"""

from __future__ import annotations

import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path

from nanolm_lib.course.data import prepare_corpus
from nanolm_lib.course.modern import ModernConfig, build_model, parameter_count
from nanolm_lib.lab.checkpoint import read_metrics
from nanolm_lib.lab.evaluate import evaluate_file
from nanolm_lib.lab.presets import model_config, train_preset
from nanolm_lib.lab.trainer import train

VARIANTS = ("classic", "rmsnorm", "rope", "swiglu", "gqa", "modern")


def variant_config(base, variant: str):
    """The model config of ``variant`` built from the classic ``base`` (a GPTConfig)."""

    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    sizes = dataclasses.asdict(base)
    if variant == "classic":
        return dataclasses.replace(base)
    if variant == "modern":
        return ModernConfig(**sizes, n_kv_heads=max(1, base.n_heads // 2))
    classic = dict(norm="layernorm", position="learned", mlp="gelu", bias=True)
    swap = {"rmsnorm": {"norm": "rmsnorm"}, "rope": {"position": "rope"},
            "swiglu": {"mlp": "swiglu"}, "gqa": {"n_kv_heads": max(1, base.n_heads // 2)}}
    return ModernConfig(**sizes, **{**classic, **swap[variant]})


def measure_speeds(configs: dict, train_config, tokens, probe_steps: int,
                   rounds: int = 3) -> dict:
    """Training steps per second of each config here: ``rounds`` rounds that alternate the
    variants, ``probe_steps`` each after two warm-up steps (the first steps allocate); the
    median round of each."""

    import torch


    quiet = dict(out_dir=None, eval_interval=10**9, log_interval=10**9, warmup_steps=0)
    samples = {name: [] for name in configs}
    with torch.random.fork_rng(devices=[]):
        models = {name: build_model(config) for name, config in configs.items()}
        for model in models.values():
            train(model, dataclasses.replace(train_config, max_steps=2, **quiet), tokens)
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                train(model, dataclasses.replace(train_config, max_steps=probe_steps, **quiet),
                      tokens)
                samples[name].append(probe_steps / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in samples.items()}


def run_ablation(out_dir, *, preset: str = "cpu", budget_s: float = 300.0, data=None,
                 eval_data=None, variants=VARIANTS, probe_steps: int = 20,
                 limit: int | None = None, evals: int = 4, say=print) -> list[dict]:
    """Train each of ``variants`` for ``budget_s`` seconds of training into
    ``out_dir/<variant>``; score each on ``eval_data`` (a text file; None: the corpus's own
    validation split). Writes ``ablation.json``, ``ablation.md`` and ``ablation.png``."""
    import torch


    out_dir = Path(out_dir)
    base, schedule = model_config(preset), train_preset(preset, device="cpu")
    corpus = prepare_corpus(data, base.vocab_size, limit=limit)
    if corpus.tokenizer.vocab_size < base.vocab_size:
        base = dataclasses.replace(base, vocab_size=corpus.tokenizer.vocab_size)
    configs = {variant: variant_config(base, variant) for variant in variants}
    say(f"measuring the speed of {', '.join(variants)} ({probe_steps} steps each, 3 rounds)")
    speeds = measure_speeds(configs, schedule, corpus.train, probe_steps)
    rows = []
    for variant, config in configs.items():
        speed = speeds[variant]
        steps = max(2, round(budget_s * speed))
        run_config = dataclasses.replace(
            schedule, max_steps=steps, out_dir=str(out_dir / variant),
            warmup_steps=round(steps * schedule.warmup_steps / schedule.max_steps),
            eval_interval=max(1, steps // evals), checkpoint_interval=steps,
            log_interval=max(1, steps // 20))
        say(f"{variant}: {parameter_count(config):,} parameters, {speed:.2f} steps/s here "
            f"-> {steps:,} steps in {budget_s:g} s")
        torch.manual_seed(schedule.seed)
        started = time.perf_counter()
        history = train(build_model(config), run_config, corpus.train, corpus.validation,
                        tokenizer=corpus.tokenizer,
                        bytes_per_token=corpus.bytes_per_token("validation"), overwrite=True)
        wall = time.perf_counter() - started
        held_out = (evaluate_file(out_dir / variant, eval_data, device="cpu")
                    if eval_data is not None else None)
        last = [r for r in history if r["split"] == "validation"][-1]
        rows.append({
            "variant": variant, "parameters": parameter_count(config), "steps": steps,
            "steps_per_s": speed,
            "tokens_per_s": speed * schedule.batch_size * config.context_length,
            "train_s": last["elapsed_s"], "wall_s": wall,
            "bpb_validation_split": last.get("bpb"),
            "bpb_eval_file": None if held_out is None else held_out["bpb"],
            # x: the time each evaluation's step takes at the measured speed (the budget's
            # clock), not the wall clock of a machine whose load changed meanwhile
            "curve": [(r["step"] / speed, r.get("bpb")) for r in read_metrics(out_dir / variant)
                      if r["split"] == "validation"]})
        say(ablation_table(rows[-1:], header=False))
    _write(out_dir, rows, dict(preset=preset, budget_s=budget_s, data=str(data),
                               eval_data=str(eval_data), probe_steps=probe_steps))
    return rows


def ablation_table(rows: list[dict], header: bool = True) -> str:
    """A Markdown table of :func:`run_ablation`'s rows."""
    lines = ["| variant | parameters | tokens/s (measured, alternated) | steps in the budget | "
             "train s | bpb (validation split) | bpb (eval file) |",
             "|---|---:|---:|---:|---:|---:|---:|"] if header else []
    for r in rows:
        held = "-" if r["bpb_eval_file"] is None else f"{r['bpb_eval_file']:.4f}"
        lines.append(f"| {r['variant']} | {r['parameters']:,} | {r['tokens_per_s']:,.0f} | "
                     f"{r['steps']:,} | {r['train_s']:.0f} | "
                     f"{r['bpb_validation_split']:.4f} | {held} |")
    return "\n".join(lines)


def plot_ablation(rows: list[dict], path=None):
    """Held-out bits per byte (the validation split) against training time, one line per
    variant. Saved to ``path`` when given; returns the figure."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    for r in rows:
        seconds, bpb = zip(*[(s, b) for s, b in r["curve"] if b is not None])
        axes.plot(seconds, bpb, marker="o", label=r["variant"])
    axes.set_xlabel("training time at the measured speed (s)")
    axes.set_ylabel("bits per byte (validation)")
    axes.set_title("same wall-clock budget per variant")
    axes.legend()
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure


def _write(out_dir: Path, rows: list[dict], settings: dict) -> None:

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    (out_dir / "ablation.json").write_text(json.dumps(
        {"settings": settings, "machine": machine, "rows": rows}, indent=2) + "\n")
    (out_dir / "ablation.md").write_text(ablation_table(rows) + "\n")
    plt.close(plot_ablation(rows, out_dir / "ablation.png"))
