"""08_modern_gpt / ModernGPT: the hidden cases check the parameter names, logits and loss with and
without targets, with the reference's weights."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    MODERN_HELPERS,
    generator,
    model_outputs,
    modern_config,
    modern_fixture_sizes,
    randomised,
    randomised_state,
    state_of,
)


class ModernGPT:
    """Lesson 05's GPT with RMSNorm, RoPE, SwiGLU and grouped-query attention (each switchable in
    :class:`ModernConfig`); the same interface: ``forward(idx, targets, kv_cache)``,
    :meth:`new_kv_cache`, ``config``."""

    def __init__(self, config): ...

    def forward(self, idx, targets=None): ...


q = question("08_modern_gpt", ModernGPT, reference="modern", rtol=1e-4, atol=1e-5)


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
        state = randomised_state(ModernGPT(modern_config(sizes)), gen, 0.3)
        cases.append({"sizes": sizes, "state": state,
                      "idx": torch.randint(0, sizes["vocab_size"], (B, T), generator=gen),
                      "targets": torch.randint(0, sizes["vocab_size"], (B, T), generator=gen),
                      "what": f"ModernGPT({sizes})(idx {(B, T)})"})
    return cases


@q.runs
def _(ns, case):
    with helpers(ns, "modern", *MODERN_HELPERS, "ModernBlock"), torch.no_grad():
        return model_outputs(ns["ModernGPT"](modern_config(case["sizes"])), case)


@q.fixture
def _(ref):
    gen = generator(86)
    modern = ref("modern")
    cases = []
    for sizes, T in ((modern_fixture_sizes(), 11), (modern_fixture_sizes(tie_weights=False), 7)):
        model = randomised(modern.ModernGPT(modern.ModernConfig(**sizes)), gen, 0.3)
        idx = torch.randint(0, 61, (2, T), generator=gen)
        targets = torch.randint(0, 61, (2, T), generator=gen)
        with torch.no_grad():
            logits, loss = model(idx, targets)
        cases.append({"sizes": sizes, "state": state_of(model), "idx": idx, "targets": targets,
                      "logits": logits, "loss": loss})
    return {"cases": cases}
