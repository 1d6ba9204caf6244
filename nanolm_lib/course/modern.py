"""A modern GPT (lesson 08): the GPT-2 block of lesson 05 with four pieces swapped for what
language models have used since (Llama, Mistral, nanochat):

    RMSNorm                 LayerNorm without the mean and the bias: cheaper, as stable
    rope_cache, apply_rope  rotary position embedding: positions as rotations of q and k, so
                            attention scores depend on relative position only
    SwiGLU                  a gated feed-forward (Shazeer, 2020) in place of the GELU MLP
    GroupedQueryAttention   n_kv_heads key/value heads shared by groups of query heads: a KV
                            cache n_heads / n_kv_heads times smaller

    idx (B, T) -> tok_emb -> [ModernBlock] x n_layers -> norm_f -> head -> logits (B, T, V)
    ModernBlock: x = x + attn(norm1(x), rope);  x = x + mlp(norm2(x))

``ModernConfig`` says which pieces a model uses (``norm``, ``position``, ``mlp``,
``n_kv_heads``), so the ablation of lesson 08 can swap them one at a time; its defaults are
the modern model with every swap made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nanolm_lib.course.attention import KVCache, fused_attention, merge_heads, split_heads
from nanolm_lib.course.bigram import Bigram, BigramConfig
from nanolm_lib.course.model import (
    GPT,
    MLP,
    FastLayerNorm,
    GPTConfig,
    _check_token_range,
    count_parameters,
    flops_per_token,
)

NORMS = ("rmsnorm", "layernorm")
POSITIONS = ("rope", "learned")
MLPS = ("swiglu", "gelu")


def swiglu_hidden_size(d_model: int, multiple_of: int = 8) -> int:
    """The SwiGLU width: 8/3 d_model, rounded up to a multiple of ``multiple_of``.

    A SwiGLU has three d_model x hidden matrices where the GELU MLP has two of d_model x
    4 d_model, so 8/3 d_model keeps the parameter count (Shazeer, 2020; Llama's choice).
    """
    return multiple_of * math.ceil(8 * d_model / 3 / multiple_of)


@dataclass
class ModernConfig(GPTConfig):
    """:class:`~nanolm_lib.course.model.GPTConfig` plus the choice of each piece.

    ``n_kv_heads`` (None: ``n_heads``, plain multi-head attention) must divide ``n_heads``;
    ``rope_base`` sets RoPE's slowest wavelength; ``bias`` puts biases back in the attention
    projections (the classic block has them; the modern one does not). ``d_ff`` is the GELU
    MLP's width; a SwiGLU is :func:`swiglu_hidden_size` wide.
    """

    n_kv_heads: int | None = None
    norm: str = "rmsnorm"
    position: str = "rope"
    mlp: str = "swiglu"
    rope_base: float = 10_000.0
    bias: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if (isinstance(self.n_kv_heads, bool) or not isinstance(self.n_kv_heads, int)
                or self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads):
            raise ValueError(f"ModernConfig.n_kv_heads: expected a positive int dividing "
                             f"n_heads={self.n_heads}, found {self.n_kv_heads!r}")
        for name, choices in (("norm", NORMS), ("position", POSITIONS), ("mlp", MLPS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"ModernConfig.{name}: expected one of {choices}, "
                                 f"found {getattr(self, name)!r}")
        if self.position == "rope" and self.head_dim % 2:
            raise ValueError(f"ModernConfig: RoPE rotates pairs, so head_dim = d_model / n_heads "
                             f"must be even, found {self.head_dim}")
        if not isinstance(self.rope_base, (int, float)) or self.rope_base <= 1:
            raise ValueError(f"ModernConfig.rope_base: expected a number > 1, found {self.rope_base!r}")


# ----------------------------------------------------------------------------------------------
# RMSNorm


class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang & Sennrich, 2019): ``x / sqrt(mean(x^2) + eps) *
    weight`` over the last dimension. No mean is subtracted and there is no bias: one
    reduction instead of two, and no parameter that training has to keep near zero."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


class FastRMSNorm(RMSNorm):
    """:class:`RMSNorm` through PyTorch's ``F.rms_norm``: the same parameters and result."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


# ----------------------------------------------------------------------------------------------
# RoPE, in the rotate-half convention


def rope_cache(T: int, head_dim: int, base: float = 10_000.0, device=None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)``, each (T, head_dim): the rotation angles of positions 0..T-1.

    Dimension i and i + head_dim/2 form a pair rotated by ``position * base^(-2i/head_dim)``
    (i < head_dim/2): the first pair turns one radian per position, the last about
    1/base. Both halves of cos and sin repeat the same angles (the rotate-half layout).
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"rope_cache: T must be a positive int, found {T!r}")
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"rope_cache: head_dim must be a positive even int, found {head_dim!r}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim)
    angles = torch.arange(T, dtype=torch.float64, device=device)[:, None] * inv_freq  # (T, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, D)
    return angles.cos().float(), angles.sin().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (i, i + D/2) pair of x (..., T, D) by its angle: ``x cos + rotate_half(x)
    sin``, with cos, sin (T, D) from :func:`rope_cache` for x's positions."""
    if x.shape[-2:] != cos.shape or cos.shape != sin.shape:
        raise ValueError(f"apply_rope: expected cos and sin shaped (T, D) = {tuple(x.shape[-2:])}, "
                         f"found {tuple(cos.shape)} and {tuple(sin.shape)}")
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


def apply_rope_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The other convention (the RoPE paper, GPT-J, Meta's Llama code): pairs (2i, 2i + 1)
    rotated by angle i, given the same (T, D) rotate-half cos and sin. The same rotation as
    :func:`apply_rope` on dimensions permuted evens-first (a test shows it)."""
    half = x.size(-1) // 2
    c, s = cos[..., :half], sin[..., :half]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.stack([even * c - odd * s, even * s + odd * c], dim=-1)  # (..., D/2, 2)
    return out.flatten(-2)


# ----------------------------------------------------------------------------------------------
# SwiGLU


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``: the up projection scaled elementwise by a learned,
    smooth gate. Bias-free; hidden = :func:`swiglu_hidden_size` (d_model) unless given."""

    def __init__(self, d_model: int, hidden: int | None = None):
        super().__init__()
        hidden = swiglu_hidden_size(d_model) if hidden is None else hidden
        self.gate = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


# ----------------------------------------------------------------------------------------------
# grouped-query attention


class GroupedQueryAttention(nn.Module):
    """Causal attention with ``n_heads`` query heads and ``n_kv_heads`` key/value heads
    (Ainslie et al., 2023): query head h reads key/value head h // (n_heads / n_kv_heads).

    ``qkv.weight`` rows are [W_q (C); W_k (n_kv D); W_v (n_kv D)], so with n_kv_heads ==
    n_heads it is lesson 03's MultiHeadAttention (same layout, same outputs). With
    ``cos, sin`` (T, D) queries and keys are rotated (RoPE) before keys enter the cache.
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, bias: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads or n_heads % n_kv_heads:
            raise ValueError(f"GroupedQueryAttention: need n_heads | d_model and n_kv_heads | "
                             f"n_heads, found d_model={d_model}, n_heads={n_heads}, "
                             f"n_kv_heads={n_kv_heads}")
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        kv_dim = n_kv_heads * self.head_dim
        self.qkv = nn.Linear(d_model, d_model + 2 * kv_dim, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None = None,
                sin: torch.Tensor | None = None, kv_cache: KVCache | None = None) -> torch.Tensor:
        kv_dim = self.n_kv_heads * self.head_dim
        q, k, v = self.qkv(x).split([self.d_model, kv_dim, kv_dim], dim=2)
        q = split_heads(q, self.n_heads)  # (B, H, T, D)
        k, v = split_heads(k, self.n_kv_heads), split_heads(v, self.n_kv_heads)  # (B, Hkv, T, D)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # the cache holds Hkv heads only
        group = self.n_heads // self.n_kv_heads
        if group > 1:  # each K/V head serves `group` consecutive query heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        y = fused_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(merge_heads(y))  # (B, T, C)


def kv_cache_bytes(config: GPTConfig, batch_size: int = 1, bytes_per_value: int = 4) -> int:
    """Bytes of a full-context KV cache: keys and values for every layer, KV head, position."""
    n_kv = getattr(config, "n_kv_heads", None) or config.n_heads
    return (2 * config.n_layers * batch_size * n_kv * config.context_length * config.head_dim
            * bytes_per_value)


# ----------------------------------------------------------------------------------------------
# the model


class ModernBlock(nn.Module):
    """A pre-norm block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``, with the pieces
    ``config`` names."""

    def __init__(self, config: ModernConfig):
        super().__init__()
        norm = FastRMSNorm if config.norm == "rmsnorm" else FastLayerNorm
        self.norm1 = norm(config.d_model)
        self.attn = GroupedQueryAttention(config.d_model, config.n_heads, config.n_kv_heads,
                                          config.bias, config.dropout)
        self.norm2 = norm(config.d_model)
        self.mlp = SwiGLU(config.d_model) if config.mlp == "swiglu" else MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None = None,
                sin: torch.Tensor | None = None, kv_cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, kv_cache)
        return x + self.mlp(self.norm2(x))


class ModernGPT(nn.Module):
    """Lesson 05's GPT with RMSNorm, RoPE, SwiGLU and grouped-query attention (each
    switchable in :class:`ModernConfig`); the same interface: ``forward(idx, targets,
    kv_cache)``, :meth:`new_kv_cache`, ``config``."""

    def __init__(self, config: ModernConfig):
        super().__init__()
        if not isinstance(config, ModernConfig):
            raise TypeError(f"config: expected a ModernConfig, found {type(config).__name__}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = (nn.Embedding(config.context_length, config.d_model)
                        if config.position == "learned" else None)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(ModernBlock(config) for _ in range(config.n_layers))
        self.norm_f = (FastRMSNorm if config.norm == "rmsnorm" else FastLayerNorm)(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.tok_emb.weight
        if config.position == "rope":  # recomputed, not saved: a function of the config
            cos, sin = rope_cache(config.context_length, config.head_dim, config.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(GPT._init_weights)
        residual_std = 0.02 / math.sqrt(2 * config.n_layers)  # as GPT-2, see model.GPT
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            out = block.mlp.down if config.mlp == "swiglu" else block.mlp.proj
            nn.init.normal_(out.weight, mean=0.0, std=residual_std)

    def new_kv_cache(self, batch_size: int) -> list[KVCache]:
        """Empty caches, one per block, of n_kv_heads heads each."""
        c, weight = self.config, self.tok_emb.weight
        return [KVCache(batch_size, c.n_kv_heads, c.context_length, c.head_dim,
                        device=weight.device, dtype=weight.dtype) for _ in range(c.n_layers)]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: list[KVCache] | None = None, *, check_ids: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As :meth:`nanolm_lib.course.model.GPT.forward`: ``(logits (B, T, V), loss or None)``."""
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
            found = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(f"idx: expected a 2-d tensor of token ids shaped (B, T), found {found}")
        B, T = idx.shape
        start = 0 if kv_cache is None else kv_cache[0].length
        if T < 1 or start + T > self.config.context_length:
            raise ValueError(
                f"idx: expected 1 to context_length={self.config.context_length} positions, found "
                f"{T}" + (f" after {start} cached" if start else "") + " (crop the input)")
        if check_ids:
            _check_token_range(idx, self.config.vocab_size)
        x = self.tok_emb(idx)  # (B, T, C)
        cos = sin = None
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(start, start + T, device=idx.device))
        else:
            cos, sin = self.rope_cos[start:start + T], self.rope_sin[start:start + T]  # (T, D)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, None if kv_cache is None else kv_cache[i])
        logits = self.head(self.norm_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T), ignore_index=-1)
        return logits, loss


def count_modern_parameters(config: ModernConfig, non_embedding: bool = False) -> int:
    """Number of parameters of ``ModernGPT(config)`` by formula (a tied head counted once)."""
    C, V, L = config.d_model, config.vocab_size, config.context_length
    kv_dim = config.n_kv_heads * config.head_dim
    norm = C if config.norm == "rmsnorm" else 2 * C
    attn = C * (C + 2 * kv_dim) + C * C  # qkv, proj
    if config.bias:
        attn += (C + 2 * kv_dim) + C
    if config.mlp == "swiglu":
        mlp = 3 * C * swiglu_hidden_size(C)
    else:
        mlp = 2 * C * config.d_ff + config.d_ff + C
    embedding = V * C + (L * C if config.position == "learned" else 0)
    head = 0 if config.tie_weights else V * C
    total = embedding + config.n_layers * (2 * norm + attn + mlp) + norm + head
    return total - embedding if non_embedding else total


# ----------------------------------------------------------------------------------------------
# the two families, by name: what checkpoints record


FAMILIES = {"gpt": (GPTConfig, GPT), "modern": (ModernConfig, ModernGPT),
            "bigram": (BigramConfig, Bigram)}


def family_of(config) -> str:
    """``"modern"`` for a :class:`ModernConfig`, ``"bigram"`` for lesson 02's
    :class:`BigramConfig`, ``"gpt"`` for any other GPTConfig."""
    name = type(config).__name__
    return {"ModernConfig": "modern", "BigramConfig": "bigram"}.get(name, "gpt")


def build_model(config) -> nn.Module:
    """The model a config describes: a ModernGPT, a Bigram or a GPT, by its family."""
    return FAMILIES[family_of(config)][1](config)


def parameter_count(config, non_embedding: bool = False) -> int:
    """Parameters of the model ``config`` describes, either family."""

    if family_of(config) == "modern":
        return count_modern_parameters(config, non_embedding)
    return count_parameters(config, non_embedding)


def training_flops_per_token(config) -> int:
    """Training FLOPs per token of the model ``config`` describes, either family
    (:func:`nanolm_lib.course.model.flops_per_token`'s estimate with that family's parameters)."""

    return flops_per_token(config, parameter_count(config, non_embedding=True))


def config_from_dict(family: str, values: dict):
    """The config of ``family`` ("gpt" or "modern") from the plain dict a checkpoint holds."""
    if family not in FAMILIES:
        raise ValueError(f"model family {family!r}: expected one of {', '.join(FAMILIES)}")
    return FAMILIES[family][0](**values)
