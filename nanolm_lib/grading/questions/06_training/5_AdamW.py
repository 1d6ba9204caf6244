"""06_training / AdamW: the hidden cases check the parameters after 1, 10 and 100 steps, with
parameter groups and a changing learning rate; no library optimiser."""

from __future__ import annotations

import math

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import TORCH_INTERNALS, generator


class AdamW:
    """AdamW (Loshchilov & Hutter, 2019) written out, in ``torch.optim.AdamW``'s order: decay the
    parameter by ``lr * weight_decay`` first, then update the moments and take the bias-
    corrected Adam step. ``param_groups[i]["lr"]`` is read at every step (a schedule sets
    it)."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01): ...

    def step(self, closure=None): ...


q = question("06_training", AdamW, reference="train", forbids=(
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


def _adamw_run(optimizer_class, start, grads, options, lr_schedule=None):
    """The parameters after each step of optimizer_class from start with the given gradients
    (the lesson's test cell runs the same loop)."""
    params = [p.clone().requires_grad_() for p in start]
    groups = params
    if "groups" in options:
        groups = [dict(params=params[:1], **options["groups"][0]),
                  dict(params=params[1:], **options["groups"][1])]
        options = {k: v for k, v in options.items() if k != "groups"}
    optimizer, after = optimizer_class(groups, **options), []
    for step, step_grads in enumerate(grads):
        for group in optimizer.param_groups if lr_schedule else ():
            group["lr"] = lr_schedule[step]
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        optimizer.step()
        after.append(torch.cat([p.detach().flatten() for p in params]))
    return after


@q.fixture
def _(ref):
    gen = generator(64)
    start = [torch.randn(6, 4, generator=gen), torch.randn(5, generator=gen)]
    grads = [[torch.randn(p.shape, generator=gen) for p in start] for _ in range(100)]
    schedule = [0.05 * (step + 1) / 100 for step in range(100)]
    cases = []
    for what, options, lr_schedule in (
            ("defaults", {}, None),
            # large lr, decay and eps: the order of decay and step, and where eps goes, show
            ("lr=0.1, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.5",
             dict(lr=0.1, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.5), None),
            ("two groups (weight_decay 0.3 and 0), lr set by a schedule at every step",
             dict(lr=1.0, groups=[{"weight_decay": 0.3}, {"weight_decay": 0.0}]), schedule)):
        after = _adamw_run(ref("train").AdamW, start, grads, options, lr_schedule)
        case = {"what": what, "options": options, "after": {s: after[s - 1] for s in (1, 10, 100)}}
        if lr_schedule:
            case["lr_schedule"] = lr_schedule
        cases.append(case)
    return {"start": start, "grads": grads, "cases": cases}
