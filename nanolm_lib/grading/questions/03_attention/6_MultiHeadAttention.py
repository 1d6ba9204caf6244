"""03_attention / MultiHeadAttention: the hidden cases check the parameters' shapes, the output
with the reference's weights, causality (a later token changed leaves earlier outputs alone) and
gradients; no fused kernel."""

from __future__ import annotations

import math

import torch

from nanolm_lib.grading.question_base import ReferenceNamespace, helpers, question
from nanolm_lib.grading.questions.common import (
    ATTENTION_HELPERS,
    FUSED_ATTENTION,
    fill_random,
    generator,
    loaded,
    randomised_state,
)


class MultiHeadAttention:
    """Causal multi-head self-attention with one fused ``qkv`` projection and an output ``proj``."""

    def __init__(self, d_model, n_heads, dropout=0.0): ...

    def forward(self, x): ...


q = question("03_attention", MultiHeadAttention, reference="attention", rtol=1e-4, atol=1e-5,
             forbids=FUSED_ATTENTION)


@q.cases
def _(gen):
    from nanolm_lib.course.attention import MultiHeadAttention

    cases = []
    for B, T, C, H, dropout in [(1, 1, 8, 2, 0.0), (3, 7, 15, 3, 0.0), (2, 5, 16, 1, 0.0),
                                (2, 9, 32, 8, 0.0), (2, 5, 12, 4, 0.1), (2, 4, 8, 2, 0.0)]:
        layer = MultiHeadAttention(C, H, impl="naive")
        with torch.no_grad():
            state = randomised_state(layer, gen, 1 / math.sqrt(C))
        cases.append({"C": C, "H": H, "dropout": dropout, "state": state,
                      "x": torch.randn(B, T, C, generator=gen),
                      "what": f"MultiHeadAttention({C}, {H}, dropout={dropout})(x {(B, T, C)})"})
    return cases


@q.runs
def _(ns, case):
    make = ns["MultiHeadAttention"]
    with helpers(ns, "attention", *ATTENTION_HELPERS):
        # the reference's default is the fused kernel; the lesson's layer is the naive one
        extra = {"impl": "naive"} if isinstance(ns, ReferenceNamespace) else {}
        layer = make(case["C"], case["H"], case["dropout"], **extra).eval()
        shapes = {n: list(p.shape) for n, p in layer.named_parameters()}
        loaded(layer, case["state"])
        x = case["x"]
        changed = x.clone()
        changed[:, -1] = changed[:, -1].flip(-1) + 1   # only the last token changes
        out = layer(x)
        out_changed = layer(changed)
        out.square().sum().backward()
    grads = {n: p.grad for n, p in layer.named_parameters()}
    return {"parameters": shapes, "out": out, "out, last token changed": out_changed,
            "gradients": grads}


@q.fixture
def _(ref):
    gen = generator(7)
    B, T, C, H = 2, 6, 12, 3
    layer = ref("attention").MultiHeadAttention(C, H, impl="naive")
    fill_random(layer, gen, 1 / math.sqrt(C)).eval()
    with torch.no_grad():
        x = torch.randn(B, T, C, generator=gen)
        out = layer(x)
    state = {name: p.detach().clone() for name, p in layer.named_parameters()}
    return {"C": C, "H": H, "state": state, "x": x, "out": out}
