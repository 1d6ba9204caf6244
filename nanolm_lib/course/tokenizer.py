"""Byte-level BPE tokenizers (lesson 01).

Two tokenizers with the same interface:

* the from-scratch one, written as plain functions that lesson 01 asks students to write
  (:func:`get_pair_counts`, :func:`merge_pair`, :func:`train_bpe`, :func:`encode`,
  :func:`decode`) and wrapped by :class:`BPETokenizer`, which adds special tokens and saving;
* :class:`FastTokenizer`, the same algorithm run by Hugging Face ``tokenizers`` (Rust), which
  trains a 10,000-token vocabulary on real data in seconds and encodes in parallel
  (:func:`train_fast_tokenizer`).

Both share one id layout: ids 0-255 are the 256 byte values, merge ``i`` creates id
``256 + i``, and special tokens such as ``<|endoftext|>`` come after the merges. Tokens are
stored as ``uint16`` later, so a vocabulary holds at most 65,536 ids.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from nanolm_lib.errors import UsageError
from nanolm_lib.utils import atomic_write, progress, progress_disabled

EOT = "<|endoftext|>"
"""The end-of-text special token: it ends every story in a packed corpus."""

MAX_VOCAB_SIZE = 2**16  # token ids are stored as uint16

# GPT-2's pre-tokenization: contractions, runs of letters, runs of digits, runs of other
# symbols (each optionally led by one space), and whitespace. Merges never cross these
# pieces, so " dog" and " dog." share the token " dog". GPT-2 writes letters as \p{L} and
# digits as \p{N}; Python's `re` has no \p{..}, so letters are "word characters that are
# neither digits nor the underscore" ([^\W\d_]) and digits are \d. The two agree on all of
# TinyStories; they differ only on rare numerals such as "²" or "Ⅷ", which `re` counts as
# letters (GPT-2 splits "a²" into "a", "²"; this pattern keeps "a²" whole).
PRETOKENIZE_PATTERN = (
    r"'(?:[sdmt]|ll|ve|re)"  # 's 'd 'm 't 'll 've 're
    r"| ?[^\W\d_]+"  # a word, with its leading space
    r"| ?\d+"  # a number
    r"| ?(?:[^\s\w]|_)+"  # punctuation and other symbols
    r"|\s+(?!\S)"  # whitespace, leaving the last space to the word that follows
    r"|\s+"
)
_PRETOKENIZE = re.compile(PRETOKENIZE_PATTERN)


def pretokenize(text: str) -> list[str]:
    """Split ``text`` into the pieces that BPE merges never cross (GPT-2 style)."""
    return _PRETOKENIZE.findall(text)


# --------------------------------------------------------------------------------------
# The from-scratch algorithm: what lesson 01 builds


def get_pair_counts(ids: Sequence[int]) -> Counter:
    """Count each pair of neighbouring ids: ``[1, 2, 1, 2]`` -> ``{(1, 2): 2, (2, 1): 1}``."""
    return Counter(zip(ids, ids[1:]))


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids`` by ``new_id``.

    Scans left to right and never reuses an id that was just merged, so occurrences do not
    overlap: merging ``(a, a)`` in ``[a, a, a]`` gives ``[new_id, a]``.
    """
    merged = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def train_bpe(texts: str | Iterable[str], vocab_size: int
              ) -> tuple[list[tuple[int, int]], dict[int, bytes]]:
    """Learn ``vocab_size - 256`` byte-pair merges from ``texts`` (a string or strings).

    Returns ``(merges, vocab)``: ``merges[i]`` is the pair of ids that merge ``i`` joins into
    the new id ``256 + i``, and ``vocab`` maps every id to its bytes (ids 0-255 are the bytes
    themselves). Each step merges the most frequent pair; among equally frequent pairs the
    smallest ``(a, b)`` wins (compare ``a`` first, then ``b``), which makes the merges
    reproducible. Training stops early, with fewer merges, when no pair is left.

    The text is cut into pre-tokens (:func:`pretokenize`) and each distinct pre-token is
    stored once with its count, so a merge only touches the words that contain its pair.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size={vocab_size}: must be at least 256 (one id per byte)")
    if isinstance(texts, str):
        texts = [texts]
    word_counts = Counter()
    for text in texts:
        word_counts.update(pretokenize(text))
    if not word_counts:
        raise ValueError("train_bpe: the training text is empty")

    words = [list(word.encode("utf-8")) for word in word_counts]  # each word as ids
    counts = list(word_counts.values())  # how often each word occurs

    # How often each pair occurs in the whole text, and which words hold it.
    pair_counts = Counter()
    words_with_pair = defaultdict(set)
    for w, (word, count) in enumerate(zip(words, counts)):
        for pair, n in get_pair_counts(word).items():
            pair_counts[pair] += n * count
            words_with_pair[pair].add(w)

    # A heap of (-count, pair) finds the most frequent pair, ties going to the smallest
    # pair. Counts change as merges go; an entry whose count is out of date is skipped.
    heap = [(-n, pair) for pair, n in pair_counts.items()]
    heapq.heapify(heap)

    merges = []
    vocab = {i: bytes([i]) for i in range(256)}
    for new_id in progress(range(256, vocab_size), desc="BPE merges", leave=False):
        best = _most_frequent_pair(heap, pair_counts)
        if best is None:  # every word is a single token: nothing left to merge
            break
        merges.append(best)
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        changed = _merge_in_words(best, new_id, words, counts, pair_counts, words_with_pair)
        for pair in changed:
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], pair))
            else:
                del pair_counts[pair]
    return merges, vocab


def _most_frequent_pair(heap: list, pair_counts: Counter) -> tuple[int, int] | None:
    """Pop the heap down to its first entry whose count is current: the pair to merge next."""
    while heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair) == -neg_count:
            return pair
    return None


def _merge_in_words(pair: tuple[int, int], new_id: int, words: list[list[int]],
                    counts: list[int], pair_counts: Counter, words_with_pair: dict) -> set:
    """Merge ``pair`` into ``new_id`` in the words that hold it, and re-count only their
    pairs; returns the pairs whose count changed."""
    changed = set()
    for w in words_with_pair.pop(pair):
        old_pairs = get_pair_counts(words[w])
        words[w] = merge_pair(words[w], pair, new_id)
        new_pairs = get_pair_counts(words[w])
        for other in old_pairs.keys() | new_pairs.keys():
            difference = new_pairs[other] - old_pairs[other]
            if difference:
                pair_counts[other] += difference * counts[w]
                changed.add(other)
            if other in new_pairs:
                words_with_pair[other].add(w)
    return changed


def _encode_piece(piece: bytes, ranks: dict[tuple[int, int], int]) -> list[int]:
    """BPE-encode one pre-token: apply the earliest-learned merge present, until none is."""
    ids = list(piece)
    while len(ids) >= 2:
        pair = min(get_pair_counts(ids), key=lambda p: ranks.get(p, float("inf")))
        if pair not in ranks:
            break
        ids = merge_pair(ids, pair, ranks[pair])
    return ids


def encode(text: str, merges: Sequence[tuple[int, int]]) -> list[int]:
    """Encode ``text`` into ids with the ``merges`` learned by :func:`train_bpe`.

    The text is pre-tokenized like in training; within each piece the merges are applied in
    the order they were learned (rank order), exactly reproducing training.
    """
    ranks = {tuple(pair): 256 + i for i, pair in enumerate(merges)}  # pair -> its new id
    ids = []
    for piece in pretokenize(text):
        ids.extend(_encode_piece(piece.encode("utf-8"), ranks))
    return ids


def decode(ids: Iterable[int], vocab: dict[int, bytes]) -> str:
    """Turn ids back into text. Never raises on known ids: bytes that are not valid UTF-8
    (a token sequence cut inside a character) become U+FFFD, the replacement character."""
    pieces = []
    for token in ids:
        token = int(token)
        if token not in vocab:
            raise ValueError(
                f"decode: unknown token id {token}; this vocabulary has {len(vocab)} ids"
            )
        pieces.append(vocab[token])
    return b"".join(pieces).decode("utf-8", errors="replace")


def _vocab_from_merges(merges: Sequence[tuple[int, int]]) -> dict[int, bytes]:
    """The bytes of every id that ``merges`` define (ids 0-255 are the bytes themselves)."""
    vocab = {i: bytes([i]) for i in range(256)}
    for i, (a, b) in enumerate(merges):
        new_id = 256 + i
        if not (0 <= a < new_id and 0 <= b < new_id):
            raise ValueError(f"merge {i} = ({a}, {b}) refers to an id not defined before it")
        vocab[new_id] = vocab[a] + vocab[b]
    return vocab


# --------------------------------------------------------------------------------------
# Tokenizer objects: special tokens, saving, loading


def _check_vocab_size(vocab_size: int, special_tokens: Sequence[str]) -> None:
    smallest = 256 + len(special_tokens)
    if vocab_size < smallest:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: 256 byte ids + {len(special_tokens)} "
            f"special token(s) need at least {smallest}"
        )
    if vocab_size > MAX_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size={vocab_size} is too large: tokens are stored as uint16, so at most "
            f"{MAX_VOCAB_SIZE} ids"
        )


def _split_on_specials(texts: Iterable[str], special_tokens: Sequence[str]) -> Iterator[str]:
    """The pieces of ``texts`` between special tokens, so training never sees them."""
    if not special_tokens:
        yield from texts
        return
    splitter = re.compile("|".join(re.escape(s) for s in special_tokens))
    for text in texts:
        for piece in splitter.split(text):
            if piece:
                yield piece


class Tokenizer:
    """What both tokenizers share (as minbpe's base ``Tokenizer``): ids laid out as bytes
    0-255, merge i -> 256 + i, then the special tokens; ``merges``, ``vocab`` (id -> bytes),
    ``special_tokens`` (string -> id), ``vocab_size``, ``eot_id``; decoding, a fingerprint,
    and saving to / loading from a JSON file. A subclass says how it encodes, what JSON it
    writes (:meth:`_to_json`) and how it is rebuilt from that JSON (:meth:`_from_json`).
    """

    kind = ""
    described = ""  # what its file is, in an error message
    merges: list[tuple[int, int]]
    vocab: dict[int, bytes]
    special_tokens: dict[str, int]
    vocab_size: int
    eot_id: int | None

    @property
    def fingerprint(self) -> str:
        """A short hash of what the tokenizer does (kind, merges, special tokens)."""
        content = json.dumps({"kind": self.kind, "merges": [list(p) for p in self.merges],
                              "special_tokens": list(self.special_tokens)})
        return hashlib.sha256(content.encode()).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` (special tokens as their strings); invalid UTF-8 becomes U+FFFD."""
        return decode(ids, self.vocab)

    def _to_json(self) -> str:
        raise NotImplementedError

    @classmethod
    def _reads(cls, data: dict) -> bool:
        """Whether ``data`` (a parsed tokenizer file) is this kind's."""
        raise NotImplementedError

    @classmethod
    def _from_json(cls, data: dict) -> Tokenizer:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer's JSON file, atomically."""
        return atomic_write(Path(path), lambda temp: temp.write_text(self._to_json(),
                                                                     encoding="utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load what :meth:`save` wrote (a file, or a folder holding ``tokenizer.json``)."""
        data = _read_tokenizer_json(path)
        if not cls._reads(data):
            raise UsageError(f"{path}: not a {cls.described} tokenizer file (use load_tokenizer)")
        return cls._from_json(data)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(vocab_size={self.vocab_size}, "
                f"fingerprint={self.fingerprint!r})")


class BPETokenizer(Tokenizer):
    """The from-scratch byte-level BPE tokenizer, with special tokens.

    Special tokens (by default only ``<|endoftext|>``) get the ids right after the merges.
    Each is one id: :meth:`encode` cuts the text at special-token strings before BPE, so a
    special token is never split, nor merged with its neighbours.
    """

    kind = "nanolm-bpe"
    described = "nanolm-bpe"

    def __init__(self, merges: Sequence[tuple[int, int]], special_tokens: Sequence[str] = (EOT,)):
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.vocab = _vocab_from_merges(self.merges)
        self.special_tokens = {s: len(self.vocab) + j for j, s in enumerate(special_tokens)}
        if len(self.special_tokens) != len(special_tokens):
            raise ValueError(f"special_tokens {list(special_tokens)} has duplicates")
        for token, token_id in self.special_tokens.items():
            self.vocab[token_id] = token.encode("utf-8")
        self.vocab_size = len(self.vocab)
        _check_vocab_size(self.vocab_size, special_tokens)
        self.eot_id = self.special_tokens.get(EOT)
        self._ranks = {pair: 256 + i for i, pair in enumerate(self.merges)}
        self._piece_cache: dict[str, list[int]] = {}  # pre-token -> ids; stories repeat words
        # Longest first, so that a special token that contains another one wins.
        specials = sorted(self.special_tokens, key=len, reverse=True)
        self._special_splitter = (
            re.compile("(" + "|".join(re.escape(s) for s in specials) + ")") if specials else None
        )

    @classmethod
    def train(cls, texts: str | Iterable[str], vocab_size: int,
              special_tokens: Sequence[str] = (EOT,)) -> BPETokenizer:
        """Train on ``texts``; ``vocab_size`` counts all ids: 256 bytes, merges and specials.

        The texts are cut at special tokens first, so no merge learns a piece of one. A text
        too small to give that many merges gives a smaller vocabulary (see ``vocab_size``).
        """
        special_tokens = tuple(special_tokens)
        _check_vocab_size(vocab_size, special_tokens)
        if isinstance(texts, str):
            texts = [texts]
        pieces = list(_split_on_specials(texts, special_tokens))
        merges, _ = train_bpe(pieces, vocab_size - len(special_tokens))
        return cls(merges, special_tokens)

    def _encode_ordinary(self, text: str) -> list[int]:
        ids = []
        for piece in pretokenize(text):
            if piece not in self._piece_cache:
                self._piece_cache[piece] = _encode_piece(piece.encode("utf-8"), self._ranks)
            ids.extend(self._piece_cache[piece])
        return ids

    def encode(self, text: str) -> list[int]:
        """Encode ``text``; special-token strings in it become their single ids."""
        if self._special_splitter is None:
            return self._encode_ordinary(text)
        ids = []
        # With a capturing group, re.split puts the special tokens at the odd positions.
        for i, part in enumerate(self._special_splitter.split(text)):
            if i % 2:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self._encode_ordinary(part))
        return ids

    def _to_json(self) -> str:
        """``kind``, ``merges``, ``special_tokens`` (and the pre-tokenizer's pattern)."""
        return json.dumps({"kind": self.kind, "version": 1, "pattern": PRETOKENIZE_PATTERN,
                           "merges": [list(pair) for pair in self.merges],
                           "special_tokens": list(self.special_tokens)}) + "\n"

    @classmethod
    def _reads(cls, data: dict) -> bool:
        return data.get("kind") == cls.kind

    @classmethod
    def _from_json(cls, data: dict) -> BPETokenizer:
        return cls([tuple(p) for p in data["merges"]], data["special_tokens"])


# --------------------------------------------------------------------------------------
# The fast tokenizer: the same byte-level BPE, run by Hugging Face `tokenizers`


def _byte_to_char() -> dict[int, str]:
    """GPT-2's byte-level trick: each byte is shown as a printable character.

    HF's byte-level BPE works on strings, so bytes such as the space (shown as "Ġ") or a
    newline ("Ċ") are written as printable characters. Printable ASCII and Latin-1 bytes
    stand for themselves; the others are mapped, in order, to code points from 256 up.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


BYTE_TO_CHAR = _byte_to_char()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


class FastTokenizer(Tokenizer):
    """Byte-level BPE run by Hugging Face ``tokenizers``: the same interface as
    :class:`BPETokenizer`, plus :meth:`encode_batch`, which encodes many texts in parallel.

    ``merges`` (id pairs) and ``vocab`` (id -> bytes) are read from the HF model, so they
    mean the same as in :class:`BPETokenizer`.
    """

    kind = "hf-bytelevel-bpe"
    described = "Hugging Face"

    def __init__(self, hf_tokenizer):
        self.hf_tokenizer = hf_tokenizer
        model = json.loads(hf_tokenizer.to_str())["model"]
        if model.get("type") != "BPE":
            raise ValueError(f"expected a BPE tokenizer, got a {model.get('type')} model")
        token_to_id = dict(model["vocab"])
        self.vocab = {i: bytes(CHAR_TO_BYTE[c] for c in token) for token, i in token_to_id.items()}
        merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
        self.merges = [(token_to_id[a], token_to_id[b]) for a, b in merges]
        added = hf_tokenizer.get_added_tokens_decoder()
        self.special_tokens = {t.content: i for i, t in sorted(added.items()) if t.special}
        for token, token_id in self.special_tokens.items():
            self.vocab[token_id] = token.encode("utf-8")
        self.vocab_size = hf_tokenizer.get_vocab_size(with_added_tokens=True)
        self.eot_id = self.special_tokens.get(EOT)

    @classmethod
    def from_merges(cls, merges: Sequence[tuple[int, int]],
                    special_tokens: Sequence[str] = (EOT,)) -> FastTokenizer:
        """Build the HF tokenizer for ``merges`` in this module's id layout: bytes 0-255,
        merge i -> 256 + i, then the special tokens."""
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

        vocab = _vocab_from_merges(merges)
        as_chars = {i: "".join(BYTE_TO_CHAR[b] for b in token) for i, token in vocab.items()}
        hf_vocab = {}
        for i, chars in as_chars.items():
            if chars in hf_vocab:
                raise ValueError(f"merge {i - 256} makes a token that already exists: {chars!r}")
            hf_vocab[chars] = i
        hf_merges = [(as_chars[a], as_chars[b]) for a, b in merges]
        hf = Tokenizer(models.BPE(vocab=hf_vocab, merges=hf_merges))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        hf.add_special_tokens([AddedToken(s, special=True, normalized=False)
                               for s in special_tokens])
        return cls(hf)

    def encode(self, text: str) -> list[int]:
        """Encode ``text``; special-token strings in it become their single ids."""
        return self.hf_tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts at once, in parallel threads (Rust)."""
        encodings = self.hf_tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def _to_json(self) -> str:
        """The HF tokenizer JSON (``tokenizers.Tokenizer.from_file`` reads it too)."""
        return self.hf_tokenizer.to_str()

    @classmethod
    def _reads(cls, data: dict) -> bool:
        return isinstance(data.get("model"), dict) and "added_tokens" in data

    @classmethod
    def _from_json(cls, data: dict) -> FastTokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        return cls(HFTokenizer.from_str(json.dumps(data)))


def train_fast_tokenizer(texts: str | Sequence[str], vocab_size: int = 10_000,
                         special_tokens: Sequence[str] = (EOT,)) -> FastTokenizer:
    """Train a byte-level BPE :class:`FastTokenizer` on ``texts`` with HF ``tokenizers``.

    ``vocab_size`` counts all ids (256 bytes, merges, special tokens), as in
    :meth:`BPETokenizer.train`. Texts are cut at special tokens before training.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    special_tokens = tuple(special_tokens)
    _check_vocab_size(vocab_size, special_tokens)
    if isinstance(texts, str):
        texts = [texts]
    if not any(True for _ in _split_on_specials(texts, special_tokens)):
        raise ValueError("train_fast_tokenizer: the training text is empty")

    def batches(size: int = 1000) -> Iterator[list[str]]:
        batch = []
        for piece in _split_on_specials(texts, special_tokens):
            batch.append(piece)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        # The Rust bar draws on a terminal only; in a notebook it prints blank lines.
        show_progress=not progress_disabled() and sys.stderr.isatty(),
    )
    hf.train_from_iterator(batches(), trainer, length=(len(texts) + 999) // 1000)

    # Rebuild in this module's id layout (HF numbers its alphabet in another order).
    model = json.loads(hf.to_str())["model"]
    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    token_bytes = {chr_token: bytes(CHAR_TO_BYTE[c] for c in chr_token)
                   for chr_token in model["vocab"]}
    ids = {bytes([b]): b for b in range(256)}
    id_merges = []
    for a, b in merges:
        id_merges.append((ids[token_bytes[a]], ids[token_bytes[b]]))
        ids[token_bytes[a] + token_bytes[b]] = 256 + len(id_merges) - 1
    return FastTokenizer.from_merges(id_merges, special_tokens)


# --------------------------------------------------------------------------------------
# Files


def _read_tokenizer_json(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.exists():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: not a tokenizer JSON file ({err})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a tokenizer JSON file (expected a JSON object)")
    return data


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load either kind of tokenizer from what its ``save`` wrote.

    ``path`` is the JSON file, or a folder holding ``tokenizer.json`` (a run folder or a
    prepared corpus). A from-scratch tokenizer's file says ``"kind": "nanolm-bpe"``; a HF
    tokenizer file is recognised by its ``model`` and ``added_tokens`` sections.
    """
    data = _read_tokenizer_json(path)
    for kind in (BPETokenizer, FastTokenizer):
        if kind._reads(data):
            return kind._from_json(data)
    raise UsageError(
        f"{path}: unknown tokenizer file: expected a nanolm-bpe file (with \"kind\") or a "
        "Hugging Face tokenizers JSON (with \"model\" and \"added_tokens\")"
    )
