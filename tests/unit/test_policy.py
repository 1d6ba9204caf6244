"""Each question's policy (what its solution may not call, or must call), decided by the scan on
the student's source: every alias form, every code cell, computed lookups, the score it costs,
honest work left alone, and the staged library that no longer hands an answer over under
another name."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from autograde_toy import INDEPENDENT, independent_cells

from autograde.integrity.scan import POLICY_KINDS, policy_note, scan_cells, scan_notebook
from nanolm_lib.grading.curriculum import GRADED

REPO = Path(__file__).resolve().parents[2]
LESSONS = REPO / "lessons"


def _policy(cells, lesson):
    """``(grade_id, message)`` of the policy flags of ``cells`` (``(grade_id or None, source)``
    pairs: None is an ordinary cell)."""
    return [(f.grade_id, f.message) for f in scan_cells(cells, set(GRADED[lesson]), None, lesson)
            if f.kind == "policy"]


ATTENTION = "def attention(q, k, v, mask=None):\n    return {call}, None\n"
SDPA_ROUTES = {
    "F.": ("import torch.nn.functional as F\n", "F.scaled_dot_product_attention(q, k, v)"),
    "from-import as": ("from torch.nn.functional import scaled_dot_product_attention as s\n",
                       "s(q, k, v)"),
    "assigned module": ("import torch\nF = torch.nn.functional\n",
                        "F.scaled_dot_product_attention(q, k, v)"),
    "assigned function": ("import torch\nfast = torch.nn.functional.scaled_dot_product_attention\n",
                          "fast(q, k, v)"),
    "getattr, literal": ("import torch.nn.functional as F\n",
                         "getattr(F, 'scaled_dot_product_attention')(q, k, v)"),
    "module __dict__": ("import torch.nn.functional as F\n",
                        "F.__dict__['scaled_dot_product_attention'](q, k, v)"),
    "star import": ("from torch.nn.functional import *\n",
                    "scaled_dot_product_attention(q, k, v)"),
    "private module": ("import torch\n", "torch._C._nn.scaled_dot_product_attention(q, k, v)"),
    "importlib, literal": ("import importlib\n",
                           "importlib.import_module('torch.nn.functional')"
                           ".scaled_dot_product_attention(q, k, v)"),
    "unresolved object": ("", "q.new_tensor(0).__class__.scaled_dot_product_attention(q, k, v)"),
}


@pytest.mark.parametrize("route", sorted(SDPA_ROUTES))
def test_attention_may_not_use_sdpa_by_any_alias(route):
    imports, call = SDPA_ROUTES[route]
    flags = _policy([("attention", imports + ATTENTION.format(call=call))], "03_attention")
    assert flags and flags[0][0] == "attention", (route, flags)
    assert "scaled_dot_product_attention" in flags[0][1] and "may not use" in flags[0][1]


def test_the_policy_reads_every_code_cell():
    """A forbidden call in an ordinary cell counts against the question whose code it is: a
    helper the solution calls, or a cell that rebinds the graded name."""
    helper = [(None, "import torch.nn.functional as F\n"
                     "def fast(q, k, v):\n    return F.scaled_dot_product_attention(q, k, v)\n"),
              ("attention", ATTENTION.format(call="fast(q, k, v)"))]
    assert [(g, "reached through fast" in m) for g, m in _policy(helper, "03_attention")] == [
        ("attention", True)]
    rebound = [("attention", "def attention(q, k, v, mask=None):\n    return q, None\n"),
               (None, "import torch\nattention = lambda q, k, v, mask=None: ("
                      "torch.nn.functional.scaled_dot_product_attention(q, k, v), None)\n")]
    flags = scan_cells(rebound, set(GRADED["03_attention"]), None, "03_attention")
    assert [(f.grade_id, f.kind, f.cell) for f in flags] == [("attention", "policy", 2)]
    # an ordinary cell that only compares with PyTorch's is nobody's code
    compare = [("attention", "def attention(q, k, v, mask=None):\n    return q, None\n"),
               (None, "import torch.nn.functional as F\n"
                      "print(F.scaled_dot_product_attention(x, x, x) - attention(x, x, x)[0])\n")]
    assert _policy(compare, "03_attention") == []


def test_multihead_attention_may_not_wrap_torchs_layer():
    source = ("import torch.nn as nn\nclass MultiHeadAttention(nn.Module):\n"
              "    def __init__(self, d_model, n_heads, dropout=0.0):\n        super().__init__()\n"
              "        self.mha = nn.MultiheadAttention(d_model, n_heads, batch_first=True)\n")
    assert [g for g, _ in _policy([("MultiHeadAttention", source)], "03_attention")] == [
        "MultiHeadAttention"]


@pytest.mark.parametrize("source, flagged", [
    ("import torch.nn.functional as F\ndef fused_attention(q, k, v):\n"
     "    return F.scaled_dot_product_attention(q, k, v, is_causal=True)\n", False),
    ("from torch.nn.functional import scaled_dot_product_attention as sdpa\n"
     "def fused_attention(q, k, v):\n    return sdpa(q, k, v, is_causal=True)\n", False),
    ("import torch\ndef fused_attention(q, k, v):\n"
     "    return torch.softmax(q @ k.mT, -1) @ v\n", True),
    ("import torch.nn.functional as F\nunused = F.scaled_dot_product_attention\n"
     "def fused_attention(q, k, v):\n    return q\n", True),   # named, never called
    ("def fused_attention(q, k, v):\n    \"\"\"Starter.\"\"\"\n    # YOUR CODE HERE\n"
     "    raise NotImplementedError()\n", False),                 # blank: nothing to read
])
def test_fused_attention_must_call_sdpa(source, flagged):
    flags = _policy([("fused_attention", source)], "04_fused_attention")
    assert bool(flags) == flagged, flags
    assert all("never calls torch.nn.functional.scaled_dot_product_attention" in m
               for _, m in flags)


@pytest.mark.parametrize("body", ["return F.layer_norm(x, x.shape[-1:], self.w, self.b)",
                                  "return nn.LayerNorm(x.shape[-1])(x)",
                                  "return torch.layer_norm(x, x.shape[-1:])"])
def test_layernorm_may_not_use_torchs(body):
    source = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
              f"class LayerNorm(nn.Module):\n    def forward(self, x):\n        {body}\n")
    assert [g for g, _ in _policy([("LayerNorm", source)], "05_gpt")] == ["LayerNorm"]


def test_count_parameters_counts_without_building_a_model():
    gpt = ("GPT", "import torch\nclass GPT(torch.nn.Module):\n    pass\n")
    built = ("count_parameters", "def count_parameters(config, non_embedding=False):\n"
                                 "    return sum(p.numel() for p in GPT(config).parameters())\n")
    formula = ("count_parameters", "import torch\ndef count_parameters(config, "
                                   "non_embedding=False):\n    C = config.d_model\n"
                                   "    return 12 * C * C * config.n_layers\n")
    flags = _policy([gpt, built], "05_gpt")
    assert [g for g, _ in flags] == ["count_parameters"] and "reached through GPT" in flags[0][1]
    assert _policy([gpt, formula], "05_gpt") == []  # importing torch alone uses nothing


def test_issue_rows_train_step_via_optimize_and_encode_via_fast_tokenizer():
    train_step = ("import nanolm_lib.course.train as t\n"
                  "def train_step(model, optimizer, x, y, grad_clip=1.0):\n"
                  "    return t.optimize(model, optimizer, x, y, grad_clip).item()\n")
    assert _policy([("train_step", train_step)], "06_training") == [
        ("train_step", "uses t.optimize (nanolm_lib.course.train.optimize), which this question may "
                       "not use")]
    encode = ("from nanolm_lib.course.tokenizer import FastTokenizer\n"
              "def encode(text, merges):\n"
              "    return FastTokenizer.from_merges(merges, special_tokens=[]).encode(text)\n")
    assert [g for g, _ in _policy([("encode", encode)], "01_tokenizer")] == ["encode"]
    hugging_face = ("import tokenizers\ndef encode(text, merges):\n"
                    "    return tokenizers.Tokenizer.from_file('t.json').encode(text).ids\n")
    assert [g for g, _ in _policy([("encode", hugging_face)], "01_tokenizer")] == ["encode"]


def test_optimizers_and_clipping_are_the_students_own():
    adamw = "import torch\nclass AdamW(torch.optim.AdamW):\n    pass\n"
    clip = ("import torch\ndef clip_grad_norm(parameters, max_norm):\n"
            "    return torch.nn.utils.clip_grad_norm_(parameters, max_norm)\n")
    flags = _policy([("AdamW", adamw), ("clip_grad_norm", clip)], "06_training")
    assert sorted(g for g, _ in flags) == ["AdamW", "clip_grad_norm"]


def test_computed_lookups_are_flagged_and_scored_only_under_a_policy():
    cells = [("attention", "import torch.nn.functional as F\n"
                           "def attention(q, k, v, mask=None):\n"
                           "    f = getattr(F, 'scaled_dot_' + 'product_attention')\n"
                           "    return f(q, k, v), None\n"),
             ("causal_mask", "def causal_mask(T, device=None):\n"
                             "    return eval('__import__(\"torch\").ones(T, T).tril().bool()')\n"),
             (None, "name = 'x'\nprint(globals()[name], vars(object)[name])\nexec('y = 1')\n")]
    found = {(f.grade_id, f.kind, f.line, f.cell)
             for f in scan_cells(cells, set(GRADED["03_attention"]), None, "03_attention")}
    assert found == {
        ("attention", "policy", 3, 1),      # hides what the policy must see: scored
        ("causal_mask", "dynamic", 2, 2),   # a question without a policy: reported
        ("code cell 3", "dynamic", 2, 3),   # globals()[name], vars(x)[name]: nobody's code
        ("code cell 3", "dynamic", 3, 3),   # exec
    }
    assert "policy" in POLICY_KINDS and "dynamic" not in POLICY_KINDS


def _student(lesson: str, answers: dict[str, str], extra_cells: tuple[str, ...] = ()):
    """The released lesson with ``answers`` in its solution cells and ``extra_cells`` appended as
    ordinary cells: what a student hands in."""
    released = nbformat.read(str(LESSONS / lesson / f"{lesson}.ipynb"), as_version=4)
    nb = nbformat.read(str(LESSONS / lesson / f"{lesson}.ipynb"), as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers and cell.metadata["nbgrader"].get("solution"):
            cell.source = answers[grade_id]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in extra_cells]
    return nb, released


def test_a_policy_flag_zeroes_the_question_in_the_self_check():
    """The copy policy's route (scan's POLICY_KINDS, policy_note): the self-check scores the
    question 0 and says which call, as grading does under --copied zero."""
    from autograde.student.selfcheck import QuestionResult, _apply_copy_policy

    answer = ("from nanolm_lib.course.train import optimize\n"
              "def train_step(model, optimizer, x, y, grad_clip=1.0):\n"
              "    return optimize(model, optimizer, x, y, grad_clip).item()\n")
    nb, released = _student("06_training", {"train_step": answer})
    results = [QuestionResult("test_train_step", 1.0, 1.0, None),
               QuestionResult("test_lr_at", 1.0, 1.0, None)]
    _apply_copy_policy(nb, released, results)
    assert (results[0].score, results[1].score) == (0.0, 1.0)
    assert results[0].message.startswith("this question will score 0 when graded: breaks this "
                                         "question's rule (code cell ")
    assert "optimize (nanolm_lib.course.train.optimize), which this question may not use" in \
        results[0].message
    flag = {"kind": "policy", "line": 3, "cell": 9, "message": "uses x"}
    assert policy_note(flag, "flag").startswith("flagged for the instructor, points unchanged: "
                                                "breaks this question's rule (code cell 9, line 3")


def test_a_reference_pasted_into_an_ordinary_cell_is_caught():
    """The copy check reads every code cell: the reference's GPT pasted into a plain cell
    counts against GPT, with its cell named."""
    import inspect

    import nanolm_lib.course.model as model
    from autograde.integrity.copycheck import load_fingerprints

    nb, released = _student("05_gpt", {}, (inspect.getsource(model.GPT),))
    flags = scan_notebook(nb, set(GRADED["05_gpt"]), load_fingerprints(), released=released)
    copied = [(f.grade_id, f.cell) for f in flags if f.kind == "copied"]
    assert copied == [("GPT", sum(c.cell_type == "code" for c in nb.cells))], flags


def test_released_lessons_and_honest_work_raise_no_policy_flag():
    """The lessons as released (with their ordinary cells, which compare with PyTorch's own and
    look names up) and both independent authors' answers: no policy, reference or computed-
    lookup flag."""
    for lesson in GRADED:
        if not GRADED[lesson]:
            continue
        nb, released = _student(lesson, {})
        flags = scan_notebook(nb, set(GRADED[lesson]), None, released=released)
        assert flags == [], (lesson, flags)
    for author in sorted(p.name for p in INDEPENDENT.glob("author_*")):
        for path in sorted((INDEPENDENT / author).glob("[0-9][0-9]_*.py")):
            cells = independent_cells(path)
            flags = scan_cells(cells, {g for g, _ in cells}, None, path.stem)
            assert [f for f in flags if f.kind in ("policy", "dynamic", "reference-use")] == [], (
                author, path.name, flags)


# --------------------------------------------------------------------------- staged library


def test_a_deep_cell_neither_hides_a_call_nor_stops_the_scan():
    """A cell whose tree is deeper than Python's recursion limit (Python still runs it), and an
    attribute chain thousands of links long: both read, the call found."""
    deep = ("import torch.nn.functional as F\ndef attention(q, k, v, mask=None):\n"
            "    return F.scaled_dot_product_attention(q" + " + q" * 2000 + ", k, v), None\n")
    compile(deep, "<deep>", "exec")  # Python accepts it
    long_chain = "import torch\ny = torch" + ".x" * 3000 + "\n"
    cells = [("attention", deep), (None, long_chain), (None, "z = (" * 150 + "1" + ")" * 150)]
    flags = _policy(cells, "03_attention")
    assert [g for g, _ in flags] == ["attention"], flags
