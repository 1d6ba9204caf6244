"""Every graded question's hidden cases (what a question is: :mod:`nanolm_lib.question_base`).

``make_cases(gen)`` runs in the grader (it may use the reference: it only draws inputs) and
returns plain data; ``apply(ns, case)`` runs in the grader's run of the student's solution
cells (:mod:`nanolm_lib.hidden_cases`) and in the grader with the reference's names, and
returns plain outputs. Nothing here holds a reference body.

Who decides each property a question checks, and how:

* the answer itself, causality (an output recomputed with a later input changed), gradients
  reaching every input or parameter, inputs left unchanged (the inputs as they are after the
  call), training mode restored: outputs of the grader's run, each compared with the
  reference's on the same inputs (:func:`~nanolm_lib.checks.difference`); a fresh GPT's loss
  is an output too, checked against ln(vocabulary size) instead;
* flash_attention's linear memory: the grader's run sets a data limit (``data_budget_mb``)
  under which only an implementation without a (T, T) tensor answers the ``limited`` case;
* what a solution may or may not call (the fused kernel, the library's own answer): its
  source, read by the grader outside the sandbox (``autograde/scan.py``), never a measurement
  in the student's process. Each such policy is declared with its question (``forbids=`` /
  ``requires=``: dotted names, fnmatch patterns): "uses SDPA" (lesson 04's ``fused_attention``)
  and "counts without building a model" (lesson 05's ``count_parameters``) are two. Each lesson
  states its rules where the exercise is set.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nanolm_lib.checks import difference
from nanolm_lib.question_base import ReferenceNamespace, helpers, question

STORY = ("Once upon a time, there was a little dog named Max. Max liked to run in the park. "
         "One day, Max saw a big red ball. He ran to the ball and played with it all day.")
ALPHABET = list("aaabbbcde   \n\n.,!'st01é🐶")


def _random_text(gen, length: int) -> str:
    picks = torch.randint(len(ALPHABET), (length,), generator=gen).tolist()
    return "".join(ALPHABET[i] for i in picks)


def _seed(gen) -> int:
    return int(torch.randint(2**31, (1,), generator=gen))


def _randomised_state(module, gen, scale: float) -> dict:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


def _loaded(module, state: dict):
    module.load_state_dict(state)
    return module


# What the exercises may not use: the library's and PyTorch's finished versions of the answer.
# "torch._*" and "torch.ops" are PyTorch's private and operator-level doors to the same kernels.
TORCH_INTERNALS = ("torch._*", "torch.ops")
FAST_TOKENIZERS = ("nanolm_lib.tokenizer.FastTokenizer", "nanolm_lib.tokenizer.BPETokenizer",
                   "nanolm_lib.tokenizer.train_fast_tokenizer",
                   "nanolm_lib.tokenizer.load_tokenizer", "nanolm_lib.tokenizer._encode_piece",
                   "tokenizers", "tiktoken", "sentencepiece")
SDPA = "torch.nn.functional.scaled_dot_product_attention"
FUSED_ATTENTION = (SDPA, "torch.nn.MultiheadAttention",
                   "torch.nn.functional.multi_head_attention_forward",
                   "nanolm_lib.attention.torch_multihead_attention",
                   "nanolm_lib.attention.native_mha_inference", *TORCH_INTERNALS)


# --------------------------------------------------------------------------- 01_tokenizer
q = question("01_tokenizer", "get_pair_counts")


@q.cases
def _(gen):
    lists = [[], [5], [3, 3], [7, 7, 7], [1, 2, 3, 1, 2, 3, 1]]
    lists += [torch.randint(0, high, (n,), generator=gen).tolist()
              for n, high in ((2, 3), (100, 4), (500, 300))]
    return [{"ids": ids, "what": f"get_pair_counts(a list of {len(ids)} ids)"} for ids in lists]


@q.runs
def _(ns, case):
    counts = dict(ns["get_pair_counts"](list(case["ids"])))
    return sorted([int(a), int(b), int(n)] for (a, b), n in counts.items())


q = question("01_tokenizer", "merge_pair")


@q.cases
def _(gen):
    fixed = [([], (1, 2)), ([1], (1, 2)), ([1, 2], (1, 2)), ([3, 1, 2], (1, 2)),
             ([1, 2, 3], (2, 1)), ([7] * 7, (7, 7)), ([2, 1, 1, 1, 2], (1, 1))]
    cases = [{"ids": ids, "pair": list(pair), "new_id": 999} for ids, pair in fixed]
    for _ in range(5):
        cases.append({"ids": torch.randint(0, 3, (60,), generator=gen).tolist(),
                      "pair": torch.randint(0, 3, (2,), generator=gen).tolist(), "new_id": 256})
    for case in cases:
        case["what"] = f"merge_pair({case['ids']}, {tuple(case['pair'])}, {case['new_id']})"
    return cases


@q.runs
def _(ns, case):
    ids = list(case["ids"])
    merged = ns["merge_pair"](ids, tuple(case["pair"]), case["new_id"])
    return {"type": type(merged).__name__, "merged": list(merged),
            "input after the call": ids}


q = question("01_tokenizer", "train_bpe", forbids=FAST_TOKENIZERS)
TOKENIZER_HELPERS = ("get_pair_counts", "merge_pair", "pretokenize")


@q.cases
def _(gen):
    cases = [(["hello"], 256), (["ab ab ab"], 300), (["Très bien, 🐶!", "über café"], 280),
             ([STORY, STORY.upper(), "  spaces   and\n\nnewlines  "], 320)]
    cases += [([_random_text(gen, 120) for _ in range(4)], 300) for _ in range(3)]
    return [{"texts": texts, "vocab_size": size, "what": f"train_bpe({texts!r:.60}, {size})"}
            for texts, size in cases]


@q.runs
def _(ns, case):
    with helpers(ns, "tokenizer", *TOKENIZER_HELPERS):
        merges, vocab = ns["train_bpe"](list(case["texts"]), case["vocab_size"])
    return {"merges": [list(m) for m in merges],
            "vocab": {int(i): list(token) for i, token in dict(vocab).items()}}


q = question("01_tokenizer", "encode", forbids=FAST_TOKENIZERS)


@q.cases
def _(gen):
    from nanolm_lib.tokenizer import train_bpe

    story_merges, _ = train_bpe([STORY], 320)
    random_merges, _ = train_bpe([_random_text(gen, 300) for _ in range(3)], 330)
    cases = [("", story_merges), ("Zebra 🦓 ate 42 QUICK jumps?!", story_merges),
             ("Max ran.", []), ("the  dog   and\n\n  the cat's toy", story_merges)]
    cases += [(_random_text(gen, 100), random_merges) for _ in range(4)]
    return [{"text": text, "merges": [list(m) for m in merges],
             "what": f"encode({text!r}, {len(merges)} merges)"} for text, merges in cases]


@q.runs
def _(ns, case):
    with helpers(ns, "tokenizer", *TOKENIZER_HELPERS):
        return list(ns["encode"](case["text"], [tuple(m) for m in case["merges"]]))


q = question("01_tokenizer", "decode", forbids=FAST_TOKENIZERS)


@q.cases
def _(gen):
    from nanolm_lib.tokenizer import train_bpe

    _, vocab = train_bpe([STORY + " Très bien! 🐶"], 320)
    vocab = {i: list(token) for i, token in vocab.items()}
    dog = list("🐶".encode())
    lists = [[], [72, 105] + dog[:2], dog[1:], [0xFF, 72], dog]
    lists += [torch.randint(0, len(vocab), (50,), generator=gen).tolist() for _ in range(3)]
    return [{"ids": ids, "vocab": vocab, "what": f"decode({ids}, vocab)"} for ids in lists]


@q.runs
def _(ns, case):
    return ns["decode"](list(case["ids"]), {int(i): bytes(t) for i, t in case["vocab"].items()})


# --------------------------------------------------------------------------- 02_data
q = question("02_data", "pack_stories")


@q.cases
def _(gen):
    from nanolm_lib.data import make_stories
    from nanolm_lib.tokenizer import BPETokenizer, train_bpe

    stories = make_stories(4, seed=_seed(gen))
    merges = [list(m) for m in train_bpe(stories, 400)[0]]
    scratch = [list(m) for m in BPETokenizer.train(stories, vocab_size=300).merges]
    cases = [("fast", merges, stories, "4 stories"), ("fast", merges, stories[:1], "one story"),
             ("fast", merges, [], "no stories"), ("fast", merges, ["", "The end."], "'' and 1"),
             ("scratch", scratch, stories, "BPETokenizer, 4 stories"),
             ("wide", scratch, stories[:2], "eot_id above 32,767")]
    return [{"kind": kind, "merges": m, "stories": s, "what": f"pack_stories({what})"}
            for kind, m, s, what in cases]


def _tokenizer(case):
    from nanolm_lib.tokenizer import EOT, BPETokenizer, FastTokenizer

    merges = [tuple(m) for m in case["merges"]]
    if case["kind"] == "fast":
        return FastTokenizer.from_merges(merges)
    if case["kind"] == "scratch":
        return BPETokenizer(merges)
    return BPETokenizer(merges, special_tokens=[f"<s{i}>" for i in range(33_000)] + [EOT])


@q.runs
def _(ns, case):
    tokens = ns["pack_stories"](_tokenizer(case), list(case["stories"]))
    return {"type": type(tokens).__name__, "dtype": str(getattr(tokens, "dtype", None)),
            "tokens": torch.as_tensor(np.asarray(tokens).astype(np.int64))}


q = question("02_data", "get_batch")


@q.cases
def _(gen):
    tokens = torch.randint(0, 1000, (500,), generator=gen)
    large = torch.randint(0, 65_536, (3_000,), generator=gen)
    seed = _seed(gen)
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


# --------------------------------------------------------------------------- 03_attention
q = question("03_attention", "causal_mask")


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


q = question("03_attention", "attention_weights", rtol=1e-4)


@q.cases
def _(gen):
    cases = []
    for B, H, T, S, D, masked, scale in [(1, 1, 1, 1, 4, True, 1), (3, 2, 7, 7, 5, True, 1),
                                         (2, 4, 16, 16, 32, True, 1), (4, 1, 9, 9, 1, True, 1),
                                         (2, 2, 3, 7, 6, False, 1), (2, 2, 6, 6, 16, True, 20)]:
        cases.append({"q": scale * torch.randn(B, H, T, D, generator=gen),
                      "k": scale * torch.randn(B, H, S, D, generator=gen), "masked": masked,
                      "what": f"attention_weights(q {(B, H, T, D)}, k {(B, H, S, D)}"
                              + (", causal mask)" if masked else ")")
                              + (" with large scores" if scale > 1 else "")})
    return cases


def _mask(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool))


@q.runs
def _(ns, case):
    q_, k = case["q"].clone(), case["k"].clone()
    mask = _mask(q_.size(2)) if case["masked"] else None
    weights = ns["attention_weights"](q_, k, mask)
    return {"weights": weights, "q after the call": q_, "k after the call": k}


q = question("03_attention", "attention", forbids=FUSED_ATTENTION)


@q.cases
def _(gen):
    cases = []
    for (B, H, T, D), masked in [((2, 3, 5, 8), False), ((1, 1, 1, 4), True),
                                 ((3, 1, 9, 5), True), ((2, 4, 12, 7), True)]:
        q_, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
        cases.append({"q": q_, "k": k, "v": v, "masked": masked,
                      "what": f"attention(q, k, v{', mask' if masked else ''}), {(B, H, T, D)}"})
    return cases


@q.runs
def _(ns, case):
    mask = _mask(case["q"].size(2)) if case["masked"] else None
    with helpers(ns, "attention", "attention_weights", "causal_mask"):
        out, weights = ns["attention"](case["q"], case["k"], case["v"], mask)
    return {"out": out, "weights": weights}


for _name, _shapes in (("split_heads", [(1, 1, 8, 2), (3, 7, 15, 3), (2, 4, 6, 1), (2, 3, 5, 5),
                                        (4, 9, 32, 8)]),
                       ("merge_heads", [(1, 1, 1, 4), (3, 3, 7, 5), (2, 1, 6, 3), (2, 5, 3, 1),
                                        (4, 8, 9, 4)])):
    q = question("03_attention", _name)

    def _heads_cases(gen, shapes=_shapes, name=_name):
        cases = []
        for shape in shapes:
            if name == "split_heads":
                B, T, C, H = shape
                cases.append({"x": torch.randn(B, T, C, generator=gen), "H": H,
                              "what": f"split_heads(x {(B, T, C)}, {H})"})
            else:
                cases.append({"x": torch.randn(*shape, generator=gen),
                              "what": f"merge_heads(y {shape})"})
        return cases

    def _heads_apply(ns, case, name=_name):
        args = (case["x"], case["H"]) if "H" in case else (case["x"],)
        return ns[name](*args)

    q.cases(_heads_cases)
    q.runs(_heads_apply)


q = question("03_attention", "MultiHeadAttention", rtol=1e-4, atol=1e-5,
             forbids=FUSED_ATTENTION)
ATTENTION_HELPERS = ("causal_mask", "attention_weights", "attention", "split_heads", "merge_heads")


@q.cases
def _(gen):
    from nanolm_lib.attention import MultiHeadAttention

    cases = []
    for B, T, C, H, dropout in [(1, 1, 8, 2, 0.0), (3, 7, 15, 3, 0.0), (2, 5, 16, 1, 0.0),
                                (2, 9, 32, 8, 0.0), (2, 5, 12, 4, 0.1), (2, 4, 8, 2, 0.0)]:
        layer = MultiHeadAttention(C, H, impl="naive")
        with torch.no_grad():
            state = _randomised_state(layer, gen, 1 / math.sqrt(C))
        cases.append({"C": C, "H": H, "dropout": dropout, "state": state,
                      "x": torch.randn(B, T, C, generator=gen),
                      "what": f"MultiHeadAttention({C}, {H}, dropout={dropout})(x {(B, T, C)})"})
    return cases


@q.runs
def _(ns, case):
    make = ns["MultiHeadAttention"]
    with helpers(ns, "attention", *ATTENTION_HELPERS):
        # the reference's default is the fused kernel; the lesson's layer is the naive one
        extra = {"impl": "naive"} if isinstance(ns, ReferenceNamespace) else {}
        layer = make(case["C"], case["H"], case["dropout"], **extra).eval()
        shapes = {n: list(p.shape) for n, p in layer.named_parameters()}
        _loaded(layer, case["state"])
        x = case["x"]
        changed = x.clone()
        changed[:, -1] = changed[:, -1].flip(-1) + 1   # only the last token changes
        out = layer(x)
        out_changed = layer(changed)
        out.square().sum().backward()
    grads = {n: p.grad for n, p in layer.named_parameters()}
    return {"parameters": shapes, "out": out, "out, last token changed": out_changed,
            "gradients": grads}


# --------------------------------------------------------------------------- 04_fused_attention
q = question("04_fused_attention", "fused_attention", rtol=1e-4, atol=1e-5, requires=(SDPA,))


@q.cases
def _(gen):
    cases = []
    for B, H, T, D in [(1, 1, 1, 8), (3, 1, 13, 5), (4, 3, 32, 24), (2, 2, 6, 8)]:
        q_, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
        cases.append({"q": q_, "k": k, "v": v, "upstream": torch.randn(B, H, T, D, generator=gen),
                      "what": f"fused_attention(q, k, v) for q, k, v shaped {(B, H, T, D)}"})
    return cases


@q.runs
def _(ns, case):
    # whether it calls scaled_dot_product_attention is its policy (requires=), read on the source
    q_, k, v = (case[n].clone().requires_grad_() for n in "qkv")
    out = ns["fused_attention"](q_, k, v)
    grads = (list(torch.autograd.grad(out, (q_, k, v), case["upstream"]))
             if out.requires_grad else "the output does not require grad")
    changed_v = case["v"].clone()
    changed_v[:, :, -1] += 10.0   # the last value row: only the last output may move
    with torch.no_grad():
        out_changed = ns["fused_attention"](case["q"], case["k"], changed_v)
    return {"out": out, "gradients": grads, "out, last value changed": out_changed}


# A (T, T) float32 tensor at this length is 256 MB: twice what the grader's run allows.
LIMITED_T, FLASH_BUDGET_MB = 8192, 128
q = question("04_fused_attention", "flash_attention", rtol=1e-5, atol=1e-5,
             data_budget_mb=FLASH_BUDGET_MB, forbids=FUSED_ATTENTION)


@q.cases
def _(gen):
    cases = []
    for B, H, T, D, block in [(3, 2, 100, 16, 7), (1, 1, 33, 5, 1), (2, 2, 64, 8, 64),
                              (1, 4, 50, 1, 8), (2, 2, 31, 24, 30), (2, 2, 6, 8, 4)]:
        q_, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
        cases.append({"q": q_, "k": k, "v": v, "block_size": block,
                      "what": f"flash_attention(q, k, v, block_size={block}), {(B, H, T, D)}"})
    q_, k, v = (torch.randn(1, 1, LIMITED_T, 16, generator=gen) for _ in range(3))
    cases.append({"q": q_, "k": k, "v": v, "block_size": 64, "limited": True,
                  "what": f"flash_attention at T = {LIMITED_T:,} within {FLASH_BUDGET_MB} MB "
                          "(no (T, T) tensor, not even a mask: that alone is 256 MB)"})
    return cases


@q.runs
def _(ns, case):
    block = case["block_size"]
    if case.get("limited") and isinstance(ns, ReferenceNamespace):
        block = 1024  # the same answer; the grader's reference computes it 50x faster
    out, lse = ns["flash_attention"](case["q"], case["k"], case["v"], block_size=block)
    return {"out": out, "lse": lse}


# --------------------------------------------------------------------------- 05_gpt
def _config(sizes):
    from nanolm_lib.model import GPTConfig

    return GPTConfig(**sizes)


q = question("05_gpt", "LayerNorm", forbids=(
    "torch.nn.LayerNorm", "torch.nn.functional.layer_norm", "torch.native_layer_norm",
    "nanolm_lib.model.FastLayerNorm", *TORCH_INTERNALS))


@q.cases
def _(gen):
    cases = []
    for shape, eps, scale in [((3, 1, 17), 1e-5, 1.0), ((4, 33), 1e-5, 5.0),
                              ((2, 3, 4, 6), 1e-5, 1.0), ((7,), 1e-5, 1.0),
                              ((2, 4, 16), 1e-5, 1e-3), ((2, 4, 16), 0.1, 0.3), ((3, 1), 1e-5, 1.0)]:
        d = shape[-1]
        cases.append({"d": d, "eps": eps,
                      "state": {"weight": torch.randn(d, generator=gen),
                                "bias": torch.randn(d, generator=gen)},
                      "x": torch.randn(shape, generator=gen) * scale + scale,
                      "what": f"LayerNorm({d}, eps={eps})(x {shape}, spread {scale})"})
    return cases


@q.runs
def _(ns, case):
    layer = _loaded(ns["LayerNorm"](case["d"], eps=case["eps"]), case["state"])
    return layer(case["x"])


def _layer_cases(gen, name, configs, scale, x_scale=1.0):
    from nanolm_lib import model

    cases = []
    for sizes, shape in configs:
        layer = getattr(model, name)(_config(sizes))
        state = _randomised_state(layer, gen, scale)
        cases.append({"sizes": sizes, "state": state,
                      "x": torch.randn(*shape, sizes["d_model"], generator=gen) * x_scale,
                      "what": f"{name}({sizes})(x {(*shape, sizes['d_model'])})"})
    return cases


def _layer_outputs(ns, case, name, module_helpers=()):
    with helpers(ns, "model", *module_helpers):
        layer = ns[name](_config(case["sizes"]))
        names = sorted(layer.state_dict())
        _loaded(layer, case["state"]).eval()
        return {"parameter names": names, "out": layer(case["x"])}


def _sizes(d_model, n_heads, d_ff, **extra):
    return dict(vocab_size=50, context_length=16, d_model=d_model, n_layers=1, n_heads=n_heads,
                d_ff=d_ff, **extra)


q = question("05_gpt", "MLP")
q.cases(lambda gen: _layer_cases(gen, "MLP", [(_sizes(5, 1, 13), (1, 1)),
                                              (_sizes(32, 1, 128), (3, 9)),
                                              (_sizes(8, 1, 8), (4, 2))], 1.0, 2.0))
q.runs(lambda ns, case: _layer_outputs(ns, case, "MLP"))

q = question("05_gpt", "Block", rtol=1e-4, atol=1e-5)
q.cases(lambda gen: _layer_cases(gen, "Block", [
    (_sizes(12, 1, 20), (3, 1)), (_sizes(18, 3, 7, attn_impl="naive"), (4, 16)),
    (_sizes(32, 4, 64), (2, 9))], 0.3))
q.runs(lambda ns, case: _layer_outputs(ns, case, "Block",
                                       ("LayerNorm", "MLP", "MultiHeadAttention")))

q = question("05_gpt", "GPT", rtol=1e-4, atol=1e-5)
GPT_HELPERS = ("LayerNorm", "MLP", "Block")


@q.cases
def _(gen):
    from nanolm_lib.model import GPT

    cases = []
    for sizes, batch, T in [
            (dict(vocab_size=37, context_length=8, d_model=12, n_layers=1, n_heads=1, d_ff=20), 3, 1),
            (dict(vocab_size=37, context_length=8, d_model=12, n_layers=3, n_heads=2, d_ff=20), 4, 8),
            (dict(vocab_size=29, context_length=10, d_model=18, n_layers=2, n_heads=3, d_ff=9,
                  tie_weights=False), 2, 7)]:
        state = _randomised_state(GPT(_config(sizes)), gen, 0.3)
        cases.append({"sizes": sizes, "state": state,
                      "idx": torch.randint(0, sizes["vocab_size"], (batch, T), generator=gen),
                      "targets": torch.randint(0, sizes["vocab_size"], (batch, T), generator=gen),
                      "what": f"GPT({sizes})(idx {(batch, T)})"})
    cases.append({"kind": "fresh", "seed": _seed(gen),
                  "idx": torch.randint(0, 500, (8, 32), generator=gen),
                  "targets": torch.randint(0, 500, (8, 32), generator=gen),
                  "what": "a freshly initialised GPT (vocab 500): loss near ln(500)"})
    return cases


@q.runs
def _(ns, case):
    with helpers(ns, "model", *GPT_HELPERS), torch.no_grad():
        if case.get("kind") == "fresh":
            torch.manual_seed(case["seed"])
            fresh = ns["GPT"](_config(dict(vocab_size=500, context_length=32, d_model=64,
                                           n_layers=2, n_heads=4, d_ff=128)))
            return {"loss": float(fresh(case["idx"], case["targets"])[1])}
        model = ns["GPT"](_config(case["sizes"]))
        names = sorted(model.state_dict())
        tied = model.head.weight is model.tok_emb.weight
        _loaded(model, case["state"]).eval()
        logits, loss = model(case["idx"], case["targets"])
        logits_alone, no_loss = model(case["idx"])
    return {"parameter names": names, "head tied": tied, "logits": logits,
            "loss": loss.reshape(()), "logits without targets": logits_alone,
            "loss without targets": no_loss}


@q.checks
def _(case, got, expected):
    if case.get("kind") != "fresh":
        return difference(got, expected, 1e-4, 1e-5)
    loss = got.get("loss") if isinstance(got, dict) else None
    if isinstance(loss, float) and abs(loss - math.log(500)) < 0.5:
        return None
    return (f"starts at loss {loss!r}, expected near ln(500) = {math.log(500):.3f}: initialise "
            "Linear and Embedding weights from N(0, 0.02^2), biases 0")


# from the configuration alone: no model built (the student's own GPT uses torch, so reaching
# it counts), no library formula
q = question("05_gpt", "count_parameters", forbids=(
    "torch", "nanolm_lib.model.GPT", "nanolm_lib.modern", "nanolm_lib.runs"))


@q.cases
def _(gen):
    cases = []
    for sizes in (dict(vocab_size=37, context_length=9, d_model=6, n_layers=5, n_heads=3, d_ff=11,
                       tie_weights=False),
                  dict(vocab_size=1, context_length=1, d_model=1, n_layers=1, n_heads=1, d_ff=1),
                  dict(vocab_size=50_000, context_length=1024, d_model=1600, n_layers=48,
                       n_heads=25, d_ff=6400)):
        for non_embedding in (False, True):
            cases.append({"sizes": sizes, "non_embedding": non_embedding,
                          "what": f"count_parameters({sizes}, non_embedding={non_embedding})"})
    return cases


@q.runs
def _(ns, case):
    # that it builds no model is its policy (forbids=), read on the source
    count = ns["count_parameters"](_config(case["sizes"]), non_embedding=case["non_embedding"])
    return {"count": int(count)}


# --------------------------------------------------------------------------- 06_training
q = question("06_training", "cross_entropy_loss", rtol=1e-4)


@q.cases
def _(gen):
    cases = []
    for B, T, V, scale in [(1, 1, 7, 1.0), (4, 33, 257, 1.0), (3, 4, 2, 1.0), (2, 6, 50, 80.0)]:
        cases.append({"logits": torch.randn(B, T, V, generator=gen) * scale,
                      "targets": torch.randint(0, V, (B, T), generator=gen),
                      "what": f"cross_entropy_loss(logits {(B, T, V)} x {scale}, targets)"})
    return cases


@q.runs
def _(ns, case):
    logits = case["logits"].clone().requires_grad_()
    loss = ns["cross_entropy_loss"](logits, case["targets"])
    grad = (torch.autograd.grad(loss, logits)[0] if loss.requires_grad
            else "the loss does not require grad")
    return {"loss": loss, "gradient": grad}


q = question("06_training", "perplexity", rtol=1e-6, atol=0.0)


@q.cases
def _(gen):
    values = [2.1062, 1.9443, float(torch.rand((), generator=gen)) * 8, 0.0]
    cases = [{"loss": v, "what": f"perplexity({v})"} for v in values]
    cases += [{"loss": 1.25, "tensor": "float32", "what": "perplexity(a 0-d tensor)"},
              {"loss": 3.0, "tensor": "float64", "what": "perplexity(a float64 tensor)"}]
    return cases


@q.runs
def _(ns, case):
    import warnings

    loss = case["loss"]
    if "tensor" in case:
        loss = torch.tensor(loss, dtype=getattr(torch, case["tensor"]), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ns["perplexity"](loss)
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    return float(got) if isinstance(got, (int, float)) else got


q = question("06_training", "lr_at", rtol=1e-9, atol=1e-15)


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
    from nanolm_lib.train import TrainConfig

    config = TrainConfig(**case["fields"])
    values = [ns["lr_at"](step, config) for step in case["steps"]]
    return [float(v) if isinstance(v, (int, float)) else v for v in values]


q = question("06_training", "train_step", forbids=(
    "nanolm_lib.train.optimize", "nanolm_lib.train.train", "nanolm_lib.gpu_check"))
OPTIMIZERS = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}


@q.cases
def _(gen):
    from nanolm_lib.model import GPT

    sizes = dict(vocab_size=31, context_length=8, d_model=16, n_layers=1, n_heads=2, d_ff=32)
    cases = []
    for optimizer, options, steps, B, T, clip in [
            ("sgd", {"lr": 0.5}, 3, 4, 8, 0.05), ("sgd", {"lr": 0.5}, 2, 2, 8, None),
            ("sgd", {"lr": 0.5, "momentum": 0.9}, 3, 1, 1, 0.01),
            ("adamw", {"lr": 1e-2}, 3, 3, 5, "default"), ("sgd", {"lr": 2.0}, 2, 3, 7, 1.0)]:
        state = _randomised_state(GPT(_config(sizes)), gen, 0.1)
        batches = [[torch.randint(0, 31, (B, T), generator=gen) for _ in range(2)]
                   for _ in range(steps)]
        cases.append({"sizes": sizes, "state": state, "optimizer": optimizer,
                      "options": options, "batches": batches, "clip": clip,
                      "what": f"{steps} x train_step(model, {optimizer} {options}, x, y, "
                              f"grad_clip={clip}) on x {(B, T)}"})
    return cases


@q.runs
def _(ns, case):
    from nanolm_lib.model import GPT

    model = _loaded(GPT(_config(case["sizes"])), case["state"])
    optimizer = OPTIMIZERS[case["optimizer"]](model.parameters(), **case["options"])
    steps = []
    with helpers(ns, "train", "cross_entropy_loss"):
        for x, y in case["batches"]:
            args = (model, optimizer, x, y) + (() if case["clip"] == "default" else (case["clip"],))
            loss = ns["train_step"](*args)
            steps.append({"loss": loss if isinstance(loss, float) else f"<a {type(loss).__name__}>",
                          "parameters": torch.cat([p.detach().flatten()
                                                   for p in model.parameters()])})
    return steps


q = question("06_training", "AdamW", forbids=(
    "torch.optim.AdamW", "torch.optim.Adam", "torch.optim.adamw", "torch.optim.adam",
    "torch.optim._functional", *TORCH_INTERNALS))


@q.cases
def _(gen):
    cases = []
    for what, shapes, options, schedule, no_grad in [
            ("defaults", [(7, 5), (13,)], {}, False, ()),
            ("lr 0.1, decay 0.5", [(4, 4), (3,)],
             dict(lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.5), False, ()),
            ("no decay, eps 1e-6", [(3, 4, 2)],
             dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0), False, ()),
            ("a scheduled lr, two groups", [(6, 3), (5,), (2,)],
             dict(lr=1.0, groups=[{"weight_decay": 0.2}, {"weight_decay": 0.0}]),
             True, ()),
            ("a parameter without a gradient", [(5, 2), (4,)],
             dict(lr=5e-2, weight_decay=0.1), False, (1,))]:
        start = [torch.randn(shape, generator=gen) for shape in shapes]
        grads = [[None if i in no_grad else torch.randn(shape, generator=gen) * 10 ** (k % 3 - 1)
                  for i, shape in enumerate(shapes)] for k in range(100)]
        cases.append({"start": start, "grads": grads, "options": options,
                      "schedule": [0.02 * (1 + math.cos(math.pi * k / 100)) for k in range(100)]
                      if schedule else None,
                      "what": f"100 steps of AdamW({what}) on fresh parameters"})
    return cases


@q.runs
def _(ns, case):
    params = [p.clone().requires_grad_() for p in case["start"]]
    options = dict(case["options"])
    groups = params
    if "groups" in options:  # the first tensor in one group, the rest in another
        first, rest = options.pop("groups")
        groups = [dict(params=params[:1], **first), dict(params=params[1:], **rest)]
    optimizer = ns["AdamW"](groups, **options)
    after = {}
    for step, step_grads in enumerate(case["grads"], start=1):
        for group in optimizer.param_groups if case["schedule"] else ():
            group["lr"] = case["schedule"][step - 1]
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else g.clone()
        optimizer.step()
        if step in (1, 2, 10, 100):
            after[f"after {step} steps"] = torch.cat([p.detach().flatten() for p in params])
    return {"is an Optimizer": isinstance(optimizer, torch.optim.Optimizer), **after}


q = question("06_training", "clip_grad_norm", forbids=(
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


q = question("06_training", "evaluate")


@q.cases
def _(gen):
    from nanolm_lib.model import GPT

    cases = []
    for n_tokens, T, batch_size, max_batches, as_tensor, dropout in [
            (8 * 11 + 5, 8, 4, None, False, 0.0), (8 * 10, 8, 3, None, False, 0.0),
            (7 * 20 + 1, 7, 6, 2, False, 0.0), (5 * 9 + 2, 5, 64, None, True, 0.0),
            (6 * 12 + 3, 6, 5, None, False, 0.5), (2, 1, 2, None, False, 0.0)]:
        sizes = dict(vocab_size=41, context_length=T, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                     dropout=dropout)
        cases.append({"sizes": sizes, "state": _randomised_state(GPT(_config(sizes)), gen, 0.3),
                      "tokens": torch.randint(0, 41, (n_tokens,), generator=gen), "T": T,
                      "batch_size": batch_size, "max_batches": max_batches,
                      "as_tensor": as_tensor,
                      "what": f"evaluate(model, {n_tokens} tokens, context_length={T}, "
                              f"batch_size={batch_size}, max_batches={max_batches})"})
    return cases


@q.runs
def _(ns, case):
    from nanolm_lib.model import GPT

    model = _loaded(GPT(_config(case["sizes"])), case["state"]).train()
    tokens = case["tokens"] if case["as_tensor"] else case["tokens"].numpy().astype(np.uint16)
    with helpers(ns, "train", "cross_entropy_loss", "perplexity"):
        result = ns["evaluate"](model, tokens, case["T"], case["batch_size"], case["max_batches"])
    figures = {key: float(result[key]) for key in ("loss", "perplexity")}
    grads = [key for key in ("loss", "perplexity")
             if isinstance(result[key], torch.Tensor) and result[key].requires_grad]
    return {**figures, "requires grad": grads, "training mode kept": model.training}


# --------------------------------------------------------------------------- 07_sampling
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
        cases.append({"logits": torch.randn(B, V, generator=gen) * 2, "seed": _seed(gen),
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
    from nanolm_lib.model import GPT

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
        state = _randomised_state(GPT(_config(sizes)), gen, 0.5)
        idx = torch.randint(0, vocab, (B, T), generator=gen)
        if eos_id is not None:
            idx[idx == eos_id] = (eos_id + 1) % vocab  # prompts without end-of-text
        cases.append({"sizes": sizes, "state": state, "idx": idx, "new": new, "eos_id": eos_id,
                      "settings": settings, "seed": _seed(gen),
                      "what": f"generate(model (vocab {vocab}), idx {(B, T)}, {new}, "
                              f"eos_id={eos_id}, {settings}, generator=g)"})
    return cases


@q.runs
def _(ns, case):
    from nanolm_lib.model import GPT

    model = _loaded(GPT(_config(case["sizes"])), case["state"]).train()
    options = dict(case["settings"], eos_id=case["eos_id"],
                   generator=torch.Generator().manual_seed(case["seed"]))
    if isinstance(ns, ReferenceNamespace):
        options.update(use_cache=False, show_progress=False)
    with helpers(ns, "sampling", "sample_next_token", "top_k_filter"):
        out = ns["generate"](model, case["idx"].clone(), case["new"], **options)
    return {"out": out, "training mode kept": model.training}


# --------------------------------------------------------------------------- 08_modern_gpt
def _modern_config(sizes):
    from nanolm_lib.modern import ModernConfig

    return ModernConfig(**sizes)


q = question("08_modern_gpt", "RMSNorm", forbids=(
    "torch.nn.RMSNorm", "torch.nn.functional.rms_norm", "nanolm_lib.modern.FastRMSNorm",
    *TORCH_INTERNALS))


@q.cases
def _(gen):
    cases = []
    for shape, eps, scale in [((3, 1, 17), 1e-5, 1.0), ((4, 33), 1e-5, 5.0), ((7,), 1e-5, 1.0),
                              ((2, 4, 16), 1e-5, 1e-3), ((2, 4, 16), 0.1, 0.3)]:
        d = shape[-1]
        cases.append({"d": d, "eps": eps, "state": {"weight": torch.randn(d, generator=gen)},
                      "x": torch.randn(shape, generator=gen) * scale + scale,
                      "what": f"RMSNorm({d}, eps={eps})(x {shape}, spread {scale})"})
    return cases


@q.runs
def _(ns, case):
    layer = ns["RMSNorm"](case["d"], eps=case["eps"])
    names = sorted(layer.state_dict())
    return {"parameter names": names, "out": _loaded(layer, case["state"])(case["x"])}


q = question("08_modern_gpt", "rope_cache")


@q.cases
def _(gen):
    picks = [(1, 2, 10_000.0), (9, 8, 10_000.0), (33, 20, 100.0), (128, 64, 10_000.0),
             (int(torch.randint(2, 50, (1,), generator=gen)), 12, 500.0)]
    return [{"T": T, "head_dim": D, "base": base, "what": f"rope_cache({T}, {D}, base={base})"}
            for T, D, base in picks]


@q.runs
def _(ns, case):
    cos, sin = ns["rope_cache"](case["T"], case["head_dim"], base=case["base"])
    return {"cos": cos, "sin": sin}


q = question("08_modern_gpt", "apply_rope")


@q.cases
def _(gen):
    from nanolm_lib.modern import rope_cache

    cases = []
    for shape, base in [((1, 1, 1, 2), 10_000.0), ((2, 3, 7, 8), 10_000.0), ((5, 16), 100.0),
                        ((2, 2, 12, 20), 10_000.0)]:
        cos, sin = rope_cache(shape[-2], shape[-1], base)
        cases.append({"x": torch.randn(shape, generator=gen), "cos": cos, "sin": sin,
                      "what": f"apply_rope(x {shape}, *rope_cache({shape[-2]}, {shape[-1]}, "
                              f"base={base}))"})
    return cases


@q.runs
def _(ns, case):
    x = case["x"].clone()
    out = ns["apply_rope"](x, case["cos"], case["sin"])
    return {"out": out, "x after the call": x}


def _modern_sizes(d_model, n_heads, n_kv_heads, **extra):
    return dict(vocab_size=41, context_length=16, d_model=d_model, n_layers=1, n_heads=n_heads,
                n_kv_heads=n_kv_heads, d_ff=4 * d_model, **extra)


q = question("08_modern_gpt", "SwiGLU")


@q.cases
def _(gen):
    from nanolm_lib.modern import SwiGLU

    cases = []
    for d, hidden, shape in [(5, None, (1, 1)), (24, None, (3, 9)), (16, 10, (2, 4))]:
        state = _randomised_state(SwiGLU(d, hidden), gen, 0.5)
        cases.append({"d": d, "hidden": hidden, "state": state,
                      "x": torch.randn(*shape, d, generator=gen) * 2,
                      "what": f"SwiGLU({d}, hidden={hidden})(x {(*shape, d)})"})
    return cases


@q.runs
def _(ns, case):
    layer = ns["SwiGLU"](case["d"], hidden=case["hidden"])
    names = {name: list(t.shape) for name, t in layer.state_dict().items()}
    return {"parameters": names, "out": _loaded(layer, case["state"])(case["x"])}


q = question("08_modern_gpt", "GroupedQueryAttention", rtol=1e-4, atol=1e-5)


@q.cases
def _(gen):
    from nanolm_lib.modern import GroupedQueryAttention, rope_cache

    cases = []
    for C, H, Hkv, B, T, rope in [(8, 1, 1, 1, 1, False), (24, 6, 2, 2, 7, False),
                                  (32, 4, 4, 2, 9, True), (32, 8, 1, 1, 12, True)]:
        state = _randomised_state(GroupedQueryAttention(C, H, Hkv), gen, 0.3)
        cos, sin = rope_cache(T, C // H) if rope else (None, None)
        cases.append({"sizes": [C, H, Hkv], "state": state, "cos": cos, "sin": sin,
                      "x": torch.randn(B, T, C, generator=gen),
                      "what": f"GroupedQueryAttention({C}, {H}, {Hkv})(x {(B, T, C)}"
                              + (", cos, sin)" if rope else ")")})
    return cases


@q.runs
def _(ns, case):
    with helpers(ns, "modern", "apply_rope"), torch.no_grad():
        layer = ns["GroupedQueryAttention"](*case["sizes"])
        names = {name: list(t.shape) for name, t in layer.state_dict().items()}
        _loaded(layer, case["state"]).eval()
        return {"parameters": names, "out": layer(case["x"], case["cos"], case["sin"])}


q = question("08_modern_gpt", "ModernBlock", rtol=1e-4, atol=1e-5)
MODERN_HELPERS = ("RMSNorm", "rope_cache", "apply_rope", "SwiGLU", "GroupedQueryAttention")


@q.cases
def _(gen):
    from nanolm_lib.modern import ModernBlock, rope_cache

    cases = []
    for sizes, B, T in [(_modern_sizes(12, 2, 1), 3, 1), (_modern_sizes(32, 4, 2), 2, 9),
                        (_modern_sizes(24, 3, 3), 2, 16)]:
        state = _randomised_state(ModernBlock(_modern_config(sizes)), gen, 0.3)
        cos, sin = rope_cache(T, sizes["d_model"] // sizes["n_heads"])
        cases.append({"sizes": sizes, "state": state, "cos": cos, "sin": sin,
                      "x": torch.randn(B, T, sizes["d_model"], generator=gen),
                      "what": f"ModernBlock({sizes})(x {(B, T, sizes['d_model'])}, cos, sin)"})
    return cases


@q.runs
def _(ns, case):
    with helpers(ns, "modern", *MODERN_HELPERS), torch.no_grad():
        block = ns["ModernBlock"](_modern_config(case["sizes"]))
        names = sorted(block.state_dict())
        _loaded(block, case["state"]).eval()
        return {"parameter names": names, "out": block(case["x"], case["cos"], case["sin"])}


q = question("08_modern_gpt", "ModernGPT", rtol=1e-4, atol=1e-5)


@q.cases
def _(gen):
    from nanolm_lib.modern import ModernGPT

    cases = []
    for sizes, B, T in [
            (dict(vocab_size=37, context_length=8, d_model=12, n_layers=1, n_heads=1), 3, 1),
            (dict(vocab_size=37, context_length=12, d_model=16, n_layers=3, n_heads=4,
                  n_kv_heads=2), 2, 12),
            (dict(vocab_size=29, context_length=10, d_model=24, n_layers=2, n_heads=3,
                  tie_weights=False), 2, 7)]:
        state = _randomised_state(ModernGPT(_modern_config(sizes)), gen, 0.3)
        cases.append({"sizes": sizes, "state": state,
                      "idx": torch.randint(0, sizes["vocab_size"], (B, T), generator=gen),
                      "targets": torch.randint(0, sizes["vocab_size"], (B, T), generator=gen),
                      "what": f"ModernGPT({sizes})(idx {(B, T)})"})
    return cases


@q.runs
def _(ns, case):
    with helpers(ns, "modern", *MODERN_HELPERS, "ModernBlock"), torch.no_grad():
        model = ns["ModernGPT"](_modern_config(case["sizes"]))
        names = sorted(model.state_dict())
        tied = model.head.weight is model.tok_emb.weight
        _loaded(model, case["state"]).eval()
        logits, loss = model(case["idx"], case["targets"])
        logits_alone, no_loss = model(case["idx"])
    return {"parameter names": names, "head tied": tied, "logits": logits,
            "loss": loss.reshape(()), "logits without targets": logits_alone,
            "loss without targets": no_loss}
