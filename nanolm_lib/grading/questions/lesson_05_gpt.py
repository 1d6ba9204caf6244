"""Lesson 05_gpt: the hidden cases of its graded questions (see :mod:`nanolm_lib.grading.questions`)."""

from __future__ import annotations

import math

import torch

from nanolm_lib.grading.checks import difference
from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    TORCH_INTERNALS,
    gpt_config,
    loaded,
    model_outputs,
    randomised_state,
    seed_of,
)

q = question("05_gpt", "LayerNorm", forbids=(
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


def _layer_cases(gen, name, configs, scale, x_scale=1.0):
    from nanolm_lib.course import model

    cases = []
    for sizes, shape in configs:
        layer = getattr(model, name)(gpt_config(sizes))
        state = randomised_state(layer, gen, scale)
        cases.append({"sizes": sizes, "state": state,
                      "x": torch.randn(*shape, sizes["d_model"], generator=gen) * x_scale,
                      "what": f"{name}({sizes})(x {(*shape, sizes['d_model'])})"})
    return cases


def _layer_outputs(ns, case, name, module_helpers=()):
    with helpers(ns, "model", *module_helpers):
        layer = ns[name](gpt_config(case["sizes"]))
        names = sorted(layer.state_dict())
        loaded(layer, case["state"]).eval()
        return {"parameter names": names, "out": layer(case["x"])}


def _sizes(d_model, n_heads, d_ff, **extra):
    return dict(vocab_size=50, context_length=16, d_model=d_model, n_layers=1, n_heads=n_heads,
                d_ff=d_ff, **extra)


q = question("05_gpt", "MLP")
q.cases(lambda gen: _layer_cases(gen, "MLP", [(_sizes(5, 1, 13), (1, 1)),
                                              (_sizes(32, 1, 128), (3, 9)),
                                              (_sizes(8, 1, 8), (4, 2))], 1.0, 2.0))
q.runs(lambda ns, case: _layer_outputs(ns, case, "MLP"))

q = question("05_gpt", "Block", rtol=1e-4, atol=1e-5)
q.cases(lambda gen: _layer_cases(gen, "Block", [
    (_sizes(12, 1, 20), (3, 1)), (_sizes(18, 3, 7, attn_impl="naive"), (4, 16)),
    (_sizes(32, 4, 64), (2, 9))], 0.3))
q.runs(lambda ns, case: _layer_outputs(ns, case, "Block",
                                       ("LayerNorm", "MLP", "MultiHeadAttention")))

q = question("05_gpt", "GPT", rtol=1e-4, atol=1e-5)
GPT_HELPERS = ("LayerNorm", "MLP", "Block")


@q.cases
def _(gen):
    from nanolm_lib.course.model import GPT

    cases = []
    for sizes, batch, T in [
            (dict(vocab_size=37, context_length=8, d_model=12, n_layers=1, n_heads=1, d_ff=20), 3, 1),
            (dict(vocab_size=37, context_length=8, d_model=12, n_layers=3, n_heads=2, d_ff=20), 4, 8),
            (dict(vocab_size=29, context_length=10, d_model=18, n_layers=2, n_heads=3, d_ff=9,
                  tie_weights=False), 2, 7)]:
        state = randomised_state(GPT(gpt_config(sizes)), gen, 0.3)
        cases.append({"sizes": sizes, "state": state,
                      "idx": torch.randint(0, sizes["vocab_size"], (batch, T), generator=gen),
                      "targets": torch.randint(0, sizes["vocab_size"], (batch, T), generator=gen),
                      "what": f"GPT({sizes})(idx {(batch, T)})"})
    cases.append({"kind": "fresh", "seed": seed_of(gen),
                  "idx": torch.randint(0, 500, (8, 32), generator=gen),
                  "targets": torch.randint(0, 500, (8, 32), generator=gen),
                  "what": "a freshly initialised GPT (vocab 500): loss near ln(500)"})
    return cases


@q.runs
def _(ns, case):
    with helpers(ns, "model", *GPT_HELPERS), torch.no_grad():
        if case.get("kind") == "fresh":
            torch.manual_seed(case["seed"])
            fresh = ns["GPT"](gpt_config(dict(vocab_size=500, context_length=32, d_model=64,
                                           n_layers=2, n_heads=4, d_ff=128)))
            return {"loss": float(fresh(case["idx"], case["targets"])[1])}
        return model_outputs(ns["GPT"](gpt_config(case["sizes"])), case)


@q.checks
def _(case, got, expected):
    if case.get("kind") != "fresh":
        return difference(got, expected, 1e-4, 1e-5)
    loss = got.get("loss") if isinstance(got, dict) else None
    if isinstance(loss, float) and abs(loss - math.log(500)) < 0.5:
        return None
    return (f"starts at loss {loss!r}, expected near ln(500) = {math.log(500):.3f}: initialise "
            "Linear and Embedding weights from N(0, 0.02^2), biases 0")


# from the configuration alone: no model built (the student's own GPT uses torch, so reaching
# it counts), no library formula
q = question("05_gpt", "count_parameters", forbids=(
    "torch", "nanolm_lib.course.model.GPT", "nanolm_lib.course.modern", "nanolm_lib.lab.runs"))


@q.cases
def _(gen):
    cases = []
    for sizes in (dict(vocab_size=37, context_length=9, d_model=6, n_layers=5, n_heads=3, d_ff=11,
                       tie_weights=False),
                  dict(vocab_size=1, context_length=1, d_model=1, n_layers=1, n_heads=1, d_ff=1),
                  dict(vocab_size=50_000, context_length=1024, d_model=1600, n_layers=48,
                       n_heads=25, d_ff=6400)):
        for non_embedding in (False, True):
            cases.append({"sizes": sizes, "non_embedding": non_embedding,
                          "what": f"count_parameters({sizes}, non_embedding={non_embedding})"})
    return cases


@q.runs
def _(ns, case):
    # that it builds no model is its policy (forbids=), read on the source
    count = ns["count_parameters"](gpt_config(case["sizes"]), non_embedding=case["non_embedding"])
    return {"count": int(count)}
