"""02_data / get_batch: the hidden cases check the batches drawn with a seeded generator (as the
reference draws), shapes, y shifted from x, the device asked for."""

from __future__ import annotations

import numpy as np
import torch

from nanolm_lib.grading.question_base import question
from nanolm_lib.grading.questions.common import generator, seed_of


def get_batch(tokens, batch_size, context_length, generator=None, device='cpu'):
    """A batch of random windows: ``x`` (batch_size, context_length) and ``y``, the same windows
    shifted one token ahead, both int64 on ``device``."""


q = question("02_data", get_batch, reference="data")


@q.cases
def _(gen):
    tokens = torch.randint(0, 1000, (500,), generator=gen)
    large = torch.randint(0, 65_536, (3_000,), generator=gen)
    seed = seed_of(gen)
    cases = [{"tokens": tokens, "B": b, "T": t, "rounds": 2, "seed": seed}
             for b, t in ((4, 8), (1, 1), (7, 33))]
    cases.append({"tokens": tokens[:17].clone(), "B": 5, "T": 16, "rounds": 2, "seed": seed})
    cases.append({"tokens": large, "B": 16, "T": 64, "rounds": 3, "seed": seed})
    cases.append({"tokens": tokens, "B": 3, "T": 10, "kind": "no generator"})
    cases.append({"tokens": tokens, "B": 2, "T": 5, "seed": seed, "kind": "meta"})
    for case in cases:
        case["what"] = (f"get_batch({len(case['tokens'])} tokens, {case['B']}, {case['T']})"
                        + (f", {case['kind']}" if "kind" in case else ""))
    return cases


@q.runs
def _(ns, case):
    tokens = case["tokens"].numpy().astype(np.uint16)
    get_batch = ns["get_batch"]
    if case.get("kind") == "no generator":
        x, y = get_batch(tokens, case["B"], case["T"])
        return {"shape": list(x.shape), "y is x shifted": bool(torch.equal(x[:, 1:], y[:, :-1]))}
    generator = torch.Generator().manual_seed(case["seed"])
    if case.get("kind") == "meta":
        x, y = get_batch(tokens, case["B"], case["T"], generator=generator, device="meta")
        return {"devices": [x.device.type, y.device.type]}
    calls = []
    for _ in range(case["rounds"]):
        x, y = get_batch(tokens, case["B"], case["T"], generator=generator)
        calls.append({"dtypes": [str(x.dtype), str(y.dtype)], "x": x, "y": y})
    return calls


@q.fixture
def _(ref):
    tokens = torch.randint(0, 1000, (500,), generator=generator(22)).numpy().astype("uint16")
    draws = torch.Generator().manual_seed(23)
    calls = [ref("data").get_batch(tokens, 4, 8, generator=draws) for _ in range(2)]
    return {"tokens": torch.from_numpy(tokens.astype("int64")), "seed": 23,
            "batches": [{"x": x, "y": y} for x, y in calls]}
