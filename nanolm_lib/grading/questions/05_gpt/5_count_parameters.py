"""05_gpt / count_parameters: the hidden cases check the count for fresh sizes, with and without
the embeddings; no model built."""

from __future__ import annotations

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import gpt_config


def count_parameters(config, non_embedding=False):
    """Number of parameters of ``GPT(config)`` by formula (a tied head is counted once)."""


q = question("05_gpt", count_parameters, reference="model", forbids=(
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


@q.fixture
def _(ref):
    model = ref("model")
    cases = []
    for sizes in (dict(vocab_size=100, context_length=16, d_model=32, n_layers=2, n_heads=4,
                       d_ff=64), dict()):
        for non_embedding in (False, True):
            count = model.count_parameters(model.GPTConfig(**sizes), non_embedding=non_embedding)
            cases.append({"sizes": sizes, "non_embedding": non_embedding, "count": count})
    return {"cases": cases}
