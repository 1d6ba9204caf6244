"""Lesson 04_fused_attention: the hidden cases of its graded questions (see :mod:`nanolm_lib.grading.questions`)."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import ReferenceNamespace, question
from nanolm_lib.grading.questions.common import (
    FUSED_ATTENTION,
    SDPA,
)

q = question("04_fused_attention", "fused_attention", rtol=1e-4, atol=1e-5, requires=(SDPA,))


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


# A (T, T) float32 tensor at this length is 256 MB: twice what the grader's run allows.
LIMITED_T, FLASH_BUDGET_MB = 8192, 128
q = question("04_fused_attention", "flash_attention", rtol=1e-5, atol=1e-5,
             data_budget_mb=FLASH_BUDGET_MB, forbids=FUSED_ATTENTION)


@q.cases
def _(gen):
    cases = []
    for B, H, T, D, block in [(3, 2, 100, 16, 7), (1, 1, 33, 5, 1), (2, 2, 64, 8, 64),
                              (1, 4, 50, 1, 8), (2, 2, 31, 24, 30), (2, 2, 6, 8, 4)]:
        q_, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
        cases.append({"q": q_, "k": k, "v": v, "block_size": block,
                      "what": f"flash_attention(q, k, v, block_size={block}), {(B, H, T, D)}"})
    q_, k, v = (torch.randn(1, 1, LIMITED_T, 16, generator=gen) for _ in range(3))
    cases.append({"q": q_, "k": k, "v": v, "block_size": 64, "limited": True,
                  "what": f"flash_attention at T = {LIMITED_T:,} within {FLASH_BUDGET_MB} MB "
                          "(no (T, T) tensor, not even a mask: that alone is 256 MB)"})
    return cases


@q.runs
def _(ns, case):
    block = case["block_size"]
    if case.get("limited") and isinstance(ns, ReferenceNamespace):
        block = 1024  # the same answer; the grader's reference computes it 50x faster
    out, lse = ns["flash_attention"](case["q"], case["k"], case["v"], block_size=block)
    return {"out": out, "lse": lse}
