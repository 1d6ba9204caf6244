# %% top_k_filter
def top_k_filter(logits, k):
    """Keep the k largest logits along the last dimension; set the others to -inf.

    Returns a new tensor.
    """
    vocabulary_size = logits.shape[-1]
    if k >= vocabulary_size:
        return logits.clone()  # nothing to cut, but still a new tensor
    descending_values = torch.sort(logits, dim=-1, descending=True).values
    kth_value = descending_values[..., k - 1].unsqueeze(-1)  # the smallest one kept, per row
    outside_top_k = logits < kth_value
    filtered = logits.masked_fill(outside_top_k, float("-inf"))
    return filtered

# %% sample_next_token
def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token id per row of logits (B, V) -> (B, 1) int64.

    Greedy at temperature 0, else sampled.
    """
    if temperature == 0:
        greedy_choice = torch.argmax(logits, dim=-1, keepdim=True)
        return greedy_choice
    adjusted_logits = logits / temperature
    if top_k is not None:
        adjusted_logits = top_k_filter(adjusted_logits, top_k)
    if top_p is not None:
        adjusted_logits = top_p_filter(adjusted_logits, top_p)
    probabilities = torch.softmax(adjusted_logits, dim=-1)
    drawn_ids = torch.multinomial(probabilities, 1, generator=generator)
    return drawn_ids

# %% generate
def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None, generator=None):
    """Extend idx (B, T) by up to max_new_tokens sampled tokens -> (B, T + n); rows stop at eos_id."""
    mode_before = model.training
    model.eval()
    window_size = model.config.context_length
    written = idx
    row_is_done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    try:
        with torch.no_grad():
            for _step_number in range(max_new_tokens):
                visible_part = written[:, -window_size:]
                all_logits, _ = model(visible_part)
                last_position_logits = all_logits[:, -1, :]
                # draw for every row, finished or not, so that the random stream stays aligned
                chosen = sample_next_token(last_position_logits, temperature=temperature,
                                           top_k=top_k, top_p=top_p, generator=generator)
                chosen = chosen.to(written.device)
                if eos_id is not None:
                    padding = torch.full_like(chosen, eos_id)
                    chosen = torch.where(row_is_done.unsqueeze(1), padding, chosen)
                    row_is_done = row_is_done | (chosen[:, 0] == eos_id)
                written = torch.cat((written, chosen), dim=1)
                if eos_id is not None and bool(row_is_done.all()):
                    break
    finally:
        model.train(mode_before)
    return written
