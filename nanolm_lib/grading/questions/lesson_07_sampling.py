"""Lesson 07_sampling: the hidden cases of its graded questions (see :mod:`nanolm_lib.grading.questions`)."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import ReferenceNamespace, helpers, question
from nanolm_lib.grading.questions.common import (
    gpt_config,
    loaded,
    randomised_state,
    seed_of,
)

q = question("07_sampling", "top_k_filter")


@q.cases
def _(gen):
    return [{"logits": torch.randn(shape, generator=gen) * 3, "k": k,
             "what": f"top_k_filter(logits {shape}, k={k})"}
            for shape, k in [((5, 17), 1), ((2, 9), 9), ((2, 6), 50), ((2, 3, 33), 7), ((40,), 13)]]


@q.runs
def _(ns, case):
    logits = case["logits"].clone()
    filtered = ns["top_k_filter"](logits, case["k"])
    return {"filtered": filtered, "logits after the call": logits}


q = question("07_sampling", "sample_next_token")


@q.cases
def _(gen):
    cases = []
    for B, V, draws, settings in [(5, 30, 3, {"temperature": 0}),
                                  (2, 30, 3, {"temperature": 0, "top_k": 3}),
                                  (1, 7, 6, {"temperature": 2.5}),
                                  (2, 25, 4, {"temperature": 0.8, "top_p": 0.7}),
                                  (2, 25, 4, {"temperature": 1.0, "top_k": 10, "top_p": 0.5}),
                                  (3, 25, 6, {"temperature": 3.0, "top_p": 0.5}),
                                  (3, 12, 5, {"temperature": 0.7, "top_k": 5}),
                                  # hot and narrow: a top-k off by one shows in 40 draws
                                  (4, 12, 10, {"temperature": 5.0, "top_k": 2})]:
        cases.append({"logits": torch.randn(B, V, generator=gen) * 2, "seed": seed_of(gen),
                      "draws": draws, "settings": settings,
                      "what": f"sample_next_token(logits {(B, V)}, {settings}, generator=g)"})
    return cases


@q.runs
def _(ns, case):
    generator = torch.Generator().manual_seed(case["seed"])
    with helpers(ns, "sampling", "top_k_filter"):
        return [ns["sample_next_token"](case["logits"], generator=generator, **case["settings"])
                for _ in range(case["draws"])]


q = question("07_sampling", "generate")


@q.cases
def _(gen):
    from nanolm_lib.course.model import GPT

    cases = []
    for B, T, new, vocab, context, eos_id, settings in [
            (1, 1, 6, 11, 8, None, {"temperature": 0}),
            (3, 5, 12, 11, 8, None, {"temperature": 0.9}),
            (4, 1, 60, 5, 8, 0, {"temperature": 5.0}),
            (2, 4, 9, 7, 8, 0, {"temperature": 1.2, "top_k": 3}),
            (2, 6, 20, 6, 8, 5, {"temperature": 3.0, "top_k": 4}),
            (3, 8, 3, 11, 8, None, {"temperature": 0.5})]:
        sizes = dict(vocab_size=vocab, context_length=context, d_model=16, n_layers=1,
                     n_heads=2, d_ff=32)
        state = randomised_state(GPT(gpt_config(sizes)), gen, 0.5)
        idx = torch.randint(0, vocab, (B, T), generator=gen)
        if eos_id is not None:
            idx[idx == eos_id] = (eos_id + 1) % vocab  # prompts without end-of-text
        cases.append({"sizes": sizes, "state": state, "idx": idx, "new": new, "eos_id": eos_id,
                      "settings": settings, "seed": seed_of(gen),
                      "what": f"generate(model (vocab {vocab}), idx {(B, T)}, {new}, "
                              f"eos_id={eos_id}, {settings}, generator=g)"})
    return cases


@q.runs
def _(ns, case):
    from nanolm_lib.course.model import GPT

    model = loaded(GPT(gpt_config(case["sizes"])), case["state"]).train()
    options = dict(case["settings"], eos_id=case["eos_id"],
                   generator=torch.Generator().manual_seed(case["seed"]))
    if isinstance(ns, ReferenceNamespace):
        options.update(use_cache=False, show_progress=False)
    with helpers(ns, "sampling", "sample_next_token", "top_k_filter"):
        out = ns["generate"](model, case["idx"].clone(), case["new"], **options)
    return {"out": out, "training mode kept": model.training}
