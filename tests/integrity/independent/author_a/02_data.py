# %% pack_stories
def pack_stories(tokenizer, stories):
    """Encode stories (a list of str) into one 1-D np.uint16 array: story, EOT, story, EOT, ...

    tokenizer: has .encode(text) -> list of ids and .eot_id, the end-of-text id.
    """
    stream = []
    for story in stories:
        stream.extend(tokenizer.encode(story))
        stream.append(tokenizer.eot_id)
    return np.array(stream, dtype=np.uint16)

# %% get_batch
def get_batch(tokens, batch_size, context_length, generator=None, device="cpu"):
    """Random training windows from tokens (a 1-D numpy array of ids).

    Returns (x, y), int64 tensors of shape (batch_size, context_length) on device:
    x[i] = tokens[s_i : s_i + context_length], y[i] the same window one token later.
    """
    starts = torch.randint(len(tokens) - context_length, (batch_size,), generator=generator)
    xs, ys = [], []
    for s in starts.tolist():
        xs.append(np.asarray(tokens[s:s + context_length], dtype=np.int64))
        ys.append(np.asarray(tokens[s + 1:s + 1 + context_length], dtype=np.int64))
    x = torch.from_numpy(np.stack(xs))
    y = torch.from_numpy(np.stack(ys))
    return x.to(device), y.to(device)
