"""01_tokenizer / encode: the hidden cases check the ids of fresh texts under fresh merges,
whitespace runs among them; no fast tokenizer."""

from __future__ import annotations

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    FAST_TOKENIZERS,
    STORY,
    TOKENIZER_HELPERS,
    random_text,
)


def encode(text, merges):
    """Encode ``text`` into ids with the ``merges`` learned by :func:`train_bpe`."""


q = question("01_tokenizer", encode, reference="tokenizer", forbids=FAST_TOKENIZERS)


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


@q.fixture
def _(ref):
    tokenizer = ref("tokenizer")
    merges, _ = tokenizer.train_bpe([STORY], 320)
    spaced, _ = tokenizer.train_bpe(["the  cat    sat.\n\n\nThe dog  ran   far."], 270)
    cases = [("Max ran to the park.", merges, "encode('Max ran to the park.', merges)"),
             (STORY, merges, "encode(story, merges), the training text itself"),
             ("a  dog   ran\n\n\nfar", spaced,
              "encode('a  dog   ran\\n\\n\\nfar', merges that join two spaces)")]
    return {"cases": [{"text": text, "merges": [list(m) for m in merges], "what": what,
                       "ids": tokenizer.encode(text, merges)} for text, merges, what in cases]}
