# %% LayerNorm
class LayerNorm(nn.Module):
    """Layer normalisation over the last dimension, with a learned scale and shift.

    LayerNorm(d, eps=1e-5): parameters `weight` (d,) starting at ones and `bias` (d,)
    starting at zeros. forward: x (..., d) -> (..., d).
    """

    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.normalized_size = d
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        feature_mean = x.mean(dim=-1, keepdim=True)
        deviations = x - feature_mean
        # biased variance: divide by d, not d - 1
        biased_variance = (deviations * deviations).mean(dim=-1, keepdim=True)
        inverse_std = torch.rsqrt(biased_variance + self.eps)
        standardised = deviations * inverse_std
        return standardised * self.weight + self.bias

# %% MLP
class MLP(nn.Module):
    """Position-wise feed-forward: fc (d_model -> d_ff), exact GELU, proj (d_ff -> d_model).

    MLP(config) reads config.d_model, config.d_ff and config.dropout.
    forward: x (B, T, d_model) -> (B, T, d_model).
    """

    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_ff)
        self.activation = nn.GELU()  # the exact erf form, approximate="none"
        self.proj = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        widened = self.fc(x)
        activated = self.activation(widened)
        narrowed = self.proj(activated)
        return self.dropout(narrowed)

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
        residual_stream = x
        attention_update = self.attn(self.ln1(residual_stream))
        residual_stream = residual_stream + attention_update
        feed_forward_update = self.mlp(self.ln2(residual_stream))
        residual_stream = residual_stream + feed_forward_update
        return residual_stream

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
        self.blocks = nn.ModuleList()
        for _layer_number in range(config.n_layers):
            self.blocks.append(Block(config))
        self.ln_f = LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)

        # GPT-2 initialisation for every Linear and Embedding
        self.apply(self._init_weights)
        # smaller residual projections, so the stream does not grow with depth (optional)
        residual_std = 0.02 / math.sqrt(2 * config.n_layers)
        for block in self.blocks:
            for residual_projection in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(residual_projection.weight, mean=0.0, std=residual_std)

        if config.tie_weights:
            self.head.weight = self.tok_emb.weight  # one matrix in both directions

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        batch_count, sequence_length = idx.shape
        if sequence_length > self.config.context_length:
            raise ValueError(
                f"sequence of {sequence_length} tokens is longer than the context length "
                f"{self.config.context_length}"
            )
        position_ids = torch.arange(sequence_length, device=idx.device)
        hidden = self.tok_emb(idx) + self.pos_emb(position_ids)  # (B, T, C) + (T, C)
        for block in self.blocks:
            hidden = block(hidden)
        hidden = self.ln_f(hidden)
        logits = self.head(hidden)  # (B, T, V)

        if targets is None:
            return logits, None
        vocabulary_size = logits.shape[-1]
        flat_logits = logits.view(batch_count * sequence_length, vocabulary_size)
        flat_targets = targets.reshape(batch_count * sequence_length)
        loss = F.cross_entropy(flat_logits, flat_targets)
        return logits, loss

# %% count_parameters
def count_parameters(config, non_embedding=False):
    """Number of parameters of GPT(config), computed from the sizes (tied head counted once)."""
    width = config.d_model
    hidden_width = config.d_ff
    vocabulary = config.vocab_size
    context = config.context_length

    layer_norm_size = 2 * width
    qkv_size = width * 3 * width + 3 * width
    attention_output_size = width * width + width
    fc_size = width * hidden_width + hidden_width
    mlp_output_size = hidden_width * width + width
    one_block = 2 * layer_norm_size + qkv_size + attention_output_size + fc_size + mlp_output_size

    total = config.n_layers * one_block + layer_norm_size  # blocks and ln_f
    if not config.tie_weights:
        total += vocabulary * width  # a head of its own
    if not non_embedding:
        total += vocabulary * width + context * width  # tok_emb and pos_emb
    return total
