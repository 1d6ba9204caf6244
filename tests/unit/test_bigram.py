"""Lesson 02's bigram model (nanolm_lib.course.bigram): it starts at ln V, learns, writes a story,
and is measured by the code `nanolm eval` runs, in memory and from its run folder."""

from __future__ import annotations

import math

import pytest
import torch

from nanolm_lib.course.bigram import (
    Bigram,
    BigramConfig,
    bigram_bits_per_byte,
    start_loss,
    train_bigram,
    write_story,
)
from nanolm_lib.course.data import make_stories, pack_stories
from nanolm_lib.course.sampling import tell_story
from nanolm_lib.course.tokenizer import train_fast_tokenizer
from nanolm_lib.lab.checkpoint import load_model, save_model
from nanolm_lib.lab.evaluate import evaluate_file, evaluate_stories


@pytest.fixture(scope="module")
def trained():
    stories = make_stories(120, seed=5)
    tokenizer = train_fast_tokenizer(stories[:100], vocab_size=300)
    tokens = pack_stories(tokenizer, stories[:100])
    model, history = train_bigram(tokens, tokenizer.vocab_size, steps=60, context_length=32,
                                  batch_size=8, show_progress=False)
    return model, history, tokenizer, stories[100:]


def test_a_fresh_bigram_predicts_uniformly():
    model = Bigram(BigramConfig(vocab_size=50, context_length=8))
    x = torch.randint(0, 50, (3, 8))
    logits, loss = model(x, torch.randint(0, 50, (3, 8)))
    assert logits.shape == (3, 8, 50)
    assert loss.item() == pytest.approx(math.log(50)) == pytest.approx(start_loss(50))
    assert model(x)[1] is None
    # each position's logits depend on its own token only
    other = x.clone()
    other[:, :-1] = (other[:, :-1] + 1) % 50
    model.table.weight.data.normal_()
    assert torch.equal(model(x)[0][:, -1], model(other)[0][:, -1])


def test_training_lowers_the_loss_and_the_model_writes(trained):
    model, history, tokenizer, _ = trained
    assert [r["step"] for r in history] == list(range(1, 61))
    assert history[0]["loss"] == pytest.approx(math.log(tokenizer.vocab_size), rel=1e-4)
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert not model.training
    story = tell_story(model, tokenizer, "Once", max_new_tokens=20,
                       generator=torch.Generator().manual_seed(0))
    assert story.startswith("Once") and len(story) > len("Once")
    for seed in range(3):  # write_story draws what tell_story (lesson 07's generate) draws
        told = tell_story(model, tokenizer, max_new_tokens=40,
                          generator=torch.Generator().manual_seed(seed))
        written = write_story(model, tokenizer, max_new_tokens=40,
                              generator=torch.Generator().manual_seed(seed))
        assert written == told and written


def test_bits_per_byte_in_memory_equal_nanolm_evals_from_the_run_folder(trained, tmp_path):
    model, _, tokenizer, held_out = trained
    measured = evaluate_stories(model, tokenizer, held_out)
    uniform = math.log(tokenizer.vocab_size) / math.log(2) / (measured["bytes"]
                                                               / measured["tokens"])
    assert measured["bpb"] < 0.8 * uniform
    assert measured["context_length"] == 32
    closed_form = bigram_bits_per_byte(model, tokenizer, held_out)  # without lesson 06's code
    assert closed_form["bpb"] == pytest.approx(measured["bpb"], rel=1e-5)
    assert closed_form["predicted_tokens"] == measured["predicted_tokens"]
    save_model(tmp_path / "bigram", model, tokenizer)
    loaded, _ = load_model(tmp_path / "bigram")
    assert isinstance(loaded, Bigram)
    (tmp_path / "held-out.txt").write_text("".join(s + "\n<|endoftext|>\n" for s in held_out))
    from_file = evaluate_file(tmp_path / "bigram", tmp_path / "held-out.txt", device="cpu")
    assert from_file["bpb"] == pytest.approx(measured["bpb"], rel=1e-6)
    assert from_file["stories"] == len(held_out)


def test_train_bigram_refuses_too_few_tokens():
    with pytest.raises(ValueError, match="30 tokens hold no window"):
        train_bigram(torch.zeros(30, dtype=torch.long).numpy(), 10, steps=1, context_length=32)
