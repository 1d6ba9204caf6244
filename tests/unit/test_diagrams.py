"""The lessons' diagrams (nanolm_lib.course.diagrams): the numbers each one draws are right, and
each draws a figure."""

from __future__ import annotations

import io
import math

import pytest
import torch
from matplotlib.figure import Figure

from nanolm_lib.course import diagrams
from nanolm_lib.course.attention import flash_attention
from nanolm_lib.course.data import make_stories
from nanolm_lib.course.model import GPT, GPTConfig
from nanolm_lib.course.tokenizer import encode, train_bpe

TINY = GPTConfig(vocab_size=64, context_length=16, d_model=16, n_layers=2, n_heads=2, d_ff=32)


def _renders(figure, axes: int) -> None:
    assert isinstance(figure, Figure) and len(figure.axes) >= axes
    figure.savefig(io.BytesIO(), format="png")  # drawing raises on a broken artist


def test_bytes_per_token_never_falls_as_merges_are_added():
    stories = make_stories(30, seed=3)
    merges, _ = train_bpe(stories[:20], 300)
    curve = diagrams.bytes_per_token_curve(stories[20:], merges, encode, points=8)
    n_bytes = sum(len(s.encode()) for s in stories[20:])
    assert curve["merges"][0] == 0 and curve["merges"][-1] == len(merges)
    assert curve["bytes_per_token"][0] == 1.0  # no merges: one token per byte
    last = n_bytes / sum(len(encode(s, merges)) for s in stories[20:])
    assert curve["bytes_per_token"][-1] == pytest.approx(last)
    steps = list(zip(curve["bytes_per_token"], curve["bytes_per_token"][1:]))
    assert all(later >= earlier for earlier, later in steps), curve  # tokens never grow
    assert curve["bytes_per_token"][-1] > 1.3
    # it measures the encoder it is given: one that ignores the merges stays at 1 byte/token
    flat = diagrams.bytes_per_token_curve(stories[20:], merges, lambda t, m: list(t.encode()))
    assert set(flat["bytes_per_token"]) == {1.0}
    _renders(diagrams.plot_bytes_per_token(curve), 1)


def test_flash_trace_keeps_the_running_max_and_a_sum_consistent_with_softmax():
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(29, 8, generator=generator) for _ in range(2))
    query, block = 17, 5
    trace = diagrams.flash_trace(q, k, query, block)
    scores = (q[query].double() @ k.double().T) / math.sqrt(8)
    seen = scores[:query + 1]
    assert trace["tiles"] == [(s, min(s + block, 29)) for s in range(0, 29, block)]
    assert trace["skipped"] == [start > query for start, _ in trace["tiles"]]
    for (_, end), m, total in zip(trace["tiles"], trace["m"], trace["l"]):
        upto = seen[:min(end, query + 1)]
        assert m == pytest.approx(float(upto.max()))  # the running max
        assert total == pytest.approx(float(torch.exp(upto - m).sum()))  # the sum relative to m
    assert all(r == 1.0 or 0 <= r < 1 for r in trace["rescale"]) and trace["rescale"][0] == 0
    grew = [i for i in range(1, len(trace["m"])) if trace["m"][i] > trace["m"][i - 1]]
    for i in grew:  # the old sum was scaled down by exp(m_old - m_new)
        assert trace["rescale"][i] == pytest.approx(math.exp(trace["m"][i - 1] - trace["m"][i]))
    # softmax from the final m and l, and the lse of the library's flash_attention
    weights = torch.exp(seen - trace["m"][-1]) / trace["l"][-1]
    torch.testing.assert_close(weights, torch.softmax(seen, 0))
    assert trace["lse"] == pytest.approx(float(torch.logsumexp(seen, 0)))
    _, lse = flash_attention(q[None, None], k[None, None], torch.zeros(1, 1, 29, 8), block)
    assert trace["lse"] == pytest.approx(float(lse[0, 0, query]), rel=1e-5)
    with pytest.raises(ValueError, match="query 29"):
        diagrams.flash_trace(q, k, 29, block)
    _renders(diagrams.plot_flash_trace(trace), 2)


def test_residual_stream_of_a_pre_ln_gpt_is_the_sum_of_its_branches():
    torch.manual_seed(0)
    model = GPT(TINY).train()
    idx = torch.randint(0, TINY.vocab_size, (2, 10))
    measured = diagrams.residual_stream(model, idx)
    assert measured["identity_error"] < 1e-6
    embeddings = (model.tok_emb(idx) + model.pos_emb(torch.arange(10))).detach()
    assert measured["stream"][0] == pytest.approx(float(embeddings.pow(2).mean().sqrt()), rel=1e-5)
    assert len(measured["stream"]) == 1 + 2 * TINY.n_layers == len(measured["labels"])
    assert len(measured["branch"]) == 2 * TINY.n_layers
    assert model.training  # its mode back
    assert all(not block._forward_hooks and not block.attn._forward_hooks
               for block in model.blocks)  # hooks removed
    _renders(diagrams.plot_residual_stream(measured), 2)

    def post_ln(block):  # the original transformer's order: norm after the addition
        def forward(x, kv_cache=None):
            x = block.ln1(x + block.attn(x, kv_cache))
            return block.ln2(x + block.mlp(x))
        return forward
    for block in model.blocks:
        block.forward = post_ln(block)
    assert diagrams.residual_stream(model, idx)["identity_error"] > 0.1


def test_kv_cache_profile_reads_what_the_caches_hold():
    torch.manual_seed(0)
    model = GPT(TINY)
    profile = diagrams.kv_cache_profile(model, [4, 8, 16])
    per_token = 2 * TINY.n_layers * TINY.n_heads * TINY.head_dim * 4  # K and V, float32
    assert profile["filled_bytes"] == [per_token * n for n in (4, 8, 16)]
    assert profile["allocated_bytes"] == per_token * TINY.context_length
    assert profile["layers"] == [(1, TINY.n_heads, TINY.context_length, TINY.head_dim)] * 2
    assert all(speed > 0 for speed in profile["cached"] + profile["uncached"])
    with pytest.raises(ValueError, match="length 17"):
        diagrams.kv_cache_profile(model, [17])
    _renders(diagrams.plot_kv_cache(profile), 3)
