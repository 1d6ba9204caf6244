"""Several processes: the training loop under ``torchrun`` with DistributedDataParallel, on
CPU with the gloo backend and 2 processes (a tiny model, a few steps).

Run as a script (``torchrun --nproc_per_node=2 tests/test_ddp.py OUT``), this file is the
worker: it trains and saves its rank's final parameters for the test to compare.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nanolm_lib.model import GPT, GPTConfig
from nanolm_lib.train import TrainConfig, load_checkpoint, read_metrics, train

TINY = GPTConfig(vocab_size=64, context_length=16, d_model=32, n_layers=1, n_heads=2, d_ff=64)
STEPS, BATCH = 6, 4


def tokens() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, TINY.vocab_size, 3000).astype(np.uint16)


def config(out_dir) -> TrainConfig:
    return TrainConfig(batch_size=BATCH, max_steps=STEPS, lr=1e-2, min_lr=1e-3, warmup_steps=2,
                       eval_interval=3, eval_batches=1, eval_batch_size=4, log_interval=2,
                       checkpoint_interval=100, precision="fp32", device="cpu", seed=5,
                       out_dir=str(out_dir) if out_dir else None)


def trained(out_dir) -> tuple[GPT, list[dict]]:
    torch.manual_seed(0)
    model = GPT(TINY)
    data = tokens()
    history = train(model, config(out_dir), data[:2500], data[2500:])
    return model, history


def worker(out: Path) -> None:
    import torch.distributed as dist

    model, history = trained(out / "run")
    rank = dist.get_rank()
    torch.save({"model": model.state_dict(), "history": history}, out / f"rank{rank}.pt")
    dist.destroy_process_group()


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
    assert all(r["tokens"] == r["step"] * BATCH * TINY.context_length * 2 for r in records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.pt", "rank1.pt", "run"]
    state = load_checkpoint(run)
    assert state["step"] == STEPS and state["extra"]["world_size"] == 2
    assert len(state["rng"]["batch"]) == 2  # each rank's batch stream, for an exact resume
    assert not torch.equal(state["rng"]["batch"][0], state["rng"]["batch"][1])
    for name, tensor in ranks[0]["model"].items():
        assert torch.equal(tensor, state["model"][name]), name

    # Each rank drew its own batches: had both seen the batches of a single process, the
    # averaged gradient would equal that process's gradient and the weights would match.
    alone, _ = trained(None)
    differs = [not torch.equal(t, ranks[0]["model"][n]) for n, t in alone.state_dict().items()]
    assert any(differs)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
