# %% causal_mask
def causal_mask(T, device=None):
    """Boolean (T, T) mask, True where query i may attend to key j, that is where j <= i.

    T: the number of positions (a positive int). device: where to create the mask.
    """
    pos = torch.arange(T, device=device)
    return pos[None, :] <= pos[:, None]

# %% attention_weights
def attention_weights(q, k, mask=None):
    """softmax(q k^T / sqrt(D)) over the keys.

    q: (B, H, T, D) queries. k: (B, H, S, D) keys. mask: optional bool (T, S), True = allowed.
    Returns the weights, (B, H, T, S): every row sums to 1, blocked keys get weight 0.
    """
    head_dim = q.shape[-1]
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(head_dim)
    if mask is not None:
        scores = scores.masked_fill(mask.logical_not(), float("-inf"))
    return scores.softmax(dim=-1)

# %% attention
def attention(q, k, v, mask=None):
    """Naive attention: the values averaged with the attention weights.

    q: (B, H, T, D), k and v: (B, H, S, D), mask: optional bool (T, S), True = allowed.
    Returns (out, weights): out (B, H, T, D), weights (B, H, T, S).
    """
    w = attention_weights(q, k, mask)
    return w @ v, w

# %% split_heads
def split_heads(x, n_heads):
    """(B, T, C) -> (B, H, T, D) with H = n_heads and D = C / H.

    Head h gets channels [h * D, (h + 1) * D) of every position.
    """
    B, T, C = x.shape
    assert C % n_heads == 0, "n_heads must divide the number of channels"
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)

# %% merge_heads
def merge_heads(x):
    """(B, H, T, D) -> (B, T, H * D): the inverse of split_heads."""
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)

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
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        """x: (B, T, C). Returns (B, T, C); position t depends only on positions 0..t."""
        T = x.size(1)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = split_heads(q, self.n_heads)
        k = split_heads(k, self.n_heads)
        v = split_heads(v, self.n_heads)
        out, _ = attention(q, k, v, causal_mask(T, device=x.device))
        out = self.proj(merge_heads(out))
        return self.dropout(out)
