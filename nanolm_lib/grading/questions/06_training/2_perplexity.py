"""06_training / perplexity: the hidden cases check e ** loss for floats and tensors, as a float."""

from __future__ import annotations

import warnings

import torch

from nanolm_lib.grading.question_base import question


def perplexity(loss):
    """e ** loss: the number of equally likely tokens the model is, on average, choosing from."""


q = question("06_training", perplexity, reference="train", rtol=1e-6, atol=0.0)


@q.cases
def _(gen):
    values = [2.1062, 1.9443, float(torch.rand((), generator=gen)) * 8, 0.0]
    cases = [{"loss": v, "what": f"perplexity({v})"} for v in values]
    cases += [{"loss": 1.25, "tensor": "float32", "what": "perplexity(a 0-d tensor)"},
              {"loss": 3.0, "tensor": "float64", "what": "perplexity(a float64 tensor)"}]
    return cases


@q.runs
def _(ns, case):

    loss = case["loss"]
    if "tensor" in case:
        loss = torch.tensor(loss, dtype=getattr(torch, case["tensor"]), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ns["perplexity"](loss)
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    return float(got) if isinstance(got, (int, float)) else got
