"""05_gpt / GPT: the hidden cases check the parameter names, the tied head, logits and loss with
and without targets, and a fresh GPT's loss near ln(vocabulary size)."""

from __future__ import annotations

import math

import torch

from nanolm_lib.grading.checks import difference
from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    GPT_HELPERS,
    generator,
    gpt_config,
    model_outputs,
    randomised,
    randomised_state,
    seed_of,
    state_of,
)


class GPT:
    """A decoder-only transformer language model."""

    def __init__(self, config): ...

    def forward(self, idx, targets=None): ...


q = question("05_gpt", GPT, reference="model", rtol=1e-4, atol=1e-5)


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


@q.fixture
def _(ref):
    gen = generator(54)
    model = ref("model")
    base = dict(vocab_size=61, context_length=16, d_model=32, n_layers=2, n_heads=4, d_ff=64)
    cases = []
    for sizes, T in ((base, 11), (dict(base, tie_weights=False), 7)):
        gpt = randomised(model.GPT(model.GPTConfig(**sizes)), gen, 0.3)
        idx = torch.randint(0, 61, (2, T), generator=gen)
        targets = torch.randint(0, 61, (2, T), generator=gen)
        with torch.no_grad():
            logits, loss = gpt(idx, targets)
        cases.append({"sizes": sizes, "state": state_of(gpt), "idx": idx, "targets": targets,
                      "logits": logits, "loss": loss})
    return {"cases": cases}
