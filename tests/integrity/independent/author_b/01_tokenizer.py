# %% get_pair_counts
def get_pair_counts(ids):
    """Count each pair of neighbouring ids.

    ids: a list of ints. Returns a Counter mapping (a, b) -> how often b directly follows a.
    """
    pair_frequencies = Counter()
    # walk over every position that still has a right-hand neighbour
    for left_position in range(len(ids) - 1):
        neighbour_pair = (ids[left_position], ids[left_position + 1])
        pair_frequencies[neighbour_pair] += 1
    return pair_frequencies

# %% merge_pair
def merge_pair(ids, pair, new_id):
    """Replace each occurrence of pair (a tuple (a, b)) in ids by new_id, left to right.

    ids: a list of ints. Returns a new list; occurrences do not overlap.
    """
    first_of_pair, second_of_pair = pair
    merged_ids = []
    sequence_length = len(ids)
    cursor = 0
    while cursor < sequence_length:
        has_neighbour = cursor + 1 < sequence_length
        if has_neighbour and ids[cursor] == first_of_pair and ids[cursor + 1] == second_of_pair:
            merged_ids.append(new_id)
            cursor += 2  # jump over both halves: matches never overlap
        else:
            merged_ids.append(ids[cursor])
            cursor += 1
    return merged_ids

# %% train_bpe
def train_bpe(texts, vocab_size):
    """Learn vocab_size - 256 byte-pair merges from texts (a list of strings).

    Returns (merges, vocab): merges[i] is the pair (a, b) joined into the new id 256 + i;
    vocab maps each id to its bytes. Most frequent pair first, ties to the smallest pair;
    stops early, with fewer merges, when no pair is left.
    """
    # 1. how often does each distinct pre-token occur in the whole corpus?
    pretoken_occurrences = Counter()
    for single_text in texts:
        for piece in pretokenize(single_text):
            pretoken_occurrences[piece] += 1

    # every distinct pre-token as a mutable list of byte values, with its weight
    word_byte_lists = []
    word_weights = []
    for piece, how_often in pretoken_occurrences.items():
        word_byte_lists.append(list(piece.encode("utf-8")))
        word_weights.append(how_often)

    vocab = {}
    for byte_value in range(256):
        vocab[byte_value] = bytes([byte_value])
    merges = []

    # 2. one merge per new id
    for new_id in progress(range(256, vocab_size)):
        weighted_pair_counts = Counter()
        for word_ids, weight in zip(word_byte_lists, word_weights):
            for found_pair, local_count in get_pair_counts(word_ids).items():
                weighted_pair_counts[found_pair] += local_count * weight
        if not weighted_pair_counts:
            break  # every pre-token is a single token already

        # most frequent; on a tie the smaller pair (compare a, then b)
        chosen_pair = None
        chosen_count = -1
        for candidate_pair, candidate_count in weighted_pair_counts.items():
            if candidate_count > chosen_count or (
                candidate_count == chosen_count and candidate_pair < chosen_pair
            ):
                chosen_pair = candidate_pair
                chosen_count = candidate_count

        for word_index in range(len(word_byte_lists)):
            word_byte_lists[word_index] = merge_pair(word_byte_lists[word_index], chosen_pair, new_id)
        merges.append(chosen_pair)
        vocab[new_id] = vocab[chosen_pair[0]] + vocab[chosen_pair[1]]

    # 3.
    return merges, vocab

# %% encode
def encode(text, merges):
    """Encode text (a str) into a list of ids with merges learned by train_bpe."""
    rank_of_pair = {}
    for merge_index, learned_pair in enumerate(merges):
        rank_of_pair[tuple(learned_pair)] = merge_index

    all_ids = []
    for piece in pretokenize(text):
        piece_ids = list(piece.encode("utf-8"))
        while len(piece_ids) > 1:
            # the pair of this piece that was learned first (lowest rank)
            earliest_pair = None
            earliest_rank = None
            for neighbour_pair in get_pair_counts(piece_ids):
                rank = rank_of_pair.get(neighbour_pair)
                if rank is None:
                    continue
                if earliest_rank is None or rank < earliest_rank:
                    earliest_rank = rank
                    earliest_pair = neighbour_pair
            if earliest_pair is None:
                break  # nothing left that training ever merged
            piece_ids = merge_pair(piece_ids, earliest_pair, 256 + earliest_rank)
        all_ids.extend(piece_ids)
    return all_ids

# %% decode
def decode(ids, vocab):
    """Text of the ids (a list of ints); vocab maps id -> bytes. Invalid UTF-8 becomes U+FFFD."""
    collected_bytes = bytearray()
    for token_id in ids:
        collected_bytes.extend(vocab[token_id])
    # decode once at the end: a character may be split across several tokens
    return bytes(collected_bytes).decode("utf-8", errors="replace")
