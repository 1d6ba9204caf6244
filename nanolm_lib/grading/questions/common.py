"""What several questions share: the text and alphabet their inputs are drawn from, seeds and
random weights, the names a solution may not call, and the few helpers that two questions of
one lesson build their cases or fixtures with (one section per lesson)."""

from __future__ import annotations

import torch

from nanolm_lib.grading.checks import BigramLM
from nanolm_lib.grading.question_base import helpers

STORY = ("Once upon a time, there was a little dog named Max. Max liked to run in the park. "
         "One day, Max saw a big red ball. He ran to the ball and played with it all day.")
ALPHABET = list("aaabbbcde   \n\n.,!'st01é🐶")


def generator(seed: int) -> torch.Generator:
    """A generator seeded with ``seed``: a fixture's fixed inputs."""
    return torch.Generator().manual_seed(seed)


def random_text(gen, length: int) -> str:
    picks = torch.randint(len(ALPHABET), (length,), generator=gen).tolist()
    return "".join(ALPHABET[i] for i in picks)


def seed_of(gen) -> int:
    return int(torch.randint(2**31, (1,), generator=gen))


def fill_random(module, gen, scale: float):
    """Every parameter of ``module`` drawn afresh from N(0, scale²), in order; returns it."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return module


def randomised_state(module, gen, scale: float) -> dict:
    return state_of(fill_random(module, gen, scale))


def loaded(module, state: dict):
    module.load_state_dict(state)
    return module


def randomised(module, gen, scale: float):
    """``module`` with random weights (scale ``scale``), in eval mode: a fixture's layer."""
    return fill_random(module, gen, scale).eval()


def state_of(module) -> dict:
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


# What the exercises may not use: the library's and PyTorch's finished versions of the answer.
# "torch._*" and "torch.ops" are PyTorch's private and operator-level doors to the same kernels.
TORCH_INTERNALS = ("torch._*", "torch.ops")
FAST_TOKENIZERS = ("nanolm_lib.course.tokenizer.FastTokenizer",
                   "nanolm_lib.course.tokenizer.BPETokenizer",
                   "nanolm_lib.course.tokenizer.train_fast_tokenizer",
                   "nanolm_lib.course.tokenizer.load_tokenizer",
                   "nanolm_lib.course.tokenizer._encode_piece",
                   "nanolm_lib.course.tokenizer._most_frequent_pair",
                   "nanolm_lib.course.tokenizer._merge_in_words",
                   "tokenizers", "tiktoken", "sentencepiece")
SDPA = "torch.nn.functional.scaled_dot_product_attention"
FUSED_ATTENTION = (SDPA, "torch.nn.MultiheadAttention",
                   "torch.nn.functional.multi_head_attention_forward",
                   "nanolm_lib.course.attention.torch_multihead_attention",
                   "nanolm_lib.course.attention.native_mha_inference", *TORCH_INTERNALS)


def gpt_config(sizes):
    """A GPTConfig of the lesson-05 model from plain sizes (cases hold plain data)."""
    from nanolm_lib.course.model import GPTConfig

    return GPTConfig(**sizes)


def model_outputs(model, case: dict) -> dict:
    """A language model's answers on a case: its parameter names, whether its head shares the
    token embedding, then (with the case's weights) logits and loss with and without targets."""
    names = sorted(model.state_dict())
    tied = model.head.weight is model.tok_emb.weight
    loaded(model, case["state"]).eval()
    logits, loss = model(case["idx"], case["targets"])
    logits_alone, no_loss = model(case["idx"])
    return {"parameter names": names, "head tied": tied, "logits": logits,
            "loss": loss.reshape(()), "logits without targets": logits_alone,
            "loss without targets": no_loss}


# --------------------------------------------------------------------------- 01_tokenizer
TOKENIZER_HELPERS = ("get_pair_counts", "merge_pair", "pretokenize")


def plain_bpe(merges, vocab) -> dict:
    """merges as lists, vocab as id -> list of byte values (plain data for weights-only)."""
    return {"merges": [list(m) for m in merges],
            "vocab": {i: list(token) for i, token in vocab.items()}}


# --------------------------------------------------------------------------- 03_attention
ATTENTION_HELPERS = ("causal_mask", "attention_weights", "attention", "split_heads", "merge_heads")


def lower_triangle(T):
    """The causal mask, built here (not by the solution under test)."""
    return torch.tril(torch.ones(T, T, dtype=torch.bool))


# --------------------------------------------------------------------------- 05_gpt
GPT_HELPERS = ("LayerNorm", "MLP", "Block")


def gpt_sizes(d_model, n_heads, d_ff, **extra):
    return dict(vocab_size=50, context_length=16, d_model=d_model, n_layers=1, n_heads=n_heads,
                d_ff=d_ff, **extra)


def layer_cases(gen, name, configs, scale, x_scale=1.0):
    """Hidden cases of lesson 05's layer ``name``: random weights and inputs per config."""
    from nanolm_lib.course import model

    cases = []
    for sizes, shape in configs:
        layer = getattr(model, name)(gpt_config(sizes))
        state = randomised_state(layer, gen, scale)
        cases.append({"sizes": sizes, "state": state,
                      "x": torch.randn(*shape, sizes["d_model"], generator=gen) * x_scale,
                      "what": f"{name}({sizes})(x {(*shape, sizes['d_model'])})"})
    return cases


def layer_outputs(ns, case, name, module_helpers=()):
    with helpers(ns, "model", *module_helpers):
        layer = ns[name](gpt_config(case["sizes"]))
        names = sorted(layer.state_dict())
        loaded(layer, case["state"]).eval()
        return {"parameter names": names, "out": layer(case["x"])}


def layer_fixture(ref, layer_name: str, seed: int, sizes: dict, scale: float, x_shape: tuple):
    """A randomised ``model.<layer_name>`` of ``sizes``, an input and its output."""
    gen = generator(seed)
    model = ref("model")
    layer = randomised(getattr(model, layer_name)(model.GPTConfig(**sizes)), gen, scale)
    with torch.no_grad():
        x = torch.randn(*x_shape, generator=gen)
        return {"sizes": sizes, "state": state_of(layer), "x": x, "out": layer(x)}


# --------------------------------------------------------------------------- 06_training
def bigram(vocab_size: int, gen, scale: float, dropout: float = 0.0):
    """The visible tests' bigram model (lesson 06 trains it), with random weights."""
    return fill_random(BigramLM(vocab_size, 16, dropout), gen, scale)


def parameters_of(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# --------------------------------------------------------------------------- 08_modern_gpt
MODERN_HELPERS = ("RMSNorm", "rope_cache", "apply_rope", "SwiGLU", "GroupedQueryAttention")


def modern_config(sizes):
    from nanolm_lib.course.modern import ModernConfig

    return ModernConfig(**sizes)


def modern_sizes(d_model, n_heads, n_kv_heads, **extra):
    """A one-layer ModernGPT's sizes (hidden cases)."""
    return dict(vocab_size=41, context_length=16, d_model=d_model, n_layers=1, n_heads=n_heads,
                n_kv_heads=n_kv_heads, d_ff=4 * d_model, **extra)


def modern_fixture_sizes(**changes) -> dict:
    """The visible tests' ModernGPT sizes, with ``changes``."""
    return dict(dict(vocab_size=61, context_length=16, d_model=32, n_layers=2, n_heads=4,
                     n_kv_heads=2), **changes)
