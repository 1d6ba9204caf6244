"""Plots of a training run: the reference run's ``plot.png`` (loss and perplexity vs steps)."""

from __future__ import annotations

import math
from pathlib import Path

from nanolm_lib.course.modern import apply_rope, rope_cache


def plot_history(history: list[dict], path=None):
    """Two panels, loss and perplexity against steps (tokens on the top axis).

    ``history`` is what :func:`nanolm_lib.lab.trainer.train` returns (or the records of a run's
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


def plot_rope_rotation(head_dim: int = 16, positions: int = 64, base: float = 10_000.0,
                       pairs=(0, 2, 7)):
    """Lesson 08's RoPE figure. Left: the angle of a (x_i, x_{i+D/2}) pair, starting at
    angle 0, rotated to each position 0..positions-1, for a fast, a middle and a slow pair
    (``pairs``): the fast one turns a radian per position, the slow one barely moves. Right: the score of a fixed query
    and key placed ``offset`` apart, at two absolute positions: the curves coincide, since
    the score depends on the offset only. Returns the Figure."""
    import torch
    from matplotlib.figure import Figure


    cos, sin = rope_cache(positions, head_dim, base)
    figure = Figure(figsize=(11, 4), layout="constrained")
    left, right = figure.subplots(1, 2)
    unit = torch.zeros(positions, head_dim)
    for i in pairs:
        unit.zero_()
        unit[:, i] = 1.0
        turned = apply_rope(unit, cos, sin)
        angle = torch.atan2(turned[:, i + head_dim // 2], turned[:, i])  # in (-pi, pi]
        left.plot(range(positions), angle, marker=".",
                  label=f"pair {i}: {base ** (-2 * i / head_dim):.3g} rad/position")
    left.set_title("angle of a (x_i, x_{i+D/2}) pair after RoPE")
    left.set_xlabel("position")
    left.set_ylabel("angle (radians, wrapped)")
    left.legend(fontsize=8)
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(head_dim, generator=generator), torch.randn(head_dim, generator=generator)
    rotated_q = apply_rope(q.expand(positions, head_dim), cos, sin)
    rotated_k = apply_rope(k.expand(positions, head_dim), cos, sin)
    offsets = range(positions // 2)
    for start in (0, positions // 2 - 1):
        scores = [float(rotated_q[start + d] @ rotated_k[start]) for d in offsets]
        right.plot(list(offsets), scores, marker="o" if start else "", linestyle="-" if not
                   start else "none", label=f"key at position {start}")
    right.set_title("score of q at key position + offset")
    right.set_xlabel("offset (query position - key position)")
    right.set_ylabel("q . k after RoPE")
    right.legend(fontsize=8)
    return figure


def plot_swiglu_gate():
    """Lesson 08's SwiGLU figure. Left: the gate silu(z) = z sigmoid(z) against ReLU and
    GELU. Right: the product silu(g) u over the (g, u) plane: the gate opens smoothly for
    g > 0, stays near 0 for g < 0, and u sets the sign and size. Returns the Figure."""
    import torch
    import torch.nn.functional as F
    from matplotlib.figure import Figure

    z = torch.linspace(-5, 5, 201)
    figure = Figure(figsize=(11, 4), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.plot(z, F.silu(z), label="silu(z) = z sigmoid(z)")
    left.plot(z, F.gelu(z), "--", label="GELU")
    left.plot(z, torch.relu(z), ":", label="ReLU")
    left.set_title("the gate's non-linearity")
    left.set_xlabel("z")
    left.legend(fontsize=8)
    g = torch.linspace(-4, 4, 161)
    u = torch.linspace(-4, 4, 161)
    product = F.silu(g)[None, :] * u[:, None]  # rows u, columns g
    image = right.imshow(product, origin="lower", extent=(-4, 4, -4, 4), cmap="RdBu_r",
                         vmin=-8, vmax=8, aspect="auto")
    figure.colorbar(image, ax=right, label="silu(g) * u")
    right.set_title("SwiGLU's unit: silu(gate) x up")
    right.set_xlabel("g = gate(x)")
    right.set_ylabel("u = up(x)")
    return figure
