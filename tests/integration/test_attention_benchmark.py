"""The attention and generation benchmarks run (quick form) and report what they claim; no
timing is asserted. The CPU peak-memory method is checked against known allocations."""

from __future__ import annotations

import json

import torch
from model_helpers import single_thread  # noqa: F401 (an autouse fixture)

from nanolm_lib.lab.benchmarks import attention as attention_bench
from nanolm_lib.lab.benchmarks import generate as generate_bench
from nanolm_lib.lab.benchmarks import write_results
from nanolm_lib.lab.profiling import peak_memory


def test_cpu_peak_memory_counts_what_is_held_at_once():
    n = 1_000_000  # float32: 4 MB
    kept = []

    def two_at_once():
        a = torch.ones(n)
        b = torch.ones(n)
        kept.append(a + b)  # a, b and the sum are held together: 12 MB

    def one_at_a_time():
        for _ in range(3):
            torch.ones(n).sum()  # each 4 MB block is freed before the next

    assert 12e6 <= peak_memory(two_at_once) < 13e6
    assert 4e6 <= peak_memory(one_at_a_time) < 5e6


def test_attention_benchmark_quick(tmp_path, capsys):
    results = attention_bench.run(quick=True, out_dir=tmp_path)
    assert "speedup_vs_naive" in capsys.readouterr().out
    assert (tmp_path / "attention.png").stat().st_size > 10_000
    cases = {(r["op"], r["impl"], r["mode"]) for r in results["rows"]}
    assert cases == {("core", "naive", "forward"), ("core", "fused", "forward"),
                     ("core", "flash", "forward"),
                     ("core", "naive", "forward+backward"), ("core", "fused", "forward+backward"),
                     ("module", "naive", "inference"), ("module", "sdpa", "inference"),
                     ("module", "native", "inference")}
    for row in results["rows"]:
        assert row["peak_MB"] > 0  # memory is measured, not left at zero
    assert set(results["headline"]) >= {"cpu/float32/core/fused/forward+backward",
                                        "cpu/float32/module/native/inference"}
    path = write_results("attention", results, tmp_path)
    assert json.loads(path.read_text())["rows"]


def test_generate_benchmark_quick(capsys):
    torch.set_num_threads(2)  # the autouse fixture restores the original count afterwards
    results = generate_bench.run(quick=True, threads=1)
    assert results["threads"] == 1 and torch.get_num_threads() == 2
    assert "tokens_per_s" in capsys.readouterr().out
    assert results["prompt_tokens"] + results["new_tokens"] == results["context_length"]
    assert all(results["identical_tokens"].values())
    assert {(r["batch"], r["kv_cache"]) for r in results["rows"]} == {
        (1, True), (1, False), (2, True), (2, False)}
