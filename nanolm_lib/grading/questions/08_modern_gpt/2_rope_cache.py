"""08_modern_gpt / rope_cache: the hidden cases check the cos and sin tables for fresh lengths,
head sizes and bases."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question


def rope_cache(T, head_dim, base=10000.0):
    """``(cos, sin)``, each (T, head_dim): the rotation angles of positions 0..T-1."""


q = question("08_modern_gpt", rope_cache, reference="modern")


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


@q.fixture
def _(ref):
    cos, sin = ref("modern").rope_cache(12, 8)
    cos100, sin100 = ref("modern").rope_cache(5, 6, base=100.0)
    return {"cos": cos, "sin": sin, "cos base 100": cos100, "sin base 100": sin100}
