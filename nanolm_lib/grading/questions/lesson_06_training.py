"""Lesson 06_training: the hidden cases of its graded questions (see :mod:`nanolm_lib.grading.questions`)."""

from __future__ import annotations

import math

import numpy as np
import torch

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    TORCH_INTERNALS,
    gpt_config,
    loaded,
    randomised_state,
)

q = question("06_training", "cross_entropy_loss", rtol=1e-4)


@q.cases
def _(gen):
    cases = []
    for B, T, V, scale in [(1, 1, 7, 1.0), (4, 33, 257, 1.0), (3, 4, 2, 1.0), (2, 6, 50, 80.0)]:
        cases.append({"logits": torch.randn(B, T, V, generator=gen) * scale,
                      "targets": torch.randint(0, V, (B, T), generator=gen),
                      "what": f"cross_entropy_loss(logits {(B, T, V)} x {scale}, targets)"})
    return cases


@q.runs
def _(ns, case):
    logits = case["logits"].clone().requires_grad_()
    loss = ns["cross_entropy_loss"](logits, case["targets"])
    grad = (torch.autograd.grad(loss, logits)[0] if loss.requires_grad
            else "the loss does not require grad")
    return {"loss": loss, "gradient": grad}


q = question("06_training", "perplexity", rtol=1e-6, atol=0.0)


@q.cases
def _(gen):
    values = [2.1062, 1.9443, float(torch.rand((), generator=gen)) * 8, 0.0]
    cases = [{"loss": v, "what": f"perplexity({v})"} for v in values]
    cases += [{"loss": 1.25, "tensor": "float32", "what": "perplexity(a 0-d tensor)"},
              {"loss": 3.0, "tensor": "float64", "what": "perplexity(a float64 tensor)"}]
    return cases


@q.runs
def _(ns, case):
    import warnings

    loss = case["loss"]
    if "tensor" in case:
        loss = torch.tensor(loss, dtype=getattr(torch, case["tensor"]), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ns["perplexity"](loss)
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    return float(got) if isinstance(got, (int, float)) else got


q = question("06_training", "lr_at", rtol=1e-9, atol=1e-15)


@q.cases
def _(gen):
    peak = float(torch.rand((), generator=gen)) * 1e-2 + 1e-4
    schedules = [(list(range(60)), dict(lr=peak, min_lr=peak / 7, warmup_steps=0, max_steps=50)),
                 (list(range(15)), dict(lr=peak, min_lr=0.0, warmup_steps=1, max_steps=12)),
                 (list(range(30)), dict(lr=peak, min_lr=peak / 3, warmup_steps=20, max_steps=20)),
                 ([0, 1, 499, 999, 1000, 1001, 14000, 28000, 55999, 56000, 70000],
                  dict(lr=6e-4, min_lr=6e-5, warmup_steps=1000, max_steps=56000))]
    return [{"steps": steps, "fields": fields, "what": f"lr_at(step, TrainConfig({fields}))"}
            for steps, fields in schedules]


@q.runs
def _(ns, case):
    from nanolm_lib.course.train import TrainConfig

    config = TrainConfig(**case["fields"])
    values = [ns["lr_at"](step, config) for step in case["steps"]]
    return [float(v) if isinstance(v, (int, float)) else v for v in values]


q = question("06_training", "train_step", forbids=(
    "nanolm_lib.course.train.optimize", "nanolm_lib.lab.trainer.train", "nanolm_lib.lab.gpu_check"))
OPTIMIZERS = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}


@q.cases
def _(gen):
    from nanolm_lib.course.model import GPT

    sizes = dict(vocab_size=31, context_length=8, d_model=16, n_layers=1, n_heads=2, d_ff=32)
    cases = []
    for optimizer, options, steps, B, T, clip in [
            ("sgd", {"lr": 0.5}, 3, 4, 8, 0.05), ("sgd", {"lr": 0.5}, 2, 2, 8, None),
            ("sgd", {"lr": 0.5, "momentum": 0.9}, 3, 1, 1, 0.01),
            ("adamw", {"lr": 1e-2}, 3, 3, 5, "default"), ("sgd", {"lr": 2.0}, 2, 3, 7, 1.0)]:
        state = randomised_state(GPT(gpt_config(sizes)), gen, 0.1)
        batches = [[torch.randint(0, 31, (B, T), generator=gen) for _ in range(2)]
                   for _ in range(steps)]
        cases.append({"sizes": sizes, "state": state, "optimizer": optimizer,
                      "options": options, "batches": batches, "clip": clip,
                      "what": f"{steps} x train_step(model, {optimizer} {options}, x, y, "
                              f"grad_clip={clip}) on x {(B, T)}"})
    return cases


@q.runs
def _(ns, case):
    from nanolm_lib.course.model import GPT

    model = loaded(GPT(gpt_config(case["sizes"])), case["state"])
    optimizer = OPTIMIZERS[case["optimizer"]](model.parameters(), **case["options"])
    steps = []
    with helpers(ns, "train", "cross_entropy_loss"):
        for x, y in case["batches"]:
            args = (model, optimizer, x, y) + (() if case["clip"] == "default" else (case["clip"],))
            loss = ns["train_step"](*args)
            steps.append({"loss": loss if isinstance(loss, float) else f"<a {type(loss).__name__}>",
                          "parameters": torch.cat([p.detach().flatten()
                                                   for p in model.parameters()])})
    return steps


q = question("06_training", "AdamW", forbids=(
    "torch.optim.AdamW", "torch.optim.Adam", "torch.optim.adamw", "torch.optim.adam",
    "torch.optim._functional", *TORCH_INTERNALS))


@q.cases
def _(gen):
    cases = []
    for what, shapes, options, schedule, no_grad in [
            ("defaults", [(7, 5), (13,)], {}, False, ()),
            ("lr 0.1, decay 0.5", [(4, 4), (3,)],
             dict(lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.5), False, ()),
            ("no decay, eps 1e-6", [(3, 4, 2)],
             dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0), False, ()),
            ("a scheduled lr, two groups", [(6, 3), (5,), (2,)],
             dict(lr=1.0, groups=[{"weight_decay": 0.2}, {"weight_decay": 0.0}]),
             True, ()),
            ("a parameter without a gradient", [(5, 2), (4,)],
             dict(lr=5e-2, weight_decay=0.1), False, (1,))]:
        start = [torch.randn(shape, generator=gen) for shape in shapes]
        grads = [[None if i in no_grad else torch.randn(shape, generator=gen) * 10 ** (k % 3 - 1)
                  for i, shape in enumerate(shapes)] for k in range(100)]
        cases.append({"start": start, "grads": grads, "options": options,
                      "schedule": [0.02 * (1 + math.cos(math.pi * k / 100)) for k in range(100)]
                      if schedule else None,
                      "what": f"100 steps of AdamW({what}) on fresh parameters"})
    return cases


@q.runs
def _(ns, case):
    params = [p.clone().requires_grad_() for p in case["start"]]
    options = dict(case["options"])
    groups = params
    if "groups" in options:  # the first tensor in one group, the rest in another
        first, rest = options.pop("groups")
        groups = [dict(params=params[:1], **first), dict(params=params[1:], **rest)]
    optimizer = ns["AdamW"](groups, **options)
    after = {}
    for step, step_grads in enumerate(case["grads"], start=1):
        for group in optimizer.param_groups if case["schedule"] else ():
            group["lr"] = case["schedule"][step - 1]
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else g.clone()
        optimizer.step()
        if step in (1, 2, 10, 100):
            after[f"after {step} steps"] = torch.cat([p.detach().flatten() for p in params])
    return {"is an Optimizer": isinstance(optimizer, torch.optim.Optimizer), **after}


q = question("06_training", "clip_grad_norm", forbids=(
    "torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad_norm",
    "torch.nn.utils.clip_grads_with_norm_", "torch.nn.utils.get_total_norm",
    *TORCH_INTERNALS))


@q.cases
def _(gen):
    cases = []
    for what, shapes, scale, max_norm, no_grad in [
            ("above max_norm", [(4, 3), (5,), (2, 2, 2)], 1.0, 1.0, ()),
            ("far above", [(30, 20)], 100.0, 0.25, ()),
            ("below max_norm", [(4, 3), (5,)], 0.1, 10.0, ()),
            ("one tensor", [(17,)], 3.0, 2.0, ()),
            ("without gradients", [(3, 3), (4,), (2,)], 2.0, 0.5, (0, 2)),
            ("many small tensors", [(3,)] * 12, 0.5, 1.0, ())]:
        grads = [None if i in no_grad else torch.randn(shape, generator=gen) * scale
                 for i, shape in enumerate(shapes)]
        cases.append({"shapes": [list(s) for s in shapes], "grads": grads, "max_norm": max_norm,
                      "what": f"clip_grad_norm(model.parameters(), {max_norm}), {what}"})
    return cases


@q.runs
def _(ns, case):
    params = [torch.zeros(shape, requires_grad=True) for shape in case["shapes"]]
    for p, g in zip(params, case["grads"]):
        p.grad = None if g is None else g.clone()
    norm = ns["clip_grad_norm"]((p for p in params), case["max_norm"])  # a generator
    if isinstance(norm, torch.Tensor) and norm.numel() == 1:
        norm = norm.item()
    return {"norm": float(norm) if isinstance(norm, (int, float)) else f"<a {type(norm).__name__}>",
            "gradients": [None if p.grad is None else p.grad for p in params]}


q = question("06_training", "evaluate")


@q.cases
def _(gen):
    from nanolm_lib.course.model import GPT

    cases = []
    for n_tokens, T, batch_size, max_batches, as_tensor, dropout in [
            (8 * 11 + 5, 8, 4, None, False, 0.0), (8 * 10, 8, 3, None, False, 0.0),
            (7 * 20 + 1, 7, 6, 2, False, 0.0), (5 * 9 + 2, 5, 64, None, True, 0.0),
            (6 * 12 + 3, 6, 5, None, False, 0.5), (2, 1, 2, None, False, 0.0)]:
        sizes = dict(vocab_size=41, context_length=T, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                     dropout=dropout)
        cases.append({"sizes": sizes, "state": randomised_state(GPT(gpt_config(sizes)), gen, 0.3),
                      "tokens": torch.randint(0, 41, (n_tokens,), generator=gen), "T": T,
                      "batch_size": batch_size, "max_batches": max_batches,
                      "as_tensor": as_tensor,
                      "what": f"evaluate(model, {n_tokens} tokens, context_length={T}, "
                              f"batch_size={batch_size}, max_batches={max_batches})"})
    return cases


@q.runs
def _(ns, case):
    from nanolm_lib.course.model import GPT

    model = loaded(GPT(gpt_config(case["sizes"])), case["state"]).train()
    tokens = case["tokens"] if case["as_tensor"] else case["tokens"].numpy().astype(np.uint16)
    with helpers(ns, "train", "cross_entropy_loss", "perplexity"):
        result = ns["evaluate"](model, tokens, case["T"], case["batch_size"], case["max_batches"])
    figures = {key: float(result[key]) for key in ("loss", "perplexity")}
    grads = [key for key in ("loss", "perplexity")
             if isinstance(result[key], torch.Tensor) and result[key].requires_grad]
    return {**figures, "requires grad": grads, "training mode kept": model.training}
