"""03_attention / causal_mask: the hidden cases check the boolean lower-triangular mask for fresh
T, and the device asked for."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question


def causal_mask(T, device=None):
    """Boolean (T, S) mask, True where query i may attend to key j (SDPA's convention)."""


q = question("03_attention", causal_mask, reference="attention")


@q.cases
def _(gen):
    sizes = torch.randint(2, 65, (3,), generator=gen).tolist() + [1]
    return [{"T": T, "what": f"causal_mask({T})"} for T in sizes] + [
        {"T": 6, "device": "meta", "what": "causal_mask(6, device='meta')"}]


@q.runs
def _(ns, case):
    if "device" in case:
        return ns["causal_mask"](case["T"], device=case["device"]).device.type
    mask = ns["causal_mask"](case["T"])
    return {"dtype": str(mask.dtype), "mask": mask}


@q.fixture
def _(ref):
    attention = ref("attention")
    return {f"causal_mask({T})": attention.causal_mask(T) for T in (1, 4, 7)}
