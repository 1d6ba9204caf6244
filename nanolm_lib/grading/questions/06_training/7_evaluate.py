"""06_training / evaluate: the hidden cases check the mean loss and perplexity, nothing that
requires grad, the training mode kept."""

from __future__ import annotations

import numpy as np
import torch

from nanolm_lib.grading.question_base import helpers, question
from nanolm_lib.grading.questions.common import (
    bigram,
    generator,
    gpt_config,
    loaded,
    parameters_of,
    randomised_state,
)


def evaluate(model, tokens, context_length, batch_size=32, max_batches=None):
    """Mean loss of ``model`` on ``tokens`` cut into fixed, non-overlapping windows."""


q = question("06_training", evaluate, reference="train")


@q.cases
def _(gen):
    from nanolm_lib.course.model import GPT

    cases = []
    for n_tokens, T, batch_size, max_batches, as_tensor, dropout in [
            (8 * 11 + 5, 8, 4, None, False, 0.0), (8 * 10, 8, 3, None, False, 0.0),
            (7 * 20 + 1, 7, 6, 2, False, 0.0), (5 * 9 + 2, 5, 64, None, True, 0.0),
            (6 * 12 + 3, 6, 5, None, False, 0.5), (2, 1, 2, None, False, 0.0)]:
        sizes = dict(vocab_size=41, context_length=T, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                     dropout=dropout)
        cases.append({"sizes": sizes, "state": randomised_state(GPT(gpt_config(sizes)), gen, 0.3),
                      "tokens": torch.randint(0, 41, (n_tokens,), generator=gen), "T": T,
                      "batch_size": batch_size, "max_batches": max_batches,
                      "as_tensor": as_tensor,
                      "what": f"evaluate(model, {n_tokens} tokens, context_length={T}, "
                              f"batch_size={batch_size}, max_batches={max_batches})"})
    return cases


@q.runs
def _(ns, case):
    from nanolm_lib.course.model import GPT

    model = loaded(GPT(gpt_config(case["sizes"])), case["state"]).train()
    tokens = case["tokens"] if case["as_tensor"] else case["tokens"].numpy().astype(np.uint16)
    with helpers(ns, "train", "cross_entropy_loss", "perplexity"):
        result = ns["evaluate"](model, tokens, case["T"], case["batch_size"], case["max_batches"])
    figures = {key: float(result[key]) for key in ("loss", "perplexity")}
    grads = [key for key in ("loss", "perplexity")
             if isinstance(result[key], torch.Tensor) and result[key].requires_grad]
    return {**figures, "requires grad": grads, "training mode kept": model.training}


@q.fixture
def _(ref):
    gen = generator(63)
    model = bigram(41, gen, 0.3)  # a model with opinions: per-window losses vary
    tokens = torch.randint(0, 41, (8 * 11 + 5,), generator=gen)
    result = ref("train").evaluate(model, tokens.numpy().astype("uint16"), 8, 4)
    return {"vocab_size": 41, "parameters": parameters_of(model), "tokens": tokens,
            "context_length": 8, "batch_size": 4,
            "loss": result["loss"], "perplexity": result["perplexity"]}
