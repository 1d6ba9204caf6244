"""Both model families through the lab: a ModernGPT trains, is checkpointed with its family,
resumes exactly after a real Ctrl-C, samples the same stories from the same seed through
`nanolm sample` and `nanolm info` says what it holds; loading or resuming it as the other
family is refused in one line."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from test_cli import assert_clean_error, in_process, nanolm, small_data, workspace  # noqa: F401
from training_helpers import small_config, token_stream, tokenizer  # noqa: F401

from nanolm_lib.course.model import GPT, GPTConfig
from nanolm_lib.course.modern import ModernConfig, ModernGPT
from nanolm_lib.course.sampling import generate
from nanolm_lib.errors import CheckpointError
from nanolm_lib.lab.checkpoint import load_checkpoint, load_model, read_metrics
from nanolm_lib.lab.trainer import train

TINY = ModernConfig(vocab_size=96, context_length=16, d_model=32, n_layers=2, n_heads=4,
                    n_kv_heads=2, d_ff=64, dropout=0.1)


def tiny_modern(seed: int) -> ModernGPT:
    torch.manual_seed(seed)
    return ModernGPT(TINY)


def test_a_modern_checkpoint_resumes_exactly_and_samples(tmp_path, tokenizer):  # noqa: F811
    tokens = token_stream(3000)
    whole = train(tiny_modern(1), small_config(tmp_path / "whole"), tokens[:2500],
                  tokens[2500:], tokenizer=tokenizer)
    assert load_checkpoint(tmp_path / "whole")["family"] == "modern"

    def press_ctrl_c(record):
        if record["step"] == 5 and record["split"] == "train":
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(tiny_modern(1), small_config(tmp_path / "cut"), tokens[:2500], tokens[2500:],
              tokenizer=tokenizer, callback=press_ctrl_c)
    torch.manual_seed(12345)
    resumed = train(tiny_modern(99), small_config(tmp_path / "cut"), tokens[:2500],
                    tokens[2500:], resume=True)

    def losses(history):
        return [(r["step"], r["split"], r["loss"]) for r in history]

    assert losses(resumed) == losses(whole) == losses(read_metrics(tmp_path / "cut"))
    a, b = load_checkpoint(tmp_path / "whole")["model"], load_checkpoint(tmp_path / "cut")["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)

    model, _ = load_model(tmp_path / "cut", family="modern")
    assert isinstance(model, ModernGPT) and model.config == TINY
    prompt = torch.tensor([[1, 2, 3]])
    first = generate(model, prompt, 30, top_k=5, generator=torch.Generator().manual_seed(4))
    again = generate(model, prompt, 30, top_k=5, generator=torch.Generator().manual_seed(4),
                     use_cache=False)
    assert torch.equal(first, again)  # the GQA cache gives the tokens the full forward gives


def test_the_wrong_family_is_refused_in_one_line(tmp_path, tokenizer):  # noqa: F811
    tokens = token_stream(2000)
    train(tiny_modern(0), small_config(tmp_path / "modern", max_steps=2), tokens[:1500],
          tokens[1500:], tokenizer=tokenizer)
    with pytest.raises(CheckpointError) as refused:
        load_model(tmp_path / "modern", family="gpt")
    message = str(refused.value)
    assert "\n" not in message and "ModernGPT" in message and "classic GPT" in message
    classic = GPT(GPTConfig(vocab_size=96, context_length=16, d_model=32, n_layers=2,
                            n_heads=4, d_ff=64))
    with pytest.raises(CheckpointError, match="holds a ModernGPT .lesson 08., not a classic"):
        train(classic, small_config(tmp_path / "modern", max_steps=4), tokens[:1500],
              tokens[1500:], resume=True)
    assert load_checkpoint(tmp_path / "modern")["step"] == 2  # nothing lost


@pytest.mark.slow
def test_cpu_modern_through_the_command_line(workspace, small_data, in_process):  # noqa: F811
    run = workspace / "runs" / "modern-run"
    trained = nanolm(workspace, "train", "--preset", "cpu-modern", "--data", small_data,
                     "--steps", 6, "--out", run)
    assert trained.returncode == 0, trained.stderr
    info = json.loads(in_process("info", run, "--json").stdout)
    assert info["family"] == "modern" and info["model_config"]["position"] == "rope"
    assert "ModernGPT" in in_process("info", run).stdout
    args = ("sample", "--checkpoint", run, "--prompt", "Once upon a time", "--num", 2,
            "--max-new-tokens", 12, "--top-k", 10, "--seed", 3)
    sampled, repeat = nanolm(workspace, *args), in_process(*args)
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stdout == repeat.stdout and sampled.stdout.count("Once upon a time") == 2
    longer = in_process("train", "--out", run, "--resume", "--steps", 8)
    assert longer.returncode == 0, longer.stderr
    assert "at step 6 of 8" in longer.stdout
    assert load_checkpoint(run)["family"] == "modern"


@pytest.mark.slow
def test_nanolm_ablate_writes_its_table(workspace, small_data, in_process):  # noqa: F811
    bogus = in_process("ablate", "--variants", "classic,bogus")
    assert_clean_error(bogus, "--variants", "bogus")
    out = workspace / "ablation"
    done = nanolm(workspace, "ablate", "--preset", "smoke", "--budget", 0.5, "--variants",
                  "classic,modern", "--data", small_data, "--eval-data", small_data,
                  "--out", out)
    assert done.returncode == 0, done.stderr
    saved = json.loads((out / "ablation.json").read_text())
    assert [row["variant"] for row in saved["rows"]] == ["classic", "modern"]
    for row in saved["rows"]:
        assert row["steps"] >= 2 and row["tokens_per_s"] > 0 and 0 < row["bpb_eval_file"] < 10
        assert load_checkpoint(out / row["variant"])["family"] == (
            "gpt" if row["variant"] == "classic" else "modern")
    assert (out / "ablation.png").stat().st_size > 0
    assert "| modern |" in (out / "ablation.md").read_text() and "| modern |" in done.stdout
