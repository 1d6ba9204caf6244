"""The ``nanolm`` command line and ``make demo``'s module, end to end through subprocesses on
a small slice of the real TinyStories sample: prepare -> train -> sample -> info, resume,
and one clear line (no traceback) for each user mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EOT_LINE = "<|endoftext|>\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def small_data(workspace) -> Path:
    """The first 300 stories of the sample (CI's NANOLM_DATA), in the dataset's own format."""
    value = os.environ.get("NANOLM_DATA")
    if not value or not Path(value).is_file():
        pytest.skip("NANOLM_DATA is not set to the TinyStories sample (CI sets it)")
    text = Path(value).read_text(encoding="utf-8")
    stories = text.split(EOT_LINE)[:300]
    path = workspace / "stories.txt"
    path.write_text(EOT_LINE.join(stories) + EOT_LINE, encoding="utf-8")
    return path


def nanolm(workspace, *args, module="nanolm_lib.lab.cli", env=None):
    environment = {**os.environ, "NANOLM_CACHE": str(workspace / "cache"),
                   "NANOLM_RUNS": str(workspace / "runs"), "NANOLM_PROGRESS": "0",
                   "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", **(env or {})}
    environment.pop("NANOLM_DEBUG", None)
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], env=environment,
                          capture_output=True, text=True, timeout=300, cwd=workspace)


def assert_clean_error(done, *fragments):
    """Exit status 1 and one line on stderr naming the problem, no traceback."""
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def in_process(workspace, monkeypatch, capsys):
    """Run ``nanolm`` in this process (the same main()), against the workspace's folders."""
    from nanolm_lib.lab.cli import main

    monkeypatch.setenv("NANOLM_CACHE", str(workspace / "cache"))
    monkeypatch.setenv("NANOLM_RUNS", str(workspace / "runs"))
    monkeypatch.delenv("NANOLM_DEBUG", raising=False)

    def run(*args):
        capsys.readouterr()
        status = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, status, out, err)

    return run


@pytest.mark.slow
def test_prepare_train_sample_info_end_to_end(workspace, small_data, in_process):
    prepared = in_process("prepare", "--data", small_data, "--preset", "smoke")
    assert prepared.returncode == 0, prepared.stderr
    rows = {line.split()[0]: line.split()[1:] for line in prepared.stdout.splitlines()
            if line.split()[:1] in (["train"], ["validation"])}
    # 300 stories: every 20th goes to validation; the columns are stories, bytes, tokens
    assert rows["train"][0] == "285" and rows["validation"][0] == "15"
    train_tokens = int(rows["train"][2].replace(",", ""))
    per_step = 64 * 128  # the seed run's batch x context: its epoch arithmetic for this data
    assert f"{train_tokens:,} / {per_step:,} = {train_tokens // per_step:,} steps" in prepared.stdout

    run = workspace / "runs" / "smoke-run"
    trained = nanolm(workspace, "train", "--preset", "smoke", "--data", small_data,
                     "--steps", 12, "--out", run)
    assert trained.returncode == 0, trained.stderr
    assert "valid loss" in trained.stdout and "valid ppl" in trained.stdout
    assert {"model.ckpt", "metrics.jsonl", "plot.png", "config.json", "tokenizer.json"} <= {
        p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 12 and records[-1]["split"] == "validation"

    sampled = nanolm(workspace, "sample", "--checkpoint", run, "--prompt", "Once upon a time",
                     "--num", 2, "--max-new-tokens", 20, "--top-k", 10, "--seed", 3)
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stdout.count("Once upon a time") == 2
    assert "--- story 2 ---" in sampled.stdout
    repeat = in_process("sample", "--checkpoint", run / "model.ckpt", "--prompt",
                        "Once upon a time", "--num", 2, "--max-new-tokens", 20, "--top-k", 10,
                        "--seed", 3)
    assert repeat.stdout == sampled.stdout  # same seed, same stories

    info = in_process("info", run, "--json")
    assert info.returncode == 0, info.stderr
    details = json.loads(info.stdout)
    assert details["step"] == details["max_steps"] == 12
    assert details["tokens"] == 12 * 8 * 64
    assert details["model_config"]["vocab_size"] == 512
    assert details["parameters"] > 100_000
    assert details["last"][-1]["split"] == "validation"
    text = in_process("info", run)
    assert "parameters" in text.stdout and "last validation" in text.stdout

    # an existing run is never overwritten by accident; --resume continues it
    again = in_process("train", "--out", run, "--data", small_data, "--preset", "smoke")
    assert_clean_error(again, "already holds a run", "--resume", "--fresh")
    finished = in_process("train", "--out", run, "--resume")
    assert finished.returncode == 0, finished.stderr
    assert "already finished" in finished.stdout
    longer = in_process("train", "--out", run, "--resume", "--steps", 16)
    assert longer.returncode == 0, longer.stderr
    assert "resuming" in longer.stdout and "at step 12 of 16" in longer.stdout
    assert json.loads(in_process("info", run, "--json").stdout)["step"] == 16


@pytest.mark.slow
def test_user_mistakes_are_one_clear_line(workspace, tmp_path, in_process):
    unknown = nanolm(workspace, "train", "--preset", "gigantic", "--steps", 1)
    assert_clean_error(unknown, "unknown preset 'gigantic'", "seed-3090")

    missing = in_process("prepare", "--data", tmp_path / "nope.txt")
    assert_clean_error(missing, "nope.txt")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 not really a checkpoint")
    for command in (["sample", "--checkpoint", corrupt], ["info", corrupt]):
        assert_clean_error(in_process(*command), "corrupt.ckpt", "unreadable")
    assert_clean_error(in_process("info", tmp_path / "none.ckpt"), "none.ckpt", "no such file")
    # overrides go through the config's validation, before any data is read
    assert_clean_error(in_process("train", "--preset", "smoke", "--steps", 0), "max_steps=0")
    assert_clean_error(in_process("train", "--preset", "smoke", "--lr", "1e-3", "--min-lr",
                                  "2e-3"), "min_lr=0.002", "expected 0 <= min_lr <= lr")


def test_a_bug_is_not_a_user_error_and_shows_its_traceback(in_process, monkeypatch):
    """Only the project's own errors (and the system's answers about named files) are one
    line: a ValueError from a bug propagates, and Python prints its traceback."""
    from nanolm_lib.lab import cli

    def buggy(args):
        return int("not a number")  # a bug: ValueError, not a UsageError

    monkeypatch.setattr(cli, "cmd_info", buggy)
    with pytest.raises(ValueError, match="invalid literal"):
        in_process("info", "anything")


def test_bench_train_quick_writes_results(workspace, in_process):
    done = in_process("bench", "train", "--quick", "--out", workspace / "bench")
    assert done.returncode == 0, done.stderr
    assert "mfu" in done.stdout and "tokens_per_s" in done.stdout
    results = json.loads((workspace / "bench" / "train.json").read_text())
    row = results["rows"][0]
    assert row["preset"] == "smoke"
    assert f"{row['tokens_per_s']:.4g}" in done.stdout  # the table shows what the JSON holds


@pytest.mark.slow
def test_demo_trains_then_reuses_the_finished_run(workspace, small_data, monkeypatch, capsys):
    from nanolm_lib.lab import demo

    env = {"NANOLM_DATA": str(small_data), "NANOLM_SIZE": "smoke"}
    first = nanolm(workspace, module="nanolm_lib.lab.demo", env=env)
    assert first.returncode == 0, first.stderr
    run = workspace / "runs" / "demo"
    assert {"model.ckpt", "metrics.jsonl", "plot.png"} <= {p.name for p in run.iterdir()}
    assert first.stdout.count("--- story") == 2
    assert "bits per byte" in first.stdout and "perplexity" in first.stdout
    # evaluated where it trained (a GPU machine: on the GPU, not load_model's default CPU)
    from nanolm_lib.utils import pick_device

    assert first.stdout.splitlines()[-1].endswith(f"on {pick_device()})")

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NANOLM_CACHE", str(workspace / "cache"))
    monkeypatch.setenv("NANOLM_RUNS", str(workspace / "runs"))
    capsys.readouterr()
    assert demo.main([]) == 0
    second = capsys.readouterr().out
    assert "already holds a finished run" in second and "trained in" not in second
    assert second.count("--- story") == 2
    # the same model and validation split: the same figures
    assert first.stdout.splitlines()[-1] == second.splitlines()[-1]


@pytest.mark.slow
def test_make_demo_runs_with_neither_the_hub_nor_a_local_copy(tmp_path):
    """The README's first command on a machine with no network and no NANOLM_DATA (a network
    namespace of its own: only loopback), at smoke size: the real `make demo` falls back to
    the generated stories and tells its two stories."""
    import shutil

    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed: no network namespace to run the demo in")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NANOLM_", "HF_", "PYTEST"))}
    env.update(NANOLM_SIZE="smoke", NANOLM_CACHE=str(tmp_path / "cache"),
               NANOLM_RUNS=str(tmp_path / "runs"), NANOLM_PROGRESS="0")
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([bwrap, "--dev-bind", "/", "/", "--unshare-net", "--chdir", str(repo),
                           "make", "--no-print-directory", "demo"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "unreachable" in done.stdout and "make_stories" in done.stdout
    assert done.stdout.count("--- story") == 2 and "bits per byte" in done.stdout
