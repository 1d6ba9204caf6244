"""Lesson 01_tokenizer: the hidden cases of its graded questions (see :mod:`nanolm_lib.grading.questions`)."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    FAST_TOKENIZERS,
    STORY,
    random_text,
)

q = question("01_tokenizer", "get_pair_counts")


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


q = question("01_tokenizer", "merge_pair")


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


q = question("01_tokenizer", "train_bpe", forbids=FAST_TOKENIZERS)
TOKENIZER_HELPERS = ("get_pair_counts", "merge_pair", "pretokenize")


@q.cases
def _(gen):
    cases = [(["hello"], 256), (["ab ab ab"], 300), (["Très bien, 🐶!", "über café"], 280),
             ([STORY, STORY.upper(), "  spaces   and\n\nnewlines  "], 320)]
    cases += [([random_text(gen, 120) for _ in range(4)], 300) for _ in range(3)]
    return [{"texts": texts, "vocab_size": size, "what": f"train_bpe({texts!r:.60}, {size})"}
            for texts, size in cases]


@q.runs
def _(ns, case):
    with helpers(ns, "tokenizer", *TOKENIZER_HELPERS):
        merges, vocab = ns["train_bpe"](list(case["texts"]), case["vocab_size"])
    return {"merges": [list(m) for m in merges],
            "vocab": {int(i): list(token) for i, token in dict(vocab).items()}}


q = question("01_tokenizer", "encode", forbids=FAST_TOKENIZERS)


@q.cases
def _(gen):
    from nanolm_lib.course.tokenizer import train_bpe

    story_merges, _ = train_bpe([STORY], 320)
    random_merges, _ = train_bpe([random_text(gen, 300) for _ in range(3)], 330)
    cases = [("", story_merges), ("Zebra 🦓 ate 42 QUICK jumps?!", story_merges),
             ("Max ran.", []), ("the  dog   and\n\n  the cat's toy", story_merges)]
    cases += [(random_text(gen, 100), random_merges) for _ in range(4)]
    return [{"text": text, "merges": [list(m) for m in merges],
             "what": f"encode({text!r}, {len(merges)} merges)"} for text, merges in cases]


@q.runs
def _(ns, case):
    with helpers(ns, "tokenizer", *TOKENIZER_HELPERS):
        return list(ns["encode"](case["text"], [tuple(m) for m in case["merges"]]))


q = question("01_tokenizer", "decode", forbids=FAST_TOKENIZERS)


@q.cases
def _(gen):
    from nanolm_lib.course.tokenizer import train_bpe

    _, vocab = train_bpe([STORY + " Très bien! 🐶"], 320)
    vocab = {i: list(token) for i, token in vocab.items()}
    dog = list("🐶".encode())
    lists = [[], [72, 105] + dog[:2], dog[1:], [0xFF, 72], dog]
    lists += [torch.randint(0, len(vocab), (50,), generator=gen).tolist() for _ in range(3)]
    return [{"ids": ids, "vocab": vocab, "what": f"decode({ids}, vocab)"} for ids in lists]


@q.runs
def _(ns, case):
    return ns["decode"](list(case["ids"]), {int(i): bytes(t) for i, t in case["vocab"].items()})
