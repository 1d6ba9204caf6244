"""08_modern_gpt / SwiGLU: the hidden cases check the parameter names and the output with the
reference's weights, a default hidden size among them."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import (
    generator,
    loaded,
    randomised,
    randomised_state,
    state_of,
)


class SwiGLU:
    """``down(silu(gate(x)) * up(x))``: the up projection scaled elementwise by a learned, smooth
    gate. Bias-free; hidden = :func:`swiglu_hidden_size` (d_model) unless given."""

    def __init__(self, d_model, hidden=None): ...

    def forward(self, x): ...


q = question("08_modern_gpt", SwiGLU, reference="modern")


@q.cases
def _(gen):
    from nanolm_lib.course.modern import SwiGLU

    cases = []
    for d, hidden, shape in [(5, None, (1, 1)), (24, None, (3, 9)), (16, 10, (2, 4))]:
        state = randomised_state(SwiGLU(d, hidden), gen, 0.5)
        cases.append({"d": d, "hidden": hidden, "state": state,
                      "x": torch.randn(*shape, d, generator=gen) * 2,
                      "what": f"SwiGLU({d}, hidden={hidden})(x {(*shape, d)})"})
    return cases


@q.runs
def _(ns, case):
    layer = ns["SwiGLU"](case["d"], hidden=case["hidden"])
    names = {name: list(t.shape) for name, t in layer.state_dict().items()}
    return {"parameters": names, "out": loaded(layer, case["state"])(case["x"])}


@q.fixture
def _(ref):
    gen = generator(83)
    layer = randomised(ref("modern").SwiGLU(24), gen, 0.5)
    with torch.no_grad():
        x = torch.randn(2, 7, 24, generator=gen)
        return {"d_model": 24, "state": state_of(layer), "x": x, "out": layer(x)}
