"""One file per graded question: ``nanolm_lib/grading/questions/<lesson>/<N>_<name>.py`` holds
the N-th question its notebook asks, and the contract is read from these files."""

from __future__ import annotations

import importlib

from nanolm_lib.grading.curriculum import CONTRACT, LESSONS
from nanolm_lib.grading.question_base import QUESTIONS, signature_text
from nanolm_lib.grading.questions import HERE


def test_each_file_registers_its_own_question_in_notebook_order():
    for lesson in LESSONS:
        files = sorted((HERE / lesson).glob("[0-9]*.py"),
                       key=lambda path: int(path.stem.split("_", 1)[0]))
        numbers = [int(path.stem.split("_", 1)[0]) for path in files]
        assert numbers == list(range(1, len(files) + 1)), f"{lesson}: questions numbered {numbers}"
        names = [path.stem.split("_", 1)[1] for path in files]
        assert names == list(QUESTIONS.get(lesson, {})), lesson
        for name in names:
            found = QUESTIONS[lesson][name]
            assert (found.lesson, found.name) == (lesson, name)
            reference = importlib.import_module(f"nanolm_lib.course.{found.reference}")
            assert hasattr(reference, name), f"nanolm_lib.course.{found.reference} has no {name}"
            assert found.make_cases and found.apply, f"{lesson}/{name}: no hidden cases"


def test_the_contract_is_read_from_the_question_files():
    assert LESSONS[0] == "00_setup" and CONTRACT["00_setup"] == {}
    assert CONTRACT["03_attention"]["split_heads"] == ("attention", "(x, n_heads)")
    assert CONTRACT["06_training"]["AdamW"][1].endswith("; step(closure=None)")


def test_a_stub_says_its_signature():
    def merge(ids, pair, new_id=256):
        """A function's stub."""

    class Layer:
        def __init__(self, d, eps=1e-5): ...

        def forward(self, x, mask=None): ...

    assert signature_text(merge) == "(ids, pair, new_id=256)"
    assert signature_text(Layer) == "(d, eps=1e-05); forward(x, mask=None)"
