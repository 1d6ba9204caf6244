"""02_data / pack_stories: the hidden cases check the packed tokens (array, dtype uint16, end-of-
text between stories) from three tokenizers."""

from __future__ import annotations

import numpy as np
import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import seed_of


def pack_stories(tokenizer, stories):
    """Encode ``stories`` into one ``uint16`` array: story, EOT, story, EOT, ..."""


q = question("02_data", pack_stories, reference="data")


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


@q.fixture
def _(ref):
    stories = ref("data").make_stories(4, seed=21)
    merges, _ = ref("tokenizer").train_bpe(stories, 400)
    tokenizer = ref("tokenizer").FastTokenizer.from_merges(merges)
    tokens = ref("data").pack_stories(tokenizer, stories)
    no_stories = ref("data").pack_stories(tokenizer, [])  # the exercise says: empty, uint16
    return {"stories": stories, "merges": [list(m) for m in merges],
            "tokens": torch.from_numpy(tokens.astype("int64")),
            "no stories": torch.from_numpy(no_stories.astype("int64"))}
