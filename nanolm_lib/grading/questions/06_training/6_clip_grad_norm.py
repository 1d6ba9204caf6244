"""06_training / clip_grad_norm: the hidden cases check the total norm returned and the gradients
after clipping, parameters without gradients among them; no library clipping."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import TORCH_INTERNALS, generator


def clip_grad_norm(parameters, max_norm):
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``."""


q = question("06_training", clip_grad_norm, reference="train", forbids=(
    "torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad_norm",
    "torch.nn.utils.clip_grads_with_norm_", "torch.nn.utils.get_total_norm",
    *TORCH_INTERNALS))


@q.cases
def _(gen):
    cases = []
    for what, shapes, scale, max_norm, no_grad in [
            ("above max_norm", [(4, 3), (5,), (2, 2, 2)], 1.0, 1.0, ()),
            ("far above", [(30, 20)], 100.0, 0.25, ()),
            ("below max_norm", [(4, 3), (5,)], 0.1, 10.0, ()),
            ("one tensor", [(17,)], 3.0, 2.0, ()),
            ("without gradients", [(3, 3), (4,), (2,)], 2.0, 0.5, (0, 2)),
            ("many small tensors", [(3,)] * 12, 0.5, 1.0, ())]:
        grads = [None if i in no_grad else torch.randn(shape, generator=gen) * scale
                 for i, shape in enumerate(shapes)]
        cases.append({"shapes": [list(s) for s in shapes], "grads": grads, "max_norm": max_norm,
                      "what": f"clip_grad_norm(model.parameters(), {max_norm}), {what}"})
    return cases


@q.runs
def _(ns, case):
    params = [torch.zeros(shape, requires_grad=True) for shape in case["shapes"]]
    for p, g in zip(params, case["grads"]):
        p.grad = None if g is None else g.clone()
    norm = ns["clip_grad_norm"]((p for p in params), case["max_norm"])  # a generator
    if isinstance(norm, torch.Tensor) and norm.numel() == 1:
        norm = norm.item()
    return {"norm": float(norm) if isinstance(norm, (int, float)) else f"<a {type(norm).__name__}>",
            "gradients": [None if p.grad is None else p.grad for p in params]}


@q.fixture
def _(ref):
    gen = generator(65)
    cases = []
    for what, shapes, scale, max_norm, without_grad in (
            ("norm above max_norm", [(4, 3), (5,), (2, 2, 2)], 1.0, 1.0, ()),
            ("norm below max_norm: unchanged", [(4, 3), (5,)], 0.1, 10.0, ()),
            ("one parameter without a gradient", [(3, 3), (4,), (2,)], 2.0, 0.5, (1,))):
        params = [torch.zeros(shape, requires_grad=True) for shape in shapes]
        for index, p in enumerate(params):
            if index not in without_grad:
                p.grad = torch.randn(p.shape, generator=gen) * scale
        grads = [None if p.grad is None else p.grad.clone() for p in params]
        norm = ref("train").clip_grad_norm((p for p in params), max_norm)
        cases.append({"what": what, "shapes": [list(s) for s in shapes], "grads": grads,
                      "max_norm": max_norm, "norm": torch.as_tensor(norm).reshape(()).float(),
                      "clipped": [None if p.grad is None else p.grad.clone() for p in params]})
    return {"cases": cases}
