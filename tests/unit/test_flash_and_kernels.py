"""FlashAttention in PyTorch (lesson 04's reference), what the native fast path really runs,
and the SDPA backend table the lesson prints: each claim of the lesson, measured here."""

from __future__ import annotations

import pytest
import torch
from model_helpers import rel_err, single_thread  # noqa: F401 (an autouse fixture)

from nanolm_lib.course.attention import (
    MultiHeadAttention,
    attention,
    causal_mask,
    flash_attention,
    native_mha_inference,
)
from nanolm_lib.lab.profiling import (
    AtenOps,
    TorchCalls,
    format_backend_table,
    peak_memory,
    profiled_ops,
    sdpa_backend_table,
)


def _qkv(B, H, T, D, seed=0, S=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, D, generator=g)
    k, v = (torch.randn(B, H, S or T, D, generator=g) for _ in range(2))
    return q, k, v


def _scores(q, k):
    S, T = k.size(-2), q.size(-2)
    scores = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
    return scores.masked_fill(~causal_mask(T, num_keys=S), float("-inf"))


@pytest.mark.parametrize("T, block_size", [(37, 16), (1, 64), (16, 32), (64, 64), (100, 7),
                                           (48, 1)])
def test_flash_attention_equals_naive_attention_and_its_log_sum_exp(T, block_size):
    q, k, v = _qkv(2, 3, T, 8, seed=T)
    out, lse = flash_attention(q, k, v, block_size=block_size)
    expected, _ = attention(q, k, v, causal_mask(T))
    assert out.shape == expected.shape and lse.shape == (2, 3, T)
    assert rel_err(out, expected) <= 1e-5
    torch.testing.assert_close(lse, torch.logsumexp(_scores(q, k), dim=-1), rtol=1e-5, atol=1e-5)


def test_flash_attention_with_more_keys_than_queries_aligns_the_triangle_bottom_right():
    q, k, v = _qkv(1, 2, 5, 4, seed=3, S=13)
    out, lse = flash_attention(q, k, v, block_size=4)
    expected, _ = attention(q, k, v, causal_mask(5, num_keys=13))
    assert rel_err(out, expected) <= 1e-5
    torch.testing.assert_close(lse, torch.logsumexp(_scores(q, k), dim=-1), rtol=1e-5, atol=1e-5)


def test_flash_attention_never_builds_a_T_by_T_tensor_and_its_memory_is_linear():
    shapes = []

    class Shapes(AtenOps):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = super().__torch_dispatch__(func, types, args, kwargs)
            if isinstance(out, torch.Tensor):
                shapes.append(tuple(out.shape))
            return out

    q, k, v = _qkv(1, 1, 256, 16)
    with Shapes():
        flash_attention(q, k, v, block_size=32)
    assert max(s[-1] for s in shapes if len(s) == 4) <= 32  # no tile wider than a block
    peaks = {}
    for T in (512, 1024):
        q, k, v = _qkv(1, 1, T, 16)
        peaks[T] = peak_memory(lambda q=q, k=k, v=v: flash_attention(q, k, v, block_size=64))
    naive_weights = 1024 * 1024 * 4
    assert peaks[1024] < naive_weights / 2, peaks
    assert peaks[1024] < 2.5 * peaks[512], peaks  # linear doubles; quadratic would quadruple


def test_flash_attention_rejects_bad_input():
    q, k, v = _qkv(1, 1, 4, 8)
    with pytest.raises(ValueError, match="block_size: expected a positive int, found 0"):
        flash_attention(q, k, v, block_size=0)
    with pytest.raises(ValueError, match=r"q: expected a 4-d tensor shaped \(B, H, T, D\)"):
        flash_attention(q[0], k, v)
    with pytest.raises(ValueError, match="expected at least as many keys as queries"):
        flash_attention(q, k[..., :2, :], v[..., :2, :])


def test_native_fast_path_runs_the_native_op_and_builds_the_full_weights_with_a_mask():
    module = MultiHeadAttention(32, 4, impl="naive").eval()
    x = torch.randn(2, 24, 32)
    with torch.inference_mode():
        with AtenOps() as recorder:
            native_mha_inference(module, x)
        inside = profiled_ops(lambda: native_mha_inference(module, x))
    assert "aten._native_multi_head_attention.default" in recorder.ops
    # with a mask it is two bmm around a masked softmax: no fused attention kernel
    assert {"aten::bmm", "aten::_masked_softmax"} <= set(inside)
    assert not [op for op in inside if "scaled_dot_product" in op]


def test_cpu_backend_table_names_the_kernels_and_torchs_reasons():
    rows = {row["condition"]: row for row in sdpa_backend_table("cpu")}
    first = rows["float32, D=64, is_causal"]
    assert first["MATH"] == "math"
    assert first["FLASH_ATTENTION"] == "_scaled_dot_product_flash_attention_for_cpu"
    assert first["EFFICIENT_ATTENTION"].startswith("no: No viable backend")
    assert rows["dropout_p=0.1"]["FLASH_ATTENTION"].startswith("no: ")
    assert "dropout" in rows["dropout_p=0.1"]["FLASH_ATTENTION"]
    text = format_backend_table(list(rows.values()))
    assert "[1] No viable backend" in text and "flash_attention_for_cpu" in text


def test_torch_calls_records_sdpa():
    q, k, v = _qkv(1, 1, 4, 8)
    with TorchCalls() as calls:
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert "scaled_dot_product_attention" in calls.names
