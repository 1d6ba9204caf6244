"""``make demo``: the whole main job in one command, five to ten minutes on a 2-core CPU.

    data (NANOLM_DATA, else the hub, else generated stories) -> tokenizer -> packed tokens
    -> training of the "cpu-modern" preset (progress bar; checkpoint, metrics.jsonl, plot.png in
    runs/demo/) -> two stories by top-k sampling -> validation loss, perplexity, bits/byte

Running it again reuses what is done: the prepared corpus comes from the cache, an
interrupted run resumes where it stopped, a finished run is only sampled (``--fresh``
trains again). ``NANOLM_SIZE=smoke`` (or ``NANOLM_SMOKE=1``) runs the seconds-long version.
``NANOLM_COMPILE=1`` trains a cpu-size preset under ``torch.compile`` where a C++ compiler
works (eagerly, without a word, where none does). It is off by default: measured with
``nanolm bench train --compile`` on the cpu preset, compiling gains ~1.01x per step after
about 40 s of compiling, so a compiled demo reads fewer tokens in the same time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from nanolm_lib import utils
from nanolm_lib.course.sampling import tell_story
from nanolm_lib.course.train import evaluate, resolve_precision
from nanolm_lib.errors import run_reporting_user_errors
from nanolm_lib.lab.checkpoint import CHECKPOINT_NAME, load_checkpoint, load_model
from nanolm_lib.lab.compiling import can_compile_on_cpu
from nanolm_lib.lab.presets import default_preset, get_preset
from nanolm_lib.lab.runs import plan_preset_run
from nanolm_lib.lab.tables import corpus_summary

PROMPTS = ("", "Once upon a time, there was a little dog named")


def demo_preset() -> str:
    """``cpu-modern``, the recipe that reached the lowest bits per byte in the demo's time
    (its search is beside it in ``presets.py``), unless NANOLM_SIZE / smoke mode asks for
    another size."""
    if os.environ.get("NANOLM_SIZE") or utils.is_smoke():

        return default_preset()
    return "cpu-modern"


def compile_for_demo(preset: str, device: str) -> str | None:
    """The C++ compiler when the demo compiles its model: asked for (``NANOLM_COMPILE=1``),
    a cpu-size preset, on a CPU. None otherwise, and where no compiler works: the demo then
    trains eagerly and says nothing. The number of steps is the same either way."""

    if (get_preset(preset).size != "cpu" or device != "cpu"
            or os.environ.get("NANOLM_COMPILE") != "1"):
        return None

    return can_compile_on_cpu()


def run_demo(out_dir: Path, preset: str, data=None, fresh: bool = False,
             seed: int = 0) -> dict:
    """Prepare, train (or resume, or reuse), tell two stories, evaluate; returns the figures."""
    import torch


    recipe = get_preset(preset)
    print(f"[1/4] data and tokenizer ({recipe.model.vocab_size:,}-token BPE)")
    local = data if data is not None else os.environ.get("NANOLM_DATA")
    limit = None if local and Path(local).exists() else recipe.hub_story_limit
    run = plan_preset_run(preset, out_dir, data=data, limit=limit)
    config, model_config = run.config, run.model_config
    device = utils.pick_device(config.device)  # where train() trains; stories and evaluation too
    print(corpus_summary(run.corpus, config.batch_size, model_config.context_length,
                         run=f"the {preset!r} preset"))

    ckpt = out_dir / CHECKPOINT_NAME
    state = load_checkpoint(ckpt) if ckpt.exists() and not fresh else None
    done = state is not None and state["step"] >= state["train_config"]["max_steps"]
    print(f"\n[2/4] training the {preset!r} preset: {run.parameters / 1e6:.2f} M parameters, "
          f"{config.max_steps:,} steps x {config.batch_size} x {model_config.context_length} "
          f"tokens, into {out_dir}")
    if done:
        print(f"{out_dir} already holds a finished run; sampling from it "
              "(python -m nanolm_lib.lab.demo --fresh trains again)")
    else:
        compiler = compile_for_demo(preset, device)
        if compiler:
            config.compile = True
            print(f"torch.compile: on (C++ compiler {compiler}); the first steps compile")
        started = time.perf_counter()
        run.train(resume=not fresh, overwrite=fresh)
        print(f"trained in {(time.perf_counter() - started) / 60:.1f} min; "
              f"plot: {out_dir / 'plot.png'}, metrics: {out_dir / 'metrics.jsonl'}")

    print("\n[3/4] two stories (top-k sampling: k=40, temperature 0.8)")
    model, tokenizer = load_model(out_dir, device=device)
    generator = torch.Generator().manual_seed(seed)  # CPU: the same stories on any device
    stories = []
    for i, prompt in enumerate(PROMPTS, 1):
        story = tell_story(model, tokenizer, prompt, generator=generator, temperature=0.8,
                           top_k=40).strip()
        stories.append(story)
        print(f"--- story {i}{f' (prompt: {prompt!r})' if prompt else ''} ---\n{story}\n")

    print("[4/4] the whole validation split")
    precision = resolve_precision(config.precision, device)  # the precision it trained in
    corpus = run.corpus
    result = evaluate(model, corpus.validation, model_config.context_length,
                      bytes_per_token=corpus.bytes_per_token("validation"), precision=precision)
    print(f"validation loss {result['loss']:.4f}, perplexity {result['perplexity']:.2f}, "
          f"{result['bpb']:.3f} bits per byte ({result['tokens']:,} tokens, on {device})")
    return {"stories": stories, **result, "device": str(next(model.parameters()).device)}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m nanolm_lib.lab.demo``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m nanolm_lib.lab.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="train again from scratch")
    parser.add_argument("--preset", default=None, help="default: cpu-modern (smoke in smoke mode)")
    parser.add_argument("--data", default=None, help="data source (default: NANOLM_DATA, "
                        "else the hub, else generated stories)")
    parser.add_argument("--out", default=None, help="run folder (default: runs/demo)")
    args = parser.parse_args(argv)
    preset = args.preset or demo_preset()
    out_dir = Path(args.out) if args.out else utils.runs_dir() / "demo"

    def demo() -> int:
        run_demo(out_dir, preset, args.data, args.fresh)
        return 0

    return run_reporting_user_errors(
        "demo", demo, "demo interrupted; run it again to continue where it stopped")


if __name__ == "__main__":
    sys.exit(main())
