"""07_sampling / generate: the hidden cases check the tokens generated with a seeded generator,
greedy and sampled, past the context length and stopping at end-of-text; the training mode kept."""

from __future__ import annotations

import torch

from nanolm_lib.grading.question_base import ReferenceNamespace, helpers, question
from nanolm_lib.grading.questions.common import (
    generator,
    gpt_config,
    loaded,
    randomised,
    randomised_state,
    seed_of,
    state_of,
)


def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None,
             generator=None):
    """Extend each row of idx (B, T) by up to ``max_new_tokens`` sampled tokens."""


q = question("07_sampling", generate, reference="sampling")


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


@q.fixture
def _(ref):
    gen = generator(73)
    model_module = ref("model")
    cases = []
    for B, T, new, vocab, eos_id, settings in (
            (2, 3, 4, 11, None, {"temperature": 1.0, "top_k": 5}),
            (3, 2, 60, 4, 2, {"temperature": 4.0}),   # rows end at different times
            (2, 5, 12, 11, None, {"temperature": 0.9}),  # grows past the context: crop
            (3, 1, 40, 5, 0, {"temperature": 4.0})):  # end-of-text is id 0: `if eos_id:` fails
        sizes = dict(vocab_size=vocab, context_length=8, d_model=16, n_layers=1, n_heads=2,
                     d_ff=32)
        model = randomised(model_module.GPT(model_module.GPTConfig(**sizes)), gen, 0.5).train()
        idx = torch.randint(0, vocab, (B, T), generator=gen)
        if eos_id is not None:
            idx[idx == eos_id] = (eos_id + 1) % vocab  # prompts without end-of-text
        draws_seed = int(torch.randint(2**31, (1,), generator=gen))
        out = ref("sampling").generate(model, idx.clone(), new, eos_id=eos_id,
                                       generator=torch.Generator().manual_seed(draws_seed),
                                       use_cache=False, show_progress=False, **settings)
        cases.append({"sizes": sizes, "state": state_of(model), "idx": idx, "new": new,
                      "eos_id": eos_id, "settings": settings, "seed": draws_seed, "out": out})
    return {"cases": cases}
