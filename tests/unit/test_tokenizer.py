"""nanolm_lib.course.tokenizer: the from-scratch BPE functions, BPETokenizer, FastTokenizer."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from tokenizers import Tokenizer, pre_tokenizers

from nanolm_lib.course.data import load_stories
from nanolm_lib.course.stories import make_stories
from nanolm_lib.course.tokenizer import (
    EOT,
    BPETokenizer,
    FastTokenizer,
    decode,
    encode,
    get_pair_counts,
    load_tokenizer,
    merge_pair,
    pretokenize,
    train_bpe,
    train_fast_tokenizer,
)

TRICKY_TEXTS = [
    "",
    "Once upon a time, a little dog named Max wasn't sad. He'd say: \"Let's play!\"",
    "Emoji: 😀👍🏽👨‍👩‍👧 and flags 🇫🇷",
    "CJK: 你好，世界。こんにちは 안녕하세요",
    "Mojibake: CafÃ© naÃ¯ve â€œquotedâ€\x9d",
    "Control: \x00\x01\x1b[31m\t\r\n\x7f end",
    "  leading and trailing spaces   \n\n\n  ",
    "numbers 3.14159 and 1,000,000 and x_y__z",
    "Ünïcödé accents: àéîõü ÀÉÎÕÜ ß ø å",
]


def random_text(rng: random.Random, length: int) -> str:
    """Random code points from several scripts (no lone surrogates: they are not text)."""
    ranges = [(0x20, 0x7E), (0x00, 0x1F), (0xA0, 0x24F), (0x370, 0x3FF), (0x4E00, 0x4FFF),
              (0x1F300, 0x1F64F), (0x0600, 0x06FF)]
    chars = []
    for _ in range(length):
        lo, hi = rng.choice(ranges)
        chars.append(chr(rng.randint(lo, hi)))
    return "".join(chars)


@pytest.fixture(scope="module")
def stories() -> list[str]:
    return make_stories(300, seed=1)


@pytest.fixture(scope="module")
def scratch(stories) -> BPETokenizer:
    return BPETokenizer.train(stories, 600)


@pytest.fixture(scope="module")
def fast(stories) -> FastTokenizer:
    return train_fast_tokenizer(stories, 600)


# -- the functions of lesson 01 --------------------------------------------------------


def test_get_pair_counts_counts_neighbours():
    assert get_pair_counts([1, 2, 1, 2]) == Counter({(1, 2): 2, (2, 1): 1})
    assert get_pair_counts([5, 5, 5]) == Counter({(5, 5): 2})  # overlapping pairs all count
    assert get_pair_counts([7]) == Counter()
    assert get_pair_counts([]) == Counter()


def test_merge_pair_is_left_to_right_and_non_overlapping():
    a = ord("a")
    assert merge_pair([a, a, a], (a, a), 256) == [256, a]
    assert merge_pair([a, a, a, a], (a, a), 256) == [256, 256]
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge_pair([1, 2, 3], (3, 1), 9) == [1, 2, 3]
    assert merge_pair([], (1, 2), 9) == []
    ids = [1, 2]
    merge_pair(ids, (1, 2), 9)
    assert ids == [1, 2], "merge_pair must not modify its input"


def test_train_bpe_ties_go_to_the_smallest_pair():
    # "abcd": three pairs, each seen once; the smallest wins, then the smallest again.
    merges, vocab = train_bpe(["abcd"], 259)
    assert merges == [(97, 98), (99, 100), (256, 257)]
    assert vocab[256] == b"ab" and vocab[257] == b"cd" and vocab[258] == b"abcd"
    assert [vocab[i] for i in range(256)] == [bytes([i]) for i in range(256)]


def test_train_bpe_most_frequent_pair_wins():
    # pre-tokens "xy", " xy", " xy", " zw": (x, y) is seen 3 times, ( , x) 2, the rest once
    merges, vocab = train_bpe("xy xy xy zw", 258)
    x, y = ord("x"), ord("y")
    assert merges == [(x, y), (ord(" "), 256)]
    assert vocab[257] == b" xy"


def naive_train_bpe(texts, vocab_size):
    """Re-count every pair of every word at each step: slow but obviously right."""
    words = Counter()
    for text in texts:
        words.update(pretokenize(text))
    sequences = {word: list(word.encode()) for word in words}
    merges = []
    for new_id in range(256, vocab_size):
        counts = Counter()
        for word, ids in sequences.items():
            for pair, n in get_pair_counts(ids).items():
                counts[pair] += n * words[word]
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        sequences = {w: merge_pair(ids, best, new_id) for w, ids in sequences.items()}
    return merges


def test_train_bpe_matches_a_naive_recount(stories):
    tie_heavy = ["aaaa bbbb abab baba aaa bbb", "ab ba ab ba", "zzzzzzz"]
    for texts, size in ((stories[:60], 420), (tie_heavy, 300)):
        merges, vocab = train_bpe(texts, size)
        assert merges == naive_train_bpe(texts, size)
        for i, (a, b) in enumerate(merges):
            assert vocab[256 + i] == vocab[a] + vocab[b]


def test_train_bpe_is_reproducible_and_stops_when_nothing_is_left(stories):
    # Counts, and ties broken by pair, do not depend on the order of the texts.
    shuffled = list(stories[:50])
    random.Random(0).shuffle(shuffled)
    assert train_bpe(stories[:50], 400) == train_bpe(shuffled, 400)
    merges, vocab = train_bpe(["ab ab"], 1000)  # words "ab" and " ab": 2 merges possible
    assert merges == [(97, 98), (32, 256)] and len(vocab) == 258


def test_encode_applies_merges_in_rank_order():
    a, b, c = ord("a"), ord("b"), ord("c")
    # (b, c) was learned before (a, b): "abc" must become [a, bc], not [ab, c].
    merges = [(b, c), (a, b)]
    assert encode("abc", merges) == [a, 256]
    assert encode("abc", list(reversed(merges))) == [256, c]
    assert encode("", merges) == []


def test_merges_never_cross_pretokens():
    merges, vocab = train_bpe(["dog. dog. dog. dog."], 300)
    for token in vocab.values():
        # a learned token never holds a letter followed by "." (different pre-tokens)
        assert b"g." not in token and b". " not in token


def test_encode_decode_round_trips(stories):
    merges, vocab = train_bpe(stories[:100], 500)
    rng = random.Random(0)
    for text in TRICKY_TEXTS + stories[100:110] + [random_text(rng, 80) for _ in range(20)]:
        ids = encode(text, merges)
        assert all(0 <= i < len(vocab) for i in ids)
        assert decode(ids, vocab) == text
    assert len(encode(stories[100], merges)) < len(stories[100].encode()) / 2  # it compresses


def test_decode_never_raises_on_known_ids_and_names_unknown_ones(stories):
    merges, vocab = train_bpe(stories[:40], 400)
    rng = random.Random(1)
    for _ in range(200):
        ids = [rng.randrange(len(vocab)) for _ in range(rng.randrange(12))]
        text = decode(ids, vocab)
        assert isinstance(text, str)
    assert decode([0xE2, 0x82], vocab) == "\ufffd"  # a cut character becomes U+FFFD
    with pytest.raises(ValueError, match="unknown token id 400"):
        decode([1, 400], vocab)
    with pytest.raises(ValueError, match="unknown token id -1"):
        decode([-1], vocab)


def test_pretokenize_matches_gpt2_regex_of_hf_tokenizers(tinystories_path):
    """Same pieces as GPT-2's pattern (as run by `tokenizers`) on real stories and oddities."""
    hf = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    texts = load_stories(tinystories_path, limit=200) + TRICKY_TEXTS
    for text in texts:
        expected = [text[start:end] for _, (start, end) in hf.pre_tokenize_str(text)]
        assert pretokenize(text) == expected
    assert "".join(pretokenize(random_text(random.Random(2), 500))) == random_text(
        random.Random(2), 500)


# -- tokenizer objects -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["scratch", "fast"])
def test_round_trips_and_attributes(kind, request, stories):
    tokenizer = request.getfixturevalue(kind)
    assert tokenizer.vocab_size == 600 == len(tokenizer.vocab)
    assert tokenizer.eot_id == 599 and tokenizer.vocab[tokenizer.eot_id] == EOT.encode()
    assert len(tokenizer.merges) == 600 - 256 - 1
    for i, (a, b) in enumerate(tokenizer.merges):
        assert tokenizer.vocab[256 + i] == tokenizer.vocab[a] + tokenizer.vocab[b]
    rng = random.Random(3)
    for text in TRICKY_TEXTS + stories[:5] + [random_text(rng, 60) for _ in range(20)]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    for _ in range(100):
        ids = [rng.randrange(tokenizer.vocab_size) for _ in range(rng.randrange(10))]
        assert isinstance(tokenizer.decode(ids), str)
    with pytest.raises(ValueError, match="unknown token id 600"):
        tokenizer.decode([600])
    assert repr(tokenizer) == (f"{type(tokenizer).__name__}(vocab_size=600, "
                               f"fingerprint={tokenizer.fingerprint!r})")


@pytest.mark.parametrize("kind", ["scratch", "fast"])
def test_special_token_is_one_id_never_learned(kind, request):
    tokenizer = request.getfixturevalue(kind)
    eot = tokenizer.eot_id
    ids = tokenizer.encode(f"The end.{EOT}Once upon{EOT}{EOT}")
    assert ids.count(eot) == 3
    assert tokenizer.decode(ids) == f"The end.{EOT}Once upon{EOT}{EOT}"
    assert tokenizer.encode(EOT) == [eot]
    # the parts of the EOT string are never a learned token, nor inside one
    for token_id, token in tokenizer.vocab.items():
        if token_id != eot:
            assert b"<|" not in token and b"endoftext" not in token and EOT.encode() not in token
    # "<|endoftext" without its end is ordinary text
    assert eot not in tokenizer.encode("<|endoftext")


def test_training_cuts_texts_at_special_tokens():
    joined = f"{EOT}".join(["endoftext endoftext endoftext"] * 20)
    tokenizer = BPETokenizer.train([joined], 300)
    # "endoftext" is in the text itself, so it may be learned; "|>" and "<|" are only in EOT
    assert not any(b"|>" in t or b"<|" in t for i, t in tokenizer.vocab.items()
                   if i != tokenizer.eot_id)
    fast = train_fast_tokenizer([joined], 300)
    assert not any(b"|>" in t or b"<|" in t for i, t in fast.vocab.items() if i != fast.eot_id)


def test_fast_and_scratch_encode_alike_with_the_same_merges(scratch, stories):
    """HF's BPE, given our merges, produces our ids: same algorithm, same layout."""
    twin = FastTokenizer.from_merges(scratch.merges)
    assert twin.vocab == scratch.vocab and twin.eot_id == scratch.eot_id
    for text in stories[:20] + TRICKY_TEXTS:
        assert twin.encode(text) == scratch.encode(text)
        assert twin.encode(text) == encode(text, scratch.merges)
    assert twin.encode_batch(stories[:20]) == [scratch.encode(s) for s in stories[:20]]


def test_fast_tokenizer_on_real_stories(tinystories_path):
    stories = load_stories(tinystories_path, limit=200)
    tokenizer = train_fast_tokenizer(stories, 1000)
    assert tokenizer.vocab_size == 1000
    batch = tokenizer.encode_batch(stories[:50])
    assert batch == [tokenizer.encode(s) for s in stories[:50]]
    assert [tokenizer.decode(ids) for ids in batch] == stories[:50]
    text = "\n".join(stories[:50])
    assert len(text.encode()) / len(tokenizer.encode(text)) > 3  # > 3 bytes per token


@pytest.mark.parametrize("kind", ["scratch", "fast"])
def test_save_load_round_trip(kind, request, tmp_path, stories):
    tokenizer = request.getfixturevalue(kind)
    path = tokenizer.save(tmp_path / "tok.json")
    loaded = load_tokenizer(path)
    assert type(loaded) is type(tokenizer)
    assert loaded.merges == tokenizer.merges and loaded.vocab == tokenizer.vocab
    assert loaded.eot_id == tokenizer.eot_id and loaded.vocab_size == tokenizer.vocab_size
    assert loaded.fingerprint == tokenizer.fingerprint
    text = stories[7] + EOT + TRICKY_TEXTS[2]
    assert loaded.encode(text) == tokenizer.encode(text)
    assert type(tokenizer).load(path).merges == tokenizer.merges
    # a folder holding tokenizer.json loads too (run folders, prepared corpora)
    tokenizer.save(tmp_path / "tokenizer.json")
    assert load_tokenizer(tmp_path).fingerprint == tokenizer.fingerprint
    assert not list(tmp_path.glob("*.tmp"))


def test_fast_tokenizer_file_is_a_plain_hf_tokenizer(fast, tmp_path, stories):
    fast.save(tmp_path / "tok.json")
    hf = Tokenizer.from_file(str(tmp_path / "tok.json"))
    assert hf.encode(stories[0], add_special_tokens=False).ids == fast.encode(stories[0])
    assert hf.token_to_id(EOT) == fast.eot_id


def test_loading_the_wrong_kind_or_a_bad_file_fails_clearly(scratch, fast, tmp_path):
    scratch.save(tmp_path / "scratch.json")
    fast.save(tmp_path / "fast.json")
    with pytest.raises(ValueError, match="not a Hugging Face tokenizer"):
        FastTokenizer.load(tmp_path / "scratch.json")
    with pytest.raises(ValueError, match="not a nanolm-bpe tokenizer"):
        BPETokenizer.load(tmp_path / "fast.json")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="unknown tokenizer file"):
        load_tokenizer(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not a tokenizer JSON"):
        load_tokenizer(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="refers to an id not defined"):
        BPETokenizer([(97, 300)])


def test_fingerprint_tells_tokenizers_apart(scratch, fast, stories):
    assert scratch.fingerprint == BPETokenizer(scratch.merges).fingerprint
    assert scratch.fingerprint != BPETokenizer(scratch.merges[:-1]).fingerprint
    assert scratch.fingerprint != BPETokenizer(scratch.merges, special_tokens=()).fingerprint
    assert fast.fingerprint != scratch.fingerprint
    assert train_fast_tokenizer(stories, 600).fingerprint == fast.fingerprint  # deterministic


def test_specials_other_than_eot():
    tokenizer = BPETokenizer.train(["hello world"] * 5, 262, special_tokens=(EOT, "<|pad|>"))
    assert tokenizer.special_tokens == {EOT: 260, "<|pad|>": 261}
    assert tokenizer.encode(f"hi<|pad|>{EOT}") == [*tokenizer.encode("hi"), 261, 260]
    plain = BPETokenizer.train(["hello world"] * 5, 260, special_tokens=())
    assert plain.eot_id is None and plain.encode(EOT) == encode(EOT, plain.merges)


@pytest.mark.parametrize("train", [BPETokenizer.train, train_fast_tokenizer])
def test_training_errors(train):
    with pytest.raises(ValueError, match=r"vocab_size=256 is too small: .* at least 257"):
        train(["some text"], 256)
    with pytest.raises(ValueError, match=r"vocab_size=70000 is too large: .*uint16"):
        train(["some text"], 70_000)
    with pytest.raises(ValueError, match="training text is empty"):
        train([], 300)
    with pytest.raises(ValueError, match="training text is empty"):
        train([EOT, ""], 300)


def test_train_bpe_errors():
    with pytest.raises(ValueError, match="vocab_size=100: must be at least 256"):
        train_bpe(["text"], 100)
    with pytest.raises(ValueError, match="training text is empty"):
        train_bpe([""], 300)
