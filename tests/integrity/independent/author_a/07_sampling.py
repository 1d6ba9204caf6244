# %% top_k_filter
def top_k_filter(logits, k):
    """Keep the k largest logits along the last dimension; set the others to -inf.

    Returns a new tensor.
    """
    if k >= logits.size(-1):
        return logits.clone()
    threshold = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < threshold, float("-inf"))

# %% sample_next_token
def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token id per row of logits (B, V) -> (B, 1) int64.

    Greedy at temperature 0, else sampled.
    """
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    scaled = logits / temperature
    if top_k is not None:
        scaled = top_k_filter(scaled, top_k)
    if top_p is not None:
        scaled = top_p_filter(scaled, top_p)
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)

# %% generate
def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None, generator=None):
    """Extend idx (B, T) by up to max_new_tokens sampled tokens -> (B, T + n); rows stop at eos_id."""
    was_training = model.training
    model.eval()
    window = model.config.context_length
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    try:
        with torch.no_grad():
            for _ in range(max_new_tokens):
                logits, _ = model(idx[:, -window:])
                next_ids = sample_next_token(logits[:, -1, :], temperature=temperature,
                                             top_k=top_k, top_p=top_p, generator=generator)
                if eos_id is not None:
                    # rows that already ended keep writing end-of-text
                    next_ids[done] = eos_id
                    done = done | (next_ids[:, 0] == eos_id)
                idx = torch.cat([idx, next_ids], dim=1)
                if eos_id is not None and bool(done.all()):
                    break
    finally:
        model.train(was_training)
    return idx
