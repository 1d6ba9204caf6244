"""A staged library in a process of its own: the helpers that answer a question are staged
with its lesson, and the staged optimize trains with the student's train_step."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _in_staged_library(tmp_path: Path, lesson: str, script: str) -> str:
    """Run ``script`` with the library staged for grading ``lesson`` first on the path."""
    from autograde.sandbox.verdict import stage_grading_library

    root = stage_grading_library(tmp_path / "library", lesson)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path,
                            capture_output=True, text=True,
                            env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin",
                                 "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_staged_optimize_runs_the_students_train_step_and_train_still_trains(tmp_path):
    out = _in_staged_library(tmp_path, "06_training", """
        import numpy as np, torch
        import nanolm_lib
        from nanolm_lib.course.model import GPT, GPTConfig
        from nanolm_lib.course.train import TrainConfig, optimize
        from nanolm_lib.lab.trainer import train
        print("library", nanolm_lib.__file__)
        calls = []

        def train_step(model, optimizer, x, y, grad_clip=1.0):   # the student's own
            optimizer.zero_grad()
            _, loss = model(x, y)
            loss.backward()
            optimizer.step()
            calls.append(loss.item())
            return loss.item()

        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=11, context_length=4, d_model=8, n_layers=1,
                              n_heads=2, d_ff=16))
        x = torch.randint(0, 11, (2, 4))
        loss = optimize(model, torch.optim.SGD(model.parameters(), lr=0.1), x, x)
        print("optimize", type(loss).__name__, tuple(loss.shape), float(loss) == calls[-1])
        # the rest of lesson 06 that train() uses, as a student might have written it
        lr_at = lambda step, config: config.lr
        perplexity = lambda loss: float(np.exp(loss))
        AdamW = torch.optim.AdamW
        config = TrainConfig(batch_size=2, max_steps=3, warmup_steps=1, eval_interval=100,
                             log_interval=1, device="cpu")
        train(model, config, np.arange(200, dtype=np.uint16) % 11)
        print("train steps", len(calls) - 1)

        def train_step(model, optimizer, x, y, grad_clip=1.0):   # the answer through optimize
            return optimize(model, optimizer, x, y, grad_clip).item()

        try:
            train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), x, x)
        except RecursionError:
            print("optimize answers nothing")
        """)
    assert f"library {tmp_path}" in out, out
    assert "optimize Tensor () True" in out and "train steps 3" in out, out
    assert "optimize answers nothing" in out, out


@pytest.mark.slow
@pytest.mark.parametrize("lesson, call, works", [
    ("01_tokenizer", "from nanolm_lib.course.tokenizer import _encode_piece; _encode_piece(b'ab', {})",
     "from nanolm_lib.course.tokenizer import FastTokenizer; "
     "FastTokenizer.from_merges([(97, 98)], special_tokens=()).encode('ab')"),
    ("03_attention", "from nanolm_lib.course.attention import native_mha_inference; "
                     "native_mha_inference(None, None)", "import nanolm_lib.course.attention"),
    ("05_gpt", "from nanolm_lib.course.modern import count_modern_parameters; "
               "count_modern_parameters(None)", "import nanolm_lib.course.modern"),
])
def test_helpers_that_answer_a_question_are_staged_with_its_lesson(tmp_path, lesson, call,
                                                                   works):
    """Each raises NotReleasedError while its lesson is graded; what the lesson's own cells use
    (the fast tokenizer in lesson 01) still works."""
    out = _in_staged_library(tmp_path, lesson, f"""
        {works}
        from nanolm_lib.grading.staging import NotReleasedError
        try:
            {call}
        except NotReleasedError as error:
            print("not released:", error)
        """)
    assert f"not released: the reference of lesson {lesson[:2]}'s" in out, out
