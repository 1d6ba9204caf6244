"""Lessons 04-07: the branches that neither the nbval run nor the autograder tests reach.

The nbval run executes every cell once, in smoke mode, in a fresh folder: there is no trained
run, so lesson 07 always trains its own tiny model and nobody clicks its widget playground,
and lesson 06's training cell never meets a finished run from an earlier session. Here those branches run against real run folders (checkpoints written by the
library's own save_checkpoint and train) and real ipywidgets.
"""

from __future__ import annotations

import pytest
import torch
from notebook_cells import SOLUTIONS, cell_containing, code_cells, run_cells, save_smoke_run
from test_cuda import LESSON07_GPU_CELLS

from nanolm_lib.course.modern import ModernGPT
from nanolm_lib.lab.checkpoint import read_metrics
from nanolm_lib.lab.presets import train_preset
from nanolm_lib.lab.trainer import record_count

LESSON_06 = SOLUTIONS / "06_training/06_training.ipynb"
LESSON_07 = SOLUTIONS / "07_sampling/07_sampling.ipynb"


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOLM_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("NANOLM_SMOKE", "1")
    return tmp_path / "runs"


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Equal weights wherever each model lives (the notebook loads onto pick_device())."""
    return all(torch.equal(x.cpu(), y.cpu())
               for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_lesson07_runs_on_make_demos_modern_gpt(runs, capsys):
    """`make demo` trains lesson 08's ModernGPT: every lesson-07 cell that uses the model (the
    student's generate, the KV cache's check and profile, the playground) takes it as it is."""
    demo = save_smoke_run(runs / "demo", seed=3, family="modern")
    namespace = run_cells(LESSON_07, {"__name__": "__main__"}, "model_for_lesson(",
                          "tokens = generate(model, start", "as library_generate",
                          "kv_cache_profile(model", "story_playground(model")
    assert namespace["model_source"] == runs / "demo"
    assert isinstance(namespace["model"], ModernGPT) and _same_weights(namespace["model"], demo)
    assert f"using {runs / 'demo'}: make demo's run" in capsys.readouterr().out
    tokens = namespace["tokens"]
    assert tokens.shape[1] > 1 and tokens[0, 0] == namespace["tokenizer"].eot_id
    outputs = namespace["outputs"]  # RoPE's positions carried through the cache
    assert torch.equal(outputs[False], outputs[True])
    assert len(namespace["profile"]["cached"]) == len(namespace["lengths"])
    assert namespace["panel"] is not None


def test_the_gpu_tests_lesson07_cells_each_name_one_cell():
    """The cuda tests run only on a GPU; the cells they pick must not go stale elsewhere."""
    for text in LESSON07_GPU_CELLS:
        cell_containing(LESSON_07, text)


def test_lesson07_takes_the_students_run_first_then_demo_and_skips_a_broken_checkpoint(
        runs, capsys):
    demo = save_smoke_run(runs / "demo", seed=2)
    lesson06 = save_smoke_run(runs / "lesson06-smoke", seed=1)
    namespace = run_cells(LESSON_07, {"__name__": "__main__"}, "model_for_lesson(")
    assert namespace["model_source"] == runs / "lesson06-smoke"
    assert _same_weights(namespace["model"], lesson06)
    assert f"using {runs / 'lesson06-smoke'}: your own lesson-06 run" in capsys.readouterr().out

    (runs / "lesson06-smoke" / "model.ckpt").write_bytes(b"not a checkpoint")
    namespace = run_cells(LESSON_07, namespace, "model_for_lesson(", setup=False)
    out = capsys.readouterr().out
    assert f"skipping {runs / 'lesson06-smoke'}" in out and "make demo's run" in out
    assert namespace["model_source"] == runs / "demo"
    assert _same_weights(namespace["model"], demo)
    assert namespace["tokenizer"].eot_id is not None


def test_lesson07_playground_builds_widgets_and_tells_a_story_on_click(runs, monkeypatch, capsys):
    import IPython.display
    import ipywidgets

    save_smoke_run(runs / "demo", seed=3)
    namespace = run_cells(LESSON_07, {"__name__": "__main__"}, "model_for_lesson(")
    capsys.readouterr()

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects, **_: shown.extend(objects))
    run_cells(LESSON_07, namespace, "story_playground(", setup=False)
    (panel,) = shown
    assert panel is namespace["panel"] and isinstance(panel, ipywidgets.VBox)
    prompt, temperature, top_k, length, button, output = panel.children
    assert isinstance(button, ipywidgets.Button) and isinstance(output, ipywidgets.Output)
    assert all(control.style.description_width for control in (temperature, top_k, length))

    def printed():  # outside a kernel, clear_output writes a terminal's line-clearing codes
        return capsys.readouterr().out.replace("\x1b[2K\r", "")

    assert printed().startswith("Once upon a time")  # the playground tells a first story at once

    prompt.value = "Tom had a red ball"
    temperature.value, top_k.value, length.value = 0.0, 0, 8  # greedy: the same story twice
    button.click()
    greedy = printed()
    button.click()
    assert greedy.startswith("Tom had a red ball") and printed() == greedy

    prompt.value = "long " * 200  # longer than the context: said in the output, no traceback
    button.click()
    assert printed().startswith("no story: prompt: ")


def test_lesson06_training_cell_run_again_returns_the_finished_run(runs):
    from IPython.core.interactiveshell import InteractiveShell

    # The live plot updates a display handle, which needs an IPython shell (not a kernel).
    shell = InteractiveShell.instance()
    try:
        for source, meta in code_cells(LESSON_06):
            if meta.get("grade_id") == "setup" or meta.get("solution"):
                shell.run_cell(source).raise_error()
        with torch.random.fork_rng(devices=[]):
            for text in ("corpus = prepare_corpus(", "class LiveLossPlot", "run_config = train_preset("):
                shell.run_cell(cell_containing(LESSON_06, text)).raise_error()
            first = shell.user_ns["history"]
            shell.run_cell(cell_containing(LESSON_06, "run_config = train_preset(")).raise_error()
        again = shell.user_ns["history"]
        live = shell.user_ns["live"]
        run_config = shell.user_ns["run_config"]
    finally:
        InteractiveShell.clear_instance()

    assert again == first and again == read_metrics(runs / "lesson06-smoke")
    assert first[-1]["split"] == "validation" and first[-1]["step"] == train_preset("smoke").max_steps
    # the second time the callback never fires: the cell plots the finished run's history
    assert len(live.train) == sum(e["split"] == "train" for e in first)
    assert len(live.validation) == sum(e["split"] == "validation" for e in first)
    # the live plot redraws about 40 times over a run, not at each of its records
    assert live.redraw_every == max(1, record_count(run_config) // 40)
