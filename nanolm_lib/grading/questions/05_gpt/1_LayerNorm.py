"""05_gpt / LayerNorm: the hidden cases check the output with the reference's weights, small
spreads and a large eps among the inputs; no library layer norm."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import TORCH_INTERNALS, generator, loaded, state_of


class LayerNorm:
    """Layer normalisation over the last dimension, written out (equal to ``nn.LayerNorm``)."""

    def __init__(self, d, eps=1e-05): ...

    def forward(self, x): ...


q = question("05_gpt", LayerNorm, reference="model", forbids=(
    "torch.nn.LayerNorm", "torch.nn.functional.layer_norm", "torch.native_layer_norm",
    "nanolm_lib.course.model.FastLayerNorm", *TORCH_INTERNALS))


@q.cases
def _(gen):
    cases = []
    for shape, eps, scale in [((3, 1, 17), 1e-5, 1.0), ((4, 33), 1e-5, 5.0),
                              ((2, 3, 4, 6), 1e-5, 1.0), ((7,), 1e-5, 1.0),
                              ((2, 4, 16), 1e-5, 1e-3), ((2, 4, 16), 0.1, 0.3), ((3, 1), 1e-5, 1.0)]:
        d = shape[-1]
        cases.append({"d": d, "eps": eps,
                      "state": {"weight": torch.randn(d, generator=gen),
                                "bias": torch.randn(d, generator=gen)},
                      "x": torch.randn(shape, generator=gen) * scale + scale,
                      "what": f"LayerNorm({d}, eps={eps})(x {shape}, spread {scale})"})
    return cases


@q.runs
def _(ns, case):
    layer = loaded(ns["LayerNorm"](case["d"], eps=case["eps"]), case["state"])
    return layer(case["x"])


@q.fixture
def _(ref):
    gen = generator(51)
    layer = ref("model").LayerNorm(8)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(8, generator=gen))
        layer.bias.copy_(torch.randn(8, generator=gen))
        x = torch.randn(2, 5, 8, generator=gen) * 3 + 1
        small_eps = ref("model").LayerNorm(16, eps=0.1)
        small_x = torch.randn(2, 4, 16, generator=gen) * 0.3
        return {"state": state_of(layer), "x": x, "out": layer(x),
                "small eps state": state_of(small_eps), "small eps x": small_x,
                "small eps out": small_eps(small_x)}
