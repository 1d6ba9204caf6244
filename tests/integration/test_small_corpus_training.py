"""A preset trained on a corpus too small for its vocabulary."""

from __future__ import annotations

import pytest

from nanolm_lib.lab import presets


@pytest.mark.slow  # prepares a corpus: generated stories and a BPE tokenizer
def test_a_corpus_too_small_for_the_preset_trains_a_model_of_its_vocabulary(tmp_path,
                                                                             monkeypatch, capsys):
    """Without the hub and NANOLM_DATA the cpu preset trains on the generated stories, whose
    tokenizer cannot fill its 2,048-token vocabulary: the model takes the tokenizer's size and
    says so in one line, instead of stopping on a vocabulary mismatch."""
    from nanolm_lib.lab.runs import plan_preset_run

    monkeypatch.delenv("NANOLM_DATA", raising=False)
    run = plan_preset_run("cpu", tmp_path / "run")
    found = run.corpus.tokenizer.vocab_size
    assert found < presets.get_preset("cpu").model.vocab_size
    assert run.model_config.vocab_size == found
    said = [line for line in capsys.readouterr().out.splitlines() if "vocabulary" in line]
    assert len(said) == 1 and f"{found:,}-token vocabulary instead of 2,048" in said[0]
