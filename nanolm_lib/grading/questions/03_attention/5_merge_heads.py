"""03_attention / merge_heads: the hidden cases check (B, H, T, D) -> (B, T, H * D) on fresh
shapes; the visible test checks the round trip."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import generator


def merge_heads(x):
    """(B, H, T, D) -> (B, T, H * D), the inverse of :func:`split_heads`."""


q = question("03_attention", merge_heads, reference="attention")


@q.cases
def _(gen):
    return [{"x": torch.randn(*shape, generator=gen), "what": f"merge_heads(y {shape})"}
            for shape in [(1, 1, 1, 4), (3, 3, 7, 5), (2, 1, 6, 3), (2, 5, 3, 1), (4, 8, 9, 4)]]


@q.runs
def _(ns, case):
    return ns["merge_heads"](case["x"])


@q.fixture
def _(ref):
    gen = generator(6)
    y = torch.randn(2, 3, 5, 4, generator=gen)
    x = torch.randn(2, 5, 12, generator=gen)
    attention = ref("attention")
    return {"y": y, "merge_heads(y)": attention.merge_heads(y),
            "x": x, "split_heads(x, 3)": attention.split_heads(x, 3)}
