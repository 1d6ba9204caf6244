# %% pack_stories
def pack_stories(tokenizer, stories):
    """Encode stories (a list of str) into one 1-D np.uint16 array: story, EOT, story, EOT, ...

    tokenizer: has .encode(text) -> list of ids and .eot_id, the end-of-text id.
    """
    end_of_text_id = tokenizer.eot_id
    stream_of_ids = []
    for story_text in stories:
        story_ids = tokenizer.encode(story_text)
        stream_of_ids.extend(story_ids)
        stream_of_ids.append(end_of_text_id)  # close every story, the last one included
    packed_array = np.array(stream_of_ids, dtype=np.uint16)
    return packed_array

# %% get_batch
def get_batch(tokens, batch_size, context_length, generator=None, device="cpu"):
    """Random training windows from tokens (a 1-D numpy array of ids).

    Returns (x, y), int64 tensors of shape (batch_size, context_length) on device:
    x[i] = tokens[s_i : s_i + context_length], y[i] the same window one token later.
    """
    highest_start_exclusive = len(tokens) - context_length
    window_starts = torch.randint(highest_start_exclusive, (batch_size,), generator=generator)

    input_windows = []
    target_windows = []
    for start_position in window_starts.tolist():
        stop_position = start_position + context_length
        # uint16 -> int64 before going to torch: no wrap-around above 32,767
        input_windows.append(np.asarray(tokens[start_position:stop_position], dtype=np.int64))
        target_windows.append(np.asarray(tokens[start_position + 1:stop_position + 1], dtype=np.int64))

    x = torch.from_numpy(np.stack(input_windows))
    y = torch.from_numpy(np.stack(target_windows))
    return x.to(device), y.to(device)
