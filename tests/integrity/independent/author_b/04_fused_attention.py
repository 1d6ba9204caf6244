# %% fused_attention
def fused_attention(q, k, v):
    """Causal attention through F.scaled_dot_product_attention.

    q, k, v: (B, H, T, D) -> output (B, H, T, D), equal to naive causal attention.
    """
    # is_causal builds the lower-triangular mask inside the kernel; default scale 1/sqrt(D)
    fused_output = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0,
                                                  is_causal=True)
    return fused_output

# %% flash_attention
def flash_attention(q, k, v, block_size=64):
    """Causal attention the FlashAttention way: key tiles, running max and sum, rescaling.

    q, k, v: (B, H, T, D) -> (out (B, H, T, D), lse (B, H, T)); never builds a (T, T) tensor.
    """
    batch_count, head_count, sequence_length, head_dimension = q.shape
    score_scale = 1.0 / head_dimension ** 0.5  # (the setup cell does not import math)
    stats_shape = (batch_count, head_count, sequence_length)

    running_maximum = torch.full(stats_shape, float("-inf"), dtype=q.dtype, device=q.device)
    running_denominator = torch.zeros(stats_shape, dtype=q.dtype, device=q.device)
    running_numerator = torch.zeros_like(q)              # (B, H, T, D)
    query_positions = torch.arange(sequence_length, device=q.device).unsqueeze(1)  # (T, 1)

    tile_start = 0
    while tile_start < sequence_length:
        tile_end = min(tile_start + block_size, sequence_length)
        key_tile = k[:, :, tile_start:tile_end, :]        # (B, H, b, D)
        value_tile = v[:, :, tile_start:tile_end, :]

        tile_scores = torch.matmul(q, key_tile.transpose(-2, -1)) * score_scale  # (B, H, T, b)
        key_positions = torch.arange(tile_start, tile_end, device=q.device).unsqueeze(0)  # (1, b)
        in_the_future = key_positions > query_positions   # (T, b): only this tile's columns
        tile_scores = tile_scores.masked_fill(in_the_future, float("-inf"))

        tile_maximum = tile_scores.max(dim=-1).values
        updated_maximum = torch.maximum(running_maximum, tile_maximum)
        rescale_old = torch.exp(running_maximum - updated_maximum)        # (B, H, T)
        exponentials = torch.exp(tile_scores - updated_maximum.unsqueeze(-1))

        running_denominator = running_denominator * rescale_old + exponentials.sum(dim=-1)
        running_numerator = (running_numerator * rescale_old.unsqueeze(-1)
                             + torch.matmul(exponentials, value_tile))
        running_maximum = updated_maximum
        tile_start = tile_end

    output = running_numerator / running_denominator.unsqueeze(-1)
    log_sum_exp = running_maximum + torch.log(running_denominator)
    return output, log_sum_exp
