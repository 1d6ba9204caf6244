"""08_modern_gpt / RMSNorm: the hidden cases check the parameter names and the output with the
reference's weights; no library RMSNorm."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import (
    TORCH_INTERNALS,
    generator,
    loaded,
    randomised,
    state_of,
)


class RMSNorm:
    """Root-mean-square normalisation (Zhang & Sennrich, 2019): ``x / sqrt(mean(x^2) + eps) *
    weight`` over the last dimension. No mean is subtracted and there is no bias: one
    reduction instead of two, and no parameter that training has to keep near zero."""

    def __init__(self, d, eps=1e-05): ...

    def forward(self, x): ...


q = question("08_modern_gpt", RMSNorm, reference="modern", forbids=(
    "torch.nn.RMSNorm", "torch.nn.functional.rms_norm", "nanolm_lib.course.modern.FastRMSNorm",
    *TORCH_INTERNALS))


@q.cases
def _(gen):
    cases = []
    for shape, eps, scale in [((3, 1, 17), 1e-5, 1.0), ((4, 33), 1e-5, 5.0), ((7,), 1e-5, 1.0),
                              ((2, 4, 16), 1e-5, 1e-3), ((2, 4, 16), 0.1, 0.3)]:
        d = shape[-1]
        cases.append({"d": d, "eps": eps, "state": {"weight": torch.randn(d, generator=gen)},
                      "x": torch.randn(shape, generator=gen) * scale + scale,
                      "what": f"RMSNorm({d}, eps={eps})(x {shape}, spread {scale})"})
    return cases


@q.runs
def _(ns, case):
    layer = ns["RMSNorm"](case["d"], eps=case["eps"])
    names = sorted(layer.state_dict())
    return {"parameter names": names, "out": loaded(layer, case["state"])(case["x"])}


@q.fixture
def _(ref):
    gen = generator(81)
    layer = randomised(ref("modern").RMSNorm(8), gen, 1.0)
    small_eps = randomised(ref("modern").RMSNorm(16, eps=0.1), gen, 1.0)
    with torch.no_grad():
        x = torch.randn(2, 5, 8, generator=gen) * 3 + 1
        small_x = torch.randn(2, 4, 16, generator=gen) * 0.3
        return {"state": state_of(layer), "x": x, "out": layer(x),
                "small eps state": state_of(small_eps), "small eps x": small_x,
                "small eps out": small_eps(small_x)}
