"""Generation benchmark (lesson 07): tokens per second with and without the KV cache.

A model of the ``cpu`` preset (random weights: speed does not depend on what was learnt)
writes from a one-token prompt (the end-of-text id, where ``tell_story`` starts) until the
sequence fills its context: prompt + new tokens = the preset's context length, so the cache
serves every step. Without the cache each step reruns the model on the whole sequence so far;
with it, each step runs only the newest token and attends to the cached keys and values.
Batch sizes 1 (one story, as in the playground) and 8. Both paths must give the same tokens,
which is checked and reported.

Cached and uncached runs of one case are timed in turns (median of ``rounds``), at torch's
thread count or at ``threads``. On a busy 2-core machine, torch's intra-op threads mostly
wait for each other on a model this small (one thread was measured >20x faster there), so
the thread count is part of every row. Compare the ratios within one run.
"""

from __future__ import annotations

import torch

from nanolm_lib.course.model import GPT, count_parameters
from nanolm_lib.course.sampling import generate
from nanolm_lib.lab.benchmarks import interleaved_times, machine_info, torch_threads
from nanolm_lib.lab.presets import PRESETS
from nanolm_lib.lab.tables import format_table
from nanolm_lib.utils import progress


def _model(preset: str, device: str) -> GPT:
    with torch.random.fork_rng(devices=[]):  # weights from a fixed seed, global state untouched
        torch.manual_seed(0)
        return GPT(PRESETS[preset].model).to(device).eval()


def run(quick: bool = False, preset: str = "cpu", threads: int | None = None) -> dict:
    """Run the benchmark, print a table, return the figures (``quick``: the smoke preset).

    ``threads`` sets torch's intra-op thread count for the run (restored afterwards).
    """
    preset = "smoke" if quick else preset
    config = PRESETS[preset].model
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    new_tokens = config.context_length - 1  # after a one-token prompt: fills the context
    batches = (1, 2) if quick else (1, 8)
    rounds = 1 if quick else 3
    rows, identical = [], {}
    with torch_threads(threads) as used_threads:
        for device, batch in progress([(d, b) for d in devices for b in batches],
                                      desc="generate benchmark"):
            model = _model(preset, device)
            prompt = torch.zeros(batch, 1, dtype=torch.long, device=device)

            def write(use_cache, n=new_tokens, model=model, prompt=prompt, device=device):
                generator = torch.Generator(device=device).manual_seed(0)
                return generate(model, prompt, n, generator=generator, use_cache=use_cache,
                                show_progress=False)

            write(True, n=4), write(False, n=4)  # warm-up, short: uncached calls are slow
            seconds = interleaved_times({True: lambda: write(True), False: lambda: write(False)},
                                        device, rounds, warmup=False)
            identical[f"{device}/batch{batch}"] = bool(torch.equal(write(True), write(False)))
            for use_cache in (True, False):
                rows.append({"device": device, "threads": used_threads, "batch": batch,
                             "kv_cache": use_cache, "new_tokens": new_tokens,
                             "seconds": seconds[use_cache],
                             "tokens_per_s": batch * new_tokens / seconds[use_cache],
                             "speedup": seconds[False] / seconds[use_cache]})

    print(f"preset {preset!r}: {count_parameters(config):,} parameters, context "
          f"{config.context_length}, 1 prompt token + {new_tokens} new")
    print(format_table(rows, ["device", "threads", "batch", "kv_cache", "new_tokens", "seconds",
                              "tokens_per_s", "speedup"]))
    speedups = {f"{r['device']}/batch{r['batch']}": r["speedup"] for r in rows if r["kv_cache"]}
    return {
        "device": devices[-1],
        "devices": devices,
        "machine": machine_info(devices[-1]),
        "quick": quick,
        "preset": preset,
        "parameters": count_parameters(config),
        "threads": rows[0]["threads"],
        "context_length": config.context_length,
        "prompt_tokens": 1,
        "new_tokens": new_tokens,
        "kv_cache_speedup": speedups,
        "identical_tokens": identical,
        "rows": rows,
    }
