"""Hidden tests whose outputs the grader, not the student's notebook, produces and judges.

A test cell's hidden part is one line, ``record("03_attention", "causal_mask", globals())``.
What it does depends on where it runs:

* **In the notebook's kernel while it is graded** (the environment variable :data:`ENV_VAR` is
  :data:`DEFERRED`): nothing. That kernel never sees the hidden cases or their records; the
  grader runs them afterwards in a process of its own (:mod:`nanolm_lib.hidden_cases`), on the
  student's solution cells alone, and judges the outputs (``autograde/verdict.py``).
* **Anywhere else** (the repository's own runs of the solution notebooks, the test harness):
  it draws fresh cases, computes the reference's outputs in-process and raises
  :class:`~nanolm_lib.checks.CheckFailed` with the grader's message when they differ, so that a
  maintainer sees the same verdict the grader would give.

Each question (:class:`Question`, registered in :mod:`nanolm_lib.questions`) is three pieces:
``make_cases(gen)`` draws the inputs, ``apply(ns, case)`` runs the implementations in ``ns``
(the solution cells' names in the grader's run, the reference's in the grader) and returns
plain outputs, and :meth:`Question.judge` compares outputs with the reference's. A case that
raised records its error message; the reference's own failure is a grader error, never the
student's. A question with ``data_budget_mb`` has a case (``"limited": True``) that only an
implementation within that much memory can answer: the grader's run sets the limit
(``RLIMIT_DATA``, which the student's code cannot raise) before the solution cells run.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

ENV_VAR = "NANOLM_GRADING"   # set to DEFERRED in the notebook's kernel while it is graded
DEFERRED = "deferred"        # the grader runs the hidden cases itself, apart from the notebook
RECORD_LIMIT_BYTES = 64 << 20  # the grader refuses a larger record
QUESTIONS: dict[str, dict[str, Question]] = {}
ERROR_KEY = "__error__"


@dataclass
class Question:
    """One graded function's hidden cases: inputs, how to run them, how to compare."""

    lesson: str
    name: str
    make_cases: Callable | None = None   # (torch.Generator) -> list of plain case dicts
    apply: Callable | None = None        # (namespace, case) -> plain outputs
    rtol: float = 1e-5
    atol: float = 1e-6
    check: Callable | None = None        # (case, got, expected) -> message or None
    data_budget_mb: int = 0              # memory the grader's run allows the solution cells
    # The question's policy, decided on the student's source by the grader's scan
    # (autograde/scan.py), never measured in the student's process: dotted names (fnmatch
    # patterns) the solution may not use, and those it must call.
    forbids: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()

    def cases(self, function: Callable) -> Callable:
        self.make_cases = function
        return function

    def runs(self, function: Callable) -> Callable:
        self.apply = function
        return function

    def checks(self, function: Callable) -> Callable:
        self.check = function
        return function

    def run_case(self, namespace, case: dict):
        """``apply`` on one case, its outputs made plain; an exception becomes its message."""
        try:
            return plain(self.apply(namespace, case))
        except Exception as error:  # the student's code may raise anything
            return {ERROR_KEY: f"{type(error).__name__}: {error}"[:600]}

    def judge(self, case: dict, got, expected) -> str | None:
        """None when ``got`` passes this case, else what differs."""
        if isinstance(got, dict) and ERROR_KEY in got:
            return f"raised {got[ERROR_KEY]}"
        if self.check is not None:
            return self.check(case, got, expected)
        return compare(got, expected, self.rtol, self.atol)


def question(lesson: str, name: str, **options) -> Question:
    """Register (and return) the question ``name`` of ``lesson`` (``options``: tolerances,
    ``forbids``, ``requires``)."""
    found = Question(lesson, name, **options)
    QUESTIONS.setdefault(lesson, {})[name] = found
    return found


def plain(value):
    """``value`` as data a weights-only ``torch.load`` reads back: plain tensors (detached, on
    the CPU), numbers, strings, lists and dicts; anything else becomes a short description."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.device.type == "meta":
            return f"<a tensor on the meta device, shape {tuple(tensor.shape)}>"
        return tensor.cpu().as_subclass(torch.Tensor).clone()
    if type(value).__module__ == "numpy" and hasattr(value, "dtype"):
        return {"numpy dtype": str(value.dtype), "values": torch.as_tensor(value.copy())}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key if isinstance(key, (str, int)) else repr(key): plain(item)
                for key, item in value.items()}
    return f"<a {type(value).__name__}>"


def compare(got, expected, rtol: float = 1e-5, atol: float = 1e-6, where: str = "") -> str | None:
    """None when ``got`` equals ``expected`` (floats within ``rtol``/``atol``), else a message
    naming where they first differ."""
    from nanolm_lib.checks import CheckFailed, check_close

    at = f" at {where}" if where else ""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"got {_short(got)}{at}, expected a tensor of shape {tuple(expected.shape)}"
        if not expected.is_floating_point() and got.dtype != expected.dtype:
            return f"dtype {got.dtype}{at}, expected {expected.dtype}"
        try:
            check_close(got, expected, where or "the output", rtol=rtol, atol=atol)
        except CheckFailed as failure:
            return str(failure)
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"got {_short(got)}{at}, expected a dict"
        if sorted(map(str, got)) != sorted(map(str, expected)):
            return f"keys {sorted(got, key=str)[:8]}{at}, expected {sorted(expected, key=str)[:8]}"
        for key in expected:
            message = compare(got[key], expected[key], rtol, atol, f"{where}[{key!r}]")
            if message:
                return message
        return None
    if isinstance(expected, list):
        if not isinstance(got, list):
            return f"got {_short(got)}{at}, expected a list"
        if len(got) != len(expected):
            return f"length {len(got)}{at}, expected {len(expected)}"
        for index, (a, b) in enumerate(zip(got, expected)):
            message = compare(a, b, rtol, atol, f"{where}[{index}]")
            if message:
                return message
        return None
    if isinstance(expected, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if math.isclose(got, expected, rel_tol=rtol, abs_tol=atol) or got == expected:
            return None
        return f"got {got!r}{at}, expected {expected!r}"
    if type(got) is not type(expected) or got != expected:
        return f"got {_short(got)}{at}, expected {_short(expected)}"
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@contextlib.contextmanager
def helpers(namespace, module: str, *names: str):
    """Run with the released references of ``names`` where this installation has them (the
    repository: a bug in a helper costs its own question only), the student's own where it has
    not (the grading kernel, which holds no reference of the lesson it grades). A reference
    namespace (the grader's) is used as it is."""
    if isinstance(namespace, ReferenceNamespace):
        namespace.helpers_used.update(names)
        yield
        return
    from nanolm_lib.checks import use_released

    with use_released(namespace, module, *names):
        yield


class ReferenceNamespace(dict):
    """The reference's graded names (and the overrides that make it run as the tests expect);
    ``helpers_used`` collects the names :func:`helpers` was asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helpers_used: set[str] = set()


def reference_namespace(fresh: bool = False) -> ReferenceNamespace:
    """Every graded name of the course, from the reference (``fresh``: private copies loaded
    from the source files, untouched by patches to the imported modules)."""
    import importlib

    from nanolm_lib.checks import reference
    from nanolm_lib.curriculum import GRADED

    modules: dict[str, object] = {}
    namespace = ReferenceNamespace()
    for names in GRADED.values():
        for name, home in names.items():
            if home not in modules:
                modules[home] = (reference(home) if fresh
                                 else importlib.import_module(f"nanolm_lib.{home}"))
            namespace[name] = getattr(modules[home], name)
    return namespace


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) % 2**63)


# --------------------------------------------------------------------------- the grader's run
def load_cases(cases_dir: Path, lesson: str, name: str) -> list[dict]:
    """The grader's inputs for question ``name`` of ``lesson``, saved by the grader."""
    loaded = torch.load(Path(cases_dir) / lesson / f"{name}.pt", map_location="cpu",
                        weights_only=True)
    return loaded["cases"]


def save_record(records_dir: Path, lesson: str, name: str, outputs: list) -> None:
    """Save one question's outputs where the grader reads them."""
    target = Path(records_dir) / lesson
    target.mkdir(parents=True, exist_ok=True)
    torch.save({"outputs": outputs}, target / f"{name}.pt")


def record(lesson: str, name: str, namespace: dict) -> None:
    """A hidden test: nothing while the notebook is graded (the grader runs the cases apart),
    else compared with the reference here (see the module docstring)."""
    __tracebackhide__ = True  # noqa: F841  (read by IPython and pytest)
    if os.environ.get(ENV_VAR) == DEFERRED:
        return
    import nanolm_lib.questions  # noqa: F401  (registers the questions)
    from nanolm_lib.checks import CheckFailed, fresh_generator

    spec = QUESTIONS[lesson][name]

    gen, seed = fresh_generator()
    # a memory-limited case needs the grader's limit; the visible test measures the same
    drawn = [case for case in spec.make_cases(gen) if not case.get("limited")]
    reference = reference_namespace()
    for case in drawn:
        with torch.random.fork_rng(devices=[]):
            expected = spec.run_case(reference, case)
        if isinstance(expected, dict) and ERROR_KEY in expected:
            raise RuntimeError(f"the reference failed on {case.get('what')}: "
                               f"{expected[ERROR_KEY]}")
        with torch.random.fork_rng(devices=[]):
            got = spec.run_case(namespace, case)
        message = spec.judge(case, got, expected)
        if message:
            raise CheckFailed(f"hidden test, {case.get('what', name)}: {message}\n"
                              f"(cases from seed {seed})")

