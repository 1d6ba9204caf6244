"""Generation benchmark (lesson 07): tokens per second with and without the KV cache.

A model of the ``cpu`` preset (random weights: speed does not depend on what was learnt)
writes from a one-token prompt (the end-of-text id, where ``tell_story`` starts) until the
sequence fills its context: prompt + new tokens = the preset's context length, so the cache
serves every step. Without the cache each step reruns the model on the whole sequence so far;
with it, each step runs only the newest token and attends to the cached keys and values.
Batch sizes 1 (one story, as in the playground) and 8. Both paths must give the same
tokens, which is checked and reported. Wall times on a shared machine are noisy: compare
the ratios within one run.
"""

from __future__ import annotations

import torch

from nanolm_lib.benchmarks import format_table, machine_info, time_fn
from nanolm_lib.model import GPT, PRESETS, count_parameters
from nanolm_lib.sampling import generate
from nanolm_lib.utils import progress


def _model(preset: str, device: str) -> GPT:
    with torch.random.fork_rng(devices=[]):  # weights from a fixed seed, global state untouched
        torch.manual_seed(0)
        return GPT(PRESETS[preset]).to(device).eval()


def run(quick: bool = False, preset: str = "cpu") -> dict:
    """Run the benchmark, print a table, return the figures (``quick``: the smoke preset)."""
    preset = "smoke" if quick else preset
    config = PRESETS[preset]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    new_tokens = config.context_length - 1  # after a one-token prompt: fills the context
    batches = (1, 2) if quick else (1, 8)
    repeat = 1 if quick else 3

    rows, identical = [], {}
    plan = [(d, b, c) for d in devices for b in batches for c in (True, False)]
    for device, batch, use_cache in progress(plan, desc="generate benchmark"):
        model = _model(preset, device)
        prompt = torch.zeros(batch, 1, dtype=torch.long, device=device)

        def write(model=model, prompt=prompt, use_cache=use_cache, device=device):
            generator = torch.Generator(device=device).manual_seed(0)
            return generate(model, prompt, new_tokens, generator=generator, use_cache=use_cache,
                            show_progress=False)

        seconds = time_fn(write, device=device, warmup=1, repeat=repeat)
        rows.append({"device": device, "batch": batch, "kv_cache": use_cache,
                     "new_tokens": new_tokens, "seconds": seconds,
                     "tokens_per_s": batch * new_tokens / seconds})
        if not use_cache:  # the cached run of the same case came just before
            identical[f"{device}/batch{batch}"] = bool(torch.equal(
                write(use_cache=True), write(use_cache=False)))

    for row in rows:
        uncached = next(r for r in rows if not r["kv_cache"] and r["device"] == row["device"]
                        and r["batch"] == row["batch"])
        row["speedup"] = row["tokens_per_s"] / uncached["tokens_per_s"]
    print(f"preset {preset!r}: {count_parameters(config):,} parameters, context "
          f"{config.context_length}, 1 prompt token + {new_tokens} new")
    print(format_table(rows, ["device", "batch", "kv_cache", "new_tokens", "seconds",
                              "tokens_per_s", "speedup"]))
    speedups = {f"{r['device']}/batch{r['batch']}": r["speedup"] for r in rows if r["kv_cache"]}
    return {
        "device": devices[-1],
        "devices": devices,
        "machine": machine_info(devices[-1]),
        "quick": quick,
        "preset": preset,
        "parameters": count_parameters(config),
        "context_length": config.context_length,
        "prompt_tokens": 1,
        "new_tokens": new_tokens,
        "kv_cache_speedup": speedups,
        "identical_tokens": identical,
        "rows": rows,
    }
