"""08_modern_gpt / ModernBlock: the hidden cases check the parameter names and the output with the
reference's weights (its layers the reference's)."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    MODERN_HELPERS,
    generator,
    loaded,
    modern_config,
    modern_fixture_sizes,
    modern_sizes,
    randomised,
    randomised_state,
    state_of,
)


class ModernBlock:
    """A pre-norm block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``, with the pieces
    ``config`` names."""

    def __init__(self, config): ...

    def forward(self, x, cos=None, sin=None): ...


q = question("08_modern_gpt", ModernBlock, reference="modern", rtol=1e-4, atol=1e-5)


@q.cases
def _(gen):
    from nanolm_lib.course.modern import ModernBlock, rope_cache

    cases = []
    for sizes, B, T in [(modern_sizes(12, 2, 1), 3, 1), (modern_sizes(32, 4, 2), 2, 9),
                        (modern_sizes(24, 3, 3), 2, 16)]:
        state = randomised_state(ModernBlock(modern_config(sizes)), gen, 0.3)
        cos, sin = rope_cache(T, sizes["d_model"] // sizes["n_heads"])
        cases.append({"sizes": sizes, "state": state, "cos": cos, "sin": sin,
                      "x": torch.randn(B, T, sizes["d_model"], generator=gen),
                      "what": f"ModernBlock({sizes})(x {(B, T, sizes['d_model'])}, cos, sin)"})
    return cases


@q.runs
def _(ns, case):
    with helpers(ns, "modern", *MODERN_HELPERS), torch.no_grad():
        block = ns["ModernBlock"](modern_config(case["sizes"]))
        names = sorted(block.state_dict())
        loaded(block, case["state"]).eval()
        return {"parameter names": names, "out": block(case["x"], case["cos"], case["sin"])}


@q.fixture
def _(ref):
    gen = generator(85)
    modern = ref("modern")
    sizes = modern_fixture_sizes(n_layers=1)
    block = randomised(modern.ModernBlock(modern.ModernConfig(**sizes)), gen, 0.3)
    with torch.no_grad():
        x = torch.randn(2, 9, 32, generator=gen)
        cos, sin = modern.rope_cache(9, 8)
        return {"sizes": sizes, "state": state_of(block), "x": x, "cos": cos, "sin": sin,
                "out": block(x, cos, sin)}
