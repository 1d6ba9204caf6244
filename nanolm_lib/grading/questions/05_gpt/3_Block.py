"""05_gpt / Block: the hidden cases check the parameter names and the output with the reference's
weights (its layers the reference's)."""

from __future__ import annotations

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import gpt_sizes, layer_cases, layer_fixture, layer_outputs


class Block:
    """A pre-LN transformer block: attention then MLP, each on a normalised copy of the residual
    stream and added back to it."""

    def __init__(self, config): ...

    def forward(self, x): ...


q = question("05_gpt", Block, reference="model", rtol=1e-4, atol=1e-5)


@q.cases
def _(gen):
    return layer_cases(gen, "Block", [
        (gpt_sizes(12, 1, 20), (3, 1)), (gpt_sizes(18, 3, 7, attn_impl="naive"), (4, 16)),
        (gpt_sizes(32, 4, 64), (2, 9))], 0.3)


@q.runs
def _(ns, case):
    return layer_outputs(ns, case, "Block", ("LayerNorm", "MLP", "MultiHeadAttention"))


@q.fixture
def _(ref):
    sizes = dict(vocab_size=50, context_length=16, d_model=32, n_layers=1, n_heads=4, d_ff=64)
    return layer_fixture(ref, "Block", 53, sizes, 0.3, (2, 9, 32))
