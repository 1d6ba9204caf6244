"""The course's contract: which lesson grades which names, what they take, and where their
reference lives (as CS336's ``tests/adapters.py`` pins what the tests call).

This table is the one list of graded functions. Everything else reads it: the README's course
table (checked by a test), ``tests/integration/test_lessons.py``, the release (fixtures and
``--check``), the staged student kit (``python -m autograde student-kit OUT --week NN``), the grader's
copy scan, and the lessons' set-up cells (:func:`nanolm_lib.grading.staging.use_earlier_work`).

``CONTRACT[lesson]`` maps each graded name, in the order the notebook asks for them, to the
``nanolm_lib`` module that holds its reference and the signature the student writes: a
function's parameters, or a class's constructor and ``forward``. A test checks that each
solution notebook defines exactly this signature and that the reference accepts it (the
reference may take more, keyword arguments with defaults, for the library's own callers).
A class's second part is ``forward`` or, for an optimiser, ``step``. ``GRADED`` and
``SIGNATURES`` are its two views.
"""

from __future__ import annotations

CONTRACT: dict[str, dict[str, tuple[str, str]]] = {
    "00_setup": {},
    "01_tokenizer": {
        "get_pair_counts": ("tokenizer", "(ids)"),
        "merge_pair": ("tokenizer", "(ids, pair, new_id)"),
        "train_bpe": ("tokenizer", "(texts, vocab_size)"),
        "encode": ("tokenizer", "(text, merges)"),
        "decode": ("tokenizer", "(ids, vocab)"),
    },
    "02_data": {
        "pack_stories": ("data", "(tokenizer, stories)"),
        "get_batch": ("data", "(tokens, batch_size, context_length, generator=None, "
                              "device='cpu')"),
    },
    "03_attention": {
        "causal_mask": ("attention", "(T, device=None)"),
        "attention_weights": ("attention", "(q, k, mask=None)"),
        "attention": ("attention", "(q, k, v, mask=None)"),
        "split_heads": ("attention", "(x, n_heads)"),
        "merge_heads": ("attention", "(x)"),
        "MultiHeadAttention": ("attention", "(d_model, n_heads, dropout=0.0); forward(x)"),
    },
    "04_fused_attention": {
        "fused_attention": ("attention", "(q, k, v)"),
        "flash_attention": ("attention", "(q, k, v, block_size=64)"),
    },
    "05_gpt": {
        "LayerNorm": ("model", "(d, eps=1e-05); forward(x)"),
        "MLP": ("model", "(config); forward(x)"),
        "Block": ("model", "(config); forward(x)"),
        "GPT": ("model", "(config); forward(idx, targets=None)"),
        "count_parameters": ("model", "(config, non_embedding=False)"),
    },
    "06_training": {
        "cross_entropy_loss": ("train", "(logits, targets)"),
        "perplexity": ("train", "(loss)"),
        "lr_at": ("train", "(step, config)"),
        "train_step": ("train", "(model, optimizer, x, y, grad_clip=1.0)"),
        "AdamW": ("train", "(params, lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01); "
                           "step(closure=None)"),
        "clip_grad_norm": ("train", "(parameters, max_norm)"),
        "evaluate": ("train", "(model, tokens, context_length, batch_size=32, "
                              "max_batches=None)"),
    },
    "07_sampling": {
        "top_k_filter": ("sampling", "(logits, k)"),
        "sample_next_token": ("sampling", "(logits, temperature=1.0, top_k=None, top_p=None, "
                                          "generator=None)"),
        "generate": ("sampling", "(model, idx, max_new_tokens, temperature=1.0, top_k=None, "
                                 "top_p=None, eos_id=None, generator=None)"),
    },
    "08_modern_gpt": {
        "RMSNorm": ("modern", "(d, eps=1e-05); forward(x)"),
        "rope_cache": ("modern", "(T, head_dim, base=10000.0)"),
        "apply_rope": ("modern", "(x, cos, sin)"),
        "SwiGLU": ("modern", "(d_model, hidden=None); forward(x)"),
        "GroupedQueryAttention": ("modern", "(d_model, n_heads, n_kv_heads); "
                                            "forward(x, cos=None, sin=None)"),
        "ModernBlock": ("modern", "(config); forward(x, cos=None, sin=None)"),
        "ModernGPT": ("modern", "(config); forward(idx, targets=None)"),
    },
}

# lesson -> {graded name: reference module}, in the notebook's order
GRADED: dict[str, dict[str, str]] = {
    lesson: {name: module for name, (module, _) in names.items()}
    for lesson, names in CONTRACT.items()
}
# graded name -> the signature the student writes
SIGNATURES: dict[str, str] = {
    name: signature for names in CONTRACT.values() for name, (_, signature) in names.items()
}

LESSONS = sorted(GRADED)


def lesson_number(lesson: str) -> int:
    """``"05_gpt"`` -> 5."""
    return int(lesson[:2])


def graded_names(lesson: str) -> list[str]:
    """The graded names of ``lesson`` (a folder name such as ``"03_attention"``)."""
    if lesson not in GRADED:
        raise ValueError(f"unknown lesson {lesson!r}; the course has {', '.join(LESSONS)}")
    return list(GRADED[lesson])


def released_lessons(released: str) -> list[str]:
    """The lessons whose references are released at stage ``released`` ("all" or "NN"): up to
    and including NN (the old ``student-kit --released NN``; :func:`week_references` is the
    stage a kit is built at now)."""
    if released == "all":
        return list(LESSONS)
    if not (len(released) == 2 and released.isdigit()):
        raise ValueError(f"--released {released!r}: use a two-digit lesson number such as 02, "
                         "or all")
    return [lesson for lesson in LESSONS if lesson_number(lesson) <= int(released)]


def check_week(week: str) -> str:
    """``week`` as a stage: "all", or the two-digit number of a lesson of the course."""
    if week == "all" or (len(week) == 2 and week.isdigit()
                         and any(lesson_number(lesson) == int(week) for lesson in LESSONS)):
        return week
    raise ValueError(f"--week {week!r}: the two-digit number of the lesson students work on "
                     f"this week ({LESSONS[0][:2]} to {LESSONS[-1][:2]}), or all")


def week_references(week: str) -> list[str]:
    """The lessons whose references a kit of week ``week`` ships: those before lesson
    ``week`` (the lesson of the week is the students' to write), or all."""
    week = check_week(week)
    return list(LESSONS) if week == "all" else [
        lesson for lesson in LESSONS if lesson_number(lesson) < int(week)]


def week_lessons(week: str) -> list[str]:
    """The lessons students have at week ``week``: up to and including lesson ``week``."""
    week = check_week(week)
    return list(LESSONS) if week == "all" else [
        lesson for lesson in LESSONS if lesson_number(lesson) <= int(week)]


def week_of_released(released: str) -> str:
    """The week whose kit ships the references ``--released NN`` shipped: NN + 1, or all."""
    lessons = released_lessons(released)
    later = [lesson for lesson in LESSONS if lesson not in lessons]
    return later[0][:2] if later else "all"
