"""The visible tests' fixtures: fixed inputs and the reference's outputs, computed at release.

A visible test cell never loads the reference (a staged student kit does not have it): it
reads ``lessons/<lesson>/fixtures/<name>.pt`` with :func:`nanolm_lib.grading.checks.fixture` and
compares. Each recipe below builds one such file: fixed inputs from a fixed seed, and what the
reference returns on them. ``python -m autograde release`` writes them and
``release --check`` compares them as the visible tests compare (:func:`same`: within the
tightest tolerance of any test cell); a release rewrites a fixture only when the check would
call it stale, so a release on another CPU leaves git clean.

The keys a test cell reads are the recipe's keys; a recipe and its test cell change together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

# lesson -> fixture name -> recipe(reference) -> the fixture's content
RECIPES: dict[str, dict[str, Callable]] = {}


def recipe(lesson: str, name: str):
    def register(function: Callable) -> Callable:
        RECIPES.setdefault(lesson, {})[name] = function
        return function
    return register


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- 01_tokenizer
STORY = ("Once upon a time, there was a little dog named Max. Max liked to run in the park. "
         "One day, Max saw a big red ball. He ran to the ball and played with it all day.")
DECODE_STORY = ("Once upon a time, there was a little dog named Max. Max liked to run in the "
                "park. Très bien! 🐶")


def _random_text(gen: torch.Generator, length: int) -> str:
    alphabet = list("aaabbbcde   \n\n.,!'st01é🐶")
    return "".join(alphabet[i] for i in torch.randint(len(alphabet), (length,),
                                                      generator=gen).tolist())


def _plain_bpe(merges, vocab) -> dict:
    """merges as lists, vocab as id -> list of byte values (plain data for weights-only)."""
    return {"merges": [list(m) for m in merges],
            "vocab": {i: list(token) for i, token in vocab.items()}}


@recipe("01_tokenizer", "get_pair_counts")
def _get_pair_counts(ref):
    ids = torch.randint(0, 6, (40,), generator=_gen(11)).tolist()
    counts = ref("tokenizer").get_pair_counts(ids)
    return {"ids": ids, "counts": [[a, b, n] for (a, b), n in sorted(counts.items())]}


@recipe("01_tokenizer", "merge_pair")
def _merge_pair(ref):
    cases = [([1, 2, 3, 1, 2], (1, 2), 256), ([7, 7, 7], (7, 7), 256),
             (torch.randint(0, 4, (30,), generator=_gen(12)).tolist(), (1, 2), 300)]
    return {"cases": [{"ids": ids, "pair": list(pair), "new_id": new_id,
                       "merged": ref("tokenizer").merge_pair(ids, pair, new_id)}
                      for ids, pair, new_id in cases]}


@recipe("01_tokenizer", "train_bpe")
def _train_bpe(ref):
    gen = _gen(13)
    cases = [(["ab ba"], 258, "train_bpe(['ab ba'], 258), where all pairs tie"),
             ([STORY], 300, "train_bpe([a short story], 300)")]
    texts = [_random_text(gen, 80) for _ in range(3)]
    cases.append((texts, 290, f"train_bpe({texts}, 290)"))
    return {"cases": [dict(texts=texts, vocab_size=size, what=what,
                           **_plain_bpe(*ref("tokenizer").train_bpe(texts, size)))
                      for texts, size, what in cases]}


@recipe("01_tokenizer", "encode")
def _encode(ref):
    tokenizer = ref("tokenizer")
    merges, _ = tokenizer.train_bpe([STORY], 320)
    spaced, _ = tokenizer.train_bpe(["the  cat    sat.\n\n\nThe dog  ran   far."], 270)
    cases = [("Max ran to the park.", merges, "encode('Max ran to the park.', merges)"),
             (STORY, merges, "encode(story, merges), the training text itself"),
             ("a  dog   ran\n\n\nfar", spaced,
              "encode('a  dog   ran\\n\\n\\nfar', merges that join two spaces)")]
    return {"cases": [{"text": text, "merges": [list(m) for m in merges], "what": what,
                       "ids": tokenizer.encode(text, merges)} for text, merges, what in cases]}


@recipe("01_tokenizer", "decode")
def _decode(ref):
    tokenizer = ref("tokenizer")
    merges, vocab = tokenizer.train_bpe([DECODE_STORY], 320)
    return dict(story=DECODE_STORY, ids=tokenizer.encode(DECODE_STORY, merges),
                **_plain_bpe(merges, vocab))


# --------------------------------------------------------------------------- 02_data
@recipe("02_data", "pack_stories")
def _pack_stories(ref):
    stories = ref("data").make_stories(4, seed=21)
    merges, _ = ref("tokenizer").train_bpe(stories, 400)
    tokenizer = ref("tokenizer").FastTokenizer.from_merges(merges)
    tokens = ref("data").pack_stories(tokenizer, stories)
    no_stories = ref("data").pack_stories(tokenizer, [])  # the exercise says: empty, uint16
    return {"stories": stories, "merges": [list(m) for m in merges],
            "tokens": torch.from_numpy(tokens.astype("int64")),
            "no stories": torch.from_numpy(no_stories.astype("int64"))}


@recipe("02_data", "get_batch")
def _get_batch(ref):
    tokens = torch.randint(0, 1000, (500,), generator=_gen(22)).numpy().astype("uint16")
    generator = torch.Generator().manual_seed(23)
    calls = [ref("data").get_batch(tokens, 4, 8, generator=generator) for _ in range(2)]
    return {"tokens": torch.from_numpy(tokens.astype("int64")), "seed": 23,
            "batches": [{"x": x, "y": y} for x, y in calls]}


# --------------------------------------------------------------------------- 03_attention
@recipe("03_attention", "causal_mask")
def _causal_mask(ref):
    attention = ref("attention")
    return {f"causal_mask({T})": attention.causal_mask(T) for T in (1, 4, 7)}


@recipe("03_attention", "attention_weights")
def _attention_weights(ref):
    attention = ref("attention")
    gen = _gen(3)
    q, k = torch.randn(2, 3, 5, 8, generator=gen), torch.randn(2, 3, 5, 8, generator=gen)
    mask = attention.causal_mask(5)
    return {"q": q, "k": k, "mask": mask,
            "no mask": attention.attention_weights(q, k),
            "causal mask": attention.attention_weights(q, k, mask)}


@recipe("03_attention", "attention")
def _attention(ref):
    attention = ref("attention")
    gen = _gen(4)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=gen) for _ in range(3))
    mask = attention.causal_mask(5)
    out, weights = attention.attention(q, k, v, mask)
    return {"q": q, "k": k, "v": v, "mask": mask, "out": out, "weights": weights}


@recipe("03_attention", "split_heads")
def _split_heads(ref):
    x = torch.randn(2, 5, 12, generator=_gen(5))
    return {"x": x, "split_heads(x, 3)": ref("attention").split_heads(x, 3)}


@recipe("03_attention", "merge_heads")
def _merge_heads(ref):
    gen = _gen(6)
    y = torch.randn(2, 3, 5, 4, generator=gen)
    x = torch.randn(2, 5, 12, generator=gen)
    attention = ref("attention")
    return {"y": y, "merge_heads(y)": attention.merge_heads(y),
            "x": x, "split_heads(x, 3)": attention.split_heads(x, 3)}


@recipe("03_attention", "MultiHeadAttention")
def _multi_head_attention(ref):
    gen = _gen(7)
    B, T, C, H = 2, 6, 12, 3
    layer = ref("attention").MultiHeadAttention(C, H, impl="naive").eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(C))
        x = torch.randn(B, T, C, generator=gen)
        out = layer(x)
    state = {name: p.detach().clone() for name, p in layer.named_parameters()}
    return {"C": C, "H": H, "state": state, "x": x, "out": out}


# --------------------------------------------------------------------------- 04_fused_attention
@recipe("04_fused_attention", "fused_attention")
def _fused_attention(ref):
    gen = _gen(41)
    attention = ref("attention")
    q, k, v = (torch.randn(2, 4, 9, 16, generator=gen, requires_grad=True) for _ in range(3))
    expected, _ = attention.attention(q, k, v, attention.causal_mask(9))
    upstream = torch.randn(2, 4, 9, 16, generator=gen)
    grads = torch.autograd.grad(expected, (q, k, v), upstream)
    return {"q": q.detach(), "k": k.detach(), "v": v.detach(), "out": expected.detach(),
            "upstream": upstream, "grads": [g.detach() for g in grads]}


@recipe("04_fused_attention", "flash_attention")
def _flash_attention(ref):
    gen = _gen(42)
    cases = []
    for B, H, T, D, block_size, note in (
            (2, 3, 37, 8, 16, "T not a multiple of the block: a short last tile"),
            (1, 2, 1, 8, 16, "T = 1"), (2, 1, 12, 4, 32, "one block holds every key")):
        q, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
        out, lse = ref("attention").flash_attention(q, k, v, block_size=block_size)
        cases.append({"q": q, "k": k, "v": v, "block_size": block_size, "note": note,
                      "out": out, "lse": lse})
    return {"cases": cases}


# --------------------------------------------------------------------------- 05_gpt
def _randomised(module, gen: torch.Generator, scale: float):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return module.eval()


def _state(module) -> dict:
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


@recipe("05_gpt", "LayerNorm")
def _layer_norm(ref):
    gen = _gen(51)
    layer = ref("model").LayerNorm(8)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(8, generator=gen))
        layer.bias.copy_(torch.randn(8, generator=gen))
        x = torch.randn(2, 5, 8, generator=gen) * 3 + 1
        small_eps = ref("model").LayerNorm(16, eps=0.1)
        small_x = torch.randn(2, 4, 16, generator=gen) * 0.3
        return {"state": _state(layer), "x": x, "out": layer(x),
                "small eps state": _state(small_eps), "small eps x": small_x,
                "small eps out": small_eps(small_x)}


def _layer_case(ref, layer_name: str, seed: int, sizes: dict, scale: float, x_shape: tuple):
    """A randomised ``model.<layer_name>`` of ``sizes``, an input and its output."""
    gen = _gen(seed)
    model = ref("model")
    layer = _randomised(getattr(model, layer_name)(model.GPTConfig(**sizes)), gen, scale)
    with torch.no_grad():
        x = torch.randn(*x_shape, generator=gen)
        return {"sizes": sizes, "state": _state(layer), "x": x, "out": layer(x)}


@recipe("05_gpt", "MLP")
def _mlp(ref):
    sizes = dict(vocab_size=50, context_length=16, d_model=24, n_layers=1, n_heads=4, d_ff=40)
    return _layer_case(ref, "MLP", 52, sizes, 0.5, (2, 7, 24))


@recipe("05_gpt", "Block")
def _block(ref):
    sizes = dict(vocab_size=50, context_length=16, d_model=32, n_layers=1, n_heads=4, d_ff=64)
    return _layer_case(ref, "Block", 53, sizes, 0.3, (2, 9, 32))


@recipe("05_gpt", "GPT")
def _gpt(ref):
    gen = _gen(54)
    model = ref("model")
    base = dict(vocab_size=61, context_length=16, d_model=32, n_layers=2, n_heads=4, d_ff=64)
    cases = []
    for sizes, T in ((base, 11), (dict(base, tie_weights=False), 7)):
        gpt = _randomised(model.GPT(model.GPTConfig(**sizes)), gen, 0.3)
        idx = torch.randint(0, 61, (2, T), generator=gen)
        targets = torch.randint(0, 61, (2, T), generator=gen)
        with torch.no_grad():
            logits, loss = gpt(idx, targets)
        cases.append({"sizes": sizes, "state": _state(gpt), "idx": idx, "targets": targets,
                      "logits": logits, "loss": loss})
    return {"cases": cases}


@recipe("05_gpt", "count_parameters")
def _count_parameters(ref):
    model = ref("model")
    cases = []
    for sizes in (dict(vocab_size=100, context_length=16, d_model=32, n_layers=2, n_heads=4,
                       d_ff=64), dict()):
        for non_embedding in (False, True):
            count = model.count_parameters(model.GPTConfig(**sizes), non_embedding=non_embedding)
            cases.append({"sizes": sizes, "non_embedding": non_embedding, "count": count})
    return {"cases": cases}


# --------------------------------------------------------------------------- 06_training
@recipe("06_training", "cross_entropy_loss")
def _cross_entropy_loss(ref):
    gen = _gen(61)
    logits = torch.randn(2, 5, 11, generator=gen).requires_grad_()
    targets = torch.randint(0, 11, (2, 5), generator=gen)
    loss = ref("train").cross_entropy_loss(logits, targets)
    grad, = torch.autograd.grad(loss, logits)
    return {"logits": logits.detach(), "targets": targets, "loss": loss.detach(), "grad": grad}


@recipe("06_training", "lr_at")
def _lr_at(ref):
    train = ref("train")
    fields = {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 10, "max_steps": 100}
    config = train.TrainConfig(**fields)
    steps = list(range(0, 121))
    return {"fields": fields, "steps": steps, "lr": [train.lr_at(s, config) for s in steps]}


def _bigram(vocab_size: int, gen: torch.Generator, scale: float, dropout: float = 0.0):
    from nanolm_lib.grading.checks import BigramLM

    model = BigramLM(vocab_size, 16, dropout)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def _parameters(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@recipe("06_training", "train_step")
def _train_step(ref):
    gen = _gen(62)
    model = _bigram(31, gen, 0.3)
    start = _parameters(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    steps = []
    for _ in range(3):
        x, y = (torch.randint(0, 31, (4, 8), generator=gen) for _ in range(2))
        loss = ref("train").train_step(model, optimizer, x, y, 0.05)
        steps.append({"x": x, "y": y, "loss": loss, "parameters": _parameters(model)})
    return {"vocab_size": 31, "lr": 0.5, "grad_clip": 0.05, "start": start, "steps": steps}


def _adamw_run(optimizer_class, start, grads, options, lr_schedule=None):
    """The parameters after each step of optimizer_class from start with the given gradients
    (the lesson's test cell runs the same loop)."""
    params = [p.clone().requires_grad_() for p in start]
    groups = params
    if "groups" in options:
        groups = [dict(params=params[:1], **options["groups"][0]),
                  dict(params=params[1:], **options["groups"][1])]
        options = {k: v for k, v in options.items() if k != "groups"}
    optimizer, after = optimizer_class(groups, **options), []
    for step, step_grads in enumerate(grads):
        for group in optimizer.param_groups if lr_schedule else ():
            group["lr"] = lr_schedule[step]
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        optimizer.step()
        after.append(torch.cat([p.detach().flatten() for p in params]))
    return after


@recipe("06_training", "AdamW")
def _adamw(ref):
    gen = _gen(64)
    start = [torch.randn(6, 4, generator=gen), torch.randn(5, generator=gen)]
    grads = [[torch.randn(p.shape, generator=gen) for p in start] for _ in range(100)]
    schedule = [0.05 * (step + 1) / 100 for step in range(100)]
    cases = []
    for what, options, lr_schedule in (
            ("defaults", {}, None),
            # large lr, decay and eps: the order of decay and step, and where eps goes, show
            ("lr=0.1, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.5",
             dict(lr=0.1, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.5), None),
            ("two groups (weight_decay 0.3 and 0), lr set by a schedule at every step",
             dict(lr=1.0, groups=[{"weight_decay": 0.3}, {"weight_decay": 0.0}]), schedule)):
        after = _adamw_run(ref("train").AdamW, start, grads, options, lr_schedule)
        case = {"what": what, "options": options, "after": {s: after[s - 1] for s in (1, 10, 100)}}
        if lr_schedule:
            case["lr_schedule"] = lr_schedule
        cases.append(case)
    return {"start": start, "grads": grads, "cases": cases}


@recipe("06_training", "clip_grad_norm")
def _clip_grad_norm(ref):
    gen = _gen(65)
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


@recipe("06_training", "evaluate")
def _evaluate(ref):
    gen = _gen(63)
    model = _bigram(41, gen, 0.3)  # a model with opinions: per-window losses vary
    tokens = torch.randint(0, 41, (8 * 11 + 5,), generator=gen)
    result = ref("train").evaluate(model, tokens.numpy().astype("uint16"), 8, 4)
    return {"vocab_size": 41, "parameters": _parameters(model), "tokens": tokens,
            "context_length": 8, "batch_size": 4,
            "loss": result["loss"], "perplexity": result["perplexity"]}


# --------------------------------------------------------------------------- 07_sampling
@recipe("07_sampling", "top_k_filter")
def _top_k_filter(ref):
    logits = torch.randn(3, 10, generator=_gen(71)) * 3
    return {"logits": logits, "k": 4, "filtered": ref("sampling").top_k_filter(logits, 4)}


@recipe("07_sampling", "sample_next_token")
def _sample_next_token(ref):
    gen = _gen(72)
    cases = []
    for B, V, settings in ((4, 20, {"temperature": 1.0}),
                           (3, 12, {"temperature": 0.7, "top_k": 5}),
                           (3, 40, {"temperature": 1.3, "top_k": 1})):  # top-k 1 is greedy
        logits = torch.randn(B, V, generator=gen) * 2
        draws_seed = int(torch.randint(2**31, (1,), generator=gen))
        generator = torch.Generator().manual_seed(draws_seed)
        draws = [ref("sampling").sample_next_token(logits, generator=generator, **settings)
                 for _ in range(5)]
        cases.append({"logits": logits, "seed": draws_seed, "settings": settings,
                      "draws": draws})
    return {"cases": cases}


@recipe("07_sampling", "generate")
def _generate(ref):
    gen = _gen(73)
    model_module = ref("model")
    cases = []
    for B, T, new, vocab, eos_id, settings in (
            (2, 3, 4, 11, None, {"temperature": 1.0, "top_k": 5}),
            (3, 2, 60, 4, 2, {"temperature": 4.0}),   # rows end at different times
            (2, 5, 12, 11, None, {"temperature": 0.9}),  # grows past the context: crop
            (3, 1, 40, 5, 0, {"temperature": 4.0})):  # end-of-text is id 0: `if eos_id:` fails
        sizes = dict(vocab_size=vocab, context_length=8, d_model=16, n_layers=1, n_heads=2,
                     d_ff=32)
        model = _randomised(model_module.GPT(model_module.GPTConfig(**sizes)), gen, 0.5).train()
        idx = torch.randint(0, vocab, (B, T), generator=gen)
        if eos_id is not None:
            idx[idx == eos_id] = (eos_id + 1) % vocab  # prompts without end-of-text
        draws_seed = int(torch.randint(2**31, (1,), generator=gen))
        out = ref("sampling").generate(model, idx.clone(), new, eos_id=eos_id,
                                       generator=torch.Generator().manual_seed(draws_seed),
                                       use_cache=False, show_progress=False, **settings)
        cases.append({"sizes": sizes, "state": _state(model), "idx": idx, "new": new,
                      "eos_id": eos_id, "settings": settings, "seed": draws_seed, "out": out})
    return {"cases": cases}



# --------------------------------------------------------------------------- 08_modern_gpt
def _modern_sizes(**changes) -> dict:
    return dict(dict(vocab_size=61, context_length=16, d_model=32, n_layers=2, n_heads=4,
                     n_kv_heads=2), **changes)


@recipe("08_modern_gpt", "RMSNorm")
def _rms_norm(ref):
    gen = _gen(81)
    layer = _randomised(ref("modern").RMSNorm(8), gen, 1.0)
    small_eps = _randomised(ref("modern").RMSNorm(16, eps=0.1), gen, 1.0)
    with torch.no_grad():
        x = torch.randn(2, 5, 8, generator=gen) * 3 + 1
        small_x = torch.randn(2, 4, 16, generator=gen) * 0.3
        return {"state": _state(layer), "x": x, "out": layer(x),
                "small eps state": _state(small_eps), "small eps x": small_x,
                "small eps out": small_eps(small_x)}


@recipe("08_modern_gpt", "rope_cache")
def _rope_cache(ref):
    cos, sin = ref("modern").rope_cache(12, 8)
    cos100, sin100 = ref("modern").rope_cache(5, 6, base=100.0)
    return {"cos": cos, "sin": sin, "cos base 100": cos100, "sin base 100": sin100}


@recipe("08_modern_gpt", "apply_rope")
def _apply_rope(ref):
    gen = _gen(82)
    modern = ref("modern")
    x = torch.randn(2, 3, 12, 8, generator=gen)
    cos, sin = modern.rope_cache(12, 8)
    return {"x": x, "cos": cos, "sin": sin, "out": modern.apply_rope(x, cos, sin)}


@recipe("08_modern_gpt", "SwiGLU")
def _swiglu(ref):
    gen = _gen(83)
    layer = _randomised(ref("modern").SwiGLU(24), gen, 0.5)
    with torch.no_grad():
        x = torch.randn(2, 7, 24, generator=gen)
        return {"d_model": 24, "state": _state(layer), "x": x, "out": layer(x)}


@recipe("08_modern_gpt", "GroupedQueryAttention")
def _gqa(ref):
    gen = _gen(84)
    modern = ref("modern")
    layer = _randomised(modern.GroupedQueryAttention(32, 4, 2), gen, 0.3)
    with torch.no_grad():
        x = torch.randn(2, 9, 32, generator=gen)
        cos, sin = modern.rope_cache(9, 8)
        return {"sizes": [32, 4, 2], "state": _state(layer), "x": x, "cos": cos, "sin": sin,
                "out": layer(x), "out with rope": layer(x, cos, sin)}


@recipe("08_modern_gpt", "ModernBlock")
def _modern_block(ref):
    gen = _gen(85)
    modern = ref("modern")
    sizes = _modern_sizes(n_layers=1)
    block = _randomised(modern.ModernBlock(modern.ModernConfig(**sizes)), gen, 0.3)
    with torch.no_grad():
        x = torch.randn(2, 9, 32, generator=gen)
        cos, sin = modern.rope_cache(9, 8)
        return {"sizes": sizes, "state": _state(block), "x": x, "cos": cos, "sin": sin,
                "out": block(x, cos, sin)}


@recipe("08_modern_gpt", "ModernGPT")
def _modern_gpt(ref):
    gen = _gen(86)
    modern = ref("modern")
    cases = []
    for sizes, T in ((_modern_sizes(), 11), (_modern_sizes(tie_weights=False), 7)):
        model = _randomised(modern.ModernGPT(modern.ModernConfig(**sizes)), gen, 0.3)
        idx = torch.randint(0, 61, (2, T), generator=gen)
        targets = torch.randint(0, 61, (2, T), generator=gen)
        with torch.no_grad():
            logits, loss = model(idx, targets)
        cases.append({"sizes": sizes, "state": _state(model), "idx": idx, "targets": targets,
                      "logits": logits, "loss": loss})
    return {"cases": cases}

# --------------------------------------------------------------------------- writing, checking
def _reference_loader():
    from nanolm_lib.grading.checks import reference

    loaded = {}

    def ref(module: str):
        if module not in loaded:
            loaded[module] = reference(module)
        return loaded[module]
    return ref


def compute(lesson: str) -> dict[str, object]:
    """Every fixture of ``lesson``: name -> content (empty for a lesson without recipes)."""
    torch.manual_seed(0)
    ref = _reference_loader()
    return {name: make(ref) for name, make in sorted(RECIPES.get(lesson, {}).items())}


def same(a, b, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """Equal fixture contents, as the visible tests compare: a float tensor within ``rtol`` of
    relative error over the whole tensor (or ``atol`` of absolute error norm when the expected
    values are ~0), :func:`nanolm_lib.grading.checks.check_close`'s rule and its tightest tolerance in
    any test cell; shapes, dtypes, keys, lengths and everything else exactly.

    Why a tolerance and not bytes: the same recipe on another CPU, or with another number of
    threads, rounds float32 sums in another order (a few ulps), and a fixture is "stale" only
    when a visible test could tell the difference.
    """
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if not a.is_floating_point():
            return torch.equal(a, b)
        a64, b64 = a.double(), b.double()
        if not torch.equal(torch.isfinite(a64), torch.isfinite(b64)):
            return False
        finite = torch.isfinite(b64)
        if not torch.equal(a64[~finite], b64[~finite]) and not (
                a64[~finite].isnan() & b64[~finite].isnan()).all():
            return False
        error = (a64[finite] - b64[finite]).norm().item()
        return error <= max(rtol * b64[finite].norm().item(), atol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key], rtol, atol) for key in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(same(x, y, rtol, atol) for x, y in zip(a, b)))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)
    return type(a) is type(b) and a == b


def _load(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


def write(lesson: str, folder: Path, previous: Path | None = None) -> list[str]:
    """Write ``lesson``'s fixtures into ``folder``; a fixture equal by value to the one in
    ``previous`` keeps its bytes. Returns the names written."""
    contents = compute(lesson)
    if not contents:
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in contents.items():
        target = folder / f"{name}.pt"
        old = Path(previous) / f"{name}.pt" if previous is not None else None
        if old is not None and old.is_file() and same(_load(old), content):
            target.write_bytes(old.read_bytes())
        else:
            torch.save(content, target)
    return sorted(contents)


def stale(lesson: str, folder: Path) -> list[str]:
    """The fixtures of ``lesson`` in ``folder`` that are missing, extra or differ by value."""
    contents = compute(lesson)
    folder = Path(folder)
    present = {p.stem for p in folder.glob("*.pt")} if folder.is_dir() else set()
    problems = sorted(f"{name} (extra)" for name in present - contents.keys())
    for name, content in sorted(contents.items()):
        path = folder / f"{name}.pt"
        if not path.is_file():
            problems.append(f"{name} (missing)")
        elif not same(_load(path), content):
            problems.append(f"{name} (differs)")
    return problems
