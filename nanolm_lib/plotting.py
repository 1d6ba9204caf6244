"""Plots of a training run: the reference run's ``plot.png`` (loss and perplexity vs steps)."""

from __future__ import annotations

import math
from pathlib import Path


def plot_history(history: list[dict], path=None):
    """Two panels, loss and perplexity against steps (tokens on the top axis).

    ``history`` is what :func:`nanolm_lib.train.train` returns (or the records of a run's
    metrics.jsonl): ``"train"`` records draw a line, ``"validation"`` records draw points.
    Writes a PNG to ``path`` when given; returns the matplotlib Figure either way.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend needed

    train = [r for r in history if r.get("split") == "train" and "loss" in r]
    valid = [r for r in history if r.get("split") == "validation" and "loss" in r]
    if not train and not valid:
        raise ValueError("plot_history: history holds no 'train' or 'validation' records "
                         "with a loss")

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    loss_axes, ppl_axes = figure.subplots(1, 2)
    panels = ((loss_axes, "loss", "cross-entropy loss (nats/token)"),
              (ppl_axes, "perplexity", "perplexity (log scale)"))
    for axes, key, label in panels:
        if train:
            axes.plot([r["step"] for r in train], [_value(r, key) for r in train],
                      label="train", color="tab:blue", linewidth=1.2)
        if valid:
            axes.plot([r["step"] for r in valid], [_value(r, key) for r in valid],
                      label="validation", color="tab:orange", marker="o", linewidth=1.5)
        axes.set_xlabel("step")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        axes.legend()
        _add_token_axis(axes, train + valid)
    ppl_axes.set_yscale("log")
    last = valid[-1] if valid else train[-1]
    figure.suptitle(f"step {last['step']:,}: {last['split']} loss {last['loss']:.3f}, "
                    f"perplexity {_value(last, 'perplexity'):.2f}")
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
    return figure


def _value(record: dict, key: str) -> float:
    if key == "perplexity" and "perplexity" not in record:
        return math.exp(record["loss"])
    return record[key]


def _add_token_axis(axes, records: list[dict]) -> None:
    """A top axis in tokens seen, when the records say how many tokens one step is."""
    steps = [(r["step"], r["tokens"]) for r in records if r.get("step") and r.get("tokens")]
    if not steps:
        return
    step, tokens = steps[-1]
    per_step = tokens / step
    from matplotlib.ticker import EngFormatter

    top = axes.secondary_xaxis("top", functions=(lambda s: s * per_step,
                                                 lambda t: t / per_step))
    top.xaxis.set_major_formatter(EngFormatter())  # 458.752 M rather than 4.58e8
    top.set_xlabel("tokens")
