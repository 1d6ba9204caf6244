"""``nanolm gpu-check``: one command that proves the GPU path, in at most 8 minutes on one GPU.

Everything goes to one folder (``gpu-check/`` by default): ``results.json``, ``table.txt``
(also printed), ``profile.png``, ``speed.png``, ``cuda-tests.xml``, ``short-train/`` (the run
folders of the short training, checkpoints included) and ``log.txt`` (the traceback of any
section that failed). One function per section, in this order:

    versions     torch, CUDA, cuDNN, the device
    cuda_tests   the test suite's ``cuda``-marked tests (pytest -m cuda)
    sdpa         which SDPA backend runs in bf16 and fp32; each backend's output and
                 gradients against the naive attention of lesson 03, computed in float64
    sync_audit   host syncs in one training step and one generated token
                 (torch.cuda.set_sync_debug_mode("warn"), warnings counted)
    step_speed   eager and compiled tokens/s of the seed-3090 step (CUDA-event timing),
                 cold compile time, graph breaks, recompiles; the same for its modern
                 twin, seed-3090-modern (lesson 08's blocks), and its speed against it
    profile      one eager step split into matmuls, attention, layer norm, loss,
                 optimizer and the rest (torch.profiler, device time)
    ceiling      bf16 matmul ceiling and copy bandwidth in the same run; MFU; go/no-go
                 against 1.53 M tokens/s (the 458.75 M tokens of the recipe in 5 minutes)
    short_train  a short train() of the seed-3090 recipe, a checkpoint, a resume
    generation   lesson 07's generation on the GPU: the same tokens with and without the
                 KV cache, and the same as on the CPU for a seeded CPU generator

``--dry-run`` runs every section's plumbing on tiny CPU inputs (the smoke model; torch.compile
with its "eager" backend, which traces graphs without generating code) and marks what only
CUDA can show as skipped, so that the arguments, the folder, the table and the JSON are tested
on machines without a GPU. Its figures are not measurements of anything.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from nanolm_lib.course.attention import attention, causal_mask, fused_attention
from nanolm_lib.course.model import GPT, LayerNorm
from nanolm_lib.course.modern import build_model, training_flops_per_token
from nanolm_lib.course.sampling import generate, sample_next_token
from nanolm_lib.course.train import autocast, make_optimizer, optimize, resolve_precision
from nanolm_lib.errors import UsageError
from nanolm_lib.lab.benchmarks import matmul_ceiling
from nanolm_lib.lab.benchmarks.train import REFERENCE_TOKENS, ceiling_dtype
from nanolm_lib.lab.checkpoint import CHECKPOINT_NAME, load_checkpoint, model_from_checkpoint
from nanolm_lib.lab.presets import PRESETS, model_config, train_preset
from nanolm_lib.lab.tables import format_table
from nanolm_lib.lab.trainer import BatchStream, Distributed, enable_tf32, train
from nanolm_lib.utils import project_root

TARGET_TOKENS_PER_S = 1.53e6  # the recipe's 458.75 M tokens in 5 minutes
BUDGET_SECONDS = 8 * 60
SDPA_TOLERANCE = {"bf16": 3e-2, "fp32": 5e-3}  # relative error against float64 (fp32: TF32)
SECTIONS = ("versions", "cuda_tests", "sdpa", "sync_audit", "step_speed", "profile",
            "ceiling", "short_train", "generation")


@dataclass
class Plan:
    """Sizes of one gpu-check: the real ones on a GPU, tiny ones for ``--dry-run``."""

    preset: str = "seed-3090"
    modern_preset: str = "seed-3090-modern"  # timed beside it (step_speed)
    batch_size: int = 64
    timed_steps: int = 20
    sdpa_shape: tuple = (8, 8, 128, 96)  # (B, H, T, D): the reference model's heads
    ceiling_n: int = 8192
    copy_bytes: int = 1 << 30
    train_steps: int = 160
    compile_backend: str = "inductor"
    train_compile: bool = True
    stream_tokens: int = 4_000_000

    @classmethod
    def dry_run(cls) -> Plan:
        return cls(preset="smoke", modern_preset="cpu-modern", batch_size=4, timed_steps=2,
                   sdpa_shape=(2, 2, 16, 8), ceiling_n=256, copy_bytes=1 << 24, train_steps=12, compile_backend="eager",
                   train_compile=False, stream_tokens=20_000)


@dataclass
class Context:
    """What every section reads: the folder, the device, the plan, earlier results."""

    out_dir: Path
    device: str
    dry_run: bool
    plan: Plan
    results: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def precision(self) -> str:

        return resolve_precision("auto", self.device)


def skipped(reason: str) -> dict:
    return {"status": "skipped", "summary": reason}


def needs_cuda(ctx: Context) -> dict | None:
    return None if ctx.cuda else skipped("needs CUDA (dry run on the CPU)")


# -------------------------------------------------------------------------------------------
# shared helpers: timing, sync counting, the model and data of the checks


def time_per_call(fn, device: str, repeat: int) -> float:
    """Seconds per call of ``fn``: CUDA events on a GPU (no host timing of queued work),
    the wall clock on a CPU."""
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeat):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000 / repeat
    began = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - began) / repeat


def count_syncs(fn) -> list[str]:
    """The host syncs ``fn`` makes on the GPU, as the messages of the warnings that
    ``torch.cuda.set_sync_debug_mode("warn")`` raises for each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
            torch.cuda.set_sync_debug_mode("default")  # the final wait is not fn's
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [str(w.message).splitlines()[0] for w in caught
            if "synchroniz" in str(w.message).lower()]


def token_stream(n: int, vocab_size: int, seed: int = 0) -> np.ndarray:
    """A learnable uint16 stream (a repeating 257-token pattern, 10% noise), like a corpus."""
    rng = np.random.default_rng(seed)
    tokens = np.resize(rng.integers(0, vocab_size, 257), n)
    noise = rng.random(n) < 0.1
    tokens[noise] = rng.integers(0, vocab_size, int(noise.sum()))
    return tokens.astype(np.uint16)


def training_setup(ctx: Context, seed: int = 0, preset: str | None = None):
    """(model, optimizer, batches, precision) of ``preset`` (by default the plan's), as
    train() builds them."""

    enable_tf32(torch.device(ctx.device))
    preset = preset or ctx.plan.preset
    config = train_preset(preset, batch_size=ctx.plan.batch_size)
    torch.manual_seed(seed)
    model = build_model(model_config(preset)).to(ctx.device).train()
    optimizer = make_optimizer(model, config, ctx.device)
    data = torch.from_numpy(token_stream(ctx.plan.stream_tokens, model.config.vocab_size)
                            .astype(np.int32)).to(ctx.device)  # train() keeps it on the GPU
    batches = BatchStream(data, config.batch_size, model.config.context_length,
                          torch.Generator().manual_seed(seed), torch.device(ctx.device),
                          Distributed())
    return model, optimizer, batches, ctx.precision()


def one_step(model, optimizer, batches, precision: str) -> torch.Tensor:
    """One step of train()'s loop body: the next batch, then forward, backward, update."""

    x, y = batches.next()
    return optimize(model, optimizer, x, y, 1.0, precision=precision, check_ids=False)


# -------------------------------------------------------------------------------------------
# the sections


def check_versions(ctx: Context) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.version.cuda, "device": ctx.device,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
            else None}
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        info.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gb=round(props.total_memory / 1e9, 1),
                    gpus=torch.cuda.device_count())
    else:
        info["device_name"] = platform.processor() or platform.machine()
    name = info["device_name"]
    return {"status": "ok", "summary": f"torch {info['torch']}, CUDA {info['cuda']}, {name}",
            **info}


def check_cuda_tests(ctx: Context) -> dict:

    tests = project_root() / "tests"
    if not tests.is_dir():
        return skipped(f"no tests folder at {tests} (run from a clone of the repository)")
    report = (ctx.out_dir / "cuda-tests.xml").resolve()  # pytest runs in the project root
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
               f"--junitxml={report}", str(tests)]
    env = {**os.environ, "NANOLM_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(command, cwd=project_root(), env=env, capture_output=True,
                          text=True, timeout=240)
    if not report.exists():
        return {"status": "failed", "summary": "pytest wrote no report",
                "output": (done.stdout + done.stderr)[-2000:]}
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    summary = (f"{passed} passed, {counts['failures'] + counts['errors']} failed, "
               f"{counts['skipped']} skipped")
    if counts["failures"] or counts["errors"]:
        status = "failed"
    elif passed == 0:
        status = "skipped"  # no GPU: every cuda test skips itself
    else:
        status = "ok"
    return {"status": status, "summary": summary, "passed": passed, **counts,
            "report": report.name}


def sdpa_backend_used(q, k, v) -> str:
    """The SDPA kernel PyTorch picks by default for these inputs (from a profile of it)."""
    from torch.profiler import profile


    kernels = {"_scaled_dot_product_flash_attention": "flash",
               "_scaled_dot_product_efficient_attention": "efficient",
               "_scaled_dot_product_cudnn_attention": "cudnn",
               "_scaled_dot_product_fused_attention_overrideable": "overrideable",
               "_scaled_dot_product_attention_math": "math"}
    with profile() as prof:
        fused_attention(q, k, v)
    names = {event.name for event in prof.events()}
    for kernel, backend in kernels.items():
        if any(name.startswith(f"aten::{kernel}") for name in names):
            return backend
    return "unknown"


def attention_errors(q, k, v, grad) -> dict:
    """Relative errors of SDPA's output and gradients against naive attention in float64."""

    def run(fn, *inputs):
        inputs = [t.detach().clone().requires_grad_() for t in inputs]
        out = fn(*inputs)
        out.backward(grad.to(out.dtype))
        return [out.detach(), *(t.grad for t in inputs)]

    mask = causal_mask(q.size(-2), q.device)
    exact = run(lambda a, b, c: attention(a, b, c, mask)[0], *(t.double() for t in (q, k, v)))
    fused = run(fused_attention, q, k, v)
    names = ("output", "grad_q", "grad_k", "grad_v")
    return {name: ((f.double() - e).norm() / e.norm()).item()
            for name, f, e in zip(names, fused, exact)}


def check_sdpa(ctx: Context) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    B, H, T, D = ctx.plan.sdpa_shape
    generator = torch.Generator().manual_seed(0)
    rows, ok = [], True
    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        q, k, v, grad = (torch.randn(B, H, T, D, generator=generator).to(ctx.device, dtype)
                         for _ in range(4))
        row = {"precision": precision, "default": sdpa_backend_used(q, k, v)}
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH):
            try:
                with sdpa_kernel(backend), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # why a kernel is unavailable: see below
                    errors = attention_errors(q, k, v, grad)
            except RuntimeError as error:  # "No available kernel", or unsupported here
                row[backend.name.lower()] = {"available": False,
                                             "why": str(error).splitlines()[0][:160]}
                continue
            worst = max(errors.values())
            close = worst <= SDPA_TOLERANCE[precision]
            ok &= close
            row[backend.name.lower()] = {"available": True, "max_rel_err": worst,
                                         "within_tolerance": close, **errors}
        rows.append(row)
    summary = "; ".join(f"{r['precision']}: {r['default']}" for r in rows)
    return {"status": "ok" if ok else "failed", "summary": f"default backend {summary}",
            "tolerance": SDPA_TOLERANCE, "shape_bhtd": [B, H, T, D], "rows": rows}


def check_sync_audit(ctx: Context) -> dict:
    if (skip := needs_cuda(ctx)) is not None:
        return skip

    model, optimizer, batches, precision = training_setup(ctx)
    total = torch.zeros((), dtype=torch.float64, device=ctx.device)  # train()'s loss sum

    def loop_body():  # what train() does each step that writes no record
        for group in optimizer.param_groups:
            group["lr"] = 1e-4
        total.add_(one_step(model, optimizer, batches, precision).double())

    loop_body()  # warm-up: allocations, kernel choice
    step_syncs = count_syncs(loop_body)

    model.eval()
    idx = torch.tensor([[1, 2, 3]], device=ctx.device)

    def decode(generator):
        cache = model.new_kv_cache(1)
        with torch.inference_mode():
            logits, _ = model(idx, kv_cache=cache)  # the prompt (its ids are checked once)
            torch.cuda.synchronize()
            return count_syncs(lambda: model(  # one generated token, as generate() makes it
                sample_next_token(logits[:, -1], 0.8, 40, None, generator),
                kv_cache=cache, check_ids=False))

    token_syncs = decode(torch.Generator(device=ctx.device).manual_seed(0))
    cpu_generator_syncs = decode(torch.Generator().manual_seed(0))
    ok = not step_syncs and not token_syncs
    summary = (f"training step: {len(step_syncs)} syncs; generated token: {len(token_syncs)} "
               f"(CUDA generator), {len(cpu_generator_syncs)} (CPU generator: the draw's copy)")
    return {"status": "ok" if ok else "failed", "summary": summary,
            "training_step": step_syncs, "generated_token": token_syncs,
            "generated_token_cpu_generator": cpu_generator_syncs}


def compile_counters() -> dict:
    from torch._dynamo.utils import counters

    breaks = counters["graph_break"]
    return {"graphs": counters["stats"]["unique_graphs"],
            "graph_breaks": sum(breaks.values()), "break_reasons": list(breaks)[:5]}


def step_speed(ctx: Context, preset: str) -> dict:
    """Eager and compiled tokens/s of one training step of ``preset``, compile counters."""
    import torch._dynamo


    model, optimizer, batches, precision = training_setup(ctx, preset=preset)
    tokens = ctx.plan.batch_size * model_config(preset).context_length
    steps = ctx.plan.timed_steps
    for _ in range(3):  # warm-up: allocator, cuBLAS handles, kernel choice
        one_step(model, optimizer, batches, precision)
    eager = time_per_call(lambda: one_step(model, optimizer, batches, precision), ctx.device,
                          steps)

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(model, backend=ctx.plan.compile_backend)
    cold = time_per_call(lambda: one_step(compiled, optimizer, batches, precision), ctx.device, 1)
    after_first = compile_counters()
    one_step(compiled, optimizer, batches, precision)  # a second call may still specialise
    warm_graphs = compile_counters()["graphs"]
    fast = time_per_call(lambda: one_step(compiled, optimizer, batches, precision), ctx.device,
                         steps)
    counters = compile_counters()
    return dict(
        preset=preset, batch_size=ctx.plan.batch_size, precision=precision, timed_steps=steps,
        compile_backend=ctx.plan.compile_backend,
        eager_step_s=eager, eager_tokens_per_s=tokens / eager,
        compiled_step_s=fast, compiled_tokens_per_s=tokens / fast, speedup=eager / fast,
        cold_compile_s=cold - fast, graphs=after_first["graphs"],
        graph_breaks=counters["graph_breaks"], break_reasons=counters["break_reasons"],
        recompiles=counters["graphs"] - after_first["graphs"],
        recompiles_while_timed=counters["graphs"] - warm_graphs)


def check_step_speed(ctx: Context) -> dict:
    """The recipe's step, then its modern twin's (lesson 08's blocks, the same parameter
    count) in the same run: the modern recipe's expected speed on this GPU."""
    result = step_speed(ctx, ctx.plan.preset)
    modern = step_speed(ctx, ctx.plan.modern_preset)
    best = max(result["eager_tokens_per_s"], result["compiled_tokens_per_s"])
    modern["speed_ratio"] = max(modern["eager_tokens_per_s"],
                                modern["compiled_tokens_per_s"]) / best
    result["modern"] = modern
    summary = (f"eager {result['eager_tokens_per_s']:,.0f} tok/s, compiled "
               f"{result['compiled_tokens_per_s']:,.0f} tok/s (x{result['speedup']:.2f}); "
               f"compile {result['cold_compile_s']:.1f} s, {result['graph_breaks']} graph "
               f"breaks, {result['recompiles']} recompiles; {modern['preset']}: "
               f"compiled {modern['compiled_tokens_per_s']:,.0f} tok/s "
               f"(x{modern['speed_ratio']:.2f} of the best above)")
    ok = result["recompiles_while_timed"] == 0 and modern["recompiles_while_timed"] == 0
    return {"status": "ok" if ok else "failed", "summary": summary, **result}


PROFILE_CATEGORIES = ("matmul", "attention", "layer_norm", "loss", "optimizer", "rest")
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul",
              "aten::_addmm_activation", "aten::addmv", "aten::mv"}
ATTENTION_WORDS = ("scaled_dot_product", "ScaledDotProduct", "flash_attention",
                   "efficient_attention", "cudnn_attention")
LOSS_WORDS = ("cross_entropy", "nll_loss", "log_softmax", "NllLoss", "LogSoftmax")


def profile_split(events, layer_norm_seq: set, on_device: bool) -> dict:
    """Self time (device time on a GPU, CPU time on a CPU) of every profiled op, in ms, by
    category: an op is a matmul by its name; otherwise its nearest enclosing scope decides
    (a layer norm's forward scope or the backward of an op made inside one, SDPA, the loss,
    the optimizer), and anything else is the rest."""
    totals = dict.fromkeys(PROFILE_CATEGORIES, 0.0)
    for event in events:
        spent = event.self_device_time_total if on_device else event.self_cpu_time_total
        if spent <= 0:
            continue
        totals[categorize(event, layer_norm_seq)] += spent / 1000
    return totals


def categorize(event, layer_norm_seq: set) -> str:
    if event.name in MATMUL_OPS:
        return "matmul"
    node = event
    while node is not None:
        name = node.name
        if name == "nanolm.layer_norm" or (name.startswith("autograd::engine::evaluate")
                                           and node.sequence_nr in layer_norm_seq):
            return "layer_norm"
        if any(word in name for word in ATTENTION_WORDS):
            return "attention"
        if any(word in name for word in LOSS_WORDS):
            return "loss"
        if name == "nanolm.optimizer":
            return "optimizer"
        node = node.cpu_parent
    return "rest"


def layer_norm_scopes(model):
    """Forward hooks that open a ``nanolm.layer_norm`` profiler range around every layer
    norm; returns the hook handles (remove them after profiling)."""
    from torch.autograd.profiler import record_function


    handles = []
    for module in model.modules():
        if isinstance(module, (LayerNorm, torch.nn.LayerNorm)):
            def enter(mod, args):
                mod._nanolm_scope = record_function("nanolm.layer_norm")
                mod._nanolm_scope.__enter__()

            def leave(mod, args, output):
                mod._nanolm_scope.__exit__(None, None, None)

            handles += [module.register_forward_pre_hook(enter),
                        module.register_forward_hook(leave)]
    return handles


def check_profile(ctx: Context) -> dict:
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile


    model, optimizer, batches, precision = training_setup(ctx)
    for _ in range(2):
        one_step(model, optimizer, batches, precision)
    x, y = batches.next()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.cuda else [])
    handles = layer_norm_scopes(model)
    try:
        with profile(activities=activities) as prof:
            with autocast(precision, x.device.type):
                _, loss = model(x, y, check_ids=False)
            loss.backward()
            with record_function("nanolm.optimizer"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if ctx.cuda:
                torch.cuda.synchronize()
    finally:
        for handle in handles:
            handle.remove()
    events = prof.events()
    in_layer_norm = {e.sequence_nr for e in events if e.sequence_nr >= 0
                     and _inside(e, "nanolm.layer_norm")}
    split = profile_split(events, in_layer_norm, ctx.cuda)
    total = sum(split.values())
    shares = {k: v / total for k, v in split.items()} if total else split
    plot_bars(ctx.out_dir / "profile.png", shares, "share of one step's "
              + ("GPU" if ctx.cuda else "CPU") + " time", f"One eager step ({precision})")
    summary = ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
    return {"status": "ok", "summary": summary, "ms": split, "share": shares,
            "time": "device" if ctx.cuda else "cpu", "ops": len(events)}


def _inside(event, scope: str) -> bool:
    node = event.cpu_parent
    while node is not None:
        if node.name == scope:
            return True
        node = node.cpu_parent
    return False


def check_ceiling(ctx: Context) -> dict:

    precision = ctx.precision()
    dtype = ceiling_dtype(precision)
    ceiling = matmul_ceiling(ctx.device, ctx.plan.ceiling_n, dtype=dtype, repeat=5)
    source = torch.empty(ctx.plan.copy_bytes, dtype=torch.uint8, device=ctx.device)
    target = torch.empty_like(source)
    copy_s = time_per_call(lambda: target.copy_(source), ctx.device, 5)
    bandwidth = 2 * ctx.plan.copy_bytes / copy_s  # read once, written once
    result = {"precision": precision, "ceiling_dtype": str(dtype).removeprefix("torch."),
              "ceiling_flops": ceiling, "copy_bytes_per_s": bandwidth,
              "target_tokens_per_s": TARGET_TOKENS_PER_S}
    speed = ctx.results.get("step_speed", {})
    best = max(speed.get("eager_tokens_per_s", 0), speed.get("compiled_tokens_per_s", 0))
    if not best:
        return {"status": "ok", "summary": f"{ceiling / 1e12:.1f} TFLOP/s {dtype}, "
                f"{bandwidth / 1e9:.0f} GB/s copy; no step speed to compare", **result}
    per_token = training_flops_per_token(model_config(ctx.plan.preset))
    go = best >= TARGET_TOKENS_PER_S and not ctx.dry_run
    result.update(best_tokens_per_s=best, mfu=best * per_token / ceiling,
                  reference_run_minutes=REFERENCE_TOKENS / best / 60,
                  verdict="go" if go else "no-go")
    summary = (f"MFU {result['mfu']:.1%} of {ceiling / 1e12:.1f} TFLOP/s "
               f"({result['ceiling_dtype']}), copy {bandwidth / 1e9:.0f} GB/s; "
               f"{best:,.0f} tok/s -> recipe in {result['reference_run_minutes']:.1f} min: "
               f"{result['verdict']} (target {TARGET_TOKENS_PER_S / 1e6:.2f} M tok/s)")
    plot_bars(ctx.out_dir / "speed.png",
              {"eager": speed.get("eager_tokens_per_s", 0),
               "compiled": speed.get("compiled_tokens_per_s", 0),
               "target": TARGET_TOKENS_PER_S}, "tokens per second",
              f"{ctx.plan.preset} step, batch {ctx.plan.batch_size}")
    return {"status": "ok", "summary": summary, **result}


def check_short_train(ctx: Context) -> dict:

    model_config = PRESETS[ctx.plan.preset].model
    steps = ctx.plan.train_steps
    tokens = token_stream(ctx.plan.stream_tokens, model_config.vocab_size, seed=1)
    split = len(tokens) * 9 // 10
    runs = ctx.out_dir / "short-train"

    def config(name):
        return train_preset(ctx.plan.preset, max_steps=steps, warmup_steps=steps // 10,
                            log_interval=max(1, steps // 8), checkpoint_interval=steps // 2,
                            eval_interval=steps, eval_batches=4, device=ctx.device,
                            compile=ctx.plan.train_compile, out_dir=str(runs / name))

    def run(name, **kwargs):
        torch.manual_seed(0)
        return train(GPT(model_config), config(name), tokens[:split], tokens[split:],
                     overwrite=not kwargs.get("resume"), **kwargs)

    began = time.perf_counter()
    whole = run("whole")
    seconds = time.perf_counter() - began

    def stop_half_way(record):
        if record["split"] == "train" and record["step"] >= steps // 2:
            raise KeyboardInterrupt

    try:
        run("resumed", callback=stop_half_way)
    except KeyboardInterrupt:
        pass
    saved_step = load_checkpoint(runs / "resumed")["step"]
    resumed = run("resumed", resume=True)
    curve = [(r["step"], r["split"], r["loss"]) for r in whole]
    again = [(r["step"], r["split"], r["loss"]) for r in resumed]
    gap = max((abs(a[2] - b[2]) for a, b in zip(curve, again)), default=math.inf)
    same_records = [c[:2] for c in curve] == [c[:2] for c in again]
    train_losses = [r["loss"] for r in whole if r["split"] == "train"]
    learned = train_losses[-1] < train_losses[0]
    ok = same_records and learned and gap < 1e-2
    summary = (f"{steps} steps in {seconds:.1f} s, loss {train_losses[0]:.3f} -> "
               f"{train_losses[-1]:.3f}; resumed from step {saved_step}: largest loss "
               f"difference {gap:.2e}" + (" (bit-exact)" if gap == 0 else ""))
    return {"status": "ok" if ok else "failed", "summary": summary, "steps": steps,
            "seconds": seconds, "compile": ctx.plan.train_compile, "resumed_from": saved_step,
            "largest_loss_difference": gap, "learned": learned, "run_folder": str(runs)}


def check_generation(ctx: Context) -> dict:

    run = ctx.out_dir / "short-train" / "whole"
    if not (run / CHECKPOINT_NAME).exists():
        return skipped("no model: short_train did not run")
    model = model_from_checkpoint(load_checkpoint(run), ctx.device).eval()
    prompt = torch.tensor([[0]], device=ctx.device)  # a token the stream starts stories with
    new = model.config.context_length - 1
    settings = dict(temperature=0.8, top_k=40, show_progress=False)

    def write(use_cache, where=ctx.device, generator=None):
        generator = generator or torch.Generator().manual_seed(0)  # lesson 07's: a CPU one
        return generate(model.to(where), prompt.to(where), new, use_cache=use_cache,
                        generator=generator, **settings).cpu()

    seconds, outputs = {}, {}
    # Exact fp32 products: with and without the cache the products have other shapes, and
    # TF32's coarser rounding could tip a draw that lies near a boundary.
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for use_cache in (True, False):
            seconds[use_cache] = time_per_call(
                lambda c=use_cache: outputs.__setitem__(c, write(c)), ctx.device, 1)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    on_cpu = write(True, "cpu")
    model.to(ctx.device)
    identical = torch.equal(outputs[True], outputs[False])
    like_cpu = torch.equal(outputs[True], on_cpu)
    summary = (f"{new} tokens: identical with and without the KV cache: {identical}; "
               f"same as on the CPU: {like_cpu}; cache x{seconds[False] / seconds[True]:.1f}")
    return {"status": "ok" if identical else "failed", "summary": summary,
            "identical_with_and_without_cache": identical, "same_as_cpu": like_cpu,
            "tokens_per_s_cache": new / seconds[True],
            "tokens_per_s_no_cache": new / seconds[False]}


CHECKS = {"versions": check_versions, "cuda_tests": check_cuda_tests, "sdpa": check_sdpa,
          "sync_audit": check_sync_audit, "step_speed": check_step_speed,
          "profile": check_profile, "ceiling": check_ceiling, "short_train": check_short_train,
          "generation": check_generation}


# -------------------------------------------------------------------------------------------
# the runner: every section, the folder, the table


def plot_bars(path: Path, values: dict, ylabel: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.bar(list(values), list(values.values()), color="tab:blue")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_section(ctx: Context, name: str) -> dict:
    """One section, timed; an exception fails that section only (traceback in log.txt)."""
    left = BUDGET_SECONDS - (time.perf_counter() - ctx.started)
    if left <= 0:
        return skipped(f"the {BUDGET_SECONDS // 60}-minute budget was spent")
    began = time.perf_counter()
    try:
        result = CHECKS[name](ctx)
    except Exception as error:  # a failed check is a result, not the end of the run
        text = traceback.format_exc()
        with open(ctx.out_dir / "log.txt", "a") as log:
            log.write(f"== {name}\n{text}\n")
        first = str(error).splitlines()[0] if str(error) else ""
        result = {"status": "failed", "summary": f"{type(error).__name__}: {first}"[:200]}
    finally:
        if ctx.cuda:
            torch.cuda.set_sync_debug_mode("default")
    result["seconds"] = time.perf_counter() - began
    return result


def table(results: dict) -> str:
    rows = [{"section": name, "status": r["status"], "seconds": f"{r['seconds']:.1f}",
             "result": r["summary"]} for name, r in results["sections"].items()]
    return format_table(rows, ["section", "status", "seconds", "result"])


def run_gpu_check(out_dir="gpu-check", dry_run: bool = False, sections=None,
                  device: str | None = None) -> dict:
    """Run the sections (all by default) into ``out_dir``; return what results.json holds."""
    device = device or ("cpu" if dry_run else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("gpu-check: no CUDA GPU here; nanolm gpu-check --dry-run checks its "
                         "plumbing on the CPU")
    unknown = [s for s in sections or () if s not in CHECKS]
    if unknown:
        raise UsageError(f"--sections: unknown {', '.join(unknown)}; expected some of "
                         f"{', '.join(SECTIONS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "log.txt").unlink(missing_ok=True)
    ctx = Context(out_dir, device, dry_run, Plan.dry_run() if dry_run else Plan())
    results = {"format": "nanolm-gpu-check", "version": 1, "dry_run": dry_run,
               "device": device, "plan": asdict(ctx.plan), "budget_s": BUDGET_SECONDS,
               "sections": ctx.results}
    for name in sections or SECTIONS:
        ctx.results[name] = run_section(ctx, name)
        print(f"[{name}] {ctx.results[name]['status']}: {ctx.results[name]['summary']}",
              flush=True)
    results["seconds"] = time.perf_counter() - ctx.started
    results["passed"] = all(r["status"] != "failed" for r in ctx.results.values())
    text = table(results)
    (out_dir / "table.txt").write_text(text + "\n")
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("\n" + text)
    print(f"\n{'all sections passed' if results['passed'] else 'some sections FAILED'} in "
          f"{results['seconds']:.0f} s; everything is in {out_dir}/"
          + (" (dry run: the figures measure nothing)" if dry_run else ""))
    return results


__all__ = ["run_gpu_check", "SECTIONS", "TARGET_TOKENS_PER_S", "profile_split", "Plan"]
