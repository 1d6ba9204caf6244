"""nanolm_lib: the reference implementation of every piece the NanoLM course builds.

Its packages serve three audiences, one folder each:

* ``nanolm_lib.course``: what the lessons teach, one module per chapter:
    tokenizer  (lesson 01)  byte-level BPE from scratch, and a fast one over HF `tokenizers`
    data       (lesson 02)  loading TinyStories, packing tokens, random batches
    bigram     (lesson 02)  the counting model the GPT is measured against
    attention  (lessons 03-04)  naive, fused and flash attention, multi-head attention
    model      (lesson 05)  the GPT
    train      (lesson 06)  loss, schedule, optimiser, one step, evaluation
    sampling   (lesson 07)  top-k / top-p sampling, generation with a KV cache
    modern     (lesson 08)  RMSNorm, RoPE, SwiGLU, grouped-query attention, ModernGPT
  with the lessons' figures and widgets (diagrams, plotting, playground, numerics) and the
  project's story generator (stories);
* ``nanolm_lib.lab``: what the lab runs: presets (the recipes), trainer (the loop that runs
  lesson 06's pieces for hours), checkpoint, runs, cli (the ``nanolm`` command), demo,
  evaluate, ablation, benchmarks, profiling, compiling, gpu_check, tables;
* ``nanolm_lib.grading``: what runs in the student's kernel and the grader's runs for grading:
  curriculum (the contract), checks (the test cells' comparisons), record (a hidden test's
  line), question_base and questions (the hidden cases), hidden_cases (the grader's run),
  staging (a staged kit's stand-ins);

and two modules all three share: ``utils`` and ``errors``.
"""

# The course imports only the course and the shared modules, so a lesson's reference reads
# alone; the lab and the grading may import the course; the lab never imports the grading
# (a training run needs no grader). tests/unit/test_import_graph.py holds these rules; the
# grader (autograde/) may import all of them.
SHARED = ("utils", "errors")
MAY_IMPORT = {
    "course": ("course", "shared"),
    "lab": ("lab", "course", "shared"),
    "grading": ("grading", "lab", "course", "shared"),  # staging stands in for lab helpers
    "shared": ("shared",),
}

__version__ = "0.1.0"


def load_model(path, device="cpu"):
    """Load ``(model, tokenizer)`` from a checkpoint file or a run folder."""
    # here, not at the top: `import nanolm_lib.grading.checks` in every test cell loads the
    # package, and must not load the lab
    from nanolm_lib.lab.checkpoint import load_model as _load_model

    return _load_model(path, device=device)
