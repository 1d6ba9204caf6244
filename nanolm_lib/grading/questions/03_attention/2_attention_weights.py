"""03_attention / attention_weights: the hidden cases check the weights, with and without a mask,
large scores among them; the inputs left unchanged."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import generator, lower_triangle


def attention_weights(q, k, mask=None):
    """softmax(q k^T / sqrt(D)) over the keys: (B, H, T, S); rows sum to 1."""


q = question("03_attention", attention_weights, reference="attention", rtol=1e-4)


@q.cases
def _(gen):
    cases = []
    for B, H, T, S, D, masked, scale in [(1, 1, 1, 1, 4, True, 1), (3, 2, 7, 7, 5, True, 1),
                                         (2, 4, 16, 16, 32, True, 1), (4, 1, 9, 9, 1, True, 1),
                                         (2, 2, 3, 7, 6, False, 1), (2, 2, 6, 6, 16, True, 20)]:
        cases.append({"q": scale * torch.randn(B, H, T, D, generator=gen),
                      "k": scale * torch.randn(B, H, S, D, generator=gen), "masked": masked,
                      "what": f"attention_weights(q {(B, H, T, D)}, k {(B, H, S, D)}"
                              + (", causal mask)" if masked else ")")
                              + (" with large scores" if scale > 1 else "")})
    return cases


@q.runs
def _(ns, case):
    q_, k = case["q"].clone(), case["k"].clone()
    mask = lower_triangle(q_.size(2)) if case["masked"] else None
    weights = ns["attention_weights"](q_, k, mask)
    return {"weights": weights, "q after the call": q_, "k after the call": k}


@q.fixture
def _(ref):
    attention = ref("attention")
    gen = generator(3)
    q, k = torch.randn(2, 3, 5, 8, generator=gen), torch.randn(2, 3, 5, 8, generator=gen)
    mask = attention.causal_mask(5)
    return {"q": q, "k": k, "mask": mask,
            "no mask": attention.attention_weights(q, k),
            "causal mask": attention.attention_weights(q, k, mask)}
