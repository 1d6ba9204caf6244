"""The tokenizer benchmark runs end to end in its quick form and reports sane figures."""

from __future__ import annotations

import json

from nanolm_lib.benchmarks import tokenizer as bench


def test_quick_tokenizer_benchmark(capsys):
    results = bench.run(quick=True)
    json.dumps(results)  # what `nanolm bench` writes must be JSON
    rows = results["rows"]
    assert [r["task"] for r in rows][:4] == ["train"] * 4
    assert {r["tokenizer"] for r in rows} == {"scratch", "fast"}
    assert all(r["seconds"] > 0 and r["MB_per_s"] > 0 for r in rows)
    assert rows[0]["vocab"] == rows[2]["vocab"] == 500
    assert 500 < rows[1]["vocab"] <= 2000 and 500 < rows[3]["vocab"] <= 2000
    assert all(2.0 < v < 6.0 for v in results["bytes_per_token"].values())
    table = capsys.readouterr().out
    assert "encode_batch" in table and "MB_per_s" in table
