"""03_attention / attention: the hidden cases check the output and weights (its helpers the
reference's); no fused kernel."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import FUSED_ATTENTION, generator, lower_triangle


def attention(q, k, v, mask=None):
    """Naive attention: ``(weights @ v, weights)``, out (B, H, T, D), weights (B, H, T, S)."""


q = question("03_attention", attention, reference="attention", forbids=FUSED_ATTENTION)


@q.cases
def _(gen):
    cases = []
    for (B, H, T, D), masked in [((2, 3, 5, 8), False), ((1, 1, 1, 4), True),
                                 ((3, 1, 9, 5), True), ((2, 4, 12, 7), True)]:
        q_, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
        cases.append({"q": q_, "k": k, "v": v, "masked": masked,
                      "what": f"attention(q, k, v{', mask' if masked else ''}), {(B, H, T, D)}"})
    return cases


@q.runs
def _(ns, case):
    mask = lower_triangle(case["q"].size(2)) if case["masked"] else None
    with helpers(ns, "attention", "attention_weights", "causal_mask"):
        out, weights = ns["attention"](case["q"], case["k"], case["v"], mask)
    return {"out": out, "weights": weights}


@q.fixture
def _(ref):
    attention = ref("attention")
    gen = generator(4)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=gen) for _ in range(3))
    mask = attention.causal_mask(5)
    out, weights = attention.attention(q, k, v, mask)
    return {"q": q, "k": k, "v": v, "mask": mask, "out": out, "weights": weights}
