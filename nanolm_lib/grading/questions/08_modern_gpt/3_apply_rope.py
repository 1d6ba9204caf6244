"""08_modern_gpt / apply_rope: the hidden cases check the rotated output on fresh shapes; the input
left unchanged."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import generator


def apply_rope(x, cos, sin):
    """Rotate each (i, i + D/2) pair of x (..., T, D) by its angle: ``x cos + rotate_half(x) sin``,
    with cos, sin (T, D) from :func:`rope_cache` for x's positions."""


q = question("08_modern_gpt", apply_rope, reference="modern")


@q.cases
def _(gen):
    from nanolm_lib.course.modern import rope_cache

    cases = []
    for shape, base in [((1, 1, 1, 2), 10_000.0), ((2, 3, 7, 8), 10_000.0), ((5, 16), 100.0),
                        ((2, 2, 12, 20), 10_000.0)]:
        cos, sin = rope_cache(shape[-2], shape[-1], base)
        cases.append({"x": torch.randn(shape, generator=gen), "cos": cos, "sin": sin,
                      "what": f"apply_rope(x {shape}, *rope_cache({shape[-2]}, {shape[-1]}, "
                              f"base={base}))"})
    return cases


@q.runs
def _(ns, case):
    x = case["x"].clone()
    out = ns["apply_rope"](x, case["cos"], case["sin"])
    return {"out": out, "x after the call": x}


@q.fixture
def _(ref):
    gen = generator(82)
    modern = ref("modern")
    x = torch.randn(2, 3, 12, 8, generator=gen)
    cos, sin = modern.rope_cache(12, 8)
    return {"x": x, "cos": cos, "sin": sin, "out": modern.apply_rope(x, cos, sin)}
