# %% LayerNorm
class LayerNorm(nn.Module):
    """Layer normalisation over the last dimension, with a learned scale and shift.

    LayerNorm(d, eps=1e-5): parameters `weight` (d,) starting at ones and `bias` (d,)
    starting at zeros. forward: x (..., d) -> (..., d).
    """

    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        mu = x.mean(dim=-1, keepdim=True)
        centered = x - mu
        var = (centered ** 2).mean(dim=-1, keepdim=True)
        normed = centered * torch.rsqrt(var + self.eps)
        return normed * self.weight + self.bias

# %% MLP
class MLP(nn.Module):
    """Position-wise feed-forward: fc (d_model -> d_ff), exact GELU, proj (d_ff -> d_model).

    MLP(config) reads config.d_model, config.d_ff and config.dropout.
    forward: x (B, T, d_model) -> (B, T, d_model).
    """

    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_ff)
        self.act = nn.GELU()
        self.proj = nn.Linear(config.d_ff, config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x):
        h = self.act(self.fc(x))
        return self.drop(self.proj(h))

# %% Block
class Block(nn.Module):
    """One pre-LN transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)).

    Block(config); forward: x (B, T, d_model) -> (B, T, d_model).
    """

    def __init__(self, config):
        super().__init__()
        self.ln1 = LayerNorm(config.d_model)
        self.attn = MultiHeadAttention(config.d_model, config.n_heads, config.dropout,
                                       config.attn_impl)
        self.ln2 = LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x

# %% GPT
class GPT(nn.Module):
    """A decoder-only transformer language model.

    GPT(config); forward(idx (B, T) int64, targets (B, T) or None) ->
    (logits (B, T, vocab_size), mean cross-entropy loss or None).
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context_length, config.d_model)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layers)])
        self.ln_f = LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2: smaller init for the projections that write into the residual stream
        residual_std = 0.02 / math.sqrt(2 * config.n_layers)
        for name, param in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(param, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        if T > self.config.context_length:
            raise ValueError(f"sequence of {T} tokens is longer than the context length "
                             f"{self.config.context_length}")
        positions = torch.arange(T, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(positions)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits, None
        V = logits.size(-1)
        loss = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))
        return logits, loss

# %% count_parameters
def count_parameters(config, non_embedding=False):
    """Number of parameters of GPT(config), computed from the sizes (tied head counted once)."""
    C, F_, V, L = config.d_model, config.d_ff, config.vocab_size, config.context_length
    per_layer = (
        2 * (2 * C)               # ln1, ln2
        + 3 * C * C + 3 * C       # attn.qkv
        + C * C + C               # attn.proj
        + C * F_ + F_             # mlp.fc
        + F_ * C + C              # mlp.proj
    )
    total = config.n_layers * per_layer + 2 * C   # blocks and ln_f
    if not config.tie_weights:
        total += V * C                             # a head of its own
    if not non_embedding:
        total += V * C + L * C                     # tok_emb and pos_emb
    return total
