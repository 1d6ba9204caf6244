"""Lesson 02_data: the hidden cases of its graded questions (see :mod:`nanolm_lib.grading.questions`)."""

from __future__ import annotations

import numpy as np
import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import (
    seed_of,
)

q = question("02_data", "pack_stories")


@q.cases
def _(gen):
    from nanolm_lib.course.data import make_stories
    from nanolm_lib.course.tokenizer import BPETokenizer, train_bpe

    stories = make_stories(4, seed=seed_of(gen))
    merges = [list(m) for m in train_bpe(stories, 400)[0]]
    scratch = [list(m) for m in BPETokenizer.train(stories, vocab_size=300).merges]
    cases = [("fast", merges, stories, "4 stories"), ("fast", merges, stories[:1], "one story"),
             ("fast", merges, [], "no stories"), ("fast", merges, ["", "The end."], "'' and 1"),
             ("scratch", scratch, stories, "BPETokenizer, 4 stories"),
             ("wide", scratch, stories[:2], "eot_id above 32,767")]
    return [{"kind": kind, "merges": m, "stories": s, "what": f"pack_stories({what})"}
            for kind, m, s, what in cases]


def _tokenizer(case):
    from nanolm_lib.course.tokenizer import EOT, BPETokenizer, FastTokenizer

    merges = [tuple(m) for m in case["merges"]]
    if case["kind"] == "fast":
        return FastTokenizer.from_merges(merges)
    if case["kind"] == "scratch":
        return BPETokenizer(merges)
    return BPETokenizer(merges, special_tokens=[f"<s{i}>" for i in range(33_000)] + [EOT])


@q.runs
def _(ns, case):
    tokens = ns["pack_stories"](_tokenizer(case), list(case["stories"]))
    return {"type": type(tokens).__name__, "dtype": str(getattr(tokens, "dtype", None)),
            "tokens": torch.as_tensor(np.asarray(tokens).astype(np.int64))}


q = question("02_data", "get_batch")


@q.cases
def _(gen):
    tokens = torch.randint(0, 1000, (500,), generator=gen)
    large = torch.randint(0, 65_536, (3_000,), generator=gen)
    seed = seed_of(gen)
    cases = [{"tokens": tokens, "B": b, "T": t, "rounds": 2, "seed": seed}
             for b, t in ((4, 8), (1, 1), (7, 33))]
    cases.append({"tokens": tokens[:17].clone(), "B": 5, "T": 16, "rounds": 2, "seed": seed})
    cases.append({"tokens": large, "B": 16, "T": 64, "rounds": 3, "seed": seed})
    cases.append({"tokens": tokens, "B": 3, "T": 10, "kind": "no generator"})
    cases.append({"tokens": tokens, "B": 2, "T": 5, "seed": seed, "kind": "meta"})
    for case in cases:
        case["what"] = (f"get_batch({len(case['tokens'])} tokens, {case['B']}, {case['T']})"
                        + (f", {case['kind']}" if "kind" in case else ""))
    return cases


@q.runs
def _(ns, case):
    tokens = case["tokens"].numpy().astype(np.uint16)
    get_batch = ns["get_batch"]
    if case.get("kind") == "no generator":
        x, y = get_batch(tokens, case["B"], case["T"])
        return {"shape": list(x.shape), "y is x shifted": bool(torch.equal(x[:, 1:], y[:, :-1]))}
    generator = torch.Generator().manual_seed(case["seed"])
    if case.get("kind") == "meta":
        x, y = get_batch(tokens, case["B"], case["T"], generator=generator, device="meta")
        return {"devices": [x.device.type, y.device.type]}
    calls = []
    for _ in range(case["rounds"]):
        x, y = get_batch(tokens, case["B"], case["T"], generator=generator)
        calls.append({"dtypes": [str(x.dtype), str(y.dtype)], "x": x, "y": y})
    return calls
