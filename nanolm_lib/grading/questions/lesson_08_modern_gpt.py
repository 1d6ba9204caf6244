"""Lesson 08_modern_gpt: the hidden cases of its graded questions (see :mod:`nanolm_lib.grading.questions`)."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    TORCH_INTERNALS,
    loaded,
    model_outputs,
    randomised_state,
)


def _modern_config(sizes):
    from nanolm_lib.course.modern import ModernConfig

    return ModernConfig(**sizes)


q = question("08_modern_gpt", "RMSNorm", forbids=(
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


q = question("08_modern_gpt", "rope_cache")


@q.cases
def _(gen):
    picks = [(1, 2, 10_000.0), (9, 8, 10_000.0), (33, 20, 100.0), (128, 64, 10_000.0),
             (int(torch.randint(2, 50, (1,), generator=gen)), 12, 500.0)]
    return [{"T": T, "head_dim": D, "base": base, "what": f"rope_cache({T}, {D}, base={base})"}
            for T, D, base in picks]


@q.runs
def _(ns, case):
    cos, sin = ns["rope_cache"](case["T"], case["head_dim"], base=case["base"])
    return {"cos": cos, "sin": sin}


q = question("08_modern_gpt", "apply_rope")


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


def _modern_sizes(d_model, n_heads, n_kv_heads, **extra):
    return dict(vocab_size=41, context_length=16, d_model=d_model, n_layers=1, n_heads=n_heads,
                n_kv_heads=n_kv_heads, d_ff=4 * d_model, **extra)


q = question("08_modern_gpt", "SwiGLU")


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


q = question("08_modern_gpt", "GroupedQueryAttention", rtol=1e-4, atol=1e-5)


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


q = question("08_modern_gpt", "ModernBlock", rtol=1e-4, atol=1e-5)
MODERN_HELPERS = ("RMSNorm", "rope_cache", "apply_rope", "SwiGLU", "GroupedQueryAttention")


@q.cases
def _(gen):
    from nanolm_lib.course.modern import ModernBlock, rope_cache

    cases = []
    for sizes, B, T in [(_modern_sizes(12, 2, 1), 3, 1), (_modern_sizes(32, 4, 2), 2, 9),
                        (_modern_sizes(24, 3, 3), 2, 16)]:
        state = randomised_state(ModernBlock(_modern_config(sizes)), gen, 0.3)
        cos, sin = rope_cache(T, sizes["d_model"] // sizes["n_heads"])
        cases.append({"sizes": sizes, "state": state, "cos": cos, "sin": sin,
                      "x": torch.randn(B, T, sizes["d_model"], generator=gen),
                      "what": f"ModernBlock({sizes})(x {(B, T, sizes['d_model'])}, cos, sin)"})
    return cases


@q.runs
def _(ns, case):
    with helpers(ns, "modern", *MODERN_HELPERS), torch.no_grad():
        block = ns["ModernBlock"](_modern_config(case["sizes"]))
        names = sorted(block.state_dict())
        loaded(block, case["state"]).eval()
        return {"parameter names": names, "out": block(case["x"], case["cos"], case["sin"])}


q = question("08_modern_gpt", "ModernGPT", rtol=1e-4, atol=1e-5)


@q.cases
def _(gen):
    from nanolm_lib.course.modern import ModernGPT

    cases = []
    for sizes, B, T in [
            (dict(vocab_size=37, context_length=8, d_model=12, n_layers=1, n_heads=1), 3, 1),
            (dict(vocab_size=37, context_length=12, d_model=16, n_layers=3, n_heads=4,
                  n_kv_heads=2), 2, 12),
            (dict(vocab_size=29, context_length=10, d_model=24, n_layers=2, n_heads=3,
                  tie_weights=False), 2, 7)]:
        state = randomised_state(ModernGPT(_modern_config(sizes)), gen, 0.3)
        cases.append({"sizes": sizes, "state": state,
                      "idx": torch.randint(0, sizes["vocab_size"], (B, T), generator=gen),
                      "targets": torch.randint(0, sizes["vocab_size"], (B, T), generator=gen),
                      "what": f"ModernGPT({sizes})(idx {(B, T)})"})
    return cases


@q.runs
def _(ns, case):
    with helpers(ns, "modern", *MODERN_HELPERS, "ModernBlock"), torch.no_grad():
        return model_outputs(ns["ModernGPT"](_modern_config(case["sizes"])), case)
