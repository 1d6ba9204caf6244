# %% causal_mask
def causal_mask(T, device=None):
    """Boolean (T, T) mask, True where query i may attend to key j, that is where j <= i.

    T: the number of positions (a positive int). device: where to create the mask.
    """
    position_index = torch.arange(T, device=device)
    query_index = position_index.view(T, 1)   # rows
    key_index = position_index.view(1, T)     # columns
    allowed = key_index <= query_index        # broadcast to (T, T), already torch.bool
    return allowed

# %% attention_weights
def attention_weights(q, k, mask=None):
    """softmax(q k^T / sqrt(D)) over the keys.

    q: (B, H, T, D) queries. k: (B, H, S, D) keys. mask: optional bool (T, S), True = allowed.
    Returns the weights, (B, H, T, S): every row sums to 1, blocked keys get weight 0.
    """
    head_dimension = q.shape[-1]
    keys_transposed = k.transpose(-2, -1)                        # (B, H, D, S)
    dot_products = torch.matmul(q, keys_transposed)              # (B, H, T, S)
    scaled_scores = dot_products * (1.0 / math.sqrt(head_dimension))
    if mask is not None:
        blocked = torch.logical_not(mask)
        scaled_scores = scaled_scores.masked_fill(blocked, float("-inf"))
    normalised = torch.softmax(scaled_scores, dim=-1)
    return normalised

# %% attention
def attention(q, k, v, mask=None):
    """Naive attention: the values averaged with the attention weights.

    q: (B, H, T, D), k and v: (B, H, S, D), mask: optional bool (T, S), True = allowed.
    Returns (out, weights): out (B, H, T, D), weights (B, H, T, S).
    """
    weights = attention_weights(q, k, mask)
    weighted_values = torch.matmul(weights, v)   # (B, H, T, S) @ (B, H, S, D)
    return weighted_values, weights

# %% split_heads
def split_heads(x, n_heads):
    """(B, T, C) -> (B, H, T, D) with H = n_heads and D = C / H.

    Head h gets channels [h * D, (h + 1) * D) of every position.
    """
    batch_count, token_count, channel_count = x.shape
    per_head = channel_count // n_heads
    per_token_heads = x.reshape(batch_count, token_count, n_heads, per_head)  # (B, T, H, D)
    return per_token_heads.transpose(1, 2)                                    # (B, H, T, D)

# %% merge_heads
def merge_heads(x):
    """(B, H, T, D) -> (B, T, H * D): the inverse of split_heads."""
    batch_count, head_count, token_count, per_head = x.shape
    back_to_tokens = x.transpose(1, 2)  # (B, T, H, D), not contiguous any more
    return back_to_tokens.reshape(batch_count, token_count, head_count * per_head)

# %% MultiHeadAttention
class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention, computed the naive way: x (B, T, C) -> (B, T, C).

    d_model: C, the channels per token. n_heads: H, which must divide d_model.
    Parameters: qkv = nn.Linear(C, 3 C) (outputs [q | k | v]) and proj = nn.Linear(C, C).
    """

    def __init__(self, d_model, n_heads, dropout=0.0):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"n_heads={n_heads} does not divide d_model={d_model}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.output_dropout = nn.Dropout(dropout)

    def forward(self, x):
        """x: (B, T, C). Returns (B, T, C); position t depends only on positions 0..t."""
        sequence_length = x.shape[1]
        width = self.d_model
        projected = self.qkv(x)                        # (B, T, 3C)
        query_part = projected[..., 0:width]
        key_part = projected[..., width:2 * width]
        value_part = projected[..., 2 * width:3 * width]

        query_heads = split_heads(query_part, self.n_heads)
        key_heads = split_heads(key_part, self.n_heads)
        value_heads = split_heads(value_part, self.n_heads)

        look_back_only = causal_mask(sequence_length, device=x.device)
        per_head_output, _unused_weights = attention(query_heads, key_heads, value_heads,
                                                     look_back_only)
        combined = merge_heads(per_head_output)        # (B, T, C)
        mixed = self.proj(combined)
        return self.output_dropout(mixed)
