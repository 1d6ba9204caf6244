"""Lesson 03_attention: the hidden cases of its graded questions (see :mod:`nanolm_lib.grading.questions`)."""

from __future__ import annotations

import math

import torch

from nanolm_lib.grading.question_base import ReferenceNamespace, helpers, question
from nanolm_lib.grading.questions.common import (
    FUSED_ATTENTION,
    loaded,
    randomised_state,
)

q = question("03_attention", "causal_mask")


@q.cases
def _(gen):
    sizes = torch.randint(2, 65, (3,), generator=gen).tolist() + [1]
    return [{"T": T, "what": f"causal_mask({T})"} for T in sizes] + [
        {"T": 6, "device": "meta", "what": "causal_mask(6, device='meta')"}]


@q.runs
def _(ns, case):
    if "device" in case:
        return ns["causal_mask"](case["T"], device=case["device"]).device.type
    mask = ns["causal_mask"](case["T"])
    return {"dtype": str(mask.dtype), "mask": mask}


q = question("03_attention", "attention_weights", rtol=1e-4)


@q.cases
def _(gen):
    cases = []
    for B, H, T, S, D, masked, scale in [(1, 1, 1, 1, 4, True, 1), (3, 2, 7, 7, 5, True, 1),
                                         (2, 4, 16, 16, 32, True, 1), (4, 1, 9, 9, 1, True, 1),
                                         (2, 2, 3, 7, 6, False, 1), (2, 2, 6, 6, 16, True, 20)]:
        cases.append({"q": scale * torch.randn(B, H, T, D, generator=gen),
                      "k": scale * torch.randn(B, H, S, D, generator=gen), "masked": masked,
                      "what": f"attention_weights(q {(B, H, T, D)}, k {(B, H, S, D)}"
                              + (", causal mask)" if masked else ")")
                              + (" with large scores" if scale > 1 else "")})
    return cases


def _mask(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool))


@q.runs
def _(ns, case):
    q_, k = case["q"].clone(), case["k"].clone()
    mask = _mask(q_.size(2)) if case["masked"] else None
    weights = ns["attention_weights"](q_, k, mask)
    return {"weights": weights, "q after the call": q_, "k after the call": k}


q = question("03_attention", "attention", forbids=FUSED_ATTENTION)


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
    mask = _mask(case["q"].size(2)) if case["masked"] else None
    with helpers(ns, "attention", "attention_weights", "causal_mask"):
        out, weights = ns["attention"](case["q"], case["k"], case["v"], mask)
    return {"out": out, "weights": weights}


for _name, _shapes in (("split_heads", [(1, 1, 8, 2), (3, 7, 15, 3), (2, 4, 6, 1), (2, 3, 5, 5),
                                        (4, 9, 32, 8)]),
                       ("merge_heads", [(1, 1, 1, 4), (3, 3, 7, 5), (2, 1, 6, 3), (2, 5, 3, 1),
                                        (4, 8, 9, 4)])):
    q = question("03_attention", _name)

    def _heads_cases(gen, shapes=_shapes, name=_name):
        cases = []
        for shape in shapes:
            if name == "split_heads":
                B, T, C, H = shape
                cases.append({"x": torch.randn(B, T, C, generator=gen), "H": H,
                              "what": f"split_heads(x {(B, T, C)}, {H})"})
            else:
                cases.append({"x": torch.randn(*shape, generator=gen),
                              "what": f"merge_heads(y {shape})"})
        return cases

    def _heads_apply(ns, case, name=_name):
        args = (case["x"], case["H"]) if "H" in case else (case["x"],)
        return ns[name](*args)

    q.cases(_heads_cases)
    q.runs(_heads_apply)


q = question("03_attention", "MultiHeadAttention", rtol=1e-4, atol=1e-5,
             forbids=FUSED_ATTENTION)
ATTENTION_HELPERS = ("causal_mask", "attention_weights", "attention", "split_heads", "merge_heads")


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
