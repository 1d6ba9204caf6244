"""The tokenizer benchmark runs end to end in its quick form and reports sane figures."""

from __future__ import annotations

import json

from nanolm_lib.lab.benchmarks import tokenizer as bench
from nanolm_lib.lab.tables import format_table


def test_quick_tokenizer_benchmark(capsys):
    results = bench.run(quick=True)
    json.dumps(results)  # what `nanolm bench` writes must be JSON
    rows = results["rows"]
    assert [r["task"] for r in rows][:4] == ["train"] * 4
    assert {r["tokenizer"] for r in rows} == {"scratch", "fast"}
    assert rows[0]["vocab"] == rows[2]["vocab"] == 500
    assert 500 < rows[1]["vocab"] <= 2000 and 500 < rows[3]["vocab"] <= 2000
    assert all(2.0 < v < 6.0 for v in results["bytes_per_token"].values())
    # what the user reads is what the JSON holds
    columns = ["task", "tokenizer", "vocab", "text_MB", "seconds", "MB_per_s"]
    assert format_table(rows, columns) in capsys.readouterr().out
