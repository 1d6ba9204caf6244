"""01_tokenizer / train_bpe: the hidden cases check the merges and vocabulary on fresh texts
(accents, emoji, whitespace runs, random text); no fast tokenizer."""

from __future__ import annotations

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    FAST_TOKENIZERS,
    STORY,
    TOKENIZER_HELPERS,
    generator,
    plain_bpe,
    random_text,
)


def train_bpe(texts, vocab_size):
    """Learn ``vocab_size - 256`` byte-pair merges from ``texts`` (a string or strings)."""


q = question("01_tokenizer", train_bpe, reference="tokenizer", forbids=FAST_TOKENIZERS)


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


@q.fixture
def _(ref):
    gen = generator(13)
    cases = [(["ab ba"], 258, "train_bpe(['ab ba'], 258), where all pairs tie"),
             ([STORY], 300, "train_bpe([a short story], 300)")]
    texts = [random_text(gen, 80) for _ in range(3)]
    cases.append((texts, 290, f"train_bpe({texts}, 290)"))
    return {"cases": [dict(texts=texts, vocab_size=size, what=what,
                           **plain_bpe(*ref("tokenizer").train_bpe(texts, size)))
                      for texts, size, what in cases]}
