"""The ``nanolm`` command line: prepare data, train, sample, benchmark, inspect checkpoints.

    nanolm prepare [--data SRC] [--preset NAME]         data -> tokenizer -> packed tokens
    nanolm train   [--preset NAME] [--data SRC] [--steps N | --epochs N] [--resume] [--out DIR]
    nanolm sample  [--checkpoint PATH] [--prompt TEXT] [--temperature T] [--top-k K] ...
    nanolm bench   {tokenizer,attention,train,generate,all} [--quick] [--out DIR]
    nanolm bench   train --baseline | --profile | --compile   vs torch.nn | top ops | compile
    nanolm eval    RUN --data FILE                       loss and bits per byte on a text file
    nanolm info    PATH
    nanolm gpu-check [--out DIR] [--dry-run] [--sections NAME,...]   prove the GPU path

A user's mistake (a missing file, a corrupt checkpoint, an unknown preset) prints one line
and exits with status 1; ``NANOLM_DEBUG=1`` shows the traceback instead. Several GPUs:
``torchrun --nproc_per_node=N -m nanolm_lib.cli train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from nanolm_lib import utils

# The reference run's figures (DESIGN.md): epoch -> train loss, train ppl, valid loss, valid ppl.
REFERENCE = {1: (2.18, 8.84, 2.1062, 8.22), 2: (2.01, 7.49, 1.9443, 6.99)}
REFERENCE_STEPS_PER_EPOCH = 28_000
SIZE_TO_PRESET = {"smoke": "smoke", "cpu": "cpu", "full": "seed-3090"}


def default_preset() -> str:
    """The preset for this machine and mode: smoke, cpu, or seed-3090 on a CUDA GPU."""
    return SIZE_TO_PRESET[utils.run_size()]


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors that report a user's mistake: printed as one line, no traceback."""
    from nanolm_lib.train import CheckpointError, TrainingDiverged

    return (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
            PermissionError, CheckpointError, TrainingDiverged, ValueError)


# -------------------------------------------------------------------------------------------
# prepare


def _prepare(data, preset: str, limit: int | None = None, force: bool = False):
    """The packed corpus for ``preset`` (its vocabulary size), built once and cached."""
    from nanolm_lib.data import prepare_corpus
    from nanolm_lib.model import PRESETS

    _check_preset(preset)
    return prepare_corpus(data, PRESETS[preset].vocab_size, limit=limit, force=force)


def _check_preset(preset: str) -> None:
    from nanolm_lib.model import PRESETS

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: expected one of {', '.join(PRESETS)}")


def corpus_summary(corpus, batch_size: int = 64, context_length: int = 128,
                   run: str = "the seed run") -> str:
    """Stories, bytes, tokens and compression per split, and the epoch arithmetic of ``run``
    (by default the seed run's: batch 64 x context 128)."""
    from nanolm_lib.benchmarks import format_table

    rows = []
    for split in ("train", "validation"):
        meta = corpus.meta[split]
        rows.append({"split": split, "stories": f"{meta['stories']:,}",
                     "bytes": f"{meta['bytes']:,}", "tokens": f"{meta['tokens']:,}",
                     "tokens/story": meta["tokens"] / max(1, meta["stories"]),
                     "bytes/token": corpus.bytes_per_token(split)})
    train_tokens = corpus.meta["train"]["tokens"]
    per_step = batch_size * context_length
    steps = train_tokens // per_step
    lines = [
        f"corpus: {corpus.path}",
        f"source: {corpus.meta.get('source', '?')}; tokenizer: {corpus.tokenizer.vocab_size:,} "
        "tokens, trained on the train split",
        format_table(rows),
        "",
        f"one epoch of {run} at batch {batch_size} x context {context_length} = "
        f"{per_step:,} tokens per step: {train_tokens:,} / {per_step:,} = {steps:,} steps "
        f"(the reference run: {REFERENCE_STEPS_PER_EPOCH:,} steps per epoch on the full "
        "dataset, 2 epochs = 458,752,000 tokens)",
    ]
    return "\n".join(lines)


def cmd_prepare(args) -> int:
    corpus = _prepare(args.data, args.preset, args.limit, args.force)
    print(corpus_summary(corpus))
    return 0


# -------------------------------------------------------------------------------------------
# train


def results_table(history: list[dict], reference: bool = False) -> str:
    """The evaluations of a run as the reference README's table (epoch, train and valid loss
    and perplexity), with the reference figures beside them when ``reference``."""
    from nanolm_lib.benchmarks import format_table

    rows = []
    for entry in (r for r in history if r.get("split") == "validation"):
        epoch = entry.get("epoch")
        row = {"epoch": f"{epoch:g}" if epoch is not None else "-", "step": f"{entry['step']:,}",
               "train loss": f"{entry.get('train_loss', float('nan')):.4f}",
               "train ppl": f"{entry.get('train_perplexity', float('nan')):.2f}",
               "valid loss": f"{entry['loss']:.4f}", "valid ppl": f"{entry['perplexity']:.2f}"}
        if "bpb" in entry:
            row["bits/byte"] = f"{entry['bpb']:.3f}"
        if reference and epoch in REFERENCE:
            ref = REFERENCE[int(epoch)]
            row.update({"ref train": f"{ref[0]} ({ref[1]})", "ref valid": f"{ref[2]} ({ref[3]})"})
        rows.append(row)
    if not rows:
        return "(no evaluation yet)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return format_table(rows, columns)


def cmd_train(args) -> int:
    import torch

    from nanolm_lib.model import GPT, PRESETS, GPTConfig
    from nanolm_lib.train import (
        CHECKPOINT_NAME,
        TrainConfig,
        load_checkpoint,
        setup_distributed,
        train,
        train_preset,
    )

    dist_info = setup_distributed(args.device)
    out_dir = Path(args.out) if args.out else utils.runs_dir() / (args.preset or default_preset())
    ckpt = out_dir / CHECKPOINT_NAME
    if args.resume and ckpt.exists():  # the run's own configs, unless told otherwise
        state = load_checkpoint(ckpt)
        model_config = GPTConfig(**state["model_config"])
        config = TrainConfig(**state["train_config"])
        preset = args.preset or state["extra"].get("data", {}).get("preset") or default_preset()
        data = args.data if args.data is not None else state["extra"].get("data", {}).get("source")
    else:
        preset = args.preset or default_preset()
        _check_preset(preset)
        model_config = dataclasses.replace(PRESETS[preset])
        config = train_preset(preset)
        data = args.data
    overrides = {"out_dir": str(out_dir), "compile": args.compile or config.compile}
    if args.device:
        overrides["device"] = args.device
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    if args.lr:
        overrides["lr"], overrides["min_lr"] = args.lr, args.lr / 10
    if args.steps:
        overrides["max_steps"] = args.steps
        overrides["eval_interval"] = min(config.eval_interval, args.steps)
    if args.epochs:
        per_epoch = config.steps_per_epoch or config.eval_interval
        overrides.update(max_steps=round(args.epochs * per_epoch), steps_per_epoch=per_epoch)
    config = dataclasses.replace(config, **overrides)
    config.checkpoint_interval = min(config.checkpoint_interval, config.max_steps)
    config.log_interval = min(config.log_interval, config.max_steps)

    # One process prepares the corpus; the others wait, then read it from the cache.
    if dist_info.is_main:
        corpus = _prepare(data, preset, args.limit)
    if dist_info.enabled:
        import torch.distributed as dist

        dist.barrier()
    if not dist_info.is_main:  # now a cache hit
        corpus = _prepare(data, preset, args.limit)
    if corpus.tokenizer.vocab_size != model_config.vocab_size:
        raise ValueError(f"the corpus tokenizer has {corpus.tokenizer.vocab_size} tokens but "
                         f"the model expects vocab_size={model_config.vocab_size}")

    torch.manual_seed(config.seed)  # the same initial weights for the same seed
    model = GPT(model_config)
    if dist_info.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"preset {preset}: {n_params / 1e6:.2f} M parameters, {config.max_steps:,} steps "
              f"x {config.batch_size} x {model_config.context_length} tokens"
              f"{f' (the batch shared by {dist_info.world_size} processes)' if dist_info.enabled else ''}; "
              f"run folder {out_dir}")
    data_info = {"preset": preset, "source": data if data is None else str(data),
                 "corpus": str(corpus.path), "described": corpus.meta.get("source"),
                 "bytes_per_token": corpus.bytes_per_token("validation")}
    history = train(model, config, corpus.train, corpus.validation, tokenizer=corpus.tokenizer,
                    bytes_per_token=corpus.bytes_per_token("validation"), resume=args.resume,
                    overwrite=args.fresh, data_info=data_info)
    if dist_info.is_main:
        print()
        print(results_table(history, reference=preset == "seed-3090"))
        print(f"\ncheckpoint: {ckpt}\nstories:    nanolm sample --checkpoint {out_dir}")
    return 0


# -------------------------------------------------------------------------------------------
# sample


def cmd_sample(args) -> int:
    import torch

    from nanolm_lib.sampling import tell_story
    from nanolm_lib.train import load_model

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
    import importlib

    from nanolm_lib.benchmarks import BENCHMARKS, write_results

    variant = next((v for v in ("baseline", "profile", "compile") if getattr(args, v)), None)
    if variant:
        if args.name != "train":
            raise ValueError("--baseline, --profile and --compile belong to `nanolm bench train`")
        from nanolm_lib.benchmarks import baseline

        measure = {"baseline": baseline.run, "profile": baseline.run_profile,
                   "compile": baseline.run_compile}[variant]
        path = write_results(f"train-{variant}", measure(quick=args.quick), args.out)
        print(f"results: {path}")
        return 0
    names = BENCHMARKS if args.name == "all" else (args.name,)
    for name in names:
        print(f"== {name} ==")
        module = importlib.import_module(f"nanolm_lib.benchmarks.{name}")
        results = module.run(quick=args.quick)
        path = write_results(name, results, args.out)
        print(f"results: {path}\n")
    return 0


# -------------------------------------------------------------------------------------------
# eval


def cmd_eval(args) -> int:
    from nanolm_lib.evaluate import describe, evaluate_file

    result = evaluate_file(args.run, args.data, device=args.device)
    print(json.dumps(result, indent=2) if args.json else describe(result))
    return 0


# -------------------------------------------------------------------------------------------
# info


def checkpoint_info(path) -> dict:
    """What a checkpoint holds: configs, step, parameters, tokens seen, last losses."""
    from nanolm_lib.train import checkpoint_path, load_checkpoint

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
    info = checkpoint_info(args.path)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    progress_ = f"{info['step']:,}" + (f" of {info['max_steps']:,}" if info["max_steps"] else "")
    print(f"checkpoint  {info['file']} ({info['bytes'] / 1e6:.1f} MB, torch {info['torch']})")
    print(f"step        {progress_}")
    print(f"tokens seen {info['tokens']:,}")
    print(f"parameters  {info['parameters']:,}")
    if info["elapsed_s"]:
        print(f"trained for {info['elapsed_s'] / 60:.1f} min")
    print(f"tokenizer   {info['tokenizer']}")
    if info["data"]:
        print(f"data        {info['data'].get('described') or info['data'].get('source')}")
    print("model       " + ", ".join(f"{k}={v}" for k, v in (info["model_config"] or {}).items()))
    print("training    " + ", ".join(f"{k}={v}" for k, v in info["train_config"].items()))
    for entry in info["last"]:
        extra = f", {entry['bpb']:.3f} bits/byte" if "bpb" in entry else ""
        print(f"last {entry['split']:<10} step {entry['step']:,}: loss {entry['loss']:.4f}, "
              f"perplexity {entry['perplexity']:.2f}{extra}")
    return 0


# -------------------------------------------------------------------------------------------
# gpu-check


def cmd_gpu_check(args) -> int:
    from nanolm_lib.gpu_check import run_gpu_check

    sections = [s.strip() for s in args.sections.split(",") if s.strip()] if args.sections else None
    results = run_gpu_check(args.out, dry_run=args.dry_run, sections=sections)
    return 0 if results["passed"] else 1


# -------------------------------------------------------------------------------------------
# the parser


def build_parser() -> argparse.ArgumentParser:
    from nanolm_lib.benchmarks import BENCHMARKS

    parser = argparse.ArgumentParser(
        prog="nanolm", description="Train and sample a small GPT that writes TinyStories.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data_help = ("a .txt/.json/.jsonl/.parquet file, a folder with train and validation "
                 "files, or a hub dataset id (default: NANOLM_DATA, else the hub's "
                 "roneneldan/TinyStories, else generated stories)")
    prepare = commands.add_parser("prepare", help="data -> tokenizer -> packed tokens (cached)")
    prepare.add_argument("--data", help=data_help)
    prepare.add_argument("--preset", default=None,
                         help="model preset whose vocabulary size to use (default: for this "
                              "machine)")
    prepare.add_argument("--limit", type=int, help="at most this many stories per split")
    prepare.add_argument("--force", action="store_true", help="rebuild even when cached")
    prepare.set_defaults(func=cmd_prepare)

    train = commands.add_parser("train", help="train a preset; metrics, plot and checkpoint "
                                              "go to the run folder")
    train.add_argument("--preset", help="seed-3090, cpu or smoke (default: for this machine)")
    train.add_argument("--data", help=data_help)
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
    train.add_argument("--lr", type=float, help="peak learning rate (min_lr = lr / 10)")
    train.set_defaults(func=cmd_train)

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

    evaluation = commands.add_parser("eval", help="a run's loss and bits per byte on a text "
                                                  "file (every token predicted once)")
    evaluation.add_argument("run", help="run folder or checkpoint file")
    evaluation.add_argument("--data", required=True, help="a .txt/.json/.jsonl/.parquet file "
                            "of stories (e.g. TinyStories' validation stories)")
    evaluation.add_argument("--device", help="cuda, mps or cpu (default: the best there is)")
    evaluation.add_argument("--json", action="store_true", help="print JSON")
    evaluation.set_defaults(func=cmd_eval)

    info = commands.add_parser("info", help="what a checkpoint holds")
    info.add_argument("path", help="checkpoint file or run folder")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nanolm``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if getattr(args, "preset", None) is None and args.command == "prepare":
        args.preset = default_preset()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"nanolm {args.command}: interrupted", file=sys.stderr)
        return 130
    except user_errors() as error:
        if os.environ.get("NANOLM_DEBUG"):
            raise
        print(f"nanolm {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
