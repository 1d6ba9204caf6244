"""The modern GPT's pieces (lesson 08) against written-out references on fresh inputs: RMSNorm,
RoPE (both conventions, the relative-position property), SwiGLU, grouped-query attention
(equal to multi-head attention at n_kv_heads == n_heads, a smaller KV cache, measured), and
ModernGPT (parameter count, causality, the classic pieces give lesson 05's GPT)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from model_helpers import rel_err, single_thread  # noqa: F401 (autouse)

from nanolm_lib.course.attention import MultiHeadAttention
from nanolm_lib.course.model import GPT, GPTConfig, count_parameters
from nanolm_lib.course.modern import (
    FastRMSNorm,
    GroupedQueryAttention,
    ModernConfig,
    ModernGPT,
    RMSNorm,
    SwiGLU,
    apply_rope,
    apply_rope_interleaved,
    count_modern_parameters,
    kv_cache_bytes,
    rope_cache,
    swiglu_hidden_size,
)
from nanolm_lib.course.sampling import generate

TINY = ModernConfig(vocab_size=37, context_length=16, d_model=32, n_layers=2, n_heads=4,
                    n_kv_heads=2, d_ff=64)


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def seeded(config, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ModernGPT(config)


# --- RMSNorm ------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer_class", [RMSNorm, FastRMSNorm])
@pytest.mark.parametrize("seed", [1, 2])
def test_rmsnorm_is_the_written_out_formula(layer_class, seed):
    d = 12
    norm = layer_class(d, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(randn(d, seed=seed + 10))
    x = 3.0 + 2.0 * randn(2, 5, d, seed=seed)
    expected = torch.empty(2, 5, d, dtype=torch.float64)
    for i in range(2):
        for t in range(5):
            row = x[i, t].double()
            rms = math.sqrt(sum(v * v for v in row.tolist()) / d + 1e-5)  # eps inside the root
            expected[i, t] = row / rms * norm.weight.double()
    assert rel_err(norm(x).double(), expected) < 1e-6
    assert [name for name, _ in norm.named_parameters()] == ["weight"]  # no bias


def test_rmsnorm_eps_sits_inside_the_root():
    x = torch.zeros(1, 4)
    x[0, 0] = 1e-3  # mean square 2.5e-7, comparable to eps
    got = RMSNorm(4, eps=1e-6)(x)[0, 0].item()
    assert got == pytest.approx(1e-3 / math.sqrt(2.5e-7 + 1e-6), rel=1e-5)


# --- RoPE ---------------------------------------------------------------------------------------

def rope_reference(x: torch.Tensor, base: float = 10_000.0) -> torch.Tensor:
    """Each pair (i, i + D/2) at position p rotated by the 2x2 matrix of angle p base^(-2i/D)."""
    *lead, T, D = x.shape
    out = torch.empty(x.shape, dtype=torch.float64)
    xd = x.double()
    for p in range(T):
        for i in range(D // 2):
            angle = p * base ** (-2 * i / D)
            rotation = torch.tensor([[math.cos(angle), -math.sin(angle)],
                                     [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
            pair = torch.stack([xd[..., p, i], xd[..., p, i + D // 2]], dim=-1)  # (..., 2)
            turned = pair @ rotation.T
            out[..., p, i], out[..., p, i + D // 2] = turned[..., 0], turned[..., 1]
    return out


@pytest.mark.parametrize("base", [10_000.0, 100.0])
def test_apply_rope_rotates_each_half_pair_by_its_angle(base):
    x = randn(2, 3, 7, 8, seed=3)
    cos, sin = rope_cache(7, 8, base)
    assert cos.shape == sin.shape == (7, 8)
    assert rel_err(apply_rope(x, cos, sin).double(), rope_reference(x, base)) < 1e-6


def test_rope_keeps_lengths_and_leaves_position_zero_alone():
    x = randn(1, 1, 9, 16, seed=4)
    y = apply_rope(x, *rope_cache(9, 16))
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[..., 0, :], x[..., 0, :])


def test_interleaved_rope_is_the_same_rotation_on_permuted_dimensions():
    """Pairs (2i, 2i+1) rotated (the paper's layout) = pairs (i, i + D/2) rotated after
    moving the even dimensions first: the two conventions differ by a fixed permutation,
    so weights trained in one need their q/k rows permuted to run in the other."""
    D = 10
    x = randn(2, 2, 6, D, seed=5)
    cos, sin = rope_cache(6, D)
    evens_first = torch.cat([torch.arange(0, D, 2), torch.arange(1, D, 2)])
    back = torch.argsort(evens_first)
    via_half = apply_rope(x[..., evens_first], cos, sin)[..., back]
    torch.testing.assert_close(apply_rope_interleaved(x, cos, sin), via_half)
    # and they are different functions on the same dimensions
    assert rel_err(apply_rope_interleaved(x, cos, sin), apply_rope(x, cos, sin)) > 0.1


def test_rope_scores_depend_only_on_relative_position():
    D, T = 16, 40
    q, k = randn(D, seed=6), randn(D, seed=7)
    cos, sin = rope_cache(T, D)

    def score(m, n):  # q at position m, k at position n
        qm = apply_rope(q.expand(T, D), cos, sin)[m]
        kn = apply_rope(k.expand(T, D), cos, sin)[n]
        return torch.dot(qm, kn).item()

    for m, n in ((5, 2), (9, 9), (3, 11)):
        for shift in (1, 7, 20):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-4)
    assert abs(score(5, 2) - score(5, 4)) > 1e-3  # but they do depend on the offset


# --- SwiGLU -------------------------------------------------------------------------------------

def test_swiglu_hidden_size_keeps_the_gelu_mlps_parameters():
    for d in (64, 80, 768):
        hidden = swiglu_hidden_size(d)
        assert hidden % 8 == 0 and 8 * d / 3 <= hidden < 8 * d / 3 + 8
        assert abs(3 * d * hidden - 2 * d * 4 * d) <= 3 * d * 8
    assert swiglu_hidden_size(80) == 216


def test_swiglu_is_the_written_out_gate():
    d = 12
    mlp = SwiGLU(d)
    with torch.no_grad():
        for i, p in enumerate(mlp.parameters()):
            p.copy_(randn(*p.shape, seed=20 + i) * 0.3)
    x = randn(3, 4, d, seed=8)
    wg, wu, wd = (m.weight.double() for m in (mlp.gate, mlp.up, mlp.down))
    z = x.double() @ wg.T
    silu = z / (1 + torch.exp(-z))  # z * sigmoid(z)
    expected = (silu * (x.double() @ wu.T)) @ wd.T
    assert rel_err(mlp(x).double(), expected) < 1e-6
    assert all(m.bias is None for m in (mlp.gate, mlp.up, mlp.down))
    assert mlp.gate.out_features == swiglu_hidden_size(d)


# --- grouped-query attention ----------------------------------------------------------------------

def gqa_reference(x, attn: GroupedQueryAttention):
    """Head by head: query head h against key/value head h // group, causal softmax."""
    B, T, C = x.shape
    H, Hkv, D = attn.n_heads, attn.n_kv_heads, attn.head_dim
    W = attn.qkv.weight.double()
    wq, wk, wv = W[:C], W[C:C + Hkv * D], W[C + Hkv * D:]
    xd = x.double()
    heads = []
    for h in range(H):
        g = h // (H // Hkv)
        q = xd @ wq[h * D:(h + 1) * D].T  # (B, T, D)
        k = xd @ wk[g * D:(g + 1) * D].T
        v = xd @ wv[g * D:(g + 1) * D].T
        scores = q @ k.transpose(1, 2) / math.sqrt(D)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        heads.append(torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v)
    return torch.cat(heads, dim=-1) @ attn.proj.weight.double().T


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_gqa_is_the_written_out_grouped_attention(n_kv_heads):
    attn = GroupedQueryAttention(32, 4, n_kv_heads)
    with torch.no_grad():
        for i, p in enumerate(attn.parameters()):
            p.copy_(randn(*p.shape, seed=30 + i) * 0.2)
    x = randn(2, 7, 32, seed=9)
    assert rel_err(attn(x).double(), gqa_reference(x, attn)) < 1e-5


@pytest.mark.parametrize("bias", [False, True])
def test_gqa_with_as_many_kv_heads_as_heads_is_multi_head_attention(bias):
    gqa = GroupedQueryAttention(24, 3, 3, bias=bias)
    mha = MultiHeadAttention(24, 3)
    with torch.no_grad():
        for p in gqa.parameters():
            p.copy_(randn(*p.shape, seed=p.numel()) * 0.2)
        mha.qkv.weight.copy_(gqa.qkv.weight)
        mha.proj.weight.copy_(gqa.proj.weight)
        mha.qkv.bias.copy_(gqa.qkv.bias if bias else torch.zeros(72))
        mha.proj.bias.copy_(gqa.proj.bias if bias else torch.zeros(24))
    x = randn(2, 9, 24, seed=11)
    torch.testing.assert_close(gqa(x), mha(x))


def test_kv_cache_shrinks_by_heads_over_kv_heads_measured():
    sizes = dict(vocab_size=37, context_length=64, d_model=64, n_layers=3, n_heads=8, d_ff=64)
    measured = {}
    for n_kv in (8, 2, 1):
        config = ModernConfig(n_kv_heads=n_kv, **sizes)
        cache = seeded(config).new_kv_cache(batch_size=2)
        measured[n_kv] = sum(c.keys.nbytes + c.values.nbytes for c in cache)
        assert measured[n_kv] == kv_cache_bytes(config, batch_size=2)
    assert measured[8] == 4 * measured[2] == 8 * measured[1]
    classic = GPT(GPTConfig(**sizes)).new_kv_cache(batch_size=2)
    assert sum(c.keys.nbytes + c.values.nbytes for c in classic) == measured[8]


# --- ModernGPT ----------------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    {}, {"n_kv_heads": 1}, {"tie_weights": False}, {"bias": True},
    {"norm": "layernorm", "position": "learned", "mlp": "gelu"},
])
def test_modern_parameter_count_by_formula(changes):
    config = dataclasses.replace(TINY, **changes)
    model = ModernGPT(config)
    assert count_modern_parameters(config) == sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for name, p in model.named_parameters() if "emb" in name)
    assert count_modern_parameters(config, non_embedding=True) == (
        sum(p.numel() for p in model.parameters()) - embeddings)


def test_the_classic_pieces_give_lesson_05s_gpt():
    """With LayerNorm, learned positions, the GELU MLP and biases, ModernGPT is the GPT:
    the same parameter count, and the same logits with the GPT's weights."""
    sizes = dict(vocab_size=37, context_length=12, d_model=24, n_layers=2, n_heads=3, d_ff=40)
    classic = ModernConfig(norm="layernorm", position="learned", mlp="gelu", bias=True, **sizes)
    gpt = GPT(GPTConfig(**sizes))
    assert count_modern_parameters(classic) == count_parameters(GPTConfig(**sizes))
    renamed = {k.replace("ln1", "norm1").replace("ln2", "norm2").replace("ln_f", "norm_f"): v
               for k, v in gpt.state_dict().items()}
    modern = ModernGPT(classic)
    modern.load_state_dict(renamed)
    idx = torch.randint(37, (2, 12), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(modern(idx)[0], gpt(idx)[0])


def test_modern_gpt_is_causal_and_its_cache_matches_the_full_forward():
    model = seeded(TINY).eval()
    idx = torch.randint(37, (2, 10), generator=torch.Generator().manual_seed(4))
    logits, _ = model(idx)
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 37
    torch.testing.assert_close(model(changed)[0][:, :6], logits[:, :6])
    cache = model.new_kv_cache(2)
    stepwise = [model(idx[:, :4], kv_cache=cache)[0]]
    stepwise += [model(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(stepwise, dim=1), logits, rtol=1e-4, atol=1e-5)
    out_cached = generate(model, idx[:, :3], 20, generator=torch.Generator().manual_seed(0))
    out_plain = generate(model, idx[:, :3], 20, generator=torch.Generator().manual_seed(0),
                         use_cache=False)
    assert torch.equal(out_cached, out_plain)  # the window slides past 16 tokens too


def test_modern_config_refuses_bad_settings_by_name():
    with pytest.raises(ValueError, match="n_kv_heads"):
        ModernConfig(d_model=32, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="norm"):
        ModernConfig(norm="batchnorm")
    with pytest.raises(ValueError, match="even"):
        ModernConfig(d_model=30, n_heads=2)


# --- the ablation's variants ----------------------------------------------------------------------

def test_each_ablation_variant_swaps_one_piece_of_the_classic_gpt():
    from nanolm_lib.course.modern import family_of, parameter_count
    from nanolm_lib.lab.ablation import VARIANTS, variant_config

    base = GPTConfig(vocab_size=37, context_length=12, d_model=24, n_layers=2, n_heads=4, d_ff=96)
    classic = dict(norm="layernorm", position="learned", mlp="gelu", n_kv_heads=4, bias=True)
    changed = {"rmsnorm": {"norm": "rmsnorm"}, "rope": {"position": "rope"},
               "swiglu": {"mlp": "swiglu"}, "gqa": {"n_kv_heads": 2}}
    for variant in VARIANTS:
        config = variant_config(base, variant)
        assert parameter_count(config) == sum(
            p.numel() for p in (GPT if family_of(config) == "gpt" else ModernGPT)(config).parameters())
        if variant == "classic":
            assert family_of(config) == "gpt" and config == base
            continue
        settings = {key: getattr(config, key) for key in classic}
        if variant == "modern":
            assert settings == dict(norm="rmsnorm", position="rope", mlp="swiglu", n_kv_heads=2,
                                    bias=False)
        else:
            assert settings == {**classic, **changed[variant]}, variant
    with pytest.raises(ValueError, match="variant 'bogus'"):
        variant_config(base, "bogus")
