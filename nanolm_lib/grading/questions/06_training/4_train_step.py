"""06_training / train_step: the hidden cases check the loss and parameters after steps with SGD
and AdamW, gradients clipped; no library training loop."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    bigram,
    generator,
    gpt_config,
    loaded,
    parameters_of,
    randomised_state,
)


def train_step(model, optimizer, x, y, grad_clip=1.0):
    """One optimisation step on batch (x, y); returns the loss before the update."""


q = question("06_training", train_step, reference="train", forbids=(
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


@q.fixture
def _(ref):
    gen = generator(62)
    model = bigram(31, gen, 0.3)
    start = parameters_of(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    steps = []
    for _ in range(3):
        x, y = (torch.randint(0, 31, (4, 8), generator=gen) for _ in range(2))
        loss = ref("train").train_step(model, optimizer, x, y, 0.05)
        steps.append({"x": x, "y": y, "loss": loss, "parameters": parameters_of(model)})
    return {"vocab_size": 31, "lr": 0.5, "grad_clip": 0.05, "start": start, "steps": steps}
