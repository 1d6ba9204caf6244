"""The ``nanolm`` command line: prepare data, train, sample, benchmark, inspect checkpoints.

    nanolm prepare [--data SRC] [--preset NAME]         data -> tokenizer -> packed tokens
    nanolm train   [--preset NAME] [--data SRC] [--steps N | --epochs N] [--resume] [--out DIR]
    nanolm sample  [--checkpoint PATH] [--prompt TEXT] [--temperature T] [--top-k K] ...
    nanolm bench   {tokenizer,attention,train,generate,all} [--quick] [--out DIR]
    nanolm bench   train --baseline | --profile | --compile   vs torch.nn | top ops | compile
    nanolm eval    RUN --data FILE                       loss and bits per byte on a text file
    nanolm info    PATH
    nanolm ablate  [--preset cpu] [--budget S] [--data SRC] [--eval-data FILE]   lesson 08's table
    nanolm gpu-check [--out DIR] [--dry-run] [--sections NAME,...]   prove the GPU path

A user's mistake (a missing file, a corrupt checkpoint, an unknown preset:
:data:`nanolm_lib.errors.USER_ERRORS`) prints one line and exits with status 1;
``NANOLM_DEBUG=1`` shows the traceback instead. Any other error is a bug and shows its
traceback. Several GPUs:
``torchrun --nproc_per_node=N -m nanolm_lib.lab.cli train ...``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from nanolm_lib import utils
from nanolm_lib.errors import UsageError

# Each command imports its module when it runs: `nanolm --help`, and a mistyped command's
# error, answer without loading the trainer, the GPU check, the benchmarks and what they import
# (measured on a 2-core machine, warm: `nanolm --help` 1.4 s; importing what the commands run
# as well, 2.8 s).

# -------------------------------------------------------------------------------------------
# prepare


def cmd_prepare(args) -> int:
    from nanolm_lib.course.data import prepare_corpus
    from nanolm_lib.lab.presets import default_preset, get_preset
    from nanolm_lib.lab.tables import corpus_summary

    vocab_size = get_preset(args.preset or default_preset()).model.vocab_size
    corpus = prepare_corpus(args.data, vocab_size, limit=args.limit, force=args.force)
    print(corpus_summary(corpus))
    return 0


# -------------------------------------------------------------------------------------------
# train


def cmd_train(args) -> int:
    from nanolm_lib.lab.checkpoint import CHECKPOINT_NAME
    from nanolm_lib.lab.runs import plan_preset_run
    from nanolm_lib.lab.tables import results_table
    from nanolm_lib.lab.trainer import setup_distributed

    dist_info = setup_distributed(args.device)
    run = plan_preset_run(args.preset, args.out or None, data=args.data, limit=args.limit,
                          resume=args.resume, device=args.device, compile=args.compile,
                          batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
                          steps=args.steps, epochs=args.epochs)
    config = run.config
    if dist_info.is_main:
        shared = (f" (the batch shared by {dist_info.world_size} processes)"
                  if dist_info.enabled else "")
        print(f"preset {run.preset}: {run.parameters / 1e6:.2f} M parameters, "
              f"{config.max_steps:,} steps x {config.batch_size} x "
              f"{run.model_config.context_length} tokens{shared}; lr {config.lr:g} -> "
              f"{config.min_lr:g}; run folder {run.out_dir}")
    history = run.train(resume=args.resume, overwrite=args.fresh)
    if dist_info.is_main:
        print()
        print(results_table(history, reference=run.preset == "seed-3090"))
        print(f"\ncheckpoint: {run.out_dir / CHECKPOINT_NAME}\nstories:    nanolm sample "
              f"--checkpoint {run.out_dir}")
    return 0


# -------------------------------------------------------------------------------------------
# sample


def cmd_sample(args) -> int:
    import torch

    from nanolm_lib.course.sampling import tell_story
    from nanolm_lib.lab.checkpoint import load_model

    path = Path(args.checkpoint) if args.checkpoint else utils.runs_dir() / "demo"
    model, tokenizer = load_model(path, device=utils.pick_device(args.device))
    # A CPU generator: the same seed tells the same stories on any device (sampling draws on
    # the generator's device).
    generator = torch.Generator().manual_seed(args.seed)
    for i in range(args.num):
        story = tell_story(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens,
                           generator=generator, temperature=args.temperature,
                           top_k=args.top_k or None, top_p=args.top_p)
        if args.num > 1:
            print(f"--- story {i + 1} ---")
        print(story.strip())
        print()
    return 0


# -------------------------------------------------------------------------------------------
# bench


def cmd_bench(args) -> int:
    from nanolm_lib.lab.benchmarks import BENCHMARKS, write_results

    variant = next((v for v in ("baseline", "profile", "compile") if getattr(args, v)), None)
    if variant:
        if args.name != "train":
            raise UsageError("--baseline, --profile and --compile belong to `nanolm bench train`")
        from nanolm_lib.lab.benchmarks import baseline

        measure = {"baseline": baseline.run, "profile": baseline.run_profile,
                   "compile": baseline.run_compile}[variant]
        path = write_results(f"train-{variant}", measure(quick=args.quick), args.out)
        print(f"results: {path}")
        return 0
    names = BENCHMARKS if args.name == "all" else (args.name,)
    for name in names:
        print(f"== {name} ==")
        module = importlib.import_module(f"nanolm_lib.lab.benchmarks.{name}")
        results = module.run(quick=args.quick)
        path = write_results(name, results, args.out)
        print(f"results: {path}\n")
    return 0


# -------------------------------------------------------------------------------------------
# eval


def cmd_eval(args) -> int:
    from nanolm_lib.lab.evaluate import describe, evaluate_file

    result = evaluate_file(args.run, args.data, device=args.device)
    print(json.dumps(result, indent=2) if args.json else describe(result))
    return 0


# -------------------------------------------------------------------------------------------
# info


def checkpoint_info(path) -> dict:
    """What a checkpoint holds: configs, step, parameters, tokens seen, last losses."""
    from nanolm_lib.lab.checkpoint import checkpoint_path, load_checkpoint

    path = checkpoint_path(path)
    state = load_checkpoint(path)
    seen, parameters = set(), 0
    for tensor in state["model"].values():  # a tied head shares storage with the embedding
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            parameters += tensor.numel()
    train_config = state.get("train_config") or {}
    tokenizer = json.loads(state["tokenizer"]) if state.get("tokenizer") else None
    return {
        "file": str(path),
        "family": state.get("family", "gpt"),
        "bytes": path.stat().st_size,
        "step": state["step"],
        "max_steps": train_config.get("max_steps"),
        "tokens": state["tokens"],
        "parameters": parameters,
        "model_config": state.get("model_config"),
        "train_config": train_config,
        "tokenizer": _describe_tokenizer(tokenizer),
        "elapsed_s": state["extra"].get("elapsed_s"),
        "data": state["extra"].get("data"),
        "last": state["extra"].get("last", []),
        "torch": state.get("torch"),
    }


def _describe_tokenizer(data) -> str:
    if data is None:
        return "none stored"
    if "model" in data and isinstance(data["model"], dict):  # Hugging Face tokenizers JSON
        vocab = data["model"].get("vocab", {})
        return f"fast BPE (tokenizers), {len(vocab) + len(data.get('added_tokens', [])):,} tokens"
    return f"from-scratch BPE, {len(data.get('merges', [])) + 256:,} tokens and specials"


def cmd_info(args) -> int:
    from nanolm_lib.lab.checkpoint import FAMILY_NAMES

    info = checkpoint_info(args.path)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    progress_ = f"{info['step']:,}" + (f" of {info['max_steps']:,}" if info["max_steps"] else "")
    print(f"checkpoint  {info['file']} ({info['bytes'] / 1e6:.1f} MB, torch {info['torch']})")
    print(f"model       {FAMILY_NAMES.get(info['family'], info['family'])}")
    print(f"step        {progress_}")
    print(f"tokens seen {info['tokens']:,}")
    print(f"parameters  {info['parameters']:,}")
    if info["elapsed_s"]:
        print(f"trained for {info['elapsed_s'] / 60:.1f} min")
    print(f"tokenizer   {info['tokenizer']}")
    if info["data"]:
        print(f"data        {info['data'].get('described') or info['data'].get('source')}")
    print("settings    " + ", ".join(f"{k}={v}" for k, v in (info["model_config"] or {}).items()))
    print("training    " + ", ".join(f"{k}={v}" for k, v in info["train_config"].items()))
    for entry in info["last"]:
        extra = f", {entry['bpb']:.3f} bits/byte" if "bpb" in entry else ""
        print(f"last {entry['split']:<10} step {entry['step']:,}: loss {entry['loss']:.4f}, "
              f"perplexity {entry['perplexity']:.2f}{extra}")
    return 0


# -------------------------------------------------------------------------------------------
# ablate


def cmd_ablate(args) -> int:
    from nanolm_lib.lab.ablation import VARIANTS, ablation_table, run_ablation

    variants = [v.strip() for v in args.variants.split(",")] if args.variants else VARIANTS
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise UsageError(f"--variants: unknown {', '.join(unknown)}; expected some of "
                         f"{', '.join(VARIANTS)}")
    rows = run_ablation(args.out, preset=args.preset, budget_s=args.budget, data=args.data,
                        eval_data=args.eval_data, variants=variants, limit=args.limit)
    print()
    print(ablation_table(rows))
    print(f"\ntable, curves and plot: {Path(args.out) / 'ablation.md'}, ablation.json, "
          "ablation.png")
    return 0


# -------------------------------------------------------------------------------------------
# gpu-check


def cmd_gpu_check(args) -> int:
    from nanolm_lib.lab.gpu_check import run_gpu_check

    sections = [s.strip() for s in args.sections.split(",") if s.strip()] if args.sections else None
    results = run_gpu_check(args.out, dry_run=args.dry_run, sections=sections)
    return 0 if results["passed"] else 1


# -------------------------------------------------------------------------------------------
# the parser


DATA_HELP = ("a .txt/.json/.jsonl/.parquet file, a folder with train and validation files, or a "
             "hub dataset id (default: NANOLM_DATA, else the hub's roneneldan/TinyStories, "
             "else generated stories)")


def _add_prepare_parser(commands) -> None:
    prepare = commands.add_parser("prepare", help="data -> tokenizer -> packed tokens (cached)")
    prepare.add_argument("--data", help=DATA_HELP)
    prepare.add_argument("--preset", default=None,
                         help="model preset whose vocabulary size to use (default: for this "
                              "machine)")
    prepare.add_argument("--limit", type=int, help="at most this many stories per split")
    prepare.add_argument("--force", action="store_true", help="rebuild even when cached")
    prepare.set_defaults(func=cmd_prepare)


def _add_train_parser(commands) -> None:
    train = commands.add_parser("train", help="train a preset; metrics, plot and checkpoint "
                                              "go to the run folder")
    train.add_argument("--preset", help="a preset of nanolm_lib/lab/presets.py: seed-3090, "
                       "seed-3090-modern, cpu, cpu-modern or smoke (default: for this machine)")
    train.add_argument("--data", help=DATA_HELP)
    train.add_argument("--limit", type=int, help="at most this many stories per split")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimisation steps in all")
    length.add_argument("--epochs", type=float, help="epochs of the preset's steps per epoch")
    train.add_argument("--out", help="run folder (default: NANOLM_RUNS or runs/, /PRESET)")
    again = train.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out exactly where it stopped")
    again.add_argument("--fresh", action="store_true",
                       help="start over, replacing the run already in --out")
    train.add_argument("--device", help="cuda, mps or cpu (default: the best there is)")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--batch-size", type=int, help="override the preset's batch size (the "
                       "global batch: under torchrun the processes share it)")
    train.add_argument("--lr", type=float, help="peak learning rate (min_lr keeps the "
                       "preset's ratio to it, one tenth, unless --min-lr is given)")
    train.add_argument("--min-lr", type=float, help="the learning rate the cosine ends at")
    train.set_defaults(func=cmd_train)


def _add_sample_parser(commands) -> None:
    sample = commands.add_parser("sample", help="tell stories with a trained model")
    sample.add_argument("--checkpoint", help="checkpoint file or run folder (default: "
                                             "runs/demo)")
    sample.add_argument("--prompt", default="", help="how the story starts")
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--top-k", type=int, default=40, help="0: no top-k filter")
    sample.add_argument("--top-p", type=float, default=None)
    sample.add_argument("--num", type=int, default=1, help="how many stories")
    sample.add_argument("--max-new-tokens", type=int, default=None,
                        help="default: one context length")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", help="cuda, mps or cpu (default: the best there is)")
    sample.set_defaults(func=cmd_sample)


def _add_bench_parser(commands) -> None:
    from nanolm_lib.lab.benchmarks import BENCHMARKS

    bench = commands.add_parser("bench", help="speed benchmarks: print a table, write JSON")
    bench.add_argument("name", choices=[*BENCHMARKS, "all"])
    bench.add_argument("--quick", action="store_true", help="the smallest sizes, seconds")
    bench.add_argument("--out", default="bench-results", help="folder for the results JSON")
    bench.add_argument("--baseline", action="store_true", help="train only: the step against "
                       "the same model built from torch.nn blocks, interleaved in one run")
    bench.add_argument("--profile", action="store_true",
                       help="train only: the top operations of a step (torch.profiler)")
    bench.add_argument("--compile", action="store_true", help="train only: torch.compile's "
                       "compile time and speed-up on the cpu preset, steps interleaved")
    bench.set_defaults(func=cmd_bench)


def _add_eval_parser(commands) -> None:
    evaluation = commands.add_parser("eval", help="a run's loss and bits per byte on a text "
                                                  "file (every token predicted at most once)")
    evaluation.add_argument("run", help="run folder or checkpoint file")
    evaluation.add_argument("--data", required=True, help="a .txt/.json/.jsonl/.parquet file "
                            "of stories (e.g. TinyStories' validation stories)")
    evaluation.add_argument("--device", help="cuda, mps or cpu (default: the best there is)")
    evaluation.add_argument("--json", action="store_true", help="print JSON")
    evaluation.set_defaults(func=cmd_eval)


def _add_info_parser(commands) -> None:
    info = commands.add_parser("info", help="what a checkpoint holds")
    info.add_argument("path", help="checkpoint file or run folder")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)


def _add_ablate_parser(commands) -> None:
    ablate = commands.add_parser(
        "ablate", help="the classic GPT against each lesson-08 swap and all of them, the same "
                       "wall-clock budget each; bits per byte, tokens/s, parameters")
    ablate.add_argument("--preset", default="cpu", help="the classic recipe to start from")
    ablate.add_argument("--budget", type=float, default=300.0,
                        help="seconds of training per variant (steps = budget x measured speed)")
    ablate.add_argument("--data", help=DATA_HELP)
    ablate.add_argument("--eval-data", help="a held-out text file scored with nanolm eval "
                        "(e.g. TinyStories' valid-sample.txt)")
    ablate.add_argument("--variants", help="comma-separated subset of classic, rmsnorm, rope, "
                        "swiglu, gqa, modern (default: all)")
    ablate.add_argument("--limit", type=int, help="at most this many stories per split")
    ablate.add_argument("--out", default="ablation", help="folder for the runs and the table")
    ablate.set_defaults(func=cmd_ablate)


def _add_gpu_check_parser(commands) -> None:
    check = commands.add_parser(
        "gpu-check", help="prove the GPU path in one run (at most 8 minutes on one GPU): "
                          "tests, SDPA, syncs, speed, profile, MFU, training, generation")
    check.add_argument("--out", default="gpu-check", help="folder for results.json, the "
                                                          "table and the plots")
    check.add_argument("--dry-run", action="store_true",
                       help="run every section's plumbing on tiny CPU inputs (no GPU needed); "
                            "sections that need CUDA are marked skipped")
    check.add_argument("--sections", help="comma-separated subset (default: all)")
    check.set_defaults(func=cmd_gpu_check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanolm", description="Train and sample a small GPT that writes TinyStories.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # one function per command, in the order --help lists them
    for add in (
            _add_prepare_parser, _add_train_parser, _add_sample_parser, _add_bench_parser,
            _add_eval_parser, _add_info_parser, _add_ablate_parser, _add_gpu_check_parser):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nanolm``; returns the exit status."""
    from nanolm_lib.errors import run_reporting_user_errors

    args = build_parser().parse_args(argv)
    return run_reporting_user_errors(f"nanolm {args.command}", lambda: args.func(args),
                                     f"nanolm {args.command}: interrupted")


if __name__ == "__main__":
    sys.exit(main())
