# %% get_pair_counts
def get_pair_counts(ids):
    """Count each pair of neighbouring ids.

    ids: a list of ints. Returns a Counter mapping (a, b) -> how often b directly follows a.
    """
    return Counter(zip(ids, ids[1:]))

# %% merge_pair
def merge_pair(ids, pair, new_id):
    """Replace each occurrence of pair (a tuple (a, b)) in ids by new_id, left to right.

    ids: a list of ints. Returns a new list; occurrences do not overlap.
    """
    first, second = pair
    out = []
    pos = 0
    n = len(ids)
    while pos < n:
        if pos + 1 < n and ids[pos] == first and ids[pos + 1] == second:
            out.append(new_id)
            pos += 2
        else:
            out.append(ids[pos])
            pos += 1
    return out

# %% train_bpe
def train_bpe(texts, vocab_size):
    """Learn vocab_size - 256 byte-pair merges from texts (a list of strings).

    Returns (merges, vocab): merges[i] is the pair (a, b) joined into the new id 256 + i;
    vocab maps each id to its bytes. Most frequent pair first, ties to the smallest pair;
    stops early, with fewer merges, when no pair is left.
    """
    # how often each distinct pre-token occurs
    word_freq = Counter()
    for text in texts:
        word_freq.update(pretokenize(text))
    words = [list(w.encode("utf-8")) for w in word_freq]
    freqs = list(word_freq.values())

    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for new_id in progress(range(256, vocab_size)):
        totals = Counter()
        for word, freq in zip(words, freqs):
            for p, c in get_pair_counts(word).items():
                totals[p] += c * freq
        if not totals:
            break
        # highest count wins; on a tie the smaller pair
        best = min(totals, key=lambda p: (-totals[p], p))
        words = [merge_pair(word, best, new_id) for word in words]
        merges.append(best)
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
    return merges, vocab

# %% encode
def encode(text, merges):
    """Encode text (a str) into a list of ids with merges learned by train_bpe."""
    rank = {pair: i for i, pair in enumerate(merges)}
    result = []
    for piece in pretokenize(text):
        ids = list(piece.encode("utf-8"))
        while len(ids) >= 2:
            candidates = [p for p in get_pair_counts(ids) if p in rank]
            if not candidates:
                break
            pair = min(candidates, key=rank.get)
            ids = merge_pair(ids, pair, 256 + rank[pair])
        result.extend(ids)
    return result

# %% decode
def decode(ids, vocab):
    """Text of the ids (a list of ints); vocab maps id -> bytes. Invalid UTF-8 becomes U+FFFD."""
    raw = b"".join(vocab[i] for i in ids)
    return raw.decode("utf-8", errors="replace")
