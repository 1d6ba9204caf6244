"""04_fused_attention / fused_attention: the hidden cases check the output, its gradients and
causality; it must call PyTorch's scaled_dot_product_attention."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import SDPA, generator


def fused_attention(q, k, v):
    """Causal attention through ``F.scaled_dot_product_attention``: (B, H, T, D)."""


q = question("04_fused_attention", fused_attention, reference="attention", rtol=1e-4, atol=1e-5,
             requires=(SDPA,))


@q.cases
def _(gen):
    cases = []
    for B, H, T, D in [(1, 1, 1, 8), (3, 1, 13, 5), (4, 3, 32, 24), (2, 2, 6, 8)]:
        q_, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
        cases.append({"q": q_, "k": k, "v": v, "upstream": torch.randn(B, H, T, D, generator=gen),
                      "what": f"fused_attention(q, k, v) for q, k, v shaped {(B, H, T, D)}"})
    return cases


@q.runs
def _(ns, case):
    # whether it calls scaled_dot_product_attention is its policy (requires=), read on the source
    q_, k, v = (case[n].clone().requires_grad_() for n in "qkv")
    out = ns["fused_attention"](q_, k, v)
    grads = (list(torch.autograd.grad(out, (q_, k, v), case["upstream"]))
             if out.requires_grad else "the output does not require grad")
    changed_v = case["v"].clone()
    changed_v[:, :, -1] += 10.0   # the last value row: only the last output may move
    with torch.no_grad():
        out_changed = ns["fused_attention"](case["q"], case["k"], changed_v)
    return {"out": out, "gradients": grads, "out, last value changed": out_changed}




@q.fixture
def _(ref):
    gen = generator(41)
    attention = ref("attention")
    q, k, v = (torch.randn(2, 4, 9, 16, generator=gen, requires_grad=True) for _ in range(3))
    expected, _ = attention.attention(q, k, v, attention.causal_mask(9))
    upstream = torch.randn(2, 4, 9, 16, generator=gen)
    grads = torch.autograd.grad(expected, (q, k, v), upstream)
    return {"q": q.detach(), "k": k.detach(), "v": v.detach(), "out": expected.detach(),
            "upstream": upstream, "grads": [g.detach() for g in grads]}
