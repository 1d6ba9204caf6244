"""Attention: naive vs fused vs native agree, causality holds, the KV cache is exact, bad input
is reported clearly."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from model_helpers import rel_err, single_thread  # noqa: F401 (an autouse fixture)

from nanolm_lib.course.attention import (
    KVCache,
    MultiHeadAttention,
    attention,
    attention_weights,
    causal_mask,
    fused_attention,
    merge_heads,
    native_mha_inference,
    split_heads,
)

SHAPES = [(2, 4, 16, 8), (1, 1, 1, 5), (3, 1, 7, 3), (2, 3, 33, 16)]  # (B, H, T, D)


def random_qkv(shape, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g).requires_grad_(requires_grad) for _ in range(3)]


def random_module(d_model, n_heads, impl, seed=0):
    module = MultiHeadAttention(d_model, n_heads, impl=impl)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # large weights and biases, so that a wrong layout cannot hide
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return module


# --- causal_mask -----------------------------------------------------------------------------

def test_causal_mask_is_lower_triangle_of_allowed_positions():
    mask = causal_mask(4)
    assert mask.dtype == torch.bool and mask.shape == (4, 4)
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    assert torch.equal(causal_mask(1), torch.ones(1, 1, dtype=torch.bool))


def test_causal_mask_with_more_keys_is_bottom_right_aligned():
    # 2 queries at positions 3 and 4 of 5: they see keys 0..3 and 0..4
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, num_keys=5), expected)
    assert causal_mask(1, num_keys=7).all()  # one new token sees everything cached


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_causal_mask_rejects_bad_lengths(bad):
    with pytest.raises(ValueError, match="causal_mask: T must be a positive int"):
        causal_mask(bad)
    with pytest.raises(ValueError, match="num_keys must be an int >= T=3"):
        causal_mask(3, num_keys=2)


# --- naive attention -------------------------------------------------------------------------

def test_attention_weights_are_the_scaled_softmax_with_exact_zeros():
    q, k, _ = random_qkv((2, 3, 6, 4))
    mask = causal_mask(6)
    weights = attention_weights(q, k, mask)
    assert weights.shape == (2, 3, 6, 6)
    assert (weights[..., ~mask] == 0).all()  # exactly zero, not merely small
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 6), atol=1e-6)
    # the allowed part is the row-wise softmax of q k^T / sqrt(D) over the allowed keys
    scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(4)
    for t in range(6):
        expected = torch.softmax(scores[..., t, : t + 1], dim=-1)
        assert torch.allclose(weights[..., t, : t + 1], expected, atol=1e-6)
    # without a mask every key gets weight
    unmasked = attention_weights(q, k)
    assert torch.allclose(unmasked, torch.softmax(scores, dim=-1), atol=1e-6)


def test_attention_returns_weighted_values_and_weights():
    q, k, v = random_qkv((2, 2, 5, 3), seed=1)
    out, weights = attention(q, k, v, causal_mask(5))
    assert out.shape == (2, 2, 5, 3) and weights.shape == (2, 2, 5, 5)
    assert torch.allclose(out, weights @ v, atol=1e-6)
    assert torch.allclose(out[..., 0, :], v[..., 0, :], atol=1e-6)  # token 0 sees only itself


def test_split_and_merge_heads_round_trip_with_contiguous_head_slices():
    x = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(2))
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    for h in range(3):
        assert torch.equal(heads[:, h], x[..., 4 * h: 4 * (h + 1)])
    assert torch.equal(merge_heads(heads), x)


@pytest.mark.parametrize("shape", SHAPES)
def test_naive_and_fused_agree_in_fp32_forward_and_backward(shape):
    q1, k1, v1 = random_qkv(shape, requires_grad=True)
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q1, k1, v1))
    naive, _ = attention(q1, k1, v1, causal_mask(shape[2]))
    fused = fused_attention(q2, k2, v2)
    assert rel_err(naive, fused) < 1e-5
    upstream = torch.randn(shape, generator=torch.Generator().manual_seed(9))
    (naive * upstream).sum().backward()
    (fused * upstream).sum().backward()
    for a, b in ((q1, q2), (k1, k2), (v1, v2)):
        if b.grad.norm() > 0:  # T=1: q and k get zero gradient (softmax over one key)
            assert rel_err(a.grad, b.grad) < 1e-5
        else:
            assert a.grad.abs().max() < 1e-6


@pytest.mark.parametrize("T,S", [(1, 9), (3, 9), (9, 9)])
def test_fused_attention_with_more_keys_matches_the_bottom_right_mask(T, S):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 2, T, 8, generator=g)
    k, v = torch.randn(2, 2, S, 8, generator=g), torch.randn(2, 2, S, 8, generator=g)
    naive, _ = attention(q, k, v, causal_mask(T, num_keys=S))
    assert rel_err(fused_attention(q, k, v), naive) < 1e-5
    if T == 1:  # SDPA's is_causal=True would have shown this query only key 0
        wrong = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        assert rel_err(wrong, naive) > 1e-2


def test_changing_future_tokens_changes_no_earlier_output():
    q, k, v = random_qkv((2, 2, 10, 4), seed=4)
    t = 5
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, :, t + 1:] = torch.randn_like(x[:, :, t + 1:])
    for fn in (lambda a, b, c: attention(a, b, c, causal_mask(10))[0], fused_attention):
        before, after = fn(q, k, v), fn(q2, k2, v2)
        assert torch.equal(before[:, :, : t + 1], after[:, :, : t + 1])
        assert not torch.allclose(before[:, :, t + 1:], after[:, :, t + 1:])


# --- MultiHeadAttention ----------------------------------------------------------------------

@pytest.mark.parametrize("d_model,n_heads,T", [(32, 4, 9), (12, 3, 1), (10, 1, 6)])
def test_naive_and_sdpa_modules_share_a_state_dict_and_agree(d_model, n_heads, T):
    naive = random_module(d_model, n_heads, "naive", seed=5)
    sdpa = MultiHeadAttention(d_model, n_heads, impl="sdpa")
    sdpa.load_state_dict(naive.state_dict())
    assert set(naive.state_dict()) == {"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}
    x1 = torch.randn(2, T, d_model, generator=torch.Generator().manual_seed(6), requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    y1, y2 = naive(x1), sdpa(x2)
    assert y1.shape == (2, T, d_model)
    assert rel_err(y1, y2) < 1e-5
    y1.square().sum().backward()
    y2.square().sum().backward()
    assert rel_err(x1.grad, x2.grad) < 1e-5
    for (name, p1), p2 in zip(naive.named_parameters(), sdpa.parameters()):
        assert rel_err(p1.grad, p2.grad) < 1e-5, name


def test_module_weight_layout_matches_pytorch_multihead_attention():
    # qkv rows [q; k; v] with contiguous heads is exactly nn.MultiheadAttention's in_proj layout
    module = random_module(16, 4, "sdpa", seed=7)
    reference = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(module.qkv.weight)
        reference.in_proj_bias.copy_(module.qkv.bias)
        reference.out_proj.weight.copy_(module.proj.weight)
        reference.out_proj.bias.copy_(module.proj.bias)
    x = torch.randn(3, 8, 16, generator=torch.Generator().manual_seed(8))
    expected, _ = reference(x, x, x, attn_mask=~causal_mask(8), need_weights=False)
    assert rel_err(module(x), expected) < 1e-5


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
def test_module_is_causal(impl):
    module = random_module(16, 2, impl, seed=9)
    x = torch.randn(2, 12, 16, generator=torch.Generator().manual_seed(10))
    x2 = x.clone()
    x2[:, 7:] += 1.0
    y, y2 = module(x), module(x2)
    assert torch.allclose(y[:, :7], y2[:, :7], atol=1e-6)
    assert not torch.allclose(y[:, 7:], y2[:, 7:])


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
@pytest.mark.parametrize("chunks", [[1] * 10, [4, 3, 1, 2]])
def test_kv_cache_reproduces_the_full_forward(impl, chunks):
    module = random_module(24, 3, impl, seed=11)
    x = torch.randn(2, 10, 24, generator=torch.Generator().manual_seed(12))
    full = module(x)
    cache = KVCache(2, 3, max_length=10, head_dim=8)
    outputs, start = [], 0
    for size in chunks:
        outputs.append(module(x[:, start:start + size], kv_cache=cache))
        start += size
    assert cache.length == 10
    assert rel_err(torch.cat(outputs, dim=1), full) < 1e-5


def test_kv_cache_overflow_and_shape_errors():
    cache = KVCache(1, 2, max_length=4, head_dim=3)
    cache.append(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3))
    with pytest.raises(ValueError, match="holds 4 positions; 3 are filled and 2 more do not fit"):
        cache.append(torch.zeros(1, 2, 2, 3), torch.zeros(1, 2, 2, 3))
    assert cache.length == 3  # nothing lost
    with pytest.raises(ValueError, match=r"expected k, v shaped \(1, 2\) \+ \(T, 3\)"):
        cache.append(torch.zeros(2, 2, 1, 3), torch.zeros(2, 2, 1, 3))


# --- the native fast path --------------------------------------------------------------------

@pytest.mark.parametrize("d_model,n_heads,T", [(32, 4, 9), (12, 3, 5), (16, 2, 1)])
def test_native_fast_path_equals_the_module_in_eval_mode(d_model, n_heads, T):
    module = random_module(d_model, n_heads, "naive", seed=13).eval()
    x = torch.randn(2, T, d_model, generator=torch.Generator().manual_seed(14))
    with torch.inference_mode():
        fast = native_mha_inference(module, x)
        expected = module(x)
    assert fast.shape == (2, T, d_model)
    assert rel_err(fast, expected) < 1e-5
    with torch.no_grad():  # no_grad serves as well as inference_mode
        assert rel_err(native_mha_inference(module, x), expected) < 1e-5


def test_native_fast_path_refuses_autograd():
    module = random_module(16, 2, "sdpa")
    x = torch.randn(1, 4, 16)
    with pytest.raises(RuntimeError, match=r"no backward pass.*inference_mode\(\).*fused_attention"):
        native_mha_inference(module, x)
    with pytest.raises(RuntimeError, match="no backward pass"):
        native_mha_inference(module, x.requires_grad_())


def test_native_fast_path_rejects_bad_input():
    module = random_module(16, 2, "sdpa")
    with torch.inference_mode():
        with pytest.raises(ValueError, match=r"x: expected a 3-d tensor shaped \(B, T, C\), found shape \(4, 16\)"):
            native_mha_inference(module, torch.randn(4, 16))
        with pytest.raises(ValueError, match="expected last dimension C = d_model = 16"):
            native_mha_inference(module, torch.randn(1, 4, 8))
        with pytest.raises(TypeError, match="module: expected a MultiHeadAttention, found Linear"):
            native_mha_inference(torch.nn.Linear(16, 16), torch.randn(1, 4, 16))


# --- bad input -------------------------------------------------------------------------------

def test_module_constructor_errors():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by n_heads=4"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match=r"impl: expected one of \('naive', 'sdpa'\), found 'flash'"):
        MultiHeadAttention(8, 2, impl="flash")
    with pytest.raises(ValueError, match="n_heads: expected a positive int, found 0"):
        MultiHeadAttention(8, 0)
    with pytest.raises(ValueError, match=r"dropout: expected a probability in \[0, 1\)"):
        MultiHeadAttention(8, 2, dropout=1.5)


def test_shape_errors_say_what_was_found_and_expected():
    with pytest.raises(ValueError, match=r"x: expected a 3-d tensor shaped \(B, T, C\), found shape \(2, 3, 4, 5\)"):
        split_heads(torch.zeros(2, 3, 4, 5), 2)
    with pytest.raises(ValueError, match="n_heads: expected a positive int dividing C=10, found 3"):
        split_heads(torch.zeros(1, 2, 10), 3)
    with pytest.raises(ValueError, match=r"x: expected a 4-d tensor shaped \(B, H, T, D\)"):
        merge_heads(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"q: expected a 4-d tensor shaped \(B, H, T, D\), found shape \(3, 4, 5\)"):
        attention(torch.zeros(3, 4, 5), torch.zeros(1, 3, 4, 5), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match=r"matching B, H, S and D, found q \(1, 2, 4, 8\), k \(1, 2, 4, 6\)"):
        fused_attention(torch.zeros(1, 2, 4, 8), torch.zeros(1, 2, 4, 6), torch.zeros(1, 2, 4, 6))
    with pytest.raises(ValueError, match=r"mask: expected shape \(T, S\) = \(4, 4\), found \(3, 3\)"):
        attention_weights(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2), causal_mask(3))
    with pytest.raises(TypeError, match="mask: expected a bool tensor"):
        attention_weights(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2), torch.ones(4, 4))
    with pytest.raises(ValueError, match="expected last dimension C = d_model = 8, found shape"):
        MultiHeadAttention(8, 2)(torch.zeros(1, 3, 6))
