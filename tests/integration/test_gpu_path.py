"""The GPU path, tested on the CPU where it can be: sampling's device handling, resume with
more saved CUDA RNG states than GPUs, the MFU ceiling's precision, the sync-free training
step (same arithmetic as the loop lesson 06 teaches), checkpoints written in the background,
and the global batch's split. What needs a GPU is in test_cuda.py (marker ``cuda``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from model_helpers import single_thread  # noqa: F401 (an autouse fixture)

from nanolm_lib.course.data import get_batch
from nanolm_lib.course.model import GPT, GPTConfig
from nanolm_lib.course.sampling import draw, sample_next_token
from nanolm_lib.course.train import TrainConfig, lr_at, make_optimizer, train_step
from nanolm_lib.errors import TrainingDiverged
from nanolm_lib.lab.checkpoint import (
    CheckpointWriter,
    checkpoint_state,
    load_checkpoint,
    read_metrics,
)
from nanolm_lib.lab.trainer import (
    Distributed,
    fitting_cuda_states,
    local_share,
    record_count,
    train,
)
from nanolm_lib.lab.trainer import share_weight as share_weight_of

TINY = GPTConfig(vocab_size=96, context_length=16, d_model=32, n_layers=2, n_heads=4, d_ff=64)


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(TINY)


def token_stream(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tokens = np.resize(rng.integers(0, TINY.vocab_size, 37), n)
    noise = rng.random(n) < 0.1
    tokens[noise] = rng.integers(0, TINY.vocab_size, noise.sum())
    return tokens.astype(np.uint16)


def config(out_dir=None, **changes) -> TrainConfig:
    values = dict(batch_size=4, max_steps=14, lr=3e-3, min_lr=3e-4, warmup_steps=3,
                  eval_interval=7, eval_batches=2, eval_batch_size=4, log_interval=1,
                  checkpoint_interval=100, precision="fp32", device="cpu", seed=7,
                  out_dir=str(out_dir) if out_dir else None)
    return TrainConfig(**{**values, **changes})


# ---------------------------------------------------------------------------------------------
# sampling: the draw happens where the generator lives


def test_draws_run_on_the_generators_device_and_come_back_to_the_logits_device():
    logits = torch.randn(6, 40, generator=torch.Generator().manual_seed(1))
    probs = torch.softmax(logits, -1)
    ids = draw(probs, torch.Generator(device=probs.device).manual_seed(2))
    assert ids.device == probs.device and ids.shape == (6, 1) and ids.dtype == torch.int64
    expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(2))
    assert torch.equal(ids, expected)
    # the same seed, the same tokens, call after call: the stream is the generator's alone
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(5):
        assert torch.equal(sample_next_token(logits, 0.8, 10, None, a),
                           sample_next_token(logits, 0.8, 10, None, b))
    unseeded = draw(probs)  # no generator: torch's global one, on the logits' device
    assert unseeded.device == probs.device


# ---------------------------------------------------------------------------------------------
# resume: saved CUDA RNG states for more (or fewer) GPUs than this machine has


def test_cuda_rng_states_that_do_not_fit_are_left_out_with_a_note():
    state = torch.zeros(16, dtype=torch.uint8)
    kept, note = fitting_cuda_states([state] * 8, 1)  # an 8-GPU job resumed on one GPU
    assert len(kept) == 1 and "8 GPUs" in note and "has 1" in note and "left out" in note
    kept, note = fitting_cuda_states([state], 4)
    assert len(kept) == 1 and "keep their own seeds" in note
    assert fitting_cuda_states([state] * 2, 2) == ([state] * 2, None)
    assert fitting_cuda_states([], 0) == ([], None)  # a CPU run's checkpoint


def test_a_checkpoint_with_eight_cuda_rng_states_resumes_on_this_machine(tmp_path):
    tokens = token_stream(3000)
    whole = train(tiny_model(1), config(tmp_path / "whole"), tokens[:2500], tokens[2500:])
    short = config(tmp_path / "cut", checkpoint_interval=7)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(1), short, tokens[:2500], tokens[2500:],
              callback=lambda r: _interrupt_at(r, 7))
    ckpt = tmp_path / "cut" / "model.ckpt"
    state = torch.load(ckpt, weights_only=True)
    state["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 8  # as an 8-GPU job saves
    torch.save(state, ckpt)
    resumed = train(tiny_model(99), short, tokens[:2500], tokens[2500:], resume=True)
    assert figures(resumed) == figures(whole)


def figures(history):
    return [(r["step"], r["split"], r["loss"], r.get("train_loss")) for r in history]


def _interrupt_at(record, step, split="validation"):
    if record["step"] == step and record["split"] == split:
        raise KeyboardInterrupt


@pytest.mark.parametrize("split", ["train", "validation"])
def test_a_callback_that_raises_leaves_a_state_that_resumes_exactly(tmp_path, split):
    # A notebook's Ctrl-C arrives inside the callback, while a record is being written.
    tokens = token_stream(3000)
    whole = train(tiny_model(1), config(tmp_path / "whole", log_interval=2), tokens[:2500],
                  tokens[2500:])
    cut = config(tmp_path / "cut", log_interval=2)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(1), cut, tokens[:2500], tokens[2500:],
              callback=lambda r: _interrupt_at(r, 8 if split == "train" else 7, split))
    resumed = train(tiny_model(3), cut, tokens[:2500], tokens[2500:], resume=True)
    assert figures(resumed) == figures(whole)


# ---------------------------------------------------------------------------------------------
# MFU: the ceiling in the step's own precision


def test_the_mfu_ceiling_is_measured_in_the_precision_of_the_step():
    from nanolm_lib.lab.benchmarks.train import ceiling_dtype, measure

    assert ceiling_dtype("bf16") == torch.bfloat16 and ceiling_dtype("fp32") == torch.float32
    assert ceiling_dtype("fp16") == torch.float16
    bf16 = measure("smoke", batch_size=2, steps=1, ceiling_n=64, precision="bf16")
    assert bf16["precision"] == "bf16" and bf16["ceiling_dtype"] == "bfloat16"
    fp32 = measure("smoke", batch_size=2, steps=1, ceiling_n=64)
    assert fp32["precision"] == "fp32" and fp32["ceiling_dtype"] == "float32"
    for row in (bf16, fp32):
        assert row["mfu"] == pytest.approx(
            row["tokens_per_s"] * row["flops_per_token"] / row["ceiling_flops"], rel=1e-9)


# ---------------------------------------------------------------------------------------------
# the sync-free step: the same arithmetic as the loop lesson 06 teaches


def lesson_loop(cfg: TrainConfig, tokens: np.ndarray) -> tuple[GPT, list[float]]:
    """get_batch + train_step, step by step, reading every loss: the loop of lesson 06."""
    model = tiny_model(2)
    optimizer = make_optimizer(model, cfg, "cpu")
    generator = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for step in range(cfg.max_steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = get_batch(tokens, cfg.batch_size, TINY.context_length, generator)
        losses.append(train_step(model, optimizer, x, y, cfg.grad_clip))
    return model, losses


def test_the_sync_free_loop_computes_exactly_what_the_lesson_loop_computes():
    tokens = token_stream(3000)
    reference, losses = lesson_loop(config(), tokens[:2500])
    for log_interval in (1, 4):  # losses read every step, or summed on the device
        cfg = config(log_interval=log_interval)
        model = tiny_model(2)
        history = train(model, cfg, tokens[:2500], tokens[2500:])
        for name, tensor in reference.state_dict().items():
            assert torch.equal(model.state_dict()[name], tensor), (log_interval, name)
        logged = [r for r in history if r["split"] == "train"]
        assert [r["step"] for r in logged] == [s for s in range(1, 15)
                                              if s % log_interval == 0 or s == 14]
        start = 0
        for record in logged:
            window = losses[start:record["step"]]
            total = 0.0
            for loss in window:  # the float64 sum, in order, that the device keeps
                total += loss
            assert record["loss"] == total / len(window)
            start = record["step"]
        assert len(history) == record_count(cfg)  # what a live plot plans its redraws on


def test_a_nan_is_caught_at_the_next_read_before_any_checkpoint_holds_it(tmp_path):
    tokens = token_stream(3000)
    model = tiny_model()
    calls = []

    def poison(module, args):
        calls.append(1)
        if len(calls) == 5:  # the forward pass of step 5
            with torch.no_grad():
                model.ln_f.weight.fill_(float("nan"))

    model.register_forward_pre_hook(poison)
    cfg = config(tmp_path / "run", log_interval=4, checkpoint_interval=3, eval_interval=100)
    with pytest.raises(TrainingDiverged, match=r"nan between steps 5 and 6.*\(step 3\)"):
        train(model, cfg, tokens[:2500], tokens[2500:])
    state = load_checkpoint(tmp_path / "run")
    assert state["step"] == 3 and all(torch.isfinite(t).all() for t in state["model"].values())
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [4]


def test_token_ids_outside_the_vocabulary_are_refused_once_per_dataset():
    tokens = token_stream(3000)
    bad = tokens.copy()
    bad[1234] = TINY.vocab_size
    with pytest.raises(ValueError, match=r"train_tokens: token ids must lie in \[0, "
                                         r"vocab_size=96\), found values in \[\d+, 96\]"):
        train(tiny_model(), config(), bad[:2500], tokens[2500:])
    with pytest.raises(ValueError, match="val_tokens: token ids"):
        train(tiny_model(), config(), tokens[:2500], bad[1000:])


# ---------------------------------------------------------------------------------------------
# checkpoints written on a background thread


def test_background_checkpoints_hold_the_state_at_save_time_and_report_failures(tmp_path):
    model = tiny_model()
    writer = CheckpointWriter()
    path = tmp_path / "model.ckpt"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    writer.save(path, checkpoint_state(model=model, step=3))
    with torch.no_grad():  # training goes on at once, changing the live tensors in place
        for parameter in model.parameters():
            parameter.add_(1.0)
    writer.join()
    saved = load_checkpoint(path)
    assert saved["step"] == 3 and not list(tmp_path.glob("*.tmp"))  # atomic: no leftovers
    for name, tensor in before.items():
        assert torch.equal(saved["model"][name], tensor), name
    # the tied head is stored once, as torch.save stores the live model
    head, embedding = saved["model"]["head.weight"], saved["model"]["tok_emb.weight"]
    assert head.untyped_storage().data_ptr() == embedding.untyped_storage().data_ptr()

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    writer.save(blocker / "model.ckpt", checkpoint_state(model=model, step=4))
    with pytest.raises(OSError):
        writer.join()  # the failed write is reported in the training thread
    writer.join()  # and only once


# ---------------------------------------------------------------------------------------------
# the global batch under torchrun (the 2-process run is in test_ddp.py)


def test_a_global_batch_is_shared_as_evenly_as_possible():
    def shares(batch, world):
        return [local_share(batch, Distributed(rank=r, world_size=world)) for r in range(world)]

    assert shares(64, 1) == [slice(0, 64)]
    assert shares(64, 8) == [slice(8 * r, 8 * r + 8) for r in range(8)]
    assert [s.stop - s.start for s in shares(64, 3)] == [22, 21, 21]
    assert [(s.start, s.stop) for s in shares(5, 2)] == [(0, 3), (3, 5)]
    with pytest.raises(ValueError, match="batch_size=2: expected at least one row per process"):
        local_share(2, Distributed(rank=0, world_size=4))
    weights = [share_weight_of(s, 5, Distributed(rank=r, world_size=2))
               for r, s in enumerate(shares(5, 2))]
    assert weights == [1.2, 0.8] and sum(weights) / 2 == 1.0  # the mean over all 5 rows
    assert share_weight_of(slice(0, 32), 64, Distributed(world_size=2)) == 1.0  # exactly


def test_record_count_plans_a_live_plot_of_the_full_recipe():
    from nanolm_lib.lab.presets import train_preset

    recipe = train_preset("seed-3090")
    assert record_count(recipe) == 56_000 // 50 + 2  # 1,120 train records, 2 evaluations
    redraw_every = max(1, record_count(recipe) // 40)  # what lesson 06's live plot uses
    assert 40 <= record_count(recipe) / redraw_every <= 41
    assert record_count(recipe, start_step=55_950) == 1 + 1
    assert record_count(dataclasses.replace(recipe, max_steps=75, log_interval=50,
                                            eval_interval=50)) == 2 + 2



class OwnGPT(GPT):
    """A student's GPT: the course's interface, ``forward(idx, targets=None)``, with no
    ``check_ids`` switch."""

    def forward(self, idx, targets=None, kv_cache=None):
        return super().forward(idx, targets, kv_cache)


def test_a_model_without_the_id_switch_trains_and_generates_as_the_library_gpt():
    from nanolm_lib.course.sampling import generate

    tokens = token_stream(3000)
    ours, own = tiny_model(2), OwnGPT(TINY)
    own.load_state_dict(ours.state_dict())
    for model in (ours, own):
        train(model, config(), tokens[:2500], tokens[2500:])
    for name, tensor in ours.state_dict().items():
        assert torch.equal(own.state_dict()[name], tensor), name
    prompt = torch.tensor([[1, 2, 3]])
    stories = [generate(model, prompt, 20, top_k=5,
                        generator=torch.Generator().manual_seed(4)) for model in (ours, own)]
    assert torch.equal(stories[0], stories[1])
