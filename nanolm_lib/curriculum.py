"""The course's contract: which lesson grades which names, and where their reference lives.

This table is the one list of graded functions. Everything else reads it: the README's course
table (checked by a test), ``tests/test_lessons.py``, the release (fixtures and ``--check``),
the staged student kit (``python -m autograde student-kit OUT --released NN``), the grader's
copy scan, and the lessons' set-up cells (:func:`nanolm_lib.staging.use_earlier_work`).

``GRADED[lesson]`` maps each graded name, in the order the notebook asks for them, to the
``nanolm_lib`` module that holds its reference.
"""

from __future__ import annotations

GRADED: dict[str, dict[str, str]] = {
    "00_setup": {},
    "01_tokenizer": {"get_pair_counts": "tokenizer", "merge_pair": "tokenizer",
                     "train_bpe": "tokenizer", "encode": "tokenizer", "decode": "tokenizer"},
    "02_data": {"pack_stories": "data", "get_batch": "data"},
    "03_attention": {"causal_mask": "attention", "attention_weights": "attention",
                     "attention": "attention", "split_heads": "attention",
                     "merge_heads": "attention", "MultiHeadAttention": "attention"},
    "04_fused_attention": {"fused_attention": "attention", "flash_attention": "attention"},
    "05_gpt": {"LayerNorm": "model", "MLP": "model", "Block": "model", "GPT": "model",
               "count_parameters": "model"},
    "06_training": {"cross_entropy_loss": "train", "perplexity": "train", "lr_at": "train",
                    "train_step": "train", "evaluate": "train"},
    "07_sampling": {"top_k_filter": "sampling", "sample_next_token": "sampling",
                    "generate": "sampling"},
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


def lesson_of(module: str, name: str) -> str | None:
    """The lesson that grades ``nanolm_lib.<module>.<name>``, or None when it is not graded."""
    for lesson, names in GRADED.items():
        if names.get(name) == module:
            return lesson
    return None


def released_lessons(released: str) -> list[str]:
    """The lessons whose references are released at stage ``released`` ("all" or "NN")."""
    if released == "all":
        return list(LESSONS)
    if not (len(released) == 2 and released.isdigit()):
        raise ValueError(f"--released {released!r}: use a two-digit lesson number such as 02, "
                         "or all")
    return [lesson for lesson in LESSONS if lesson_number(lesson) <= int(released)]
