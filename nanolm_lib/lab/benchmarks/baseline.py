"""``nanolm bench train --baseline``: NanoLM's training step against the same model built
from ``torch.nn`` blocks, the way a typical user would write it, step by step in one run.

The baseline (:class:`TorchBaselineLM`) has the same sizes, learned positions, a head tied to
the token embedding, pre-LN blocks (``nn.TransformerEncoderLayer(norm_first=True)``, exact
GELU, a causal mask) and the same step: :func:`nanolm_lib.course.train.optimize` with the same
AdamW and gradient clipping. Steps alternate (NanoLM, baseline, NanoLM, ...), so a change in
the machine's load falls on both; the figure to read is the median of the per-round ratios.

:func:`profile_step` lists the operations a training step spends its time in
(``torch.profiler``, self CPU time), ``nanolm bench train --profile``.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from nanolm_lib.course.model import GPT, GPTConfig
from nanolm_lib.course.train import make_optimizer, optimize
from nanolm_lib.lab.benchmarks import machine_info
from nanolm_lib.lab.presets import model_config as preset_model
from nanolm_lib.lab.presets import train_preset
from nanolm_lib.lab.profiling import _quiet_profiler
from nanolm_lib.lab.tables import format_table
from nanolm_lib.lab.trainer import keep_freed_memory

# name -> (model sizes, batch size). The first is the size nanoGPT comparisons use.
CONFIGS: dict[str, tuple[dict, int]] = {
    "v4096-d256-L4": (dict(vocab_size=4_096, context_length=128, d_model=256, n_layers=4,
                           n_heads=8, d_ff=1_024), 32),
    "seed-3090": ("seed-3090", 64),
    "cpu": ("cpu", None),
}
QUICK_CONFIG = (dict(vocab_size=128, context_length=16, d_model=32, n_layers=2, n_heads=4,
                     d_ff=64), 4)


class TorchBaselineLM(nn.Module):
    """A GPT written with ``torch.nn`` blocks only: what a user would write without NanoLM.

    Same interface as :class:`nanolm_lib.course.model.GPT`:
    ``idx (B, T) -> (logits, loss or None)``.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context_length, config.d_model)
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.n_heads, config.d_ff, dropout=config.dropout,
            activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight
        mask = nn.Transformer.generate_square_subsequent_mask(config.context_length)
        self.register_buffer("causal_mask", mask, persistent=False)  # -inf above the diagonal
        for module in self.modules():  # GPT-2's init, as the library's GPT
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        T = idx.size(1)
        positions = torch.arange(T, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(positions)
        x = self.blocks(x, mask=self.causal_mask[:T, :T], is_causal=True)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return logits, loss


def resolve(name: str) -> tuple[GPTConfig, object]:
    """(model config, train config) of a :data:`CONFIGS` entry: preset sizes or given sizes."""

    sizes, batch_size = CONFIGS[name] if name != "quick" else QUICK_CONFIG
    preset = sizes if isinstance(sizes, str) else "cpu"
    model_config = preset_model(preset) if isinstance(sizes, str) else GPTConfig(**sizes)
    overrides = {"batch_size": batch_size} if batch_size else {}
    return model_config, train_preset(preset, precision="fp32", **overrides)


def _stepper(model: nn.Module, config, x: torch.Tensor, y: torch.Tensor):
    """A function doing one training step of ``model`` (no host sync, as in ``train()``)."""

    optimizer = make_optimizer(model, config, "cpu")

    def step():
        return optimize(model, optimizer, x, y, config.grad_clip, check_ids=False)

    return step


def _batch(model_config: GPTConfig, batch_size: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, model_config.context_length)
    x = torch.randint(model_config.vocab_size, shape, generator=generator)
    y = torch.randint(model_config.vocab_size, shape, generator=generator)
    return x, y


def compare(name: str, rounds: int = 6, models: dict | None = None) -> dict:
    """Tokens/s of NanoLM's GPT and of the baseline on config ``name``, steps interleaved.

    ``models`` (name -> model) replaces the pair, e.g. a compiled and an eager model.
    """

    keep_freed_memory()  # as train() does on a CPU
    model_config, config = resolve(name)
    x, y = _batch(model_config, config.batch_size)
    if models is None:
        torch.manual_seed(0)
        models = {"nanolm": GPT(model_config), "torch.nn": TorchBaselineLM(model_config)}
    steps = {label: _stepper(model, config, x, y) for label, model in models.items()}
    first_step = {}
    for label, step in steps.items():  # warm-up: allocations, optimizer state, compilation
        started = time.perf_counter()
        step()
        first_step[label] = time.perf_counter() - started
    seconds: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(rounds):
        for label, step in steps.items():
            started = time.perf_counter()
            step()
            seconds[label].append(time.perf_counter() - started)
    tokens = config.batch_size * model_config.context_length
    first, second = list(seconds)[:2]
    ratios = [b / a for a, b in zip(seconds[first], seconds[second])]
    row = {"config": name, "vocab": model_config.vocab_size, "d_model": model_config.d_model,
           "layers": model_config.n_layers, "heads": model_config.n_heads,
           "d_ff": model_config.d_ff, "batch": config.batch_size,
           "context": model_config.context_length, "rounds": rounds}
    for label, values in seconds.items():
        row[f"{label} tokens/s"] = tokens / statistics.median(values)
        row[f"{label} first step s"] = first_step[label]
    row[f"{first} / {second}"] = statistics.median(ratios)
    return row


def run(quick: bool = False, rounds: int | None = None) -> dict:
    """Print and return the comparison on every config (``quick``: a tiny one, 2 rounds)."""
    names = ["quick"] if quick else list(CONFIGS)
    rounds = rounds or (2 if quick else 6)
    rows = [compare(name, rounds) for name in names]
    print(format_table(rows))
    print("tokens/s: median of steps alternated in one run; nanolm / torch.nn: median of the "
          "per-round speed ratios (above 1: NanoLM is faster)")
    return {"device": "cpu", "machine": machine_info("cpu"), "rows": rows,
            "baseline": "nn.TransformerEncoderLayer(norm_first=True, batch_first=True), causal "
                        "mask, learned positions, tied head; the same AdamW step"}


def compile_speedup(name: str = "cpu", rounds: int = 8, budget_s: float = 300.0) -> dict:
    """``torch.compile``'s effect on NanoLM's training step on config ``name``: the time its
    first step costs more than an eager first step (compilation), the steady-state speed
    ratio (steps interleaved), and the ratio of steps done in ``budget_s`` seconds of training
    when compilation is paid from that budget (about the demo's training time)."""

    model_config, _ = resolve(name)
    torch.manual_seed(0)
    compiled = torch.compile(GPT(model_config))
    torch.manual_seed(0)
    row = compare(name, rounds, models={"compiled": compiled, "eager": GPT(model_config)})
    compile_s = row["compiled first step s"] - row["eager first step s"]
    eager_s = 1 / row["eager tokens/s"]
    compiled_s = eager_s / row["compiled / eager"]  # per token, from the median ratio
    row["compile s"] = compile_s
    row[f"in {budget_s:g} s: compiled / eager"] = max(0.0, budget_s - compile_s) / budget_s * (
        eager_s / compiled_s)
    return row


def run_compile(quick: bool = False) -> dict:
    """Print and return :func:`compile_speedup` on the cpu preset (``quick``: tiny config)."""
    row = compile_speedup("quick" if quick else "cpu", rounds=2 if quick else 8)
    print(format_table([row]))
    print("compile s: first compiled step minus first eager step; compiled / eager: median of "
          "per-round speed ratios after compiling; the last column pays compilation from the "
          "budget")
    return {"device": "cpu", "machine": machine_info("cpu"), "rows": [row]}


def profile_step(name: str = "cpu", steps: int = 3, top: int = 5) -> list[dict]:
    """The ``top`` operations of NanoLM's training step by self CPU time (``torch.profiler``),
    each with its share of the step's total."""
    from torch.profiler import ProfilerActivity, profile


    _quiet_profiler()
    model_config, config = resolve(name)
    torch.manual_seed(0)
    step = _stepper(GPT(model_config), config, *_batch(model_config, config.batch_size))
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "calls/step": e.count / steps,
             "ms/step": e.self_cpu_time_total / 1e3 / steps,
             "share": e.self_cpu_time_total / total} for e in events[:top]]


def run_profile(quick: bool = False) -> dict:
    """Print and return the top operations of a step on each config."""
    names = ["quick"] if quick else list(CONFIGS)
    results = {}
    for name in names:
        rows = profile_step(name, steps=2 if quick else 3)
        print(f"-- {name}: top operations by self CPU time --")
        print(format_table(rows))
        results[name] = rows
    return {"device": "cpu", "machine": machine_info("cpu"), "profiles": results}


__all__ = ["TorchBaselineLM", "CONFIGS", "compare", "run", "profile_step", "run_profile",
           "compile_speedup", "run_compile"]
