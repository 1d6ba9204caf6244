"""Tests for nanolm_lib.course.train and nanolm_lib.course.plotting: schedule, optimiser groups, clipping,
evaluation windows, bits per byte, checkpoints (resume, NaN, hostile files), plots."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from training_helpers import TINY, small_config, token_stream, tokenizer  # noqa: F401

from nanolm_lib.course.model import GPT, count_parameters
from nanolm_lib.course.plotting import plot_history
from nanolm_lib.course.train import (
    TrainConfig,
    cross_entropy_loss,
    evaluate,
    lr_at,
    parameter_groups,
    perplexity,
    train_step,
)
from nanolm_lib.errors import CheckpointError, TrainingDiverged
from nanolm_lib.lab.checkpoint import load_checkpoint, load_model, read_metrics, save_checkpoint
from nanolm_lib.lab.trainer import train


def tiny_model(seed: int = 0, **changes) -> GPT:
    torch.manual_seed(seed)
    return GPT(dataclasses.replace(TINY, **changes))


# ---------------------------------------------------------------------------------------------
# loss, perplexity, schedule


def test_cross_entropy_is_the_mean_negative_log_likelihood_over_all_positions():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 11, generator=generator)
    targets = torch.randint(11, (3, 5), generator=generator)
    log_probs = logits.log_softmax(-1)
    expected = -log_probs.gather(-1, targets[..., None]).mean()
    assert torch.allclose(cross_entropy_loss(logits, targets), expected, atol=1e-6)
    assert perplexity(math.log(5.0)) == pytest.approx(5.0)
    assert perplexity(torch.tensor(0.0)) == pytest.approx(1.0)


def test_lr_at_warmup_and_cosine_boundaries():
    config = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)
    assert lr_at(0, config) == pytest.approx(1e-4)  # lr * 1 / 10
    assert lr_at(4, config) == pytest.approx(5e-4)
    assert lr_at(9, config) == pytest.approx(1e-3)  # the end of warm-up reaches lr
    assert lr_at(10, config) == pytest.approx(1e-3)  # the cosine starts at lr
    assert lr_at(60, config) == pytest.approx(5.5e-4)  # half way: the mean of lr and min_lr
    assert lr_at(110, config) == pytest.approx(1e-4)  # reaches min_lr at max_steps
    assert lr_at(500, config) == pytest.approx(1e-4)  # and stays there
    after = [lr_at(step, config) for step in range(10, 111)]
    assert all(a >= b for a, b in zip(after, after[1:]))
    no_warmup = dataclasses.replace(config, warmup_steps=0)
    assert lr_at(0, no_warmup) == pytest.approx(1e-3)


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 0}, "batch_size"),
    ({"min_lr": 1.0}, "min_lr"),
    ({"precision": "fp8"}, "precision"),
    ({"warmup_steps": -1}, "warmup_steps"),
])
def test_train_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


# ---------------------------------------------------------------------------------------------
# optimiser groups and one step


@pytest.mark.parametrize("tied", [True, False])
def test_weight_decay_spares_biases_norms_and_embeddings(tied):
    model = tiny_model(tie_weights=tied)
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    spared = {names[id(p)] for p in no_decay["params"]}
    assert not decayed & spared
    assert decayed | spared == set(names.values())  # every parameter exactly once
    assert sum(p.numel() for p in decay["params"] + no_decay["params"]) == count_parameters(
        model.config)
    assert {"tok_emb.weight", "pos_emb.weight", "ln_f.weight", "ln_f.bias",
            "blocks.0.ln1.weight", "blocks.0.attn.qkv.bias", "blocks.1.mlp.fc.bias"} <= spared
    expected_decay = {f"blocks.{i}.{name}.weight" for i in range(2)
                      for name in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")}
    if not tied:
        expected_decay.add("head.weight")  # an untied head is a plain matrix
    assert decayed == expected_decay


def test_train_step_returns_the_loss_and_clipping_bounds_the_gradient_norm():
    generator = torch.Generator().manual_seed(3)
    x = torch.randint(TINY.vocab_size, (4, 16), generator=generator)
    y = torch.randint(TINY.vocab_size, (4, 16), generator=generator)

    def grad_norm(model):
        return torch.norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()

    unclipped = tiny_model()
    with torch.no_grad():
        expected = cross_entropy_loss(unclipped(x)[0], y).item()
    optimizer = torch.optim.SGD(unclipped.parameters(), lr=0.0)
    loss = train_step(unclipped, optimizer, x, y, grad_clip=None)
    assert loss == pytest.approx(expected, rel=1e-6)
    full_norm = grad_norm(unclipped)
    assert full_norm > 0.05

    clipped = tiny_model()
    before = [p.detach().clone() for p in clipped.parameters()]
    optimizer = torch.optim.SGD(clipped.parameters(), lr=0.1)
    train_step(clipped, optimizer, x, y, grad_clip=0.05)
    assert grad_norm(clipped) == pytest.approx(0.05, rel=1e-4)
    # the step used the clipped gradient: SGD moved each tensor by lr * grad
    for old, param in zip(before, clipped.parameters()):
        assert torch.allclose(old - 0.1 * param.grad, param.detach(), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# evaluation


class Recording(torch.nn.Module):
    """A real model that also remembers every batch it was given."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.seen = model, model.config, []

    def forward(self, idx, targets=None):
        self.seen.append(idx.clone())
        return self.model(idx, targets)


def test_evaluate_reads_fixed_non_overlapping_windows():
    T = TINY.context_length
    tokens = token_stream(T * 10 + 5)
    model = Recording(tiny_model())
    result = evaluate(model, tokens, T, batch_size=3)
    windows = torch.cat(model.seen)
    assert result["windows"] == len(windows) == (len(tokens) - 1) // T == 10
    assert result["tokens"] == 10 * T
    expected = torch.from_numpy(tokens[: 10 * T].astype(np.int64)).view(10, T)
    assert torch.equal(windows, expected)  # consecutive, no overlap, no gap
    # the loss is the mean over every predicted position, each predicting the next token
    with torch.no_grad():
        targets = torch.from_numpy(tokens[1: 10 * T + 1].astype(np.int64)).view(10, T)
        logits, _ = model.model(expected)
        manual = F.cross_entropy(logits.reshape(-1, TINY.vocab_size), targets.reshape(-1))
    assert result["loss"] == pytest.approx(manual.item(), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(manual.item()), rel=1e-5)
    assert "bpb" not in result
    # the same figure every time, and max_batches keeps the first batches only
    assert evaluate(model, tokens, T, batch_size=3)["loss"] == result["loss"]
    model.seen.clear()
    assert evaluate(model, tokens, T, batch_size=3, max_batches=2)["windows"] == 6
    assert torch.equal(torch.cat(model.seen), expected[:6])
    assert model.training  # put back in the mode it came in
    with pytest.raises(ValueError, match="no window"):
        evaluate(model, tokens[:T], T)


def test_bits_per_byte_follows_from_the_loss_and_the_byte_count(tinystories_path):
    from nanolm_lib.course.data import load_stories, prepare_corpus

    corpus = prepare_corpus(tinystories_path, vocab_size=300, limit=60)
    stories = load_stories(tinystories_path, "validation", limit=60)
    n_bytes = sum(len(story.encode("utf-8")) for story in stories)
    assert corpus.bytes_per_token("validation") == pytest.approx(
        n_bytes / len(corpus.validation))
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(TINY, vocab_size=corpus.tokenizer.vocab_size))
    T = TINY.context_length
    result = evaluate(model, corpus.validation, T, bytes_per_token=n_bytes / len(corpus.validation))
    # bits over the evaluated tokens, divided by the bytes those tokens stand for
    bits = result["loss"] / math.log(2) * result["tokens"]
    covered_bytes = n_bytes * result["tokens"] / len(corpus.validation)
    assert result["bpb"] == pytest.approx(bits / covered_bytes, rel=1e-9)
    assert 1.0 < corpus.bytes_per_token("validation") < 8.0


# ---------------------------------------------------------------------------------------------
# the loop: history, files, resume, NaN, Ctrl-C


def test_train_writes_the_run_folder_and_learns(tmp_path, tokenizer):  # noqa: F811
    tokens = token_stream(4000)
    model = tiny_model()
    config = small_config(tmp_path / "run", max_steps=30, eval_interval=15, log_interval=5,
                          checkpoint_interval=10)
    seen = []
    history = train(model, config, tokens[:3500], tokens[3500:], tokenizer=tokenizer,
                    bytes_per_token=2.0, callback=seen.append)
    run = tmp_path / "run"
    assert {"model.ckpt", "metrics.jsonl", "config.json", "tokenizer.json", "plot.png"} <= {
        p.name for p in run.iterdir()}
    assert read_metrics(run) == history == seen
    train_records = [r for r in history if r["split"] == "train"]
    valid_records = [r for r in history if r["split"] == "validation"]
    assert [r["step"] for r in train_records] == [5, 10, 15, 20, 25, 30]
    assert [r["step"] for r in valid_records] == [15, 30]
    for record in history:
        assert {"step", "split", "loss", "perplexity", "lr", "tokens", "tokens_per_s"} <= set(record)
        assert record["tokens"] == record["step"] * 4 * TINY.context_length
        assert record["perplexity"] == pytest.approx(math.exp(record["loss"]))
    assert valid_records[-1]["bpb"] == pytest.approx(
        valid_records[-1]["loss"] / math.log(2) / 2.0)
    assert train_records[-1]["loss"] < train_records[0]["loss"] - 0.5  # it learned
    state = load_checkpoint(run)
    assert state["step"] == 30 and state["tokens"] == 30 * 4 * 16
    config_json = json.loads((run / "config.json").read_text())
    assert config_json["model"]["d_model"] == TINY.d_model
    assert config_json["train"]["max_steps"] == 30
    loaded, loaded_tokenizer = load_model(run / "model.ckpt")
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    assert not loaded.training
    text = "Tom gave Sue a red ball."
    assert loaded_tokenizer.decode(loaded_tokenizer.encode(text)) == text
    assert loaded_tokenizer.encode(text) == tokenizer.encode(text)

    # a finished run is never overwritten by accident; resuming it has nothing to do
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(tiny_model(), config, tokens[:3500], tokens[3500:])
    assert train(tiny_model(), config, tokens[:3500], tokens[3500:], resume=True) == history


def test_resume_after_ctrl_c_equals_the_uninterrupted_run(tmp_path, tokenizer):  # noqa: F811
    tokens = token_stream(3000)
    config = dict(dropout=0.1)  # dropout draws from torch's RNG, which the checkpoint keeps
    whole = train(tiny_model(1, **config), small_config(tmp_path / "whole"), tokens[:2500],
                  tokens[2500:], tokenizer=tokenizer)
    whole_state = load_checkpoint(tmp_path / "whole")

    def press_ctrl_c(record):
        if record["step"] == 5 and record["split"] == "train":
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, in the middle of the loop

    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(1, **config), small_config(tmp_path / "cut"), tokens[:2500],
              tokens[2500:], tokenizer=tokenizer, callback=press_ctrl_c)
    assert load_checkpoint(tmp_path / "cut")["step"] == 5  # stopped at the step boundary
    torch.manual_seed(12345)  # the resumed process starts from other random states
    resumed = train(tiny_model(99, **config), small_config(tmp_path / "cut"), tokens[:2500],
                    tokens[2500:], resume=True)

    def losses(history):
        return [(r["step"], r["split"], r["loss"]) for r in history]

    assert losses(resumed) == losses(whole)  # bitwise, on CPU
    assert losses(read_metrics(tmp_path / "cut")) == losses(whole)
    resumed_state = load_checkpoint(tmp_path / "cut")
    for name, tensor in whole_state["model"].items():
        assert torch.equal(tensor, resumed_state["model"][name]), name


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    tokens = token_stream(3000)
    model = tiny_model()
    config = small_config(tmp_path / "run", checkpoint_interval=3)

    def poison(record):
        if record["step"] == 4:
            with torch.no_grad():
                model.ln_f.weight.fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match=r"nan at step 5.*model.ckpt \(step 3\)"):
        train(model, config, tokens[:2500], tokens[2500:], callback=poison)
    state = load_checkpoint(tmp_path / "run")
    assert state["step"] == 3
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert max(r["step"] for r in read_metrics(tmp_path / "run")) == 4  # nothing after the NaN


# ---------------------------------------------------------------------------------------------
# checkpoint files: truncated, foreign, hostile


def test_truncated_and_foreign_checkpoints_give_a_clear_error(tmp_path, tokenizer):  # noqa: F811
    model = tiny_model()
    good = save_checkpoint(tmp_path / "good.ckpt", model=model, step=3, tokenizer=tokenizer)
    assert load_checkpoint(good)["step"] == 3

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.ckpt: unreadable, truncated"):
        load_checkpoint(truncated)

    text = tmp_path / "notes.ckpt"
    text.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match=r"notes\.ckpt: unreadable"):
        load_checkpoint(text)

    bare = tmp_path / "state_dict.pt"
    torch.save(model.state_dict(), bare)  # a torch file, but not a NanoLM checkpoint
    with pytest.raises(CheckpointError, match=r"state_dict\.pt: not a NanoLM checkpoint"):
        load_model(bare)

    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.ckpt")
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary files


class Payload:
    """Unpickling this would create a file: the proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_holding_a_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    hostile = tmp_path / "hostile.ckpt"
    state = {"format": "nanolm-checkpoint", "version": 1, "model": {}, "extra": Payload(marker)}
    torch.save(state, hostile)
    with pytest.raises(CheckpointError, match=r"hostile\.ckpt: refused.*could run code"):
        load_checkpoint(hostile)
    with pytest.raises(CheckpointError, match="refused"):
        load_model(hostile)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# plots


def test_plot_history_writes_a_png(tmp_path):
    history = []
    for step in range(10, 110, 10):
        loss = 5.0 - step / 50
        history.append({"step": step, "split": "train", "loss": loss,
                        "perplexity": math.exp(loss), "tokens": step * 512})
        if step % 50 == 0:
            history.append({"step": step, "split": "validation", "loss": loss + 0.1,
                            "perplexity": math.exp(loss + 0.1), "tokens": step * 512})
    path = tmp_path / "sub" / "plot.png"
    plot_history(history, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    figure = plot_history(history)  # without a path: the figure only
    loss_axes, ppl_axes = figure.axes[:2]
    assert [line.get_label() for line in loss_axes.get_lines()] == ["train", "validation"]
    assert ppl_axes.get_yscale() == "log"
    with pytest.raises(ValueError, match="no 'train' or 'validation' records"):
        plot_history([], tmp_path / "empty.png")


def test_adamw_matches_torch_well_within_the_lessons_tolerance():
    """Lesson 06 grades the student's AdamW against torch.optim.AdamW (100 steps, fresh
    parameters) at a norm-relative 1e-5. The reference, and the textbook form with m_hat and
    v_hat, must sit far inside it on float rounding alone; the lesson quotes the figure."""
    from nanolm_lib.course.train import AdamW

    def run(optimizer_class, options, start, grads):
        params = [p.clone().requires_grad_() for p in start]
        optimizer = optimizer_class(params, **options)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            optimizer.step()
        return torch.cat([p.detach().flatten() for p in params])

    worst = 0.0
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        start = [torch.randn(7, 5, generator=gen), torch.randn(13, generator=gen)]
        grads = [[torch.randn(p.shape, generator=gen) * 10 ** (k % 4 - 2) for p in start]
                 for k in range(100)]
        for options in (dict(lr=1e-3, weight_decay=0.01),
                        dict(lr=0.1, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.5)):
            expected = run(torch.optim.AdamW, dict(options, foreach=False), start, grads)
            got = run(AdamW, options, start, grads)
            worst = max(worst, ((got - expected).norm() / expected.norm()).item())
    print(f"AdamW vs torch.optim.AdamW, 100 steps: largest norm-relative difference {worst:.1e}")
    assert worst < 1e-6, f"{worst:.2e}: the lesson's 1e-5 would leave too small a margin"


@pytest.mark.parametrize("max_norm", [0.3, 1e3])
def test_clip_grad_norm_equals_torch_s(max_norm):
    """The lesson-06 reference clips as torch.nn.utils.clip_grad_norm_ does, from a generator,
    skipping parameters without a gradient, and returns the norm before clipping."""
    from nanolm_lib.course.train import clip_grad_norm

    gen = torch.Generator().manual_seed(0)
    ours, theirs = ([torch.zeros(s, requires_grad=True) for s in ((4, 3), (5,), (2,))]
                    for _ in range(2))
    for a, b in zip(ours[:2], theirs[:2]):
        a.grad = torch.randn(a.shape, generator=gen)
        b.grad = a.grad.clone()
    norm = clip_grad_norm((p for p in ours), max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    torch.testing.assert_close(norm, expected)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad)
