"""06_training / cross_entropy_loss: the hidden cases check the loss and its gradient, on large
logits too; no library cross-entropy."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import generator


def cross_entropy_loss(logits, targets):
    """Mean cross-entropy over all positions: logits (B, T, V), targets (B, T) -> scalar."""


q = question("06_training", cross_entropy_loss, reference="train", rtol=1e-4)


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


@q.fixture
def _(ref):
    gen = generator(61)
    logits = torch.randn(2, 5, 11, generator=gen).requires_grad_()
    targets = torch.randint(0, 11, (2, 5), generator=gen)
    loss = ref("train").cross_entropy_loss(logits, targets)
    grad, = torch.autograd.grad(loss, logits)
    return {"logits": logits.detach(), "targets": targets, "loss": loss.detach(), "grad": grad}
