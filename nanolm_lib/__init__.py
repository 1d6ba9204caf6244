"""nanolm_lib: the reference implementation of every piece the NanoLM course builds.

One module per chapter of the course:
    tokenizer  (lesson 01)  byte-level BPE from scratch, and a fast one over HF `tokenizers`
    data       (lesson 02)  loading TinyStories, packing tokens, random batches
    attention  (lessons 03-04)  naive, fused and flash attention, multi-head attention
    model      (lesson 05)  the GPT
    train      (lesson 06)  the training loop and evaluation
    sampling   (lesson 07)  top-k / top-p sampling, generation with a KV cache
and those that serve them:
    presets     the recipes: model and training settings per preset (seed-3090, cpu, smoke)
    checkpoint  run folders, checkpoints, load_model
    curriculum  the contract: lesson -> graded names, signatures, reference module
    errors      UsageError: a user's mistake, told in one line
    stories     the project's own story generator (when no TinyStories is at hand)
    tables      plain-text tables: corpus summary, results against the reference run
    profiling   (lessons 04-05)  op recorders, peak memory, SDPA's backends as torch states them
    runs        (lessons 03, 07)  which trained model a lesson uses; training a preset (CLI, demo)
"""

__version__ = "0.1.0"


def load_model(path, device="cpu"):
    """Load ``(model, tokenizer)`` from a checkpoint file or a run folder."""
    from nanolm_lib.checkpoint import load_model as _load_model

    return _load_model(path, device=device)
