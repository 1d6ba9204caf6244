"""What the questions of several lessons share: the text and alphabet their inputs are drawn
from, seeds and random weights, and the names a solution may not call."""

from __future__ import annotations

import torch

STORY = ("Once upon a time, there was a little dog named Max. Max liked to run in the park. "
         "One day, Max saw a big red ball. He ran to the ball and played with it all day.")
ALPHABET = list("aaabbbcde   \n\n.,!'st01é🐶")


def random_text(gen, length: int) -> str:
    picks = torch.randint(len(ALPHABET), (length,), generator=gen).tolist()
    return "".join(ALPHABET[i] for i in picks)


def seed_of(gen) -> int:
    return int(torch.randint(2**31, (1,), generator=gen))


def randomised_state(module, gen, scale: float) -> dict:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


def loaded(module, state: dict):
    module.load_state_dict(state)
    return module


# What the exercises may not use: the library's and PyTorch's finished versions of the answer.
# "torch._*" and "torch.ops" are PyTorch's private and operator-level doors to the same kernels.
TORCH_INTERNALS = ("torch._*", "torch.ops")
FAST_TOKENIZERS = ("nanolm_lib.course.tokenizer.FastTokenizer", "nanolm_lib.course.tokenizer.BPETokenizer",
                   "nanolm_lib.course.tokenizer.train_fast_tokenizer",
                   "nanolm_lib.course.tokenizer.load_tokenizer", "nanolm_lib.course.tokenizer._encode_piece",
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
