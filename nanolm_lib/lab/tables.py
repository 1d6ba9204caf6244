"""Plain-text tables, for a terminal or a notebook: what a prepared corpus holds and what a
run reached, beside the course's reference run.

    format_table     aligned columns from a list of dicts (benchmarks, the GPU check, the grader)
    corpus_summary   stories, bytes and tokens per split, and the epoch arithmetic of a preset
    results_table    a run's evaluations, with the reference run's figures beside them
"""

from __future__ import annotations

from nanolm_lib.lab.presets import PRESETS

# The reference run's reported figures: epoch -> train loss, train ppl, valid loss, valid ppl.
REFERENCE = {1: (2.18, 8.84, 2.1062, 8.22), 2: (2.01, 7.49, 1.9443, 6.99)}


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A plain aligned text table of ``rows`` (dicts); floats get 4 significant digits."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    body = [[cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in body]
    return "\n".join(lines)


def corpus_summary(corpus, batch_size: int | None = None, context_length: int | None = None,
                   run: str = "the seed run") -> str:
    """Stories, bytes, tokens and compression per split, and the epoch arithmetic of ``run``
    (by default the reference recipe's batch and context, ``seed-3090``)."""

    reference = PRESETS["seed-3090"]
    batch_size = batch_size or reference.train.batch_size
    context_length = context_length or reference.model.context_length
    rows = []
    for split in ("train", "validation"):
        meta = corpus.meta[split]
        rows.append({"split": split, "stories": f"{meta['stories']:,}",
                     "bytes": f"{meta['bytes']:,}", "tokens": f"{meta['tokens']:,}",
                     "tokens/story": meta["tokens"] / max(1, meta["stories"]),
                     "bytes/token": corpus.bytes_per_token(split)})
    train_tokens = corpus.meta["train"]["tokens"]
    per_step = batch_size * context_length
    steps = train_tokens // per_step
    recipe = reference.train
    lines = [
        f"corpus: {corpus.path}",
        f"source: {corpus.meta.get('source', '?')}; tokenizer: {corpus.tokenizer.vocab_size:,} "
        "tokens, trained on the train split",
        format_table(rows),
        "",
        f"one epoch of {run} at batch {batch_size} x context {context_length} = "
        f"{per_step:,} tokens per step: {train_tokens:,} / {per_step:,} = {steps:,} steps "
        f"(the reference run: {recipe.steps_per_epoch:,} steps per epoch on the full "
        f"dataset, {recipe.epochs:g} epochs = {reference_tokens():,} tokens)",
    ]
    return "\n".join(lines)


def reference_tokens() -> int:
    """Tokens the reference run reads: steps x batch x context of the ``seed-3090`` preset."""

    reference = PRESETS["seed-3090"]
    return (reference.train.max_steps * reference.train.batch_size
            * reference.model.context_length)


def results_table(history: list[dict], reference: bool = False) -> str:
    """The evaluations of a run as the reference README's table (epoch, train and valid loss
    and perplexity), with the reference figures beside them when ``reference``."""
    rows = []
    for entry in (r for r in history if r.get("split") == "validation"):
        epoch = entry.get("epoch")
        row = {"epoch": f"{epoch:g}" if epoch is not None else "-", "step": f"{entry['step']:,}",
               "train loss": f"{entry.get('train_loss', float('nan')):.4f}",
               "train ppl": f"{entry.get('train_perplexity', float('nan')):.2f}",
               "valid loss": f"{entry['loss']:.4f}", "valid ppl": f"{entry['perplexity']:.2f}"}
        if "bpb" in entry:
            row["bits/byte"] = f"{entry['bpb']:.3f}"
        if reference and epoch in REFERENCE:
            ref = REFERENCE[int(epoch)]
            row.update({"ref train": f"{ref[0]} ({ref[1]})", "ref valid": f"{ref[2]} ({ref[3]})"})
        rows.append(row)
    if not rows:
        return "(no evaluation yet)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return format_table(rows, columns)
