"""The verdict is the grader's: students who attack the kernel's test cells score 0.

One real nbgrader batch on lesson 03 (under bubblewrap where it is installed): an honest
student (the solutions), a blank one (the released lesson), and attackers who start from the
released lesson with no solution (or wrong stubs) and try to make the test cells pass anyway.
Before the verdict moved out of the kernel, each of these scored full marks. Each attack
notebook is built here from the released lesson and the solutions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers

from autograde_toy import add_cell, independent_answers, write_submission  # noqa: E402

from autograde.batch.grade import grade_batch  # noqa: E402
from autograde.batch.worker import Limits  # noqa: E402
from autograde.course import LESSONS_DIR  # noqa: E402
from autograde.sandbox.launcher import bwrap_path  # noqa: E402
from nanolm_lib.grading.curriculum import GRADED  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")
LESSON = "03_attention"
FULL = 9

# Shape-correct wrong answers: each alone scores 0.
WRONG = {
    "causal_mask": "def causal_mask(T, device=None):\n"
                   "    return torch.ones(T, T, dtype=torch.bool, device=device)\n",
    "attention_weights": "def attention_weights(q, k, mask=None):\n"
                         "    return torch.zeros(*q.shape[:-1], k.size(-2))\n",
    "attention": "def attention(q, k, v, mask=None):\n"
                 "    return torch.zeros_like(v), attention_weights(q, k, mask)\n",
    "split_heads": "def split_heads(x, n_heads):\n"
                   "    B, T, C = x.shape\n"
                   "    return x.reshape(B, n_heads, T, C // n_heads)\n",
    "merge_heads": "def merge_heads(x):\n"
                   "    B, H, T, D = x.shape\n"
                   "    return x.reshape(B, T, H * D)\n",
    "MultiHeadAttention": "class MultiHeadAttention(nn.Module):\n"
                          "    def __init__(self, d_model, n_heads, dropout=0.0):\n"
                          "        super().__init__()\n"
                          "        self.qkv = nn.Linear(d_model, 3 * d_model)\n"
                          "        self.proj = nn.Linear(d_model, d_model)\n\n"
                          "    def forward(self, x):\n"
                          "        return self.proj(x)\n",
}

# Code an attacker adds in front of its first solution cell (an extra cell of its own).
BLANK_TEST_CELLS = """
def _blank(lines):  # an input transformer: every test cell becomes an empty cell
    return [] if any("check" in line or "record(" in line for line in lines) else lines
get_ipython().input_transformers_cleanup.append(_blank)
"""
PUBLISH_RESULT = """
def _publish(info):  # an execute_result before every cell: nbgrader reads it as the score
    shell = get_ipython()
    shell.displayhook.start_displayhook()
    shell.displayhook.write_output_prompt()
    shell.displayhook.write_format_data({"text/plain": "'passed'"}, {})  # not a number: full
    shell.displayhook.finish_displayhook()
get_ipython().events.register("pre_run_cell", _publish)
"""
FAKE_CHECKS = """
import importlib.abc, importlib.util, sys
_real = importlib.util.find_spec("nanolm_lib.grading.checks").origin
class _Fake(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # nanolm_lib.grading.checks whose comparisons all pass; a nanolm_lib.grading.record that records nothing
    def find_spec(self, name, path, target=None):
        if name in ("nanolm_lib.grading.checks", "nanolm_lib.grading.record"):
            return importlib.util.spec_from_loader(name, self)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        if module.__name__ == "nanolm_lib.grading.checks":
            module.__file__ = _real
            exec(compile(open(_real).read(), _real, "exec"), module.__dict__)
        for name in ("check", "check_close", "check_equal", "check_shape", "check_type",
                     "record"):
            setattr(module, name, lambda *args, **kwargs: None)
for name in ("nanolm_lib.grading.checks", "nanolm_lib.grading.record"):
    sys.modules.pop(name, None)
sys.meta_path.insert(0, _Fake())
"""
PATCH_TORCH = """
import torch
torch.Tensor.allclose = lambda self, *a, **k: True   # every comparison agrees
torch.Tensor.item = lambda self: 0.0                 # every error is zero
torch.Tensor.any = lambda self, *a, **k: torch.tensor(False)
"""
ZERO_DIFFERENCE = """
import torch
class _Agreeable(torch.Tensor):  # a tensor whose every difference is zero
    def __sub__(self, other):
        return torch.zeros(self.shape).as_subclass(_Agreeable)
    __rsub__ = __sub__
    def __ne__(self, other):
        return torch.zeros(self.shape, dtype=torch.bool)
    def allclose(self, *a, **k):
        return True
def _agree(function):
    def wrapped(*args, **kwargs):
        out = function(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.as_subclass(_Agreeable) for o in out)
        return out.as_subclass(_Agreeable) if isinstance(out, torch.Tensor) else out
    return wrapped
"""
ZERO_DIFFERENCE_STUBS = {name: source + f"{name} = _agree({name})\n"
                         for name, source in WRONG.items() if name != "MultiHeadAttention"}
READ_THE_PACKAGE = """
import importlib.util, pathlib, sys
# the editable install names the repository: load its nanolm_lib/course/attention.py by path
root = pathlib.Path(importlib.util.find_spec("autograde").origin).parent.parent
spec = importlib.util.spec_from_file_location("_answer", root / "nanolm_lib" / "course" / "attention.py")
_answer = importlib.util.module_from_spec(spec)
sys.modules["_answer"] = _answer
spec.loader.exec_module(_answer)
""" + "\n".join(f"{name} = _answer.{name}" for name in GRADED["03_attention"]) + "\n"
REFERENCE = "from nanolm_lib.course.attention import " + ", ".join(GRADED[LESSON]) + "\n"
REFERENCE_HEX = f"exec(bytes.fromhex({REFERENCE.encode().hex()!r}).decode())\n"

ATTACKS = {
    "transformer": ({}, BLANK_TEST_CELLS),
    "publisher": (WRONG, PUBLISH_RESULT),
    "fakechecks": (WRONG, FAKE_CHECKS),
    "torchpatch": (WRONG, PATCH_TORCH),
    "subclass": ({**WRONG, **ZERO_DIFFERENCE_STUBS}, ZERO_DIFFERENCE),
    # an added cell imports the answer (the solution cells left empty, so nothing redefines it)
    "importer": (dict.fromkeys(GRADED[LESSON], ""), REFERENCE),
    # ... the same hidden in a solution cell
    "hexexec": ({**dict.fromkeys(GRADED[LESSON], ""), "causal_mask": REFERENCE_HEX}, ""),
}
if bwrap_path():  # without bubblewrap the kernel can read every file the grader can
    ATTACKS["pathloader"] = (dict.fromkeys(GRADED[LESSON], ""), READ_THE_PACKAGE)


def _attack(submissions: Path, student: str, sources: dict, prelude: str) -> None:
    folder = write_submission(LESSONS_DIR, submissions, student, LESSON, sources)
    if not prelude:
        return
    add_cell(folder / f"{LESSON}.ipynb", prelude, before=lambda meta: meta.get("solution"))


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("verdict")
    submissions = root / "submissions"
    # an honest student's own answers (independent author B's): a verbatim solution notebook
    # is a copy, which the copy policy zeroes (tests/unit/test_fair_grading.py)
    write_submission(LESSONS_DIR, submissions, "honest", LESSON, independent_answers(LESSON))
    write_submission(LESSONS_DIR, submissions, "blank", LESSON)
    # one bug, in a helper that MultiHeadAttention uses
    write_submission(LESSONS_DIR, submissions, "onebug", LESSON,
                     {**independent_answers(LESSON), "split_heads": WRONG["split_heads"]})
    for student, (sources, prelude) in ATTACKS.items():
        _attack(submissions, student, sources, prelude)
    result = grade_batch(submissions, root / "out", workers=2, show_progress=False,
                         limits=Limits(cell_timeout_s=120, notebook_timeout_s=300))
    scores = json.loads((root / "out" / "scores.json").read_text())
    return result, scores, root


def _total(scores, student):
    return sum(entry["score"] for entry in scores[student][LESSON].values())


@pytest.mark.slow
def test_batch_finishes_honest_full_blank_zero(batch):
    result, scores, _ = batch
    assert result.ok, result.failures
    assert _total(scores, "honest") == FULL, scores["honest"]
    assert _total(scores, "blank") == 0, scores["blank"]


@pytest.mark.slow
def test_a_bug_in_a_helper_costs_its_own_question_only(batch):
    """MultiHeadAttention runs the student's split_heads; with the wrong one it is run again
    with the reference's, and scores on that run; split_heads itself scores 0."""
    result, scores, _ = batch
    entries = scores["onebug"][LESSON]
    assert entries["test_split_heads"]["score"] == 0, entries
    assert all(e["score"] == e["max_score"] for gid, e in entries.items()
               if gid != "test_split_heads"), entries
    html = Path(result.answers[("onebug", LESSON)].feedback).read_text()
    assert "your split_heads differs: see that question" in html, html[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(ATTACKS))
def test_attacker_scores_zero(batch, student):
    _, scores, _ = batch
    entries = scores[student][LESSON]
    assert _total(scores, student) == 0, {g: e for g, e in entries.items() if e["score"]}
    assert all(entry["error"] for entry in entries.values()), entries


@pytest.mark.slow
def test_the_reference_is_not_in_the_grading_library(batch):
    """Importing lesson 03's reference from a solution cell, in the grader's run of the hidden
    cases, gives stubs that raise; the importer's own added cell never runs there, and the scan,
    which reads every code cell, names its import in each question's note."""
    _, scores, _ = batch
    importer = scores["importer"][LESSON].values()
    assert all(e["score"] == 0 and ("hidden tests (run by the grader)" in e["error"]
                                    or "imports the graded name" in e["error"])
               for e in importer), scores["importer"][LESSON]
    errors = " ".join(e["error"] for e in scores["hexexec"][LESSON].values())
    assert "hidden tests (run by the grader)" in errors, errors
    assert "NotReleasedError" in errors or "released after lesson 03" in errors, errors


@pytest.mark.slow
def test_feedback_shows_the_verdict(batch):
    result, _, _ = batch
    html = Path(result.answers[("transformer", LESSON)].feedback).read_text()
    assert "hidden tests (run by the grader)" in html and "differ from the reference" in html
    honest = Path(result.answers[("honest", LESSON)].feedback).read_text()
    assert "cases match" in honest


# --------------------------------------------------------------------------- in-process, fast
def _prepared(tmp_path, lesson="03_attention"):
    from autograde.sandbox.verdict import Verdict

    return Verdict.prepare(lesson, tmp_path / "cases", tmp_path / "records", seed=1234)


def test_records_of_the_reference_pass_and_wrong_ones_fail(tmp_path):
    """The grader's judgement in-process: the reference's own outputs pass every question; a
    wrong causal_mask fails that question only, with a message naming the case."""
    import nanolm_lib.course.attention as attention
    from nanolm_lib.grading.question_base import QUESTIONS, reference_namespace

    verdict = _prepared(tmp_path)
    reference = reference_namespace()
    wrong = dict(reference, causal_mask=lambda T, device=None: torch.ones(T, T, dtype=torch.bool))
    for name, drawn in verdict.cases.items():
        namespace = wrong if name == "causal_mask" else reference
        outputs = [QUESTIONS[LESSON][name].run_case(namespace, case) for case in drawn]
        torch.save({"outputs": outputs}, tmp_path / "records" / LESSON / f"{name}.pt")
    verdicts = verdict.judge()
    assert not verdicts["test_causal_mask"].passed
    assert "causal_mask(" in verdicts["test_causal_mask"].message
    assert all(v.passed for gid, v in verdicts.items() if gid != "test_causal_mask"), verdicts
    assert attention.causal_mask(3).dtype == torch.bool


def test_cases_hold_inputs_only_and_differ_per_seed(tmp_path):
    from autograde.sandbox.verdict import Verdict

    verdict = _prepared(tmp_path)
    saved = torch.load(tmp_path / "cases" / LESSON / "split_heads.pt", weights_only=True)
    assert sorted(saved["cases"][0]) == ["H", "what", "x"]
    other = Verdict.prepare(LESSON, tmp_path / "cases2", tmp_path / "records2", seed=99)
    assert not torch.equal(verdict.cases["split_heads"][0]["x"], other.cases["split_heads"][0]["x"])


def test_a_record_that_is_not_plain_data_scores_zero_with_a_reason(tmp_path):
    import os

    from autograde.sandbox.verdict import read_record

    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "target.pt").write_bytes(b"")
    cases = {
        "missing": None,
        "link": lambda p: p.symlink_to(folder / "target.pt"),
        "fifo": lambda p: os.mkfifo(p),
        "corrupt": lambda p: p.write_bytes(b"not a torch file"),
        "subclass": lambda p: torch.save({"outputs": [torch.zeros(2).as_subclass(_Sub)]}, p),
        "code": lambda p: torch.save({"outputs": [_Sub]}, p),
        "wrong count": lambda p: torch.save({"outputs": [1, 2]}, p),
        "oversized": lambda p: p.write_bytes(b"\0" * (65 << 20)),
    }
    for label, make in cases.items():
        path = folder / f"{label}.pt"
        if make is not None:
            make(path)
        outputs, problem = read_record(path, 1)
        assert outputs is None and problem, label
    torch.save({"outputs": [torch.ones(2)]}, folder / "plain.pt")
    outputs, problem = read_record(folder / "plain.pt", 1)
    assert problem is None and torch.equal(outputs[0], torch.ones(2))


class _Sub(torch.Tensor):
    pass


def test_staged_grading_library_lacks_the_lesson_and_keeps_earlier_ones(tmp_path):
    from autograde.sandbox.verdict import stage_grading_library

    root = stage_grading_library(tmp_path / "library", LESSON)
    attention = (root / "nanolm_lib" / "course" / "attention.py").read_text()
    tokenizer = (root / "nanolm_lib" / "course" / "tokenizer.py").read_text()
    assert ".tril(diagonal=S - T)" not in attention  # lesson 03's causal_mask body
    assert "NotReleasedError.for_name('03_attention', 'causal_mask')" in attention
    assert "NotReleasedError" not in tokenizer  # lesson 01 is released to lesson 03's kernel
    assert (root / "lessons" / LESSON / "fixtures" / "causal_mask.pt").is_file()
