"""nanolm_lib.course.data: loading stories, the story generator, packing, batches, prepared corpora."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from nanolm_lib.course import data
from nanolm_lib.course.data import (
    PreparedCorpus,
    get_batch,
    load_prepared,
    load_stories,
    make_stories,
    normalize_story,
    pack_stories,
    prepare_corpus,
)
from nanolm_lib.course.tokenizer import EOT, BPETokenizer, train_fast_tokenizer


def write_txt(path, stories, blank_lines=False):
    """The dataset's text format: paragraphs on single newlines or blank lines, EOT lines."""
    sep = "\n\n" if blank_lines else "\n"
    path.write_text("".join(sep.join(s.split("\n")) + f"\n{EOT}\n" for s in stories),
                    encoding="utf-8")
    return path


def write_jsonl(path, stories):
    path.write_text("".join(json.dumps({"text": s.replace("\n", "\n\n"), "id": i}) + "\n"
                            for i, s in enumerate(stories)), encoding="utf-8")
    return path


def write_parquet(path, stories):
    pq.write_table(pa.table({"text": stories}), path)
    return path


@pytest.fixture(scope="module")
def stories() -> list[str]:
    return make_stories(60, seed=3)


@pytest.fixture(scope="module")
def tokenizer(stories) -> BPETokenizer:
    return BPETokenizer.train(stories, 400)


# -- loading -------------------------------------------------------------------------------


def test_all_file_formats_give_the_same_stories(tmp_path, stories):
    messy = [f"  {s}  \n\n" for s in stories]  # stray spaces and blank lines are not story
    files = [
        write_txt(tmp_path / "single.txt", stories),
        write_txt(tmp_path / "blank.txt", messy, blank_lines=True),
        write_jsonl(tmp_path / "lines.jsonl", stories),
        write_parquet(tmp_path / "table.parquet", stories),
    ]
    (tmp_path / "array.json").write_text(json.dumps([{"text": s} for s in messy]))
    files.append(tmp_path / "array.json")
    for split in ("train", "validation"):
        expected = [s for i, s in enumerate(stories) if i % 20 == 19] if split == "validation" \
            else [s for i, s in enumerate(stories) if i % 20 != 19]
        for path in files:
            assert load_stories(path, split) == expected, path.name


def test_real_stories_in_both_paragraph_styles_are_equal(tinystories_path, tmp_path):
    stories = load_stories(tinystories_path, limit=200)
    assert len(stories) == 200 and all(s == s.strip() and "\n\n" not in s for s in stories)
    assert not any(EOT in s for s in stories)
    assert sum("\n" in s for s in stories) > 50  # paragraphs survive, one newline each
    whole = write_txt(tmp_path / "train.txt", stories, blank_lines=True)
    as_jsonl = write_jsonl(tmp_path / "train.jsonl", stories)
    as_parquet = write_parquet(tmp_path / "train.parquet", stories)
    train = [s for i, s in enumerate(stories) if i % 20 != 19]
    for path in (whole, as_jsonl, as_parquet):
        assert load_stories(path) == train


def test_real_file_split_rule(tinystories_path):
    train = load_stories(tinystories_path, "train")
    validation = load_stories(tinystories_path, "validation")
    assert abs(len(validation) - (len(train) + len(validation)) / 20) <= 1
    assert not set(train) & set(validation)


def test_split_rule_in_a_single_file(tmp_path):
    numbered = [f"Story number {i}.\nThe end." for i in range(45)]
    path = write_txt(tmp_path / "stories.txt", numbered)
    assert load_stories(path, "validation") == [numbered[19], numbered[39]]
    assert load_stories(path, "train") == [s for i, s in enumerate(numbered) if i not in (19, 39)]
    assert load_stories(path, "train", limit=20) == numbered[:19] + [numbered[20]]
    assert load_stories(path, "validation", limit=1) == [numbered[19]]


def test_folder_maps_files_to_splits(tmp_path, stories):
    write_txt(tmp_path / "TinyStories-train.txt", stories[:30])
    write_txt(tmp_path / "TinyStories-valid.txt", stories[30:40], blank_lines=True)
    (tmp_path / "README.md").write_text("not data")
    assert load_stories(tmp_path) == stories[:30]
    assert load_stories(tmp_path, "validation") == stories[30:40]
    assert load_stories(str(tmp_path), "validation", limit=3) == stories[30:33]


def test_folder_errors(tmp_path, stories):
    write_txt(tmp_path / "train.txt", stories[:5])
    with pytest.raises(FileNotFoundError, match="no validation file.*'valid'"):
        load_stories(tmp_path)
    write_jsonl(tmp_path / "valid.jsonl", stories[5:8])
    write_parquet(tmp_path / "train-0.parquet", stories[:5])
    with pytest.raises(ValueError, match="train files of different types"):
        load_stories(tmp_path)


def test_nanolm_data_is_the_default_source(tmp_path, monkeypatch, stories):
    monkeypatch.setenv("NANOLM_DATA", str(write_txt(tmp_path / "s.txt", stories)))
    assert load_stories(split="validation") == [stories[19], stories[39], stories[59]]
    monkeypatch.setenv("NANOLM_DATA", str(tmp_path / "gone.txt"))
    with pytest.raises(FileNotFoundError, match="NANOLM_DATA=.*gone.txt"):
        load_stories()


def test_offline_without_data_falls_back_to_generated_stories(monkeypatch, capsys):
    monkeypatch.delenv("NANOLM_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    generated = make_stories(100)
    train = load_stories(limit=30)
    assert train == [s for i, s in enumerate(generated) if i % 20 != 19][:30]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and "make_stories" in lines[0]
    validation = load_stories(split="validation", limit=4)
    assert validation == [generated[i] for i in (19, 39, 59, 79)]
    assert len(load_stories(split="validation")) == data.FALLBACK_STORIES // 20


def test_an_explicit_hub_id_does_not_fall_back(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError):
        load_stories("someone/some-dataset", limit=2)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data source not found: .*nothing.txt"):
        load_stories(tmp_path / "nothing.txt")
    with pytest.raises(FileNotFoundError, match="data source not found: no/such/path"):
        load_stories("no/such/path")
    (tmp_path / "stories.csv").write_text("text\nhello\n")
    with pytest.raises(ValueError, match=r"stories.csv: unknown file type '.csv'"):
        load_stories(tmp_path / "stories.csv")
    (tmp_path / "empty.txt").write_text(f"\n{EOT}\n   \n{EOT}\n")
    with pytest.raises(ValueError, match="empty.txt: no stories in the 'train' split"):
        load_stories(tmp_path / "empty.txt")
    (tmp_path / "bad.txt").write_bytes(b"Good line.\nBad \xff byte.\n")
    with pytest.raises(ValueError, match=r"bad.txt: bytes that are not UTF-8 at byte offset 15 "
                                         r"\(line 2\)"):
        load_stories(tmp_path / "bad.txt")
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: bytes that are not UTF-8 at byte offset 30 "
                                         r"\(line 2\)"):
        load_stories(tmp_path / "bad.jsonl")
    (tmp_path / "notext.jsonl").write_text('{"text": "ok"}\n{"story": "no text"}\n')
    with pytest.raises(ValueError, match=r"notext.jsonl, line 2: expected a record with a "
                                         r"'text' field, got \['story'\]"):
        load_stories(tmp_path / "notext.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ValueError, match="broken.jsonl, line 2: not valid JSON"):
        load_stories(tmp_path / "broken.jsonl")
    pq.write_table(pa.table({"story": ["a"]}), tmp_path / "notext.parquet")
    with pytest.raises(ValueError, match=r"notext.parquet: expected a 'text' column"):
        load_stories(tmp_path / "notext.parquet")
    write_txt(tmp_path / "ok.txt", ["A story."])
    with pytest.raises(ValueError, match="split='valid': expected one of 'train', 'validation'"):
        load_stories(tmp_path / "ok.txt", split="valid")
    with pytest.raises(ValueError, match="limit=0: expected a positive number"):
        load_stories(tmp_path / "ok.txt", limit=0)


def test_normalize_story():
    assert normalize_story("  One.\n\n\nTwo.  \r\n Three.\n ") == "One.\nTwo.\nThree."
    assert normalize_story(" \n\n ") == ""


# -- the story generator -------------------------------------------------------------------


def test_make_stories_is_deterministic_and_a_prefix():
    assert make_stories(50, seed=7) == make_stories(50, seed=7)
    assert make_stories(20, seed=7) == make_stories(50, seed=7)[:20]
    assert make_stories(50, seed=7) != make_stories(50, seed=8)
    assert make_stories(0) == []
    with pytest.raises(ValueError, match="n=-1"):
        make_stories(-1)


def test_make_stories_is_varied_story_shaped():
    stories = make_stories(500, seed=0)
    assert len(set(stories)) >= 495
    assert all(s == normalize_story(s) and s.count("\n") >= 2 for s in stories)  # 3+ paragraphs
    assert sum('"' in s for s in stories) > 400  # dialogue
    assert 50 < sum("The lesson is" in s for s in stories) < 400  # a moral, sometimes
    words = {w for s in stories for w in re.findall(r"[a-z]+", s.lower())}
    assert len(words) > 400
    openings = {s.split(".")[0].split(" named ")[0].split(" called ")[0] for s in stories}
    assert len(openings) > 20
    assert not any("{" in s or "}" in s for s in stories)  # every template field filled


# -- packing and batches -------------------------------------------------------------------


def test_pack_stories_layout(tokenizer, stories):
    packed = pack_stories(tokenizer, stories[:10])
    assert packed.dtype == np.uint16 and packed.ndim == 1
    eot_positions = np.flatnonzero(packed == tokenizer.eot_id)
    assert len(eot_positions) == 10 and eot_positions[-1] == len(packed) - 1
    pieces = np.split(packed, eot_positions + 1)[:-1]
    assert [tokenizer.decode(p[:-1].tolist()) for p in pieces] == stories[:10]
    assert len(pack_stories(tokenizer, [])) == 0


def test_pack_stories_uses_encode_batch_with_the_same_result(stories):
    fast = train_fast_tokenizer(stories, 400)
    calls = []
    original = fast.encode_batch
    fast.encode_batch = lambda texts: calls.append(len(texts)) or original(texts)
    packed = pack_stories(fast, stories[:8])
    assert calls == [8]
    expected = [i for s in stories[:8] for i in [*fast.encode(s), fast.eot_id]]
    assert packed.tolist() == expected


def test_pack_stories_errors(stories):
    no_eot = BPETokenizer.train(stories[:5], 260, special_tokens=())
    with pytest.raises(ValueError, match="has no <\\|endoftext\\|> token"):
        pack_stories(no_eot, stories[:2])
    with_eot = BPETokenizer.train(stories[:5], 260)
    with pytest.raises(TypeError, match="a list of stories, not one string"):
        pack_stories(with_eot, stories[0])


def test_get_batch_follows_the_randint_contract():
    tokens = np.arange(1000, dtype=np.uint16)
    generator = torch.Generator().manual_seed(11)
    state = generator.get_state()
    x, y = get_batch(tokens, 8, 16, generator=generator)
    generator.set_state(state)
    starts = torch.randint(1000 - 16, (8,), generator=generator)
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (8, 16)
    assert torch.equal(x, starts[:, None] + torch.arange(16))
    assert torch.equal(y, x + 1)


def test_get_batch_shift_bounds_and_reproducibility(tokenizer, stories):
    tokens = pack_stories(tokenizer, stories)
    context = 32
    for seed in range(5):
        x, y = get_batch(tokens, 16, context, generator=torch.Generator().manual_seed(seed))
        x2, y2 = get_batch(tokens, 16, context, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(x, x2) and torch.equal(y, y2)
        assert torch.equal(x[:, 1:], y[:, :-1])
        assert int(x.min()) >= 0 and int(y.max()) < tokenizer.vocab_size
        for row_x, row_y in zip(x.tolist(), y.tolist()):
            windows = np.lib.stride_tricks.sliding_window_view(tokens, context + 1)
            assert (windows == np.array(row_x + row_y[-1:])).all(axis=1).any()
    # the shortest corpus: one window only, and every token reachable at the end
    x, y = get_batch(np.arange(5, dtype=np.uint16), 3, 4)
    assert x.tolist() == [[0, 1, 2, 3]] * 3 and y.tolist() == [[1, 2, 3, 4]] * 3


def test_get_batch_same_from_numpy_memmap_and_tensor(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 60_000, 500).astype(np.uint16)
    tokens.tofile(tmp_path / "t.bin")
    memmap = np.memmap(tmp_path / "t.bin", dtype=np.uint16, mode="r")
    results = [get_batch(source, 4, 10, generator=torch.Generator().manual_seed(3))
               for source in (tokens, memmap, torch.from_numpy(tokens.astype(np.int64)),
                              torch.from_numpy(tokens.copy()))]
    for x, y in results[1:]:
        assert torch.equal(x, results[0][0]) and torch.equal(y, results[0][1])
        assert x.dtype == torch.int64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_get_batch_on_cuda():
    tokens = np.arange(300, dtype=np.uint16)
    on_gpu = torch.from_numpy(tokens.astype(np.int64)).cuda()
    x_cpu, _ = get_batch(tokens, 4, 8, generator=torch.Generator().manual_seed(0))
    x, y = get_batch(tokens, 4, 8, generator=torch.Generator().manual_seed(0), device="cuda")
    assert x.is_cuda and torch.equal(x.cpu(), x_cpu)
    x, y = get_batch(on_gpu, 4, 8, generator=torch.Generator().manual_seed(0), device="cuda")
    assert x.is_cuda and torch.equal(x.cpu(), x_cpu) and torch.equal(y, x + 1)
    x, _ = get_batch(on_gpu, 4, 8, generator=torch.Generator("cuda").manual_seed(0),
                     device="cuda")
    assert x.is_cuda and x.shape == (4, 8)


def test_get_batch_errors():
    with pytest.raises(ValueError, match="5 tokens are too few for context_length=5"):
        get_batch(np.arange(5, dtype=np.uint16), 2, 5)
    with pytest.raises(ValueError, match="expected a 1-D array"):
        get_batch(np.zeros((4, 50), dtype=np.uint16), 2, 5)
    with pytest.raises(ValueError, match="batch_size=0"):
        get_batch(np.arange(50, dtype=np.uint16), 0, 5)


# -- prepared corpora ------------------------------------------------------------------------


def test_prepare_corpus_writes_counts_and_reuses(tmp_path, monkeypatch, stories):
    source = write_txt(tmp_path / "stories.txt", stories)
    corpus = prepare_corpus(source, vocab_size=400, cache_dir=tmp_path / "cache")
    assert isinstance(corpus, PreparedCorpus)
    for split, count in (("train", 57), ("validation", 3)):
        tokens = getattr(corpus, split)
        expected = load_stories(source, split)
        assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
        assert corpus.meta[split] == {
            "stories": count, "tokens": len(tokens),
            "bytes": sum(len(s.encode()) for s in expected)}
        assert np.array_equal(tokens, pack_stories(corpus.tokenizer, expected))
    assert corpus.meta["vocab_size"] == corpus.tokenizer.vocab_size == 400
    assert corpus.meta["fingerprint"] == corpus.tokenizer.fingerprint
    assert corpus.bytes_per_token("train") == corpus.meta["train"]["bytes"] / len(corpus.train)
    assert sorted(p.name for p in corpus.path.iterdir()) == [
        "meta.json", "tokenizer.json", "train.bin", "validation.bin"]
    stamp = (corpus.path / "train.bin").stat().st_mtime_ns

    # The second call reads what is there: no loading, no training, no tokenizing.
    def must_not_run(*args, **kwargs):
        raise AssertionError("prepare_corpus redid work it had cached")

    monkeypatch.setattr(data, "_load", must_not_run)
    monkeypatch.setattr(data, "train_fast_tokenizer", must_not_run)
    again = prepare_corpus(source, vocab_size=400, cache_dir=tmp_path / "cache")
    assert again.path == corpus.path and again.meta == corpus.meta
    assert (again.path / "train.bin").stat().st_mtime_ns == stamp
    assert np.array_equal(load_prepared(corpus.path).validation, corpus.validation)


def test_prepare_corpus_key_follows_source_limit_and_tokenizer(tmp_path, stories):
    source = write_txt(tmp_path / "stories.txt", stories)
    cache = tmp_path / "cache"
    first = prepare_corpus(source, vocab_size=300, cache_dir=cache)
    assert prepare_corpus(source, vocab_size=320, cache_dir=cache).path != first.path
    assert prepare_corpus(source, vocab_size=300, limit=20, cache_dir=cache).path != first.path
    given = BPETokenizer.train(stories, 300)
    with_given = prepare_corpus(source, tokenizer=given, cache_dir=cache)
    assert with_given.path != first.path
    assert with_given.tokenizer.fingerprint == given.fingerprint
    assert np.array_equal(with_given.validation,
                          pack_stories(given, load_stories(source, "validation")))
    write_txt(source, stories[:40])  # the file changes: size and mtime with it
    changed = prepare_corpus(source, vocab_size=300, cache_dir=cache)
    assert changed.path != first.path and changed.meta["train"]["stories"] == 38
    stamp = (changed.path / "meta.json").stat().st_mtime_ns
    forced = prepare_corpus(source, vocab_size=300, cache_dir=cache, force=True)
    assert forced.path == changed.path and (forced.path / "meta.json").stat().st_mtime_ns > stamp
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_interrupted_prepare_leaves_nothing_that_looks_ready(tmp_path, monkeypatch, stories):
    source = write_txt(tmp_path / "stories.txt", stories)
    cache = tmp_path / "cache"
    real_pack = data._pack_to_file

    def interrupted(tokenizer, split_stories, path, desc, **kwargs):
        if path.name == "validation.bin":
            raise KeyboardInterrupt
        return real_pack(tokenizer, split_stories, path, desc, **kwargs)

    monkeypatch.setattr(data, "_pack_to_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(source, vocab_size=300, cache_dir=cache)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(data, "_pack_to_file", real_pack)
    corpus = prepare_corpus(source, vocab_size=300, cache_dir=cache)
    assert corpus.meta["validation"]["stories"] == 3


def test_prepare_corpus_offline_fallback_and_default_cache(monkeypatch, capsys):
    monkeypatch.delenv("NANOLM_DATA", raising=False)
    corpus = prepare_corpus(vocab_size=300, limit=40)
    assert corpus.path.parent == data.utils.cache_dir()
    assert corpus.meta["source"].startswith("generated")
    assert corpus.meta["train"]["stories"] == corpus.meta["validation"]["stories"] == 40
    assert capsys.readouterr().out.count("unreachable") == 1
    assert prepare_corpus(vocab_size=300, limit=40).path == corpus.path


def test_prepared_corpus_from_the_real_sample(tinystories_path, tmp_path):
    source = tmp_path / "slice.txt"
    write_txt(source, load_stories(tinystories_path, limit=200))
    corpus = prepare_corpus(source, vocab_size=1000, cache_dir=tmp_path / "cache")
    assert corpus.meta["train"]["stories"] == 190
    assert 3.0 < corpus.bytes_per_token("train") < 5.0  # ~4 bytes a token at 1k ids
    assert int(np.count_nonzero(corpus.train == corpus.tokenizer.eot_id)) == 190


def test_load_prepared_errors(tmp_path, stories):
    with pytest.raises(FileNotFoundError, match="not a prepared corpus"):
        load_prepared(tmp_path)
    corpus = prepare_corpus(write_txt(tmp_path / "s.txt", stories), vocab_size=300,
                            cache_dir=tmp_path / "cache")
    with open(corpus.path / "train.bin", "r+b") as file:
        file.truncate(10)
    with pytest.raises(ValueError, match="train.bin: missing or not .* tokens"):
        load_prepared(corpus.path)
    with pytest.raises(ValueError, match="split='test'"):
        corpus.bytes_per_token("test")
    assert os.path.isdir(corpus.path)


@pytest.mark.parametrize("limit", [None, 7])
def test_hub_reader_on_a_local_dataset_of_the_same_shape(tmp_path, monkeypatch, stories, limit):
    """The hub path (``datasets.load_dataset``, streaming when limited) on local parquet files
    laid out like the hub's TinyStories: train and validation splits with a ``text`` column."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    folder = tmp_path / "dataset"
    folder.mkdir()
    write_parquet(folder / "train.parquet", [s.replace("\n", "\n\n") for s in stories[:40]])
    write_parquet(folder / "validation.parquet", stories[40:])
    hub = data._Source("hub", str(folder))
    assert data._stories_from(hub, "train", limit) == stories[:40][:limit]
    assert data._stories_from(hub, "validation", limit) == stories[40:][:limit]
    other = tmp_path / "other"
    other.mkdir()
    for split in ("train", "validation"):
        pq.write_table(pa.table({"story": ["x"]}), other / f"{split}.parquet")
    with pytest.raises(ValueError, match=r"\(validation\): expected a 'text' column"):
        data._stories_from(data._Source("hub", str(other)), "validation", limit)


def test_an_unreachable_hub_is_found_by_one_probe_before_datasets_retries(monkeypatch, capsys):
    """Not offline, not reachable (a refused port stands in for a machine without network):
    the stories come from the generator after one connection attempt; ``datasets``, which
    would retry for about a minute, is never asked."""
    import socket

    import datasets

    monkeypatch.delenv("NANOLM_DATA", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: asked.append(a))
    with socket.socket() as closed:  # bound, not listening: every connection is refused
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        stories = load_stories(limit=5)
    assert stories == [s for i, s in enumerate(make_stories(10)) if i % 20 != 19][:5]
    assert asked == []
    assert capsys.readouterr().out.count("unreachable") == 1
