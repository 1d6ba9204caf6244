"""04_fused_attention / flash_attention: the hidden cases check the output and log-sum-exp for
several block sizes, and a long sequence answered within a memory budget that no (T, T) tensor
fits; no fused kernel."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import ReferenceNamespace, question
from nanolm_lib.grading.questions.common import FUSED_ATTENTION, generator


def flash_attention(q, k, v, block_size=64):
    """Causal attention the FlashAttention way: ``(out (B, H, T, Dv), lse (B, H, T))``."""


# the limited case: T = 8,192 needs 256 MiB for one (T, T) float32 score matrix
LIMITED_T, FLASH_BUDGET_MB = 8192, 128

q = question("04_fused_attention", flash_attention, reference="attention", rtol=1e-5, atol=1e-5,
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


@q.fixture
def _(ref):
    gen = generator(42)
    cases = []
    for B, H, T, D, block_size, note in (
            (2, 3, 37, 8, 16, "T not a multiple of the block: a short last tile"),
            (1, 2, 1, 8, 16, "T = 1"), (2, 1, 12, 4, 32, "one block holds every key")):
        q, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
        out, lse = ref("attention").flash_attention(q, k, v, block_size=block_size)
        cases.append({"q": q, "k": k, "v": v, "block_size": block_size, "note": note,
                      "out": out, "lse": lse})
    return {"cases": cases}
