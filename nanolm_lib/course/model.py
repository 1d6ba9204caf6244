"""The GPT (lesson 05): token and position embeddings, pre-LN transformer blocks, a tied head.

    idx (B, T) -> tok_emb + pos_emb -> [Block] x n_layers -> ln_f -> head -> logits (B, T, V)
    Block: x = x + attn(ln1(x));  x = x + mlp(ln2(x))

Sizes follow the reference run of the course (a 22 M parameter model trained on TinyStories
on an RTX 3090); smaller presets (:mod:`nanolm_lib.lab.presets`) serve CPUs and tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nanolm_lib.course.attention import IMPLS, KVCache, MultiHeadAttention
from nanolm_lib.course.tokenizer import MAX_VOCAB_SIZE


@dataclass
class GPTConfig:
    """Model sizes. The defaults are the course's reference run ("seed-3090", about 22 M
    parameters). ``dropout`` 0.0: the origin document states none, and at one or two epochs
    over TinyStories a model this size is not over-fitting (valid loss tracks train loss)."""

    vocab_size: int = 10_000
    context_length: int = 128
    d_model: int = 768
    n_layers: int = 2
    n_heads: int = 8
    d_ff: int = 3_072
    dropout: float = 0.0
    attn_impl: str = "sdpa"
    tie_weights: bool = True

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads", "d_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name}: expected a positive int, found {value!r}")
        if self.vocab_size > MAX_VOCAB_SIZE:
            raise ValueError(
                f"GPTConfig.vocab_size: expected at most {MAX_VOCAB_SIZE:,} (tokens are stored as "
                f"uint16), found {self.vocab_size:,}"
            )
        if self.d_model % self.n_heads:
            raise ValueError(
                f"GPTConfig: d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout: expected a probability in [0, 1), found {self.dropout!r}")
        if self.attn_impl not in IMPLS:
            raise ValueError(f"GPTConfig.attn_impl: expected one of {IMPLS}, found {self.attn_impl!r}")
        if not isinstance(self.tie_weights, bool):
            raise ValueError(f"GPTConfig.tie_weights: expected a bool, found {self.tie_weights!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class LayerNorm(nn.Module):
    """Layer normalisation over the last dimension, written out (equal to ``nn.LayerNorm``).

    Normalises each position's features to zero mean and unit (biased) variance, then scales
    by ``weight`` and shifts by ``bias``.
    """

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class FastLayerNorm(LayerNorm):
    """:class:`LayerNorm` computed by PyTorch's fused kernel (``F.layer_norm``): the same
    parameters and result (up to float rounding), what the library's GPT runs.

    The written-out form reads the tensor several times and keeps each intermediate for the
    backward pass; forward and backward it measured 7x (d 768) to 23x (d 256) slower on a
    CPU. Lesson 05 teaches, and grades, the written-out form.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.size(-1),), self.weight, self.bias, self.eps)


class MLP(nn.Module):
    """Position-wise feed-forward: ``fc`` (C -> d_ff), exact GELU, ``proj`` (d_ff -> C)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_ff)
        self.gelu = nn.GELU()  # exact (erf) GELU, not the tanh approximation
        self.proj = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.gelu(self.fc(x))))


class Block(nn.Module):
    """A pre-LN transformer block: attention then MLP, each on a normalised copy of the
    residual stream and added back to it."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln1 = FastLayerNorm(config.d_model)
        self.attn = MultiHeadAttention(config.d_model, config.n_heads, config.dropout, config.attn_impl)
        self.ln2 = FastLayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), kv_cache)
        x = x + self.mlp(self.ln2(x))
        return x


@torch.compiler.disable  # runs eagerly under torch.compile: one quiet graph break
def _check_token_range(idx: torch.Tensor, vocab_size: int) -> None:
    """An out-of-range id would otherwise fail deep inside the embedding: on CUDA as an opaque
    device-side assert, in a compiled CPU kernel by aborting the whole process."""
    low, high = int(idx.min()), int(idx.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"idx: token ids must lie in [0, vocab_size={vocab_size}), found values in "
            f"[{low}, {high}] (does the tokenizer match the model's vocabulary?)"
        )


class GPT(nn.Module):
    """A decoder-only transformer language model."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config: expected a GPTConfig, found {type(config).__name__}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context_length, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = FastLayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            # one matrix maps ids to vectors and vectors back to scores (Press & Wolf, 2017)
            self.head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2: each block adds two projections to the residual stream; scaling their init by
        # 1/sqrt(2 * n_layers) keeps the stream's variance from growing with depth.
        residual_std = 0.02 / math.sqrt(2 * config.n_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def new_kv_cache(self, batch_size: int) -> list[KVCache]:
        """Empty key/value caches, one per block, sized to the context length."""
        c = self.config
        weight = self.tok_emb.weight
        return [KVCache(batch_size, c.n_heads, c.context_length, c.head_dim,
                        device=weight.device, dtype=weight.dtype) for _ in range(c.n_layers)]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: list[KVCache] | None = None, *, check_ids: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) int64 -> ``(logits (B, T, V), loss or None)``.

        ``loss`` is the mean cross entropy over all positions when ``targets`` (B, T) is given
        (positions whose target is -1 are ignored). With ``kv_cache`` (from
        :meth:`new_kv_cache`), idx holds only the tokens after those already cached; their
        positions continue from the cache length. ``check_ids=False`` skips the check that
        every id is in the vocabulary: it reads the ids back to the host, a GPU sync, so the
        training loop checks its data once and generation checks the prompt once instead.
        """
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
            found = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(f"idx: expected a 2-d tensor of token ids shaped (B, T), found {found}")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise TypeError(f"idx: expected integer token ids, found dtype {idx.dtype}")
        B, T = idx.shape
        start = 0 if kv_cache is None else kv_cache[0].length
        if T < 1 or start + T > self.config.context_length:
            raise ValueError(
                f"idx: expected 1 to context_length={self.config.context_length} positions, found "
                f"{T}" + (f" after {start} cached" if start else "") + " (crop the input)"
            )
        if check_ids:
            _check_token_range(idx, self.config.vocab_size)
        if kv_cache is not None and len(kv_cache) != len(self.blocks):
            raise ValueError(f"kv_cache: expected {len(self.blocks)} layer caches, found {len(kv_cache)}")

        positions = torch.arange(start, start + T, device=idx.device)  # (T,)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(positions))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, None if kv_cache is None else kv_cache[i])
        logits = self.head(self.ln_f(x))  # (B, T, V)

        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(
                    f"targets: expected the shape of idx {tuple(idx.shape)}, found {tuple(targets.shape)}"
                )
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T), ignore_index=-1)
        return logits, loss


def count_parameters(config: GPTConfig, non_embedding: bool = False) -> int:
    """Number of parameters of ``GPT(config)`` by formula (a tied head is counted once).

    With ``non_embedding=True`` the token and position embedding tables are left out, as in
    Kaplan et al. (2020), whose scaling laws count "non-embedding parameters"; an untied head
    stays in (it is a matmul every token pays for). nanoGPT's ``get_num_params`` differs: it
    leaves out only the position table, since its token table doubles as the tied head.
    """
    C, F_, V, L = config.d_model, config.d_ff, config.vocab_size, config.context_length
    token_embedding = V * C
    position_embedding = L * C
    per_block = (
        2 * C  # ln1
        + 3 * C * C + 3 * C  # attn.qkv
        + C * C + C  # attn.proj
        + 2 * C  # ln2
        + C * F_ + F_  # mlp.fc
        + F_ * C + C  # mlp.proj
    )
    final_norm = 2 * C
    head = 0 if config.tie_weights else V * C  # no bias
    total = token_embedding + position_embedding + config.n_layers * per_block + final_norm + head
    if non_embedding:
        total -= token_embedding + position_embedding
    return total


def flops_per_token(config: GPTConfig, non_embedding_params: int | None = None) -> int:
    """Training FLOPs per token (forward + backward), the estimate of Chowdhery et al. (2022,
    PaLM, appendix B) also used by nanoGPT: ``6 N + 12 n_layers d_model context_length``.

    N counts the parameters that take part in matrix products: the non-embedding parameters
    plus the output head (V x C, tied or not); the token and position lookups cost no FLOPs.
    The second term is the attention scores and weighted sum over the full (T, T) square
    (causal masking is not subtracted, as in the papers). ``non_embedding_params``: the
    count for another family of block (lesson 08's ModernGPT), by default this GPT's.
    """
    n_matmul = (count_parameters(config, non_embedding=True) if non_embedding_params is None
                else non_embedding_params)
    if config.tie_weights:
        n_matmul += config.vocab_size * config.d_model  # the head still costs a matmul
    return 6 * n_matmul + 12 * config.n_layers * config.d_model * config.context_length
