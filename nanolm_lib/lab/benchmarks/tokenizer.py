"""Tokenizer benchmark: training time and encoding speed, from-scratch BPE against HF.

On the TinyStories sample (``NANOLM_DATA``, else the shared sample if present, else generated
stories): the from-scratch :class:`BPETokenizer` trains 1,000 ids on ~1 MB and 10,000 ids on
the whole sample; the HF-backed tokenizer trains the same; then encoding throughput in MB/s
for the lesson-01 function, the from-scratch class, and the fast tokenizer one text at a
time and in parallel batches. Wall times on a shared machine are noisy: compare the ratios
within one run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from nanolm_lib.course.data import load_stories
from nanolm_lib.course.stories import make_stories
from nanolm_lib.course.tokenizer import BPETokenizer, encode, train_fast_tokenizer
from nanolm_lib.lab.tables import format_table
from nanolm_lib.utils import time_fn

SHARED_SAMPLE = Path("/work/shared/data/tinystories/train-sample.txt")


def _stories() -> tuple[list[str], str]:
    for candidate in (os.environ.get("NANOLM_DATA"), SHARED_SAMPLE):
        if candidate and Path(candidate).exists():
            return load_stories(candidate), str(candidate)
    return make_stories(5000), "make_stories(5000)"


def _first_bytes(stories: list[str], n_bytes: int) -> list[str]:
    """The leading stories that hold about ``n_bytes`` of UTF-8 text."""
    taken, total = [], 0
    for story in stories:
        if total >= n_bytes:
            break
        taken.append(story)
        total += len(story.encode("utf-8")) + 1
    return taken


def _megabytes(stories: list[str]) -> float:
    return sum(len(s.encode("utf-8")) + 1 for s in stories) / 1e6


def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def run(quick: bool = False) -> dict:
    """Run the benchmark, print a table, return the figures (``quick``: a few seconds)."""
    stories, source = _stories()
    small_vocab, large_vocab = (500, 2_000) if quick else (1_000, 10_000)
    small = _first_bytes(stories, 100_000 if quick else 1_000_000)
    large = _first_bytes(stories, 300_000) if quick else stories
    rows = []

    def add(task, tokenizer, vocab, texts, seconds):
        megabytes = _megabytes(texts)
        rows.append({"task": task, "tokenizer": tokenizer, "vocab": vocab,
                     "text_MB": round(megabytes, 3), "seconds": seconds,
                     "MB_per_s": megabytes / seconds})

    # Training
    seconds, scratch_small = _timed(lambda: BPETokenizer.train(small, small_vocab))
    add("train", "scratch", scratch_small.vocab_size, small, seconds)
    seconds, scratch_large = _timed(lambda: BPETokenizer.train(large, large_vocab))
    add("train", "scratch", scratch_large.vocab_size, large, seconds)
    seconds, fast_small = _timed(lambda: train_fast_tokenizer(small, small_vocab))
    add("train", "fast", fast_small.vocab_size, small, seconds)
    seconds, fast_large = _timed(lambda: train_fast_tokenizer(large, large_vocab))
    add("train", "fast", fast_large.vocab_size, large, seconds)

    # Encoding, with the large-vocabulary tokenizers on the ~1 MB text
    function_texts = _first_bytes(small, 20_000 if quick else 200_000)
    seconds = time_fn(lambda: [encode(s, scratch_large.merges) for s in function_texts],
                      warmup=0, repeat=1)
    add("encode (lesson 01 function)", "scratch", scratch_large.vocab_size, function_texts,
        seconds)
    # A fresh object per call, so its per-word cache starts cold as in real use.
    seconds = time_fn(lambda: _encode_all(BPETokenizer(scratch_large.merges), small),
                      warmup=0, repeat=1 if quick else 3)
    add("encode", "scratch", scratch_large.vocab_size, small, seconds)
    seconds = time_fn(lambda: _encode_all(fast_large, small), warmup=1, repeat=3)
    add("encode (one text a call)", "fast", fast_large.vocab_size, small, seconds)
    seconds = time_fn(lambda: fast_large.encode_batch(small), warmup=1, repeat=3)
    add("encode_batch", "fast", fast_large.vocab_size, small, seconds)

    print(f"tokenizer benchmark on {source} (wall times on a shared machine are noisy)")
    print(format_table(rows, ["task", "tokenizer", "vocab", "text_MB", "seconds", "MB_per_s"]))
    train_rows = [r for r in rows if r["task"] == "train"]
    return {
        "device": "cpu",
        "source": source,
        "quick": quick,
        "rows": rows,
        "train_speedup_fast_over_scratch": {
            str(train_rows[0]["vocab"]): train_rows[0]["seconds"] / train_rows[2]["seconds"],
            str(train_rows[1]["vocab"]): train_rows[1]["seconds"] / train_rows[3]["seconds"],
        },
        "encode_speedup_batch_over_scratch": rows[-1]["MB_per_s"] / rows[-3]["MB_per_s"],
        "bytes_per_token": {  # on the ~1 MB text, stories only (no separators)
            "scratch": _bytes_per_token(_encode_all(scratch_large, small), small),
            "fast": _bytes_per_token(fast_large.encode_batch(small), small),
        },
    }


def _encode_all(tokenizer, texts: list[str]) -> list[list[int]]:
    return [tokenizer.encode(text) for text in texts]


def _bytes_per_token(encoded: list[list[int]], texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / sum(map(len, encoded))
