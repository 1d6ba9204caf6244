"""Causal self-attention, three ways (lessons 03 and 04).

1. naive: the textbook formula softmax(Q K^T / sqrt(d)) V written with matmuls, a boolean
   causal mask and a softmax; it materialises the (T, T) weights, which is what makes it easy
   to look at and slow at long sequences.
2. fused: ``torch.nn.functional.scaled_dot_product_attention`` (SDPA), which picks a fused
   kernel (FlashAttention or memory-efficient attention on CUDA, a fused kernel on CPU) that
   never keeps the full weight matrix and has a backward pass: this is what training uses.
3. native: ``nn.MultiheadAttention``'s inference fast path, ``torch._native_multi_head_attention``
   (projections and attention in one call, no backward pass). Measured in lesson 04: with a
   causal mask it runs ``bmm``, ``_masked_softmax``, ``bmm``, so it is not a fused attention.
4. flash: FlashAttention's forward written in PyTorch (key tiles, online softmax), the
   reference for lesson 04's exercise: memory linear in T, and the log-sum-exp per query.

Shapes: B batch, T sequence length (queries), S number of keys (S = T without a cache),
H heads, D = C / H head size, C = d_model.
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

IMPLS = ("naive", "sdpa")


def _check_rank(name: str, tensor: torch.Tensor, rank: int, layout: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor shaped {layout}, found {type(tensor).__name__}")
    if tensor.dim() != rank:
        raise ValueError(
            f"{name}: expected a {rank}-d tensor shaped {layout}, "
            f"found shape {tuple(tensor.shape)} ({tensor.dim()}-d)"
        )


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_rank(name, t, 4, "(B, H, T, D)")
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.size(-1) != k.size(-1):
        raise ValueError(
            "q, k, v: expected q (B, H, T, D), k (B, H, S, D) and v (B, H, S, Dv) with matching "
            f"B, H, S and D, found q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )


# ----------------------------------------------------------------------------------------------
# naive attention (lesson 03)


def causal_mask(T: int, device=None, num_keys: int | None = None) -> torch.Tensor:
    """Boolean (T, S) mask, True where query i may attend to key j (SDPA's convention).

    Without ``num_keys`` it is the (T, T) lower triangle: token i sees tokens 0..i.
    With ``num_keys = S >= T`` (queries for the last T of S positions, as when a KV cache
    holds S - T earlier tokens) the triangle is aligned to the bottom right: query i sits at
    position S - T + i and sees keys 0..S - T + i. A single new query (T = 1) sees every key.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"causal_mask: T must be a positive int, found {T!r}")
    S = T if num_keys is None else num_keys
    if isinstance(S, bool) or not isinstance(S, int) or S < T:
        raise ValueError(f"causal_mask: num_keys must be an int >= T={T}, found {num_keys!r}")
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) over the keys: (B, H, T, S); rows sum to 1.

    ``mask`` (bool, broadcastable to (T, S), True = allowed) removes keys before the softmax,
    so masked positions get exactly zero weight. The 1/sqrt(D) keeps the scores' variance
    near 1 whatever the head size, so the softmax does not saturate at the start of training.
    """
    for name, t in (("q", q), ("k", k)):
        _check_rank(name, t, 4, "(B, H, T, D)")
    if q.shape[:2] != k.shape[:2] or q.size(-1) != k.size(-1):
        raise ValueError(
            f"q, k: expected (B, H, T, D) and (B, H, S, D) with the same B, H and D, "
            f"found q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, S)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask: expected a bool tensor (True = allowed), found {mask.dtype}")
        if mask.shape[-2:] != scores.shape[-2:]:
            raise ValueError(
                f"mask: expected shape (T, S) = {tuple(scores.shape[-2:])}, found {tuple(mask.shape)}"
            )
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Naive attention: ``(weights @ v, weights)``, out (B, H, T, D), weights (B, H, T, S)."""
    _check_qkv(q, k, v)
    weights = attention_weights(q, k, mask)  # (B, H, T, S)
    return weights @ v, weights  # (B, H, T, D)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, C) -> (B, H, T, C / H): head h takes channels [h * D, (h + 1) * D)."""
    _check_rank("x", x, 3, "(B, T, C)")
    B, T, C = x.shape
    if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads < 1 or C % n_heads:
        raise ValueError(f"n_heads: expected a positive int dividing C={C}, found {n_heads!r}")
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D) -> (B, T, H * D), the inverse of :func:`split_heads`."""
    _check_rank("x", x, 4, "(B, H, T, D)")
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)


# ----------------------------------------------------------------------------------------------
# fused attention (lesson 04)


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    dropout_p: float = 0.0) -> torch.Tensor:
    """Causal attention through ``F.scaled_dot_product_attention``: (B, H, T, D).

    Equal to ``attention(q, k, v, causal_mask(T))[0]``. When there are more keys than queries
    (S > T, a KV cache), the causal triangle is bottom-right aligned as in :func:`causal_mask`;
    SDPA's ``is_causal=True`` aligns it top-left, which would let a single new query see only
    key 0, so it is used only when S == T. ``dropout_p`` drops attention weights (training).
    """
    _check_qkv(q, k, v)
    T, S = q.size(-2), k.size(-2)
    if S < T:
        raise ValueError(f"k: expected at least as many keys as queries ({T}), found {S}")
    if S == T:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    if T == 1:  # the newest token sees everything cached: no mask at all
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    mask = causal_mask(T, q.device, num_keys=S)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


class KVCache:
    """One attention layer's keys and values for the tokens seen so far, for generation.

    Buffers are allocated once at ``max_length`` (the context length) and filled in place,
    so each new token costs one write instead of a concatenation of everything before it.
    """

    def __init__(self, batch_size: int, n_heads: int, max_length: int, head_dim: int,
                 device=None, dtype=torch.float32):
        shape = (batch_size, n_heads, max_length, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.max_length = max_length
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, D) after what is cached; return all keys and values so far."""
        T = k.size(-2)
        if k.shape[:2] != self.keys.shape[:2] or k.size(-1) != self.keys.size(-1):
            raise ValueError(
                f"KVCache.append: expected k, v shaped {tuple(self.keys.shape[:2])} + (T, "
                f"{self.keys.size(-1)}), found {tuple(k.shape)}"
            )
        end = self.length + T
        if end > self.max_length:
            raise ValueError(
                f"KVCache.append: the cache holds {self.max_length} positions; {self.length} are "
                f"filled and {T} more do not fit (crop the sequence or start a new cache)"
            )
        self.keys[:, :, self.length:end] = k
        self.values[:, :, self.length:end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]  # (B, H, S, D)


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with one fused ``qkv`` projection and an output ``proj``.

    ``qkv.weight`` rows are [W_q; W_k; W_v] and head h owns rows [h * D, (h + 1) * D) of
    each, so ``impl="naive"`` and ``impl="sdpa"`` share one state dict and give the same
    outputs; ``native_mha_inference`` reads the same weights.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, impl: str = "sdpa"):
        super().__init__()
        for name, value in (("d_model", d_model), ("n_heads", n_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, found {value!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if impl not in IMPLS:
            raise ValueError(f"impl: expected one of {IMPLS}, found {impl!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), found {dropout!r}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.impl = impl
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C). With ``kv_cache``, x holds only the new tokens: their
        keys and values are appended to the cache and the queries attend to everything cached."""
        _check_rank("x", x, 3, "(B, T, C)")
        if x.size(-1) != self.d_model:
            raise ValueError(f"x: expected last dimension C = d_model = {self.d_model}, found shape {tuple(x.shape)}")
        q, k, v = self.qkv(x).split(self.d_model, dim=2)  # 3 x (B, T, C)
        q, k, v = (split_heads(t, self.n_heads) for t in (q, k, v))  # 3 x (B, H, T, D)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # (B, H, S, D), S = cached + T
        if self.impl == "naive":
            mask = causal_mask(q.size(2), x.device, num_keys=k.size(2))
            weights = self.attn_dropout(attention_weights(q, k, mask))  # (B, H, T, S)
            y = weights @ v  # (B, H, T, D)
        else:
            y = fused_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.proj(merge_heads(y)))  # (B, T, C)


_TORCH_MHA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def torch_multihead_attention(module: MultiHeadAttention) -> nn.MultiheadAttention:
    """An ``nn.MultiheadAttention`` that shares ``module``'s weights (no copy).

    Its ``in_proj`` rows are [W_q; W_k; W_v] with head h owning rows [h * D, (h + 1) * D) of
    each, the layout of ``qkv``; ``out_proj`` is ``proj``. Built once per module (on the meta
    device, so only the shared parameters hold memory) and reused while they are the same.
    """
    if not isinstance(module, MultiHeadAttention):
        raise TypeError(f"module: expected a MultiHeadAttention, found {type(module).__name__}")
    shared = (module.qkv.weight, module.qkv.bias, module.proj.weight, module.proj.bias)
    mha = _TORCH_MHA.get(module)
    if mha is None or any(a is not b for a, b in zip(shared, (
            mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias))):
        mha = nn.MultiheadAttention(module.d_model, module.n_heads, batch_first=True,
                                    device="meta")
        mha.in_proj_weight, mha.in_proj_bias = module.qkv.weight, module.qkv.bias
        mha.out_proj.weight, mha.out_proj.bias = module.proj.weight, module.proj.bias
        _TORCH_MHA[module] = mha
    return mha.eval()


def native_mha_inference(module: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """The module's causal attention through ``nn.MultiheadAttention``'s inference fast path.

    In eval mode, without autograd, with batch_first inputs and an even number of heads (among
    other conditions), ``nn.MultiheadAttention.forward`` hands the whole layer to one C++ op,
    ``torch._native_multi_head_attention``; otherwise it takes its unfused Python path, with
    the same result. What that op runs is measured in lesson 04: with a mask it is ``bmm``,
    ``_masked_softmax``, ``bmm``, so it builds the full (T, T) weights like the naive version.
    Its boolean mask means True = BLOCKED, the opposite of :func:`causal_mask`, hence the ``~``.
    """
    if torch.is_grad_enabled():
        raise RuntimeError(
            "native_mha_inference: nn.MultiheadAttention's fast path (torch."
            "_native_multi_head_attention) has no backward pass, so it serves inference only. "
            "Wrap the call in torch.inference_mode() (or torch.no_grad()); for training use "
            "fused_attention / scaled_dot_product_attention."
        )
    mha = torch_multihead_attention(module)
    _check_rank("x", x, 3, "(B, T, C)")
    if x.size(-1) != module.d_model:
        raise ValueError(f"x: expected last dimension C = d_model = {module.d_model}, "
                         f"found shape {tuple(x.shape)}")
    blocked = ~causal_mask(x.size(1), x.device)  # (T, T), True = may NOT attend
    out, _ = mha(x, x, x, attn_mask=blocked, need_weights=False)
    return out  # (B, T, C)


# ----------------------------------------------------------------------------------------------
# FlashAttention, written in PyTorch (lesson 04)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention the FlashAttention way: ``(out (B, H, T, Dv), lse (B, H, T))``.

    The keys are visited in tiles of ``block_size``. For each query the loop keeps the
    running maximum ``m`` of its scores and the running sum of exp(score - m) (the
    online softmax); when a tile raises the maximum, the sum and the partial output are
    rescaled by exp(m_old - m_new). At the end out = partial / sum and lse = m + log(sum), the
    log-sum-exp of each query's scores (what the backward pass would keep instead of the
    weights). No (T, S) tensor is built: the largest is a (B, H, T, block_size) tile of
    scores, so memory grows linearly with T. With S > T keys (a KV cache) the causal
    triangle is bottom-right aligned, as in :func:`causal_mask`. The sums run in float32.
    """
    _check_qkv(q, k, v)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size: expected a positive int, found {block_size!r}")
    T, S = q.size(-2), k.size(-2)
    if S < T:
        raise ValueError(f"k: expected at least as many keys as queries ({T}), found {S}")
    scale = 1.0 / math.sqrt(q.size(-1))
    q32 = q.float() * scale
    query_position = torch.arange(S - T, S, device=q.device)[:, None]  # (T, 1)
    m = q32.new_full(q.shape[:-1], float("-inf"))  # (B, H, T) running maximum
    total = q32.new_zeros(q.shape[:-1])  # (B, H, T) running sum of exp(score - m)
    acc = q32.new_zeros(*q.shape[:-1], v.size(-1))  # (B, H, T, Dv) unnormalised output
    for start in range(0, S, block_size):
        end = min(start + block_size, S)
        scores = q32 @ k[..., start:end, :].float().transpose(-2, -1)  # (B, H, T, b)
        key_position = torch.arange(start, end, device=q.device)[None, :]  # (1, b)
        scores = scores.masked_fill(key_position > query_position, float("-inf"))
        m_new = torch.maximum(m, scores.amax(dim=-1))  # (B, H, T)
        m_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)  # rows with no key yet
        p = torch.exp(scores - m_safe[..., None])  # (B, H, T, b)
        rescale = torch.exp(m - m_safe)  # (B, H, T); 0 on the first tile a row sees
        total = total * rescale + p.sum(dim=-1)
        acc = acc * rescale[..., None] + p @ v[..., start:end, :].float()
        m = m_new
    out = acc / total[..., None]
    return out.to(q.dtype), m + torch.log(total)
