"""Several processes: the training loop under ``torchrun`` with DistributedDataParallel, on
CPU with the gloo backend and 2 processes (a tiny model, a few steps). ``batch_size`` is the
global batch: two processes train on the halves of one process's batches, so the recipe
means the same thing on any number of GPUs.

Run as a script (``torchrun --nproc_per_node=2 tests/integration/test_ddp.py OUT``), this
file is the worker: it trains and saves its rank's final parameters for the test to compare.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nanolm_lib.course.model import GPT, GPTConfig
from nanolm_lib.course.train import TrainConfig
from nanolm_lib.lab.checkpoint import load_checkpoint, read_metrics
from nanolm_lib.lab.trainer import train

TINY = GPTConfig(vocab_size=64, context_length=16, d_model=32, n_layers=1, n_heads=2, d_ff=64)
STEPS, BATCH, ODD_BATCH = 6, 4, 5


def tokens() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, TINY.vocab_size, 3000).astype(np.uint16)


def config(out_dir, batch_size=BATCH) -> TrainConfig:
    return TrainConfig(batch_size=batch_size, max_steps=STEPS, lr=1e-2, min_lr=1e-3, warmup_steps=2,
                       eval_interval=3, eval_batches=1, eval_batch_size=4, log_interval=2,
                       checkpoint_interval=100, precision="fp32", device="cpu", seed=5,
                       out_dir=str(out_dir) if out_dir else None)


def trained(out_dir, batch_size=BATCH) -> tuple[GPT, list[dict]]:
    torch.manual_seed(0)
    model = GPT(TINY)
    data = tokens()
    history = train(model, config(out_dir, batch_size), data[:2500], data[2500:])
    return model, history


def worker(out: Path) -> None:
    import torch.distributed as dist

    model, history = trained(out / "run")
    odd, odd_history = trained(None, ODD_BATCH)  # 3 rows on rank 0, 2 on rank 1
    rank = dist.get_rank()
    torch.save({"model": model.state_dict(), "history": history, "odd": odd.state_dict(),
                "odd_history": odd_history}, out / f"rank{rank}.pt")
    dist.destroy_process_group()


def assert_close_runs(two, one, history_two, history_one):
    """Same updates up to rounding: the gradients were averaged in another order."""
    for name, tensor in one.items():
        other = two[name]
        if name.endswith("attn.qkv.bias"):
            # The keys' bias gets no gradient (a constant added to every score of a row is
            # lost in the softmax); Adam turns its rounding noise into full-size steps.
            d = TINY.d_model
            tensor, other = (torch.cat([t[:d], t[2 * d:]]) for t in (tensor, other))
        assert torch.allclose(other, tensor, rtol=0, atol=1e-6), name
    losses = [(r["step"], r["split"], r["loss"]) for r in history_one]
    assert [(s, split) for s, split, _ in losses] == [
        (r["step"], r["split"]) for r in history_two]
    for (_, _, a), b in zip(losses, history_two):
        assert abs(a - b["loss"]) < 1e-5


@pytest.mark.slow
def test_two_gloo_processes_train_in_step_and_only_rank_0_writes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NANOLM_PROGRESS": "0"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", __file__, str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name, tensor in ranks[0]["model"].items():  # DDP kept the replicas identical
        assert torch.equal(tensor, ranks[1]["model"][name]), name

    run = tmp_path / "run"
    records = read_metrics(run)
    assert [(r["step"], r["split"]) for r in records] == [  # written once, by rank 0
        (2, "train"), (3, "validation"), (4, "train"), (6, "train"), (6, "validation")]
    # the global batch: the two processes together read what one process reads
    assert all(r["tokens"] == r["step"] * BATCH * TINY.context_length for r in records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.pt", "rank1.pt", "run"]
    state = load_checkpoint(run)
    assert state["step"] == STEPS and state["extra"]["world_size"] == 2
    assert len(state["rng"]["batch"]) == 1  # one batch stream for the job: resumes anywhere
    for name, tensor in ranks[0]["model"].items():
        assert torch.equal(tensor, state["model"][name]), name

    # Each rank trained on its half of one process's batches: the averaged gradient is that
    # process's gradient, so the weights and losses match a single process's run.
    alone, alone_history = trained(None)
    assert_close_runs(ranks[0]["model"], alone.state_dict(), records, alone_history)
    # an odd batch (3 + 2 rows): each rank's loss is weighted by its share of the rows
    odd, odd_history = trained(None, ODD_BATCH)
    assert_close_runs(ranks[1]["odd"], odd.state_dict(), ranks[0]["odd_history"], odd_history)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
