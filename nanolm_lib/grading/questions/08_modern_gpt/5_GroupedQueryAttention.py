"""08_modern_gpt / GroupedQueryAttention: the hidden cases check the parameter names and the output
with the reference's weights, with and without RoPE, for several K/V head counts."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    generator,
    loaded,
    randomised,
    randomised_state,
    state_of,
)


class GroupedQueryAttention:
    """Causal attention with ``n_heads`` query heads and ``n_kv_heads`` key/value heads (Ainslie et
    al., 2023): query head h reads key/value head h // (n_heads / n_kv_heads)."""

    def __init__(self, d_model, n_heads, n_kv_heads): ...

    def forward(self, x, cos=None, sin=None): ...


q = question("08_modern_gpt", GroupedQueryAttention, reference="modern", rtol=1e-4, atol=1e-5)


@q.cases
def _(gen):
    from nanolm_lib.course.modern import GroupedQueryAttention, rope_cache

    cases = []
    for C, H, Hkv, B, T, rope in [(8, 1, 1, 1, 1, False), (24, 6, 2, 2, 7, False),
                                  (32, 4, 4, 2, 9, True), (32, 8, 1, 1, 12, True)]:
        state = randomised_state(GroupedQueryAttention(C, H, Hkv), gen, 0.3)
        cos, sin = rope_cache(T, C // H) if rope else (None, None)
        cases.append({"sizes": [C, H, Hkv], "state": state, "cos": cos, "sin": sin,
                      "x": torch.randn(B, T, C, generator=gen),
                      "what": f"GroupedQueryAttention({C}, {H}, {Hkv})(x {(B, T, C)}"
                              + (", cos, sin)" if rope else ")")})
    return cases


@q.runs
def _(ns, case):
    with helpers(ns, "modern", "apply_rope"), torch.no_grad():
        layer = ns["GroupedQueryAttention"](*case["sizes"])
        names = {name: list(t.shape) for name, t in layer.state_dict().items()}
        loaded(layer, case["state"]).eval()
        return {"parameters": names, "out": layer(case["x"], case["cos"], case["sin"])}


@q.fixture
def _(ref):
    gen = generator(84)
    modern = ref("modern")
    layer = randomised(modern.GroupedQueryAttention(32, 4, 2), gen, 0.3)
    with torch.no_grad():
        x = torch.randn(2, 9, 32, generator=gen)
        cos, sin = modern.rope_cache(9, 8)
        return {"sizes": [32, 4, 2], "state": state_of(layer), "x": x, "cos": cos, "sin": sin,
                "out": layer(x), "out with rope": layer(x, cos, sin)}
