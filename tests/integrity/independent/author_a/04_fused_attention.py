# %% fused_attention
def fused_attention(q, k, v):
    """Causal attention through F.scaled_dot_product_attention.

    q, k, v: (B, H, T, D) -> output (B, H, T, D), equal to naive causal attention.
    """
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)

# %% flash_attention
def flash_attention(q, k, v, block_size=64):
    """Causal attention the FlashAttention way: key tiles, running max and sum, rescaling.

    q, k, v: (B, H, T, D) -> (out (B, H, T, D), lse (B, H, T)); never builds a (T, T) tensor.
    """
    *batch, T, D = q.shape
    scale = 1.0 / (D ** 0.5)
    query_pos = torch.arange(T, device=q.device)

    running_max = torch.full((*batch, T), float("-inf"), dtype=q.dtype, device=q.device)
    denom = torch.zeros((*batch, T), dtype=q.dtype, device=q.device)
    numer = torch.zeros_like(q)

    for start in range(0, T, block_size):
        end = min(start + block_size, T)
        k_blk = k[..., start:end, :]
        v_blk = v[..., start:end, :]
        s = (q @ k_blk.transpose(-2, -1)) * scale              # (..., T, b)
        key_pos = torch.arange(start, end, device=q.device)
        future = key_pos[None, :] > query_pos[:, None]         # (T, b): key after the query
        s = s.masked_fill(future, float("-inf"))

        new_max = torch.maximum(running_max, s.amax(dim=-1))
        p = torch.exp(s - new_max.unsqueeze(-1))
        correction = torch.exp(running_max - new_max)
        denom = denom * correction + p.sum(dim=-1)
        numer = numer * correction.unsqueeze(-1) + p @ v_blk
        running_max = new_max

    out = numer / denom.unsqueeze(-1)
    lse = running_max + torch.log(denom)
    return out, lse
