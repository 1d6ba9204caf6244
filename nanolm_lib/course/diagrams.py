"""The lessons' diagrams of the hard ideas: each one a function that computes its numbers
(returned as plain data, which the tests check) and one that draws them (a matplotlib
Figure, no pyplot, as in :mod:`nanolm_lib.course.plotting`).

    bytes_per_token_curve, plot_bytes_per_token   lesson 01: BPE's compression against merges
    flash_trace, plot_flash_trace                 lesson 04: one query's running max m and sum l
    residual_stream, plot_residual_stream         lesson 05: the pre-LN block, measured
    kv_cache_profile, plot_kv_cache               lesson 07: what the KV cache holds, its speed
"""

from __future__ import annotations

import math

import torch

from nanolm_lib.course.sampling import generate
from nanolm_lib.utils import time_fn


def _figure(width: float, height: float, rows: int = 1, columns: int = 1, **options):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend needed

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots(rows, columns, **options)


# ---------------------------------------------------------------------------------- lesson 01


def bytes_per_token_curve(texts, merges, encode, points: int = 12) -> dict:
    """UTF-8 bytes per token of ``texts`` encoded with the first n ``merges``, for about
    ``points`` values of n from 0 to all of them. ``encode(text, merges)`` is lesson 01's.
    Encoding with the first n merges is encoding with n - 1 and then applying merge n (a
    later merge never makes an earlier one applicable again), so the curve never rises."""
    merges = [tuple(pair) for pair in merges]
    texts = list(texts)
    if not texts:
        raise ValueError("bytes_per_token_curve: no texts to encode")
    n_bytes = sum(len(text.encode("utf-8")) for text in texts)
    counts = sorted({round(i * len(merges) / max(points - 1, 1)) for i in range(points)})
    per_token = [n_bytes / sum(len(encode(text, merges[:n])) for text in texts)
                 for n in counts]
    return {"merges": counts, "bytes_per_token": per_token, "bytes": n_bytes}


def plot_bytes_per_token(curve: dict):
    """Lesson 01's figure: bytes per token against the number of merges."""
    figure, axes = _figure(7.5, 3.6)
    axes.plot(curve["merges"], curve["bytes_per_token"], "o-", label="your merges")
    axes.axhline(1.0, color="gray", linestyle=":", label="raw bytes: one byte per token")
    axes.set_xlabel("merges learned (vocabulary = 256 + merges)")
    axes.set_ylabel("bytes of text per token")
    axes.set_title(f"BPE's compression on {curve['bytes']:,} bytes of held-out text: "
                   "no merge makes it longer", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


# ---------------------------------------------------------------------------------- lesson 04


def flash_trace(q: torch.Tensor, k: torch.Tensor, query: int, block_size: int) -> dict:
    """FlashAttention's running quantities for one query, tile by tile (causal).

    q, k: (T, D), one head. The scores ``s_j = q[query] . k[j] / sqrt(D)`` of the keys after
    the query are -inf. After tile i (keys ``tiles[i]``): ``m[i]`` the largest score seen
    so far, ``l[i]`` the sum of ``exp(s_j - m[i])`` over the keys seen so far, and
    ``rescale[i] = exp(m[i-1] - m[i])``, the factor the old sum was multiplied by when the
    maximum grew. Tiles wholly after the query change nothing (``skipped``); real kernels do
    not visit them. ``lse = m + log l`` is the log-sum-exp of all scores. In float64."""
    T, D = k.shape
    if not 0 <= query < T:
        raise ValueError(f"flash_trace: query {query} is not a position of 0..{T - 1}")
    scores = (k.double() @ q[query].double()) / math.sqrt(D)  # (T,)
    scores[query + 1:] = float("-inf")
    m, total = float("-inf"), 0.0  # the lesson's m and l
    trace = {"scores": scores, "tiles": [], "m": [], "l": [], "rescale": [], "skipped": []}
    for start in range(0, T, block_size):
        end = min(start + block_size, T)
        tile = scores[start:end]
        skipped = start > query
        if not skipped:
            m_new = max(m, float(tile.max()))
            rescale = math.exp(m - m_new)  # exp(-inf) = 0 in the first tile
            total = total * rescale + float(torch.exp(tile - m_new).sum())
            m = m_new
        trace["tiles"].append((start, end))
        trace["m"].append(m)
        trace["l"].append(total)
        trace["rescale"].append(1.0 if skipped else rescale)
        trace["skipped"].append(skipped)
    trace["lse"] = m + math.log(total)
    return trace


def plot_flash_trace(trace: dict):
    """Lesson 04's figure: top, the query's score for every key, the tiles shaded, and the
    running max m after each tile; bottom, the running sum l after each tile (relative to
    that tile's m), with the rescale factor where the maximum grew."""
    figure, (top, bottom) = _figure(10, 5.6, rows=2, sharex=True)
    scores, tiles = trace["scores"], trace["tiles"]
    seen = torch.isfinite(scores)
    positions = torch.arange(len(scores))
    for i, (start, end) in enumerate(tiles):
        shade = "lightgray" if trace["skipped"][i] else ("tab:blue" if i % 2 else "tab:green")
        for axes in (top, bottom):
            axes.axvspan(start - 0.5, end - 0.5, color=shade, alpha=0.12, linewidth=0)
        label = "skipped: after the query" if trace["skipped"][i] else f"tile {i}"
        top.text((start + end - 1) / 2, 1.0, label, transform=top.get_xaxis_transform(),
                 ha="center", va="bottom", fontsize=8)
        if not trace["skipped"][i]:
            top.hlines(trace["m"][i], start - 0.5, end - 0.5, color="tab:red", linewidth=2,
                       label="m: running max after the tile" if i == 0 else None)
            bottom.bar((start + end - 1) / 2, trace["l"][i], width=(end - start) * 0.8,
                       color="tab:purple", alpha=0.6,
                       label="l: running sum after the tile" if i == 0 else None)
            if 0 < trace["rescale"][i] < 1:
                bottom.text((start + end - 1) / 2, trace["l"][i], f"old l x {trace['rescale'][i]:.2f}",
                            ha="center", va="bottom", fontsize=8)
    bottom.set_ylim(0, 1.3 * max(trace["l"]))  # room for the labels above the bars
    top.plot(positions[seen], scores[seen], "k.", label="score q . k_j / sqrt(D)")
    top.set_ylabel("score")
    top.legend(fontsize=8, loc="lower left")
    bottom.set_ylabel("l = sum exp(s_j - m)")
    bottom.set_xlabel("key position j")
    bottom.legend(fontsize=8, loc="upper right")
    query = int(seen.sum()) - 1
    figure.suptitle(f"One query (position {query}) over the key tiles: lse = m + log l = "
                    f"{trace['lse']:.3f}")
    return figure


# ---------------------------------------------------------------------------------- lesson 05


def residual_stream(model, idx: torch.Tensor) -> dict:
    """The residual stream of a GPT (blocks named ``blocks``, each with ``attn`` and ``mlp``)
    on the ids ``idx``, measured with forward hooks: its RMS after the embeddings and after
    each branch is added (``stream``), and the RMS of what each branch adds (``branch``).
    ``identity_error``: the largest |block output - (input + attn output + mlp output)|, 0
    up to rounding for a pre-LN block, whose stream only ever has the branches added to it."""
    records: dict = {}
    hooks = []
    for i, block in enumerate(model.blocks):
        def keep(name):
            return lambda module, args, output: records.__setitem__(name, (args[0], output))
        hooks += [block.register_forward_hook(keep(("block", i))),
                  block.attn.register_forward_hook(keep(("attn", i))),
                  block.mlp.register_forward_hook(keep(("mlp", i)))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(idx)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()

    def rms(x):
        return float(x.double().pow(2).mean().sqrt())

    stream, branch, labels, error = [rms(records[("block", 0)][0])], [], ["embeddings"], 0.0
    for i in range(len(model.blocks)):
        x_in, x_out = records[("block", i)]
        added_attn, added_mlp = records[("attn", i)][1], records[("mlp", i)][1]
        error = max(error, float((x_out - (x_in + added_attn + added_mlp)).abs().max()))
        stream += [rms(x_in + added_attn), rms(x_out)]
        branch += [rms(added_attn), rms(added_mlp)]
        labels += [f"+ attn {i}", f"+ mlp {i}"]
    return {"stream": stream, "branch": branch, "labels": labels, "identity_error": error}


def _box(axes, x, y, text, color):
    axes.text(x, y, text, ha="center", va="center", fontsize=9,
              bbox=dict(boxstyle="round,pad=0.4", facecolor=color, alpha=0.35))


def _arrow(axes, start, end, **options):
    axes.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", **options))


def plot_residual_stream(measured: dict):
    """Lesson 05's figure. Left: one pre-LN block, the residual stream an identity path with
    the two branches (LayerNorm, then attention or MLP) added to it. Right: ``measured``
    (:func:`residual_stream`): the stream's RMS and each branch's contribution, layer by
    layer."""
    figure, (left, right) = _figure(12, 4.8, columns=2, width_ratios=[1, 1.5])
    left.set_xlim(0, 4)
    left.set_ylim(0, 10)
    left.axis("off")
    _arrow(left, (1, 0.3), (1, 9.7), color="black", linewidth=2.5)
    left.text(0.9, 0.3, "x in", ha="right", va="bottom")
    left.text(0.9, 9.7, "x out", ha="right", va="top")
    left.text(0.55, 5, "residual stream", rotation=90, ha="center", va="center", fontsize=9)
    for y0, norm, sublayer, color in ((1.2, "ln1", "attention\n(causal)", "tab:blue"),
                                      (5.4, "ln2", "MLP", "tab:orange")):
        _arrow(left, (1, y0), (2.2, y0 + 0.8), color=color)
        _box(left, 2.5, y0 + 1.0, norm, "lightgray")
        _arrow(left, (2.5, y0 + 1.4), (2.5, y0 + 2.0), color=color)
        _box(left, 2.5, y0 + 2.5, sublayer, color)
        _arrow(left, (2.5, y0 + 3.0), (1.15, y0 + 3.3), color=color)
        left.text(1, y0 + 3.3, "+", ha="center", va="center", fontsize=14,
                  bbox=dict(boxstyle="circle,pad=0.1", facecolor="white"))
    left.set_title("x = x + attn(ln1(x)); x = x + mlp(ln2(x))", fontsize=10)

    steps = range(len(measured["stream"]))
    right.plot(steps, measured["stream"], "ko-", label="residual stream (RMS)")
    right.bar([s + 1 for s in range(len(measured["branch"]))], measured["branch"], width=0.5,
              color=["tab:blue", "tab:orange"] * (len(measured["branch"]) // 2),
              alpha=0.6, label="what the branch adds (RMS): attn blue, MLP orange")
    right.set_xticks(list(steps), measured["labels"], rotation=45, ha="right", fontsize=8)
    right.set_ylabel("root mean square")
    right.set_title(f"Measured on a fresh model: block out - (in + attn + mlp) at most "
                    f"{measured['identity_error']:.1e}", fontsize=10)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    return figure


# ---------------------------------------------------------------------------------- lesson 07


def kv_cache_profile(model, lengths, repeat: int = 1) -> dict:
    """What generation with and without the KV cache costs, for each total length in
    ``lengths`` (a one-token prompt, then length - 1 new tokens, greedy): tokens per second
    (the median of ``repeat`` timings after a warm-up) and the bytes of keys and values the cache holds once
    filled to that length, read from the model's own caches (``filled_bytes``), beside what
    it allocates up front for the whole context (``allocated_bytes``). ``layers``: each
    layer's key and value buffer shape."""

    config = model.config
    device = next(model.parameters()).device
    prompt = torch.zeros(1, 1, dtype=torch.long, device=device)
    profile = {"lengths": list(lengths), "cached": [], "uncached": [], "filled_bytes": [],
               "allocated_bytes": None, "layers": []}
    for length in profile["lengths"]:
        if not 2 <= length <= config.context_length:
            raise ValueError(f"kv_cache_profile: length {length} is not in 2..context_length "
                             f"= {config.context_length}")
        for use_cache, key in ((True, "cached"), (False, "uncached")):
            def write(use_cache=use_cache, new=length - 1):
                generate(model, prompt, new, temperature=0, use_cache=use_cache,
                         show_progress=False)
            seconds = time_fn(write, device=str(device), warmup=1, repeat=repeat)
            profile[key].append((length - 1) / seconds)
        caches = model.new_kv_cache(1)
        with torch.no_grad():
            model(torch.zeros(1, length, dtype=torch.long, device=device), kv_cache=caches)
        profile["filled_bytes"].append(sum(
            (c.keys[:, :, :c.length].nbytes + c.values[:, :, :c.length].nbytes) for c in caches))
        profile["allocated_bytes"] = sum(c.keys.nbytes + c.values.nbytes for c in caches)
        profile["layers"] = [tuple(c.keys.shape) for c in caches]
    return profile


def plot_kv_cache(profile: dict):
    """Lesson 07's figure. Left: what the cache stores, per layer: a key and a value buffer
    (batch, heads, positions, head size), filled up to the current length. Middle: tokens
    per second against length, with and without the cache. Right: the cache's memory
    against length."""
    figure, (left, middle, right) = _figure(14, 4.2, columns=3, width_ratios=[1.1, 1, 1])
    layers, lengths = profile["layers"], profile["lengths"]
    context = layers[0][2]
    shown = lengths[len(lengths) // 2]
    ticks, names = [], []
    for i in range(len(layers)):
        for j, (name, color) in enumerate((("K", "tab:blue"), ("V", "tab:orange"))):
            y = (len(layers) - 1 - i) * 2.4 + j * 1.1
            left.barh(y, context, height=0.9, color="none", edgecolor="gray")
            left.barh(y, shown, height=0.9, color=color, alpha=0.5)
            ticks.append(y)
            names.append(f"layer {i}: {'keys' if name == 'K' else 'values'}")
    left.set_yticks(ticks, names, fontsize=8)
    left.set_xlim(0, context)
    left.set_xlabel("positions (the buffer holds the whole context)")
    batch, heads, _, head_dim = layers[0]
    left.set_title(f"per layer: K and V, each ({batch}, {heads}, {context}, {head_dim});\n"
                   f"filled to {shown} of {context} positions", fontsize=9)
    middle.plot(lengths, profile["cached"], "o-", label="with KV cache")
    middle.plot(lengths, profile["uncached"], "s--", label="without: the whole sequence again")
    middle.set_xlabel("tokens written (prompt of 1 + new)")
    middle.set_ylabel("tokens per second")
    middle.set_title("generation speed (measured)", fontsize=9)
    middle.grid(alpha=0.3)
    middle.legend(fontsize=8)
    kib = [b / 1024 for b in profile["filled_bytes"]]
    right.plot(lengths, kib, "o-", label="keys and values held")
    right.axhline(profile["allocated_bytes"] / 1024, color="gray", linestyle=":",
                  label="allocated up front (whole context)")
    right.set_xlabel("tokens written")
    right.set_ylabel("KiB")
    right.set_title("cache memory (measured): per token,\n2 x layers x heads x head size x 4 bytes",
                    fontsize=9)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    return figure


__all__ = ["bytes_per_token_curve", "plot_bytes_per_token", "flash_trace", "plot_flash_trace",
           "residual_stream", "plot_residual_stream", "kv_cache_profile", "plot_kv_cache"]
