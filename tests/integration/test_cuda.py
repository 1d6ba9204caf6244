"""What only a CUDA GPU can show: sampling with generators and models on different devices,
lesson 07's cells on the GPU, training and resume on the GPU, and a training step and a
generated token that never make the host wait for the GPU. Marked ``cuda``: skipped without
a GPU (conftest.py), run by ``nanolm gpu-check`` and by ``make test`` on a GPU machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from notebook_cells import SOLUTIONS, run_cells

from nanolm_lib.course.model import GPT, GPTConfig
from nanolm_lib.course.sampling import generate, sample_next_token
from nanolm_lib.course.train import TrainConfig, make_optimizer, optimize
from nanolm_lib.lab.checkpoint import load_checkpoint
from nanolm_lib.lab.trainer import BatchStream, Distributed, train

pytestmark = pytest.mark.cuda

TINY = GPTConfig(vocab_size=96, context_length=16, d_model=32, n_layers=2, n_heads=4, d_ff=64)


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 products without TF32 (train() turns it on), so CPU and GPU agree closely."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before
    torch.cuda.set_sync_debug_mode("default")


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(TINY)


def tokens(n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.resize(rng.integers(0, TINY.vocab_size, 37), n).astype(np.uint16)


def config(out_dir, **changes) -> TrainConfig:
    values = dict(batch_size=4, max_steps=12, lr=3e-3, min_lr=3e-4, warmup_steps=3,
                  eval_interval=6, eval_batches=2, eval_batch_size=4, log_interval=3,
                  checkpoint_interval=6, precision="fp32", device="cuda", seed=7,
                  out_dir=str(out_dir) if out_dir else None)
    return TrainConfig(**{**values, **changes})


def test_a_cpu_generator_draws_the_same_tokens_for_cpu_and_cuda_logits():
    for seed in range(20):
        logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(seed)) * 3
        on_cpu = sample_next_token(logits, 0.8, 20, None, torch.Generator().manual_seed(seed))
        on_gpu = sample_next_token(logits.cuda(), 0.8, 20, None,
                                   torch.Generator().manual_seed(seed))
        assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), on_cpu)
        # and a CUDA generator serves CPU logits: the ids come back to the CPU
        a = sample_next_token(logits, 1.0, None, None,
                              torch.Generator(device="cuda").manual_seed(seed))
        b = sample_next_token(logits.cuda(), 1.0, None, None,
                              torch.Generator(device="cuda").manual_seed(seed))
        assert a.device.type == "cpu" and torch.equal(a, b.cpu())


# The cells of lesson 07 that test_lesson07_cells_run_with_the_model_on_the_gpu runs (after the
# set-up cell), each named by text that only it contains; test_notebooks_e2 checks on any machine
# that each still names one cell.
LESSON07_GPU_CELLS = ("model_for_lesson(", "start = torch.tensor(", "library_generate")


def test_lesson07_cells_run_with_the_model_on_the_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NANOLM_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("NANOLM_SMOKE", "1")
    lesson = SOLUTIONS / "07_sampling/07_sampling.ipynb"
    namespace = run_cells(lesson, {"__name__": "__main__"}, *LESSON07_GPU_CELLS)
    assert next(namespace["model"].parameters()).device.type == "cuda"
    assert namespace["tokens"].device.type == "cuda"  # the student's generate, on the GPU
    assert "same tokens with and without the cache:" in capsys.readouterr().out


def test_training_on_the_gpu_resumes_exactly_and_with_more_rng_states_than_gpus(tmp_path,
                                                                               capsys):
    data = tokens()
    whole = train(tiny_model(1), config(tmp_path / "whole"), data[:2500], data[2500:])
    cpu = train(tiny_model(1), config(None, device="cpu"), data[:2500], data[2500:])
    for a, b in zip(whole, cpu):  # the same batches and arithmetic, on two devices
        assert a["step"] == b["step"] and abs(a["loss"] - b["loss"]) < 2e-2  # train(): TF32

    cut = config(tmp_path / "cut", max_steps=6)
    train(tiny_model(1), cut, data[:2500], data[2500:])
    ckpt = tmp_path / "cut" / "model.ckpt"
    state = torch.load(ckpt, weights_only=True)
    state["rng"]["cuda"] = state["rng"]["cuda"] * (torch.cuda.device_count() + 7)
    state["train_config"]["max_steps"] = 12
    torch.save(state, ckpt)
    resumed = train(tiny_model(5), config(tmp_path / "cut"), data[:2500], data[2500:],
                    resume=True)
    assert "restored" in capsys.readouterr().out
    assert [(r["step"], r["split"]) for r in resumed] == [(r["step"], r["split"]) for r in whole]
    assert load_checkpoint(tmp_path / "cut")["step"] == 12


def test_a_training_step_never_waits_for_the_gpu():
    model = tiny_model().cuda()
    cfg = config(None)
    optimizer = make_optimizer(model, cfg, "cuda")
    data = torch.from_numpy(tokens().astype(np.int32)).cuda()
    for source in (tokens(), data):  # a memmap-like array on the host, or tokens on the GPU
        batches = BatchStream(source, 4, TINY.context_length, torch.Generator().manual_seed(0),
                              torch.device("cuda"), Distributed())
        total = torch.zeros((), dtype=torch.float64, device="cuda")
        for sync_mode in ("default", "error", "error"):  # a warm-up step, then two audited
            torch.cuda.set_sync_debug_mode(sync_mode)
            x, y = batches.next()
            total += optimize(model, optimizer, x, y, 1.0, check_ids=False)
        torch.cuda.set_sync_debug_mode("default")
        assert torch.isfinite(total).item()


def test_a_generated_token_never_waits_for_the_gpu():
    model = tiny_model().cuda().eval()
    generator = torch.Generator(device="cuda").manual_seed(0)
    idx = torch.tensor([[1, 2, 3]], device="cuda")
    cache = model.new_kv_cache(1)
    with torch.inference_mode():
        logits, _ = model(idx, kv_cache=cache)  # the prompt: its ids are checked (a sync)
        torch.cuda.set_sync_debug_mode("error")
        for _ in range(3):
            next_id = sample_next_token(logits[:, -1], 0.8, 10, None, generator)
            idx = torch.cat([idx, next_id], dim=1)
            logits, _ = model(idx[:, -1:], kv_cache=cache, check_ids=False)
        torch.cuda.set_sync_debug_mode("default")
    assert idx.shape == (1, 6)
    again = generate(model, idx[:, :3], 3, temperature=0.8, top_k=10,
                     generator=torch.Generator(device="cuda").manual_seed(0))
    assert torch.equal(again, idx)
