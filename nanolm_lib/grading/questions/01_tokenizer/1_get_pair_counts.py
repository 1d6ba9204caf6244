"""01_tokenizer / get_pair_counts: the hidden cases check the counts of adjacent pairs, on fresh id
lists (empty, one id, repeats)."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import generator


def get_pair_counts(ids):
    """Count each pair of neighbouring ids: ``[1, 2, 1, 2]`` -> ``{(1, 2): 2, (2, 1): 1}``."""


q = question("01_tokenizer", get_pair_counts, reference="tokenizer")


@q.cases
def _(gen):
    lists = [[], [5], [3, 3], [7, 7, 7], [1, 2, 3, 1, 2, 3, 1]]
    lists += [torch.randint(0, high, (n,), generator=gen).tolist()
              for n, high in ((2, 3), (100, 4), (500, 300))]
    return [{"ids": ids, "what": f"get_pair_counts(a list of {len(ids)} ids)"} for ids in lists]


@q.runs
def _(ns, case):
    counts = dict(ns["get_pair_counts"](list(case["ids"])))
    return sorted([int(a), int(b), int(n)] for (a, b), n in counts.items())


@q.fixture
def _(ref):
    ids = torch.randint(0, 6, (40,), generator=generator(11)).tolist()
    counts = ref("tokenizer").get_pair_counts(ids)
    return {"ids": ids, "counts": [[a, b, n] for (a, b), n in sorted(counts.items())]}
