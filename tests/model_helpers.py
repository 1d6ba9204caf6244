"""Helpers shared by the attention, model and sampling tests."""

from __future__ import annotations

import pytest
import torch

from nanolm_lib.course.model import GPT, GPTConfig


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| over the whole tensor, the course's relative error."""
    return ((a - b).norm() / b.norm()).item()


def seeded_model(config: GPTConfig, seed: int = 0) -> GPT:
    """A GPT initialised from ``seed``. Its init draws from the global generator (like
    nn.Linear's), so the global state is forked rather than left changed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT(config)


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny tensors on a shared 2-core machine: intra-op threads only wait on each other
    (measured: 30x slower generation with 2 threads while other jobs run), so use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
