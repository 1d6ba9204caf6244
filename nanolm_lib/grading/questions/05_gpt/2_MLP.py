"""05_gpt / MLP: the hidden cases check the parameter names and the output with the reference's
weights."""

from __future__ import annotations

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import gpt_sizes, layer_cases, layer_fixture, layer_outputs


class MLP:
    """Position-wise feed-forward: ``fc`` (C -> d_ff), exact GELU, ``proj`` (d_ff -> C)."""

    def __init__(self, config): ...

    def forward(self, x): ...


q = question("05_gpt", MLP, reference="model")


@q.cases
def _(gen):
    return layer_cases(gen, "MLP", [(gpt_sizes(5, 1, 13), (1, 1)), (gpt_sizes(32, 1, 128), (3, 9)),
                                    (gpt_sizes(8, 1, 8), (4, 2))], 1.0, 2.0)


@q.runs
def _(ns, case):
    return layer_outputs(ns, case, "MLP")


@q.fixture
def _(ref):
    sizes = dict(vocab_size=50, context_length=16, d_model=24, n_layers=1, n_heads=4, d_ff=40)
    return layer_fixture(ref, "MLP", 52, sizes, 0.5, (2, 7, 24))
