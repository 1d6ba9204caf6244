"""``nanolm bench train --baseline`` and ``--profile``: the torch.nn baseline is a real causal
language model with the GPT's sizes, and the benchmark reports what it claims (no speed is
asserted: speed lives in the printed table and the JSON)."""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F

from nanolm_lib.course.model import GPT
from nanolm_lib.lab.benchmarks import baseline
from nanolm_lib.lab.cli import main


def test_baseline_is_a_causal_language_model_with_the_gpts_sizes():
    config, _ = baseline.resolve("quick")
    torch.manual_seed(0)
    model = baseline.TorchBaselineLM(config).eval()
    assert model.head.weight is model.tok_emb.weight  # tied head
    # the same parameter count as the library's GPT of these sizes (tied head counted once)
    assert (sum(p.numel() for p in model.parameters())
            == sum(p.numel() for p in GPT(config).parameters()))
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(config.vocab_size, (2, config.context_length), generator=g)
    targets = torch.randint(config.vocab_size, idx.shape, generator=g)
    logits, loss = model(idx, targets)
    expected = F.cross_entropy(logits.reshape(-1, config.vocab_size), targets.reshape(-1))
    assert torch.allclose(loss, expected)
    assert abs(loss.item() - math.log(config.vocab_size)) < 0.5  # near uniform at init
    changed = idx.clone()
    changed[:, 9] = (changed[:, 9] + 1) % config.vocab_size  # a future token only
    later, _ = model(changed)
    assert torch.allclose(later[:, :9], logits[:, :9], atol=1e-6)  # the past cannot see it
    assert not torch.allclose(later[:, 9:], logits[:, 9:], atol=1e-6)


def test_bench_train_baseline_and_profile_write_their_tables(tmp_path, capsys):
    assert main(["bench", "train", "--baseline", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "nanolm tokens/s" in out and "torch.nn tokens/s" in out and "nanolm / torch.nn" in out
    results = json.loads((tmp_path / "train-baseline.json").read_text())
    row, = results["rows"]
    assert row["config"] == "quick" and row["rounds"] == 2
    assert row["nanolm tokens/s"] > 0 and row["torch.nn tokens/s"] > 0
    ratio = row["nanolm tokens/s"] / row["torch.nn tokens/s"]
    assert 0.2 < row["nanolm / torch.nn"] / ratio < 5  # a median of ratios, near the ratio
    assert results["benchmark"] == "train-baseline" and "machine" in results

    assert main(["bench", "train", "--profile", "--quick", "--out", str(tmp_path)]) == 0
    ops = json.loads((tmp_path / "train-profile.json").read_text())["profiles"]["quick"]
    assert len(ops) == 5 and all(op["op"] and op["calls/step"] > 0 for op in ops)
    shares = [op["share"] for op in ops]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0 + 1e-9
    assert main(["bench", "attention", "--baseline", "--out", str(tmp_path)]) == 1
    assert "belong to `nanolm bench train`" in capsys.readouterr().err
