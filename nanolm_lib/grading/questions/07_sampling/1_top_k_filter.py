"""07_sampling / top_k_filter: the hidden cases check the filtered logits for k of 1, the whole
vocabulary and more; the input left unchanged."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import generator


def top_k_filter(logits, k):
    """Keep the k largest logits of each row (last dimension); set the others to -inf."""


q = question("07_sampling", top_k_filter, reference="sampling")


@q.cases
def _(gen):
    return [{"logits": torch.randn(shape, generator=gen) * 3, "k": k,
             "what": f"top_k_filter(logits {shape}, k={k})"}
            for shape, k in [((5, 17), 1), ((2, 9), 9), ((2, 6), 50), ((2, 3, 33), 7), ((40,), 13)]]


@q.runs
def _(ns, case):
    logits = case["logits"].clone()
    filtered = ns["top_k_filter"](logits, case["k"])
    return {"filtered": filtered, "logits after the call": logits}


@q.fixture
def _(ref):
    logits = torch.randn(3, 10, generator=generator(71)) * 3
    return {"logits": logits, "k": 4, "filtered": ref("sampling").top_k_filter(logits, 4)}
