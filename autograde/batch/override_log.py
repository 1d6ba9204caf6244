"""Where an instructor's scores are kept: the standing overrides (``DIR/overrides.json``) and
every change of a score (``DIR/history.jsonl``). :mod:`autograde.batch.overrides` writes them;
the results read them (:func:`autograde.batch.results.class_view`)."""

from __future__ import annotations

import json
from pathlib import Path

OVERRIDES = "overrides.json"
HISTORY = "history.jsonl"


def load_overrides(out: Path) -> dict:
    try:
        return json.loads((Path(out) / OVERRIDES).read_text())
    except (OSError, ValueError):
        return {}


def load_history(out: Path) -> list[dict]:
    try:
        lines = (Path(out) / HISTORY).read_text().splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
