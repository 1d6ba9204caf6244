"""The GPT: its parts against their definitions, parameter counts by formula, causality, the
KV cache, a loss that starts near ln(V) and can be driven down, and clear errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from model_helpers import rel_err, seeded_model, single_thread  # noqa: F401 (autouse)

from nanolm_lib.course.model import (
    GPT,
    MLP,
    Block,
    FastLayerNorm,
    GPTConfig,
    LayerNorm,
    count_parameters,
    flops_per_token,
)
from nanolm_lib.lab.presets import gpt_configs

PRESETS = gpt_configs()  # lesson 05's table of the recipes' GPT sizes
TINY = GPTConfig(vocab_size=37, context_length=12, d_model=24, n_layers=2, n_heads=3, d_ff=40)


def random_ids(config, B, T, seed=0):
    return torch.randint(config.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


# --- parts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layer_class", [LayerNorm, FastLayerNorm])
@pytest.mark.parametrize("shape", [(2, 5, 16), (3, 7), (1, 1, 1, 4)])
def test_layernorm_equals_torch_layernorm_forward_and_backward(shape, layer_class):
    g = torch.Generator().manual_seed(1)
    d = shape[-1]
    ours, theirs = layer_class(d), torch.nn.LayerNorm(d, eps=1e-5)
    with torch.no_grad():
        for p, q in ((ours.weight, theirs.weight), (ours.bias, theirs.bias)):
            p.copy_(torch.randn(d, generator=g))
            q.copy_(p)
    x1 = (3.0 + 2.0 * torch.randn(shape, generator=g)).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    assert rel_err(y1, y2) < 1e-5
    upstream = torch.randn(shape, generator=g)
    (y1 * upstream).sum().backward()
    (y2 * upstream).sum().backward()
    assert rel_err(x1.grad, x2.grad) < 1e-4
    assert rel_err(ours.weight.grad, theirs.weight.grad) < 1e-5
    assert rel_err(ours.bias.grad, theirs.bias.grad) < 1e-5
    assert [n for n, _ in ours.named_parameters()] == ["weight", "bias"]


def test_gpt_runs_the_fused_layernorm_with_the_written_out_ones_weights():
    """The library's GPT uses FastLayerNorm; the written-out LayerNorm (what lesson 05
    grades) loaded with the same weights gives the same logits and loss."""
    fast = GPT(TINY)
    norms = [name for name, m in fast.named_modules() if isinstance(m, LayerNorm)]
    assert norms == ["blocks.0.ln1", "blocks.0.ln2", "blocks.1.ln1", "blocks.1.ln2", "ln_f"]
    assert all(type(fast.get_submodule(name)) is FastLayerNorm for name in norms)
    written_out = GPT(TINY)
    for name in norms:
        parent, _, attr = name.rpartition(".")
        setattr(written_out.get_submodule(parent) if parent else written_out, attr,
                LayerNorm(TINY.d_model))
    with torch.no_grad():
        for p in fast.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    written_out.load_state_dict(fast.state_dict())
    idx, targets = random_ids(TINY, 3, 12, seed=5), random_ids(TINY, 3, 12, seed=6)
    (logits, loss), (expected, expected_loss) = fast(idx, targets), written_out(idx, targets)
    assert rel_err(logits, expected) < 1e-5 and abs(loss.item() - expected_loss.item()) < 1e-5


def test_mlp_is_fc_exact_gelu_proj():
    mlp = MLP(TINY)
    x = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(2))
    hidden = x @ mlp.fc.weight.T + mlp.fc.bias
    exact_gelu = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
    expected = exact_gelu @ mlp.proj.weight.T + mlp.proj.bias
    assert mlp.fc.weight.shape == (40, 24) and mlp.proj.weight.shape == (24, 40)
    assert rel_err(mlp(x), expected) < 1e-5


def test_block_is_pre_ln_with_residuals():
    block = Block(TINY)
    x = torch.randn(2, 6, 24, generator=torch.Generator().manual_seed(3))
    h = x + block.attn(block.ln1(x))
    expected = h + block.mlp(block.ln2(h))
    assert torch.allclose(block(x), expected, atol=1e-6)


# --- parameter counts ------------------------------------------------------------------------

CONFIGS = [
    TINY,
    dataclasses.replace(TINY, tie_weights=False),
    GPTConfig(vocab_size=5, context_length=3, d_model=7, n_layers=1, n_heads=7, d_ff=1),
    dataclasses.replace(PRESETS["cpu"], n_layers=1, tie_weights=False),
    PRESETS["smoke"],
    PRESETS["cpu"],
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"V{c.vocab_size}-C{c.d_model}-tied{c.tie_weights}")
def test_count_parameters_matches_the_model(config):
    model = GPT(config)
    total = sum(p.numel() for p in model.parameters())  # a tied matrix appears once
    assert count_parameters(config) == total
    embeddings = model.tok_emb.weight.numel() + model.pos_emb.weight.numel()
    assert count_parameters(config, non_embedding=True) == total - embeddings
    assert (model.head.weight is model.tok_emb.weight) == config.tie_weights


def test_reference_model_has_21_955_584_parameters():
    config = PRESETS["seed-3090"]
    assert config == GPTConfig()
    assert (config.vocab_size, config.context_length, config.d_model, config.n_layers,
            config.n_heads, config.d_ff) == (10_000, 128, 768, 2, 8, 3_072)
    model = GPT(config)
    assert count_parameters(config) == sum(p.numel() for p in model.parameters()) == 21_955_584
    # GPT-2 init: residual projections scaled by 1 / sqrt(2 * n_layers), the rest 0.02
    assert abs(model.blocks[0].attn.proj.weight.std().item() - 0.01) < 2e-4
    assert abs(model.blocks[1].mlp.proj.weight.std().item() - 0.01) < 2e-4
    assert abs(model.blocks[0].mlp.fc.weight.std().item() - 0.02) < 2e-4
    assert abs(model.tok_emb.weight.std().item() - 0.02) < 2e-4
    assert model.blocks[0].attn.qkv.bias.abs().max() == 0


def test_flops_per_token_is_6n_plus_the_attention_term():
    config = PRESETS["seed-3090"]
    matmul_params = 21_955_584 - 128 * 768  # the head (tied table) is a matmul, positions are not
    assert flops_per_token(config) == 6 * matmul_params + 12 * 2 * 768 * 128
    untied = dataclasses.replace(config, tie_weights=False)
    assert flops_per_token(untied) == flops_per_token(config)  # same work, more parameters


def test_presets_carry_their_vocabulary_and_validate():
    assert set(PRESETS) >= {"seed-3090", "cpu", "smoke"}
    for name, config in PRESETS.items():
        assert isinstance(config, GPTConfig), name
        assert config.vocab_size <= 65_536
    assert count_parameters(PRESETS["smoke"]) < count_parameters(PRESETS["cpu"]) < 21_955_584


# --- forward ---------------------------------------------------------------------------------

def test_forward_shapes_and_loss_is_mean_cross_entropy():
    model = seeded_model(TINY)
    idx, targets = random_ids(TINY, 3, 12, seed=1), random_ids(TINY, 3, 12, seed=2)
    logits, loss = model(idx)
    assert logits.shape == (3, 12, 37) and loss is None
    logits2, loss = model(idx, targets)
    assert logits2.shape == (3, 12, 37)
    expected = F.cross_entropy(logits2.reshape(-1, 37), targets.reshape(-1))
    assert torch.allclose(loss, expected)
    logits, _ = model(idx[:, :1])
    assert logits.shape == (3, 1, 37)


def test_fresh_model_loss_is_near_ln_vocab():
    config = PRESETS["smoke"]
    model = seeded_model(config, seed=3)
    _, loss = model(random_ids(config, 8, 64, seed=4), random_ids(config, 8, 64, seed=5))
    assert abs(loss.item() - math.log(config.vocab_size)) < 0.1


def test_model_overfits_one_small_batch():
    config = GPTConfig(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=4, d_ff=64)
    model = seeded_model(config, seed=6)
    x, y = random_ids(config, 4, 16, seed=7), random_ids(config, 4, 16, seed=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _, first = model(x, y)
    for _ in range(100):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first.item() > 3.5 and loss.item() < 0.5


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
def test_gpt_is_causal(impl):
    config = dataclasses.replace(TINY, attn_impl=impl)
    model = seeded_model(config, seed=9)
    idx = random_ids(config, 2, 12, seed=10)
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % config.vocab_size
    logits, _ = model(idx)
    logits2, _ = model(changed)
    assert torch.allclose(logits[:, :5], logits2[:, :5], atol=1e-6)
    assert not torch.allclose(logits[:, 5:], logits2[:, 5:])


def test_naive_and_sdpa_gpts_share_a_state_dict_and_agree():
    naive = seeded_model(dataclasses.replace(TINY, attn_impl="naive"), seed=11)
    sdpa = GPT(TINY)
    sdpa.load_state_dict(naive.state_dict())
    idx, targets = random_ids(TINY, 2, 12, seed=12), random_ids(TINY, 2, 12, seed=13)
    (l1, loss1), (l2, loss2) = naive(idx, targets), sdpa(idx, targets)
    assert rel_err(l1, l2) < 1e-5
    loss1.backward()
    loss2.backward()
    for (name, p1), p2 in zip(naive.named_parameters(), sdpa.parameters()):
        assert rel_err(p1.grad, p2.grad) < 1e-4, name


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
def test_kv_cache_forward_equals_the_full_forward(impl):
    config = dataclasses.replace(TINY, attn_impl=impl)
    model = seeded_model(config, seed=14).eval()
    idx = random_ids(config, 2, 12, seed=15)
    full, _ = model(idx)
    cache = model.new_kv_cache(batch_size=2)
    pieces = [model(idx[:, :5], kv_cache=cache)[0]]
    pieces += [model(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(5, 12)]  # positions 5..11
    assert rel_err(torch.cat(pieces, dim=1), full) < 1e-5
    with pytest.raises(ValueError, match="expected 1 to context_length=12 positions, found 1 after 12 cached"):
        model(idx[:, :1], kv_cache=cache)


def test_dropout_acts_in_training_only():
    config = dataclasses.replace(TINY, dropout=0.3)
    model = seeded_model(config, seed=16)
    idx = random_ids(config, 2, 12, seed=17)
    assert not torch.equal(model(idx)[0], model(idx)[0])
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


# --- bad input -------------------------------------------------------------------------------

def test_forward_errors_name_the_input():
    model = GPT(TINY)
    with pytest.raises(ValueError, match="expected 1 to context_length=12 positions, found 13"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, vocab_size=37\), found values in \[0, 37\]"):
        model(torch.tensor([[0, 37]]))
    with pytest.raises(ValueError, match=r"found values in \[-1, 3\]"):
        model(torch.tensor([[-1, 3]]))
    with pytest.raises(TypeError, match="idx: expected integer token ids, found dtype torch.float32"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"idx: expected a 2-d tensor of token ids shaped \(B, T\), found \(5,\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets: expected the shape of idx \(1, 3\), found \(1, 2\)"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))


@pytest.mark.parametrize("changes,message", [
    ({"d_model": 25}, "d_model=25 is not divisible by n_heads=3"),
    ({"n_layers": 0}, "n_layers: expected a positive int, found 0"),
    ({"vocab_size": 70_000}, "vocab_size: expected at most 65,536"),
    ({"attn_impl": "flash"}, r"attn_impl: expected one of \('naive', 'sdpa'\), found 'flash'"),
    ({"dropout": 1.0}, r"dropout: expected a probability in \[0, 1\), found 1.0"),
    ({"context_length": 12.0}, "context_length: expected a positive int, found 12.0"),
])
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **changes)
