"""03_attention / split_heads: the hidden cases check (B, T, C) -> (B, H, T, C / H) on fresh
shapes, one head and one channel per head among them."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import generator


def split_heads(x, n_heads):
    """(B, T, C) -> (B, H, T, C / H): head h takes channels [h * D, (h + 1) * D)."""


q = question("03_attention", split_heads, reference="attention")


@q.cases
def _(gen):
    cases = []
    for B, T, C, H in [(1, 1, 8, 2), (3, 7, 15, 3), (2, 4, 6, 1), (2, 3, 5, 5), (4, 9, 32, 8)]:
        cases.append({"x": torch.randn(B, T, C, generator=gen), "H": H,
                      "what": f"split_heads(x {(B, T, C)}, {H})"})
    return cases


@q.runs
def _(ns, case):
    return ns["split_heads"](case["x"], case["H"])


@q.fixture
def _(ref):
    x = torch.randn(2, 5, 12, generator=generator(5))
    return {"x": x, "split_heads(x, 3)": ref("attention").split_heads(x, 3)}
