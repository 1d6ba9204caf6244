"""01_tokenizer / merge_pair: the hidden cases check the merged list and its type, on empty, short
and overlapping lists and fresh random ones."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import generator


def merge_pair(ids, pair, new_id):
    """Replace each occurrence of ``pair`` in ``ids`` by ``new_id``."""


q = question("01_tokenizer", merge_pair, reference="tokenizer")


@q.cases
def _(gen):
    fixed = [([], (1, 2)), ([1], (1, 2)), ([1, 2], (1, 2)), ([3, 1, 2], (1, 2)),
             ([1, 2, 3], (2, 1)), ([7] * 7, (7, 7)), ([2, 1, 1, 1, 2], (1, 1))]
    cases = [{"ids": ids, "pair": list(pair), "new_id": 999} for ids, pair in fixed]
    for _ in range(5):
        cases.append({"ids": torch.randint(0, 3, (60,), generator=gen).tolist(),
                      "pair": torch.randint(0, 3, (2,), generator=gen).tolist(), "new_id": 256})
    for case in cases:
        case["what"] = f"merge_pair({case['ids']}, {tuple(case['pair'])}, {case['new_id']})"
    return cases


@q.runs
def _(ns, case):
    ids = list(case["ids"])
    merged = ns["merge_pair"](ids, tuple(case["pair"]), case["new_id"])
    return {"type": type(merged).__name__, "merged": list(merged),
            "input after the call": ids}


@q.fixture
def _(ref):
    cases = [([1, 2, 3, 1, 2], (1, 2), 256), ([7, 7, 7], (7, 7), 256),
             (torch.randint(0, 4, (30,), generator=generator(12)).tolist(), (1, 2), 300)]
    return {"cases": [{"ids": ids, "pair": list(pair), "new_id": new_id,
                       "merged": ref("tokenizer").merge_pair(ids, pair, new_id)}
                      for ids, pair, new_id in cases]}
