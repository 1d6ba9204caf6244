"""What the notebooks' test cells use to compare a student's code with the reference.

A test cell of lesson 03 reads like this::

    from nanolm_lib.grading.checks import check_close, fixture
    case = fixture("03_attention", "attention_weights")  # stored at release
    check_close(attention_weights(case["q"], case["k"]), case["no mask"],
                "attention_weights(q, k)")
    print("attention_weights: visible tests passed")

and its hidden part (between nbgrader's hidden-test markers, left out of the student's copy) is
``record("03_attention", "attention_weights", globals())``.

Visible tests (the ones a student's kit runs) never load the reference: they compare with
the reference's outputs on fixed inputs, computed when the lessons are released and stored
next to each lesson (``lessons/NN_slug/fixtures/*.pt``, read by :func:`fixture`). Hidden tests
record the student's outputs on the grader's inputs and the grader compares them with the
reference, outside the kernel (:mod:`nanolm_lib.grading.record`); the grading kernel's
``nanolm_lib`` holds no reference of the lesson it grades.

Three rules shape this module:

* **The reference is loaded fresh.** :func:`reference` executes the module's source file into a
  new module object that is never registered in ``sys.modules``. A submission that replaces
  ``nanolm_lib.course.attention.causal_mask`` with its own function (so that "the reference" agrees
  with it) changes nothing the test cells compare against.
* **A failure says what differs**: the shapes found and expected, the first mismatching
  position, the largest error, and the seed that reproduces the inputs.
* **Nothing goes to stderr** on success: nbgrader scores a test cell that writes to stderr 0.
* **The student reads the message first.** The comparison functions set ``__tracebackhide__``
  (IPython and pytest leave such frames out), and in an IPython kernel a failure is shown
  as its ``CheckFailed: ... Look at: ...`` message on top, then the test cell's own lines,
  never this module's insides.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F

from nanolm_lib.utils import kit_stage

_LIBRARY_DIR = Path(__file__).resolve().parents[1]   # nanolm_lib/
_COURSE_DIR = _LIBRARY_DIR / "course"
_FRESH_PREFIX = "_nanolm_reference_"
_fresh_counter = itertools.count()


class CheckFailed(AssertionError):
    """A test cell's comparison failed; the message says what differs."""


def _without_checker_frames(tb):
    """``tb`` cut before its first frame in this file: the checker's insides."""
    head, previous = tb, None
    while tb is not None and tb.tb_frame.f_code.co_filename != __file__:
        previous, tb = tb, tb.tb_next
    if previous is not None:
        previous.tb_next = None
    return head


def _show_check_failure(shell, etype, value, tb, tb_offset=None):
    # IPython prints the innermost frame even when it sets __tracebackhide__, and the message
    # last; a student should first read what differs, then which line of the test cell found it.
    lines = shell.InteractiveTB.structured_traceback(
        etype, value, _without_checker_frames(tb), tb_offset=tb_offset)
    shell._showtraceback(etype, value, lines[-1:] + lines[:-1])


def _show_failures_first() -> None:
    """Register :func:`_show_check_failure` with the running IPython shell, if any."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and CheckFailed not in shell.custom_exceptions:
        shell.set_custom_exc((CheckFailed,), _show_check_failure)


_show_failures_first()


# --------------------------------------------------------------------------- the reference
def reference(module: str) -> ModuleType:
    """A freshly loaded, private copy of ``nanolm_lib.course.<module>``.

    The copy is executed from the package's source file on every call, so patches that a
    submission applied to the imported ``nanolm_lib`` modules do not reach it. Its own imports
    of the course and the shared modules (``from nanolm_lib.course.attention import ...``, the
    only ones a course module may import) are loaded fresh too.
    """
    path = _COURSE_DIR / f"{module}.py"
    if not path.is_file():
        raise ValueError(f"reference({module!r}): no module {path.name} in {_COURSE_DIR}")
    return _load_fresh(f"nanolm_lib.course.{module}", {})


@functools.cache
def _fresh_sources() -> dict[str, Path]:
    """Dotted name -> source file of every module a fresh copy may import fresh (read once: the
    package's files do not change while it runs)."""
    course = {f"nanolm_lib.course.{p.stem}": p for p in _COURSE_DIR.glob("*.py")
              if p.stem != "__init__"}
    shared = {f"nanolm_lib.{p.stem}": p for p in _LIBRARY_DIR.glob("*.py")
              if p.stem != "__init__"}
    return course | shared


def _load_fresh(dotted: str, loaded: dict[str, ModuleType]) -> ModuleType:
    sources = _fresh_sources()
    # A unique name per copy: dataclasses (and typing) look their module up in sys.modules
    # while the class body is processed, so the copy is registered while it executes.
    fresh_name = f"{_FRESH_PREFIX}{dotted.rpartition('.')[2]}_{next(_fresh_counter)}"
    spec = importlib.util.spec_from_file_location(fresh_name, sources[dotted])
    fresh = importlib.util.module_from_spec(spec)
    loaded[dotted] = fresh
    # While the copy executes, `import nanolm_lib.course.x` inside it must resolve to fresh
    # copies as well: swap them into sys.modules for the duration, then put the originals back.
    saved = {name: mod for name, mod in sys.modules.items() if name.startswith("nanolm_lib.")}
    try:
        for name in sources:
            if name != dotted and name not in loaded:
                sys.modules[name] = _LazyFresh(name, sources[name], loaded)
        sys.modules[fresh_name] = fresh
        spec.loader.exec_module(fresh)
    finally:
        sys.modules.pop(fresh_name, None)
        for name in list(sys.modules):
            if name.startswith("nanolm_lib.") and name not in saved:
                del sys.modules[name]
        sys.modules.update(saved)
    return fresh


class _LazyFresh(ModuleType):
    """Stands in for a course or shared module while a fresh copy executes; loads it on first
    use."""

    def __init__(self, dotted: str, path: Path, loaded: dict[str, ModuleType]):
        super().__init__(dotted)
        self._fresh_args = (dotted, loaded)
        # Set here, so that a walk over sys.modules that asks each module for its file (as
        # inspect.getmodule does when torch registers a custom op) loads no sibling: one
        # loaded in the middle of another's import could find it half-built.
        self.__file__ = str(path)

    def __getattr__(self, attribute):
        dotted, loaded = self.__dict__["_fresh_args"]
        if dotted not in loaded:
            _load_fresh(dotted, loaded)
        return getattr(loaded[dotted], attribute)


# --------------------------------------------------------------------------- fixtures
def fixture_path(lesson: str, name: str) -> Path:
    """Where the fixture ``name`` of ``lesson`` lives: the course's own ``lessons/`` next to
    this package first (so the grader always reads the released copy), then ``fixtures/`` in
    the current folder (a lesson running from its own folder)."""
    candidates = [_LIBRARY_DIR.parent / "lessons" / lesson / "fixtures" / f"{name}.pt",
                  Path.cwd() / "fixtures" / f"{name}.pt"]
    for path in candidates:
        if path.is_file():
            return path
    stage = kit_stage()
    if stage and lesson not in stage.get("lessons", [lesson]):
        raise FileNotFoundError(
            f"lesson {lesson[:2]}'s visible tests come with the kit of week {lesson[:2]} (this "
            f"kit is week {stage.get('week')}): read the lesson ahead now, run its tests then")
    raise FileNotFoundError(f"fixture {name!r} of lesson {lesson}: none of "
                            f"{', '.join(str(p) for p in candidates)} exists (the release "
                            "writes them: python -m autograde release)")


def fixture(lesson: str, name: str) -> dict:
    """The fixed inputs and the reference's outputs of one visible test, loaded weights-only
    (tensors, numbers, strings, lists and dicts; no code)."""
    return torch.load(fixture_path(lesson, name), map_location="cpu", weights_only=True)


class BigramLM(torch.nn.Module):
    """The smallest language model with the course's interface, for visible tests that must not
    depend on lesson 05's GPT: ``model(x, targets=None)`` with x (B, T) token ids ->
    ``(logits (B, T, V), loss or None)``, the loss being the mean cross entropy against
    ``targets`` (B, T) as GPT's. Each token's logits depend on that token only (an embedding,
    dropout, a linear)."""

    def __init__(self, vocab_size: int, d_model: int = 16, dropout: float = 0.0):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, d_model)
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(d_model, vocab_size)

    def forward(self, x: torch.Tensor, targets=None):
        logits = self.head(self.dropout(self.embedding(x)))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return logits, loss


@contextlib.contextmanager
def use_reference(namespace: dict, ref: ModuleType, *names: str):
    """Temporarily replace ``names`` in a notebook's ``namespace`` with the reference's.

    A question's test isolates its own function: ``MultiHeadAttention`` calls the student's
    ``split_heads``, so its test runs with the reference ``split_heads`` swapped in, and a bug
    in ``split_heads`` costs one question, not two.
    """
    missing = object()
    saved = {name: namespace.get(name, missing) for name in names}
    try:
        for name in names:
            namespace[name] = getattr(ref, name)
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


@contextlib.contextmanager
def use_released(namespace: dict, module: str, *names: str):
    """:func:`use_reference` for the ``names`` whose reference this installation ships; the
    others stay the student's own.

    Visible tests isolate a question this way: where they are graded, every reference is
    there and a bug in ``split_heads`` costs one question. In a staged student kit the running
    lesson's own references are not released yet, so there the test runs with the student's
    helpers (and says so in its hint).
    """
    ref = reference(module)
    released = [name for name in names
                if getattr(getattr(ref, name, None), "__nanolm_staged__", None) is None]
    with use_reference(namespace, ref, *released):
        yield released


def fresh_generator(seed: int | None = None) -> tuple[torch.Generator, int]:
    """A ``torch.Generator`` seeded afresh on each run (or with ``seed``), and the seed.

    Fresh inputs on every run keep a hard-coded answer from passing; the seed goes into every
    failure message so that the failing inputs can be rebuilt.
    """
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    return torch.Generator().manual_seed(seed), seed


# --------------------------------------------------------------------------- comparisons
def _fail(what: str, message: str, seed: int | None, hint: str | None) -> None:
    __tracebackhide__ = True  # noqa: F841  (read by IPython and pytest)
    parts = [f"{what}: {message}"]
    if hint:
        parts.append(f"Look at: {hint}")
    if seed is not None:
        parts.append(f"(inputs from seed {seed}: fresh_generator({seed}) rebuilds them)")
    raise CheckFailed("\n".join(parts))


def _index(flat_position: int, shape: Sequence[int]) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat_position % size)
        flat_position //= size
    return tuple(reversed(index))


def check_type(actual, expected_type, what: str, *, seed: int | None = None,
               hint: str | None = None) -> None:
    """Fail unless ``actual`` is an instance of ``expected_type``."""
    __tracebackhide__ = True  # noqa: F841  (read by IPython and pytest)
    if not isinstance(actual, expected_type):
        names = getattr(expected_type, "__name__", str(expected_type))
        _fail(what, f"returned a {type(actual).__name__}, expected a {names}", seed, hint)


def check_shape(actual, expected_shape, what: str, *, seed: int | None = None,
                hint: str | None = None) -> None:
    """Fail unless the tensor ``actual`` has ``expected_shape``."""
    __tracebackhide__ = True  # noqa: F841  (read by IPython and pytest)
    check_type(actual, torch.Tensor, what, seed=seed, hint=hint)
    if tuple(actual.shape) != tuple(expected_shape):
        _fail(what, f"shape {tuple(actual.shape)}, expected {tuple(expected_shape)}", seed, hint)


def check_close(actual, expected, what: str, *, rtol: float = 1e-5, atol: float = 1e-6,
                seed: int | None = None, hint: str | None = None) -> None:
    """Fail unless two tensors have the same shape and a small relative error
    (:func:`difference`'s rule for floats); boolean and integer tensors must be equal."""
    __tracebackhide__ = True  # noqa: F841  (read by IPython and pytest)
    if not isinstance(expected, torch.Tensor):
        raise TypeError("check_close compares tensors; use check_equal for other values")
    check_shape(actual, expected.shape, what, seed=seed, hint=hint)
    message = difference(actual, expected, rtol, atol)
    if message:
        _fail(what, message, seed, hint)


def check_equal(actual, expected, what: str, *, seed: int | None = None,
                hint: str | None = None) -> None:
    """Fail unless ``actual == expected`` exactly (tensors, arrays, lists, dicts, scalars);
    the failure names the first differing position or key (:func:`difference`)."""
    __tracebackhide__ = True  # noqa: F841  (read by IPython and pytest)
    message = difference(actual, expected)
    if message:
        _fail(what, message, seed, hint)


def difference(actual, expected, rtol: float = 0.0, atol: float = 0.0) -> str | None:
    """What differs between ``actual`` and ``expected``, None when nothing does: the one
    comparison behind the visible tests (:func:`check_equal`, :func:`check_close`) and the
    grader's hidden cases (:meth:`nanolm_lib.grading.question_base.Question.judge`).

    Dicts and lists are walked, and the message names the first key or position that
    differs. Floats, as tensors or numbers, are equal within ``rtol`` (relative error over the
    whole tensor, ``||actual - expected|| / ||expected||``) or ``atol`` (its absolute norm,
    when ``expected`` is ~0); with both 0, and for everything else, equality is exact. A
    tensor's kind (bool, integer, float) must match; its width may differ.
    """
    if isinstance(expected, torch.Tensor) or type(expected).__module__ == "numpy":
        return _tensor_difference(actual, expected, rtol, atol)
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"returned a {type(actual).__name__}, expected a mapping"
        missing = [key for key in expected if key not in actual]
        extra = [key for key in actual if key not in expected]
        if missing or extra:
            return f"keys differ: missing {missing[:5]}, unexpected {extra[:5]}"
        found = ((key, difference(actual[key], expected[key], rtol, atol)) for key in expected)
        return next((f"at key {key!r}: {text}" for key, text in found if text), None)
    if isinstance(expected, (list, tuple)):
        return _sequence_difference(actual, expected, rtol, atol)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                  for v in (actual, expected))
    if numbers and (rtol or atol) and math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol):
        return None
    if actual != expected or not (numbers or type(actual) is type(expected)):
        return f"got {_short(actual)}, expected {_short(expected)}"
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _sequence_difference(actual, expected, rtol: float, atol: float) -> str | None:
    if not isinstance(actual, (list, tuple)):
        return f"returned a {type(actual).__name__}, expected a list"
    for position, (got, want) in enumerate(zip(actual, expected)):
        text = difference(got, want, rtol, atol)
        if text:
            return (f"first difference at position {position}: {text} (lengths {len(actual)} "
                    f"and {len(expected)})")
    if len(actual) != len(expected):
        return (f"length {len(actual)}, expected {len(expected)} (equal up to position "
                f"{min(len(actual), len(expected))})")
    return None


def _tensor_difference(actual, expected, rtol: float, atol: float) -> str | None:
    expected_t = torch.as_tensor(expected)
    try:
        actual_t = torch.as_tensor(actual)
    except (TypeError, ValueError, RuntimeError):
        return f"returned a {type(actual).__name__}, expected a tensor"
    if tuple(actual_t.shape) != tuple(expected_t.shape):
        return f"shape {tuple(actual_t.shape)}, expected {tuple(expected_t.shape)}"
    kind = (actual_t.dtype == torch.bool, actual_t.is_floating_point())
    if kind != (expected_t.dtype == torch.bool, expected_t.is_floating_point()):
        return f"dtype {actual_t.dtype}, expected {expected_t.dtype}"
    if expected_t.is_floating_point() and (rtol or atol):
        return _close_difference(actual_t, expected_t, rtol, atol)
    differ = (actual_t != expected_t).flatten()
    if not differ.any():
        return None
    first = int(differ.nonzero()[0])
    return (f"{int(differ.sum())} of {differ.numel()} entries differ; first at index "
            f"{_index(first, expected_t.shape)}: got {actual_t.flatten()[first].item()!r}, "
            f"expected {expected_t.flatten()[first].item()!r}")


def _close_difference(actual, expected, rtol: float, atol: float) -> str | None:
    actual_f = actual.detach().to(torch.float64).cpu()
    expected_f = expected.detach().to(torch.float64).cpu()
    if not torch.isfinite(actual_f).all() and torch.isfinite(expected_f).all():
        position = int((~torch.isfinite(actual_f)).flatten().nonzero()[0])
        return (f"non-finite value {actual_f.flatten()[position].item()} at index "
                f"{_index(position, expected.shape)}")
    # -inf == -inf counts as equal (masked logits); compare the finite parts by norm.
    both_inf = torch.isinf(actual_f) & torch.isinf(expected_f) & (actual_f == expected_f)
    gap = torch.where(both_inf, 0.0, actual_f - expected_f).abs()
    finite_expected = torch.where(torch.isinf(expected_f), 0.0, expected_f)
    reference_norm = finite_expected.norm().item()
    error_norm = gap.norm().item()
    if not (math.isnan(error_norm) or error_norm > max(rtol * reference_norm, atol)):
        return None
    flat = gap.flatten()
    bad = (flat > (atol + rtol * finite_expected.abs()).flatten()) | flat.isnan()
    first = int(bad.nonzero()[0]) if bad.any() else int(flat.argmax())
    worst = int(torch.nan_to_num(flat, nan=math.inf).argmax())
    relative = error_norm / reference_norm if reference_norm else math.inf
    return (f"values differ (relative error {relative:.3g} > {rtol:g}). First mismatch at "
            f"index {_index(first, expected.shape)}: got {actual_f.flatten()[first].item():.6g}, "
            f"expected {expected_f.flatten()[first].item():.6g}. Largest error "
            f"{flat[worst].item():.3g} at index {_index(worst, expected.shape)}.")


def check(condition: bool, what: str, message: str, *, seed: int | None = None,
          hint: str | None = None) -> None:
    """Fail with ``message`` unless ``condition`` holds (for properties such as causality)."""
    __tracebackhide__ = True  # noqa: F841  (read by IPython and pytest)
    if not condition:
        _fail(what, message, seed, hint)
