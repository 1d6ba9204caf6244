"""The notebook test-cell helpers: failures say what differs, and the reference cannot be
patched from a submission's namespace."""

from __future__ import annotations

import sys

import pytest
import torch

from nanolm_lib.grading.checks import (
    CheckFailed,
    check,
    check_close,
    check_equal,
    check_shape,
    fresh_generator,
    reference,
    use_reference,
)


def test_reference_ignores_patches_of_the_imported_module(monkeypatch):
    import nanolm_lib.course.train

    monkeypatch.setattr(nanolm_lib.course.train, "perplexity", lambda loss: "patched")
    fresh = reference("train")
    assert fresh.perplexity(0.0) == 1.0
    assert nanolm_lib.course.train.perplexity(0.0) == "patched"
    # the fresh copy is private: nothing new is registered, the patched module stays in place
    assert sys.modules["nanolm_lib.course.train"] is nanolm_lib.course.train
    assert not [name for name in sys.modules if name.startswith("_nanolm_reference_")]


def test_reference_unknown_module():
    with pytest.raises(ValueError, match="no module nosuch.py"):
        reference("nosuch")


def test_check_close_reports_first_mismatch_and_largest_error():
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[0, 2] = 0.1
    actual[1, 1] = 0.5
    with pytest.raises(CheckFailed) as failure:
        check_close(actual, expected, "f(x)", seed=7, hint="the scale")
    message = str(failure.value)
    assert "First mismatch at index (0, 2)" in message
    assert "Largest error 0.5 at index (1, 1)" in message
    assert "seed 7" in message and "Look at: the scale" in message


def test_check_close_accepts_small_relative_error_and_matching_infinities():
    expected = torch.tensor([float("-inf"), 1.0, 2.0])
    check_close(expected + torch.tensor([0.0, 1e-7, 0.0]), expected, "masked logits")
    with pytest.raises(CheckFailed, match="non-finite"):
        check_close(torch.tensor([float("nan"), 1.0, 2.0]), torch.tensor([0.0, 1.0, 2.0]), "x")


def test_check_shape_and_dtype_messages():
    with pytest.raises(CheckFailed, match=r"shape \(2, 3\), expected \(3, 2\)"):
        check_shape(torch.zeros(2, 3), (3, 2), "split_heads(x)")
    with pytest.raises(CheckFailed, match="returned a list, expected a Tensor"):
        check_close([1.0], torch.ones(1), "x")
    with pytest.raises(CheckFailed, match="dtype torch.float32, expected torch.bool"):
        check_close(torch.ones(2, 2), torch.ones(2, 2, dtype=torch.bool), "causal_mask(2)")


def test_check_equal_on_lists_dicts_and_tensors():
    with pytest.raises(CheckFailed, match="first difference at position 1: got 5, expected 2"):
        check_equal([1, 5, 3], [1, 2, 3], "merge_pair")
    with pytest.raises(CheckFailed, match="length 2, expected 3"):
        check_equal([1, 2], [1, 2, 3], "merge_pair")
    with pytest.raises(CheckFailed, match=r"at key \(1, 2\): got 1, expected 2"):
        check_equal({(1, 2): 1}, {(1, 2): 2}, "get_pair_counts")
    with pytest.raises(CheckFailed, match=r"1 of 4 entries differ; first at index \(1, 0\)"):
        check_equal(torch.tensor([[1, 2], [0, 4]]), torch.tensor([[1, 2], [3, 4]]), "x")
    check_equal((1, 2), [1, 2], "tuples and lists of equal items are equal")


def test_check_property_and_fresh_generator():
    with pytest.raises(CheckFailed, match="future positions received weight"):
        check(False, "attention_weights", "future positions received weight")
    gen_a, seed = fresh_generator()
    gen_b, _ = fresh_generator(seed)
    assert torch.equal(torch.randn(4, generator=gen_a), torch.randn(4, generator=gen_b))


def test_use_reference_swaps_and_restores_names():
    namespace = {"split_heads": "student's"}

    class Ref:
        split_heads = "reference"
        merge_heads = "reference"

    with use_reference(namespace, Ref, "split_heads", "merge_heads"):
        assert namespace == {"split_heads": "reference", "merge_heads": "reference"}
    assert namespace == {"split_heads": "student's"}


@pytest.mark.parametrize("module", ["tokenizer", "data", "attention", "model", "sampling", "train"])
def test_reference_loads_every_module_of_the_package(module):
    fresh = reference(module)
    assert fresh.__name__.startswith("_nanolm_reference_")
    assert not [name for name in sys.modules if name.startswith("_nanolm_reference_")]


def test_reference_dependencies_are_fresh_too(monkeypatch):
    # model.py imports MultiHeadAttention from attention.py: a submission that replaces the
    # imported attention module's class must not change the reference GPT
    import nanolm_lib.course.attention

    class Broken(torch.nn.Module):
        pass

    monkeypatch.setattr(nanolm_lib.course.attention, "MultiHeadAttention", Broken)
    model = reference("model")
    gpt = model.GPT(model.GPTConfig(vocab_size=32, context_length=8, d_model=16, n_layers=1,
                                    n_heads=2, d_ff=32))
    assert type(gpt.blocks[0].attn).__name__ == "MultiHeadAttention"
    assert type(gpt.blocks[0].attn) is not Broken


