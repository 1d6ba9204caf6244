"""01_tokenizer / decode: the hidden cases check the text of fresh ids, bytes that are not UTF-8
alone among them; no fast tokenizer."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import FAST_TOKENIZERS, STORY, plain_bpe

DECODE_STORY = ("Once upon a time, there was a little dog named Max. Max liked to run in the "
                "park. Très bien! 🐶")

def decode(ids, vocab):
    """Turn ids back into text. Never raises on known ids: bytes that are not valid UTF-8 (a token
    sequence cut inside a character) become U+FFFD, the replacement character."""


q = question("01_tokenizer", decode, reference="tokenizer", forbids=FAST_TOKENIZERS)


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


@q.fixture
def _(ref):
    tokenizer = ref("tokenizer")
    merges, vocab = tokenizer.train_bpe([DECODE_STORY], 320)
    return dict(story=DECODE_STORY, ids=tokenizer.encode(DECODE_STORY, merges),
                **plain_bpe(merges, vocab))
