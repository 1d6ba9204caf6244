"""``nanolm eval RUN --data FILE``: bits per byte of a run on a text file, every token of the
packed stories predicted once, against a computation written out here; clear errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nanolm_lib.course.data import make_stories, normalize_story
from nanolm_lib.course.model import GPT, GPTConfig
from nanolm_lib.course.tokenizer import EOT, train_fast_tokenizer
from nanolm_lib.course.train import TrainConfig, make_optimizer, train_step
from nanolm_lib.lab.checkpoint import save_checkpoint
from nanolm_lib.lab.cli import main
from nanolm_lib.lab.evaluate import evaluate_file

CONFIG = GPTConfig(vocab_size=300, context_length=16, d_model=32, n_layers=1, n_heads=2,
                   d_ff=64)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder: a tiny GPT trained for a few steps on generated stories."""
    folder = tmp_path_factory.mktemp("eval-run")
    stories = make_stories(60, seed=1)
    tokenizer = train_fast_tokenizer(stories, CONFIG.vocab_size)
    torch.manual_seed(0)
    model = GPT(CONFIG)
    optimizer = make_optimizer(model, TrainConfig(lr=3e-3))
    ids = torch.tensor([i for story in stories[:20] for i in tokenizer.encode(story)])
    for step in range(5):
        x = ids[step * 64:step * 64 + 64].view(4, 16)
        y = ids[step * 64 + 1:step * 64 + 65].view(4, 16)
        train_step(model, optimizer, x, y)
    save_checkpoint(folder / "model.ckpt", model=model, tokenizer=tokenizer)
    return folder, model.eval(), tokenizer


def test_bits_per_byte_of_a_text_file_predicts_every_token_once(tiny_run, tmp_path, capsys):
    folder, model, tokenizer = tiny_run
    stories = make_stories(9, seed=7)  # not the training stories
    # paragraphs separated by blank lines, as in TinyStories' validation file
    text = "".join(story.replace("\n", "\n\n") + f"\n{EOT}\n" for story in stories)
    (tmp_path / "valid.txt").write_text(text, encoding="utf-8")

    result = evaluate_file(folder, tmp_path / "valid.txt", device="cpu", batch_size=3)

    # written out: stories with single newlines, story EOT story EOT ..., windows of 16
    stream = []
    for story in stories:
        stream += tokenizer.encode(normalize_story(story)) + [tokenizer.eot_id]
    windows = (len(stream) - 1) // 16
    ids = torch.tensor(stream)
    losses = []
    with torch.no_grad():
        for w in range(windows):
            logits, _ = model(ids[w * 16:w * 16 + 16][None])
            losses.append(F.cross_entropy(logits[0], ids[w * 16 + 1:w * 16 + 17], reduction="none"))
    loss = torch.cat(losses).mean().item()
    n_bytes = sum(len(normalize_story(s).encode("utf-8")) for s in stories)
    assert result["stories"] == 9 and result["tokens"] == len(stream)
    assert result["bytes"] == n_bytes and result["windows"] == windows
    assert result["predicted_tokens"] == windows * 16
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert result["bpb"] == pytest.approx(loss / math.log(2) * len(stream) / n_bytes, rel=1e-5)

    assert main(["eval", str(folder), "--data", str(tmp_path / "valid.txt")]) == 0
    line = capsys.readouterr().out
    assert f"{result['bpb']:.4f} bits per byte" in line and "9 stories" in line


def test_eval_errors_name_the_input(tiny_run, tmp_path, capsys):
    folder, _, _ = tiny_run
    assert main(["eval", str(folder), "--data", str(tmp_path / "missing.txt")]) == 1
    assert "missing.txt" in capsys.readouterr().err
    (tmp_path / "short.txt").write_text("Tom ran.\n", encoding="utf-8")
    assert main(["eval", str(folder), "--data", str(tmp_path / "short.txt")]) == 1
    error = capsys.readouterr().err
    assert "short.txt" in error and "context length" in error
    assert main(["eval", str(tmp_path / "no-run"), "--data", str(tmp_path / "short.txt")]) == 1
    assert "no-run" in capsys.readouterr().err
