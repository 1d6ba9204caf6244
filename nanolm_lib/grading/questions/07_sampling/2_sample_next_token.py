"""07_sampling / sample_next_token: the hidden cases check the tokens drawn with a seeded
generator, as the reference draws them, for several settings."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import generator, seed_of


def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Draw one token id per row from logits (B, V): returns (B, 1) int64."""


q = question("07_sampling", sample_next_token, reference="sampling")


@q.cases
def _(gen):
    cases = []
    for B, V, draws, settings in [(5, 30, 3, {"temperature": 0}),
                                  (2, 30, 3, {"temperature": 0, "top_k": 3}),
                                  (1, 7, 6, {"temperature": 2.5}),
                                  (2, 25, 4, {"temperature": 0.8, "top_p": 0.7}),
                                  (2, 25, 4, {"temperature": 1.0, "top_k": 10, "top_p": 0.5}),
                                  (3, 25, 6, {"temperature": 3.0, "top_p": 0.5}),
                                  (3, 12, 5, {"temperature": 0.7, "top_k": 5}),
                                  # hot and narrow: a top-k off by one shows in 40 draws
                                  (4, 12, 10, {"temperature": 5.0, "top_k": 2})]:
        cases.append({"logits": torch.randn(B, V, generator=gen) * 2, "seed": seed_of(gen),
                      "draws": draws, "settings": settings,
                      "what": f"sample_next_token(logits {(B, V)}, {settings}, generator=g)"})
    return cases


@q.runs
def _(ns, case):
    generator = torch.Generator().manual_seed(case["seed"])
    with helpers(ns, "sampling", "top_k_filter"):
        return [ns["sample_next_token"](case["logits"], generator=generator, **case["settings"])
                for _ in range(case["draws"])]


@q.fixture
def _(ref):
    gen = generator(72)
    cases = []
    for B, V, settings in ((4, 20, {"temperature": 1.0}),
                           (3, 12, {"temperature": 0.7, "top_k": 5}),
                           (3, 40, {"temperature": 1.3, "top_k": 1})):  # top-k 1 is greedy
        logits = torch.randn(B, V, generator=gen) * 2
        draws_seed = int(torch.randint(2**31, (1,), generator=gen))
        draw_gen = torch.Generator().manual_seed(draws_seed)
        draws = [ref("sampling").sample_next_token(logits, generator=draw_gen, **settings)
                 for _ in range(5)]
        cases.append({"logits": logits, "seed": draws_seed, "settings": settings,
                      "draws": draws})
    return {"cases": cases}
