"""06_training / lr_at: the hidden cases check the learning rate of every step of fresh schedules:
warm-up, cosine, floor."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import question


def lr_at(step, config):
    """Learning rate of step ``step`` (0-based): linear warm-up, cosine to ``min_lr``."""


q = question("06_training", lr_at, reference="train", rtol=1e-9, atol=1e-15)


@q.cases
def _(gen):
    peak = float(torch.rand((), generator=gen)) * 1e-2 + 1e-4
    schedules = [(list(range(60)), dict(lr=peak, min_lr=peak / 7, warmup_steps=0, max_steps=50)),
                 (list(range(15)), dict(lr=peak, min_lr=0.0, warmup_steps=1, max_steps=12)),
                 (list(range(30)), dict(lr=peak, min_lr=peak / 3, warmup_steps=20, max_steps=20)),
                 ([0, 1, 499, 999, 1000, 1001, 14000, 28000, 55999, 56000, 70000],
                  dict(lr=6e-4, min_lr=6e-5, warmup_steps=1000, max_steps=56000))]
    return [{"steps": steps, "fields": fields, "what": f"lr_at(step, TrainConfig({fields}))"}
            for steps, fields in schedules]


@q.runs
def _(ns, case):
    from nanolm_lib.course.train import TrainConfig

    config = TrainConfig(**case["fields"])
    values = [ns["lr_at"](step, config) for step in case["steps"]]
    return [float(v) if isinstance(v, (int, float)) else v for v in values]


@q.fixture
def _(ref):
    train = ref("train")
    fields = {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 10, "max_steps": 100}
    config = train.TrainConfig(**fields)
    steps = list(range(0, 121))
    return {"fields": fields, "steps": steps, "lr": [train.lr_at(s, config) for s in steps]}
