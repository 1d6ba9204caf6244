"""What a graded question is: its contract, its visible fixture, its hidden cases, how they run
and how outputs are compared.

Each question is one file, ``nanolm_lib/grading/questions/<lesson>/<N>_<name>.py`` (the N-th
question its notebook asks), which registers a :class:`Question` with :func:`question`:

* the student's signature, as Python: a stub function (or class, with ``__init__`` and its
  ``forward`` or ``step``) of the graded name, whose parameters are the contract
  (:data:`nanolm_lib.grading.curriculum.CONTRACT` reads them);
* ``reference=``: the ``nanolm_lib.course`` module whose definition it is checked against;
* ``@q.fixture``: the visible test's fixed inputs and the reference's outputs on them (the
  release writes ``lessons/<lesson>/fixtures/<name>.pt``: ``autograde/authoring/fixtures.py``);
* ``@q.cases`` and ``@q.runs``: the hidden cases and how they run, below;
* tolerances, or ``@q.checks``: how outputs are compared;
* ``forbids=`` / ``requires=``: its policy.

Of the hidden cases, ``make_cases(gen)`` draws the inputs,
``apply(ns, case)`` runs the implementations in ``ns`` (the solution cells' names in the
grader's run, the reference's in the grader) and returns plain outputs (:func:`plain`), and
:meth:`Question.judge` compares outputs with the reference's
(:func:`nanolm_lib.grading.checks.difference`, the visible tests' comparison too). A case that
raised records its error message; the reference's own failure is a grader error, never the
student's. A question with ``data_budget_mb`` has a case (``"limited": True``) that only an
implementation within that much memory can answer: the grader's run sets the limit
(``RLIMIT_DATA``, which the student's code cannot raise) before the solution cells run.
Where they run: :mod:`nanolm_lib.grading.record`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nanolm_lib.grading.checks import difference, reference, use_released

QUESTIONS: dict[str, dict[str, Question]] = {}
ERROR_KEY = "__error__"


@dataclass
class Question:
    """One graded function: its contract, its visible fixture, its hidden cases (inputs, how to
    run them, how to compare) and its policy."""

    lesson: str
    name: str
    reference: str                       # the nanolm_lib.course module that holds the reference
    signature: str                       # "(x, n_heads)"; a class's "(config); forward(x)"
    recipe: Callable | None = None       # (reference loader) -> the visible fixture's content
    make_cases: Callable | None = None   # (torch.Generator) -> list of plain case dicts
    apply: Callable | None = None        # (namespace, case) -> plain outputs
    rtol: float = 1e-5
    atol: float = 1e-6
    check: Callable | None = None        # (case, got, expected) -> message or None
    data_budget_mb: int = 0              # memory the grader's run allows the solution cells
    # The question's policy, decided on the student's source by the grader's scan
    # (autograde/integrity/scan.py), never measured in the student's process: dotted names (fnmatch
    # patterns) the solution may not use, and those it must call.
    forbids: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()

    def fixture(self, function: Callable) -> Callable:
        self.recipe = function
        return function

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
        return difference(got, expected, self.rtol, self.atol)


def question(lesson: str, signature: Callable, *, reference: str, **options) -> Question:
    """Register (and return) the question of ``lesson`` whose graded name and contract are
    those of ``signature``, a stub, checked against ``nanolm_lib.course.<reference>``
    (``options``: tolerances, ``data_budget_mb``, ``forbids``, ``requires``)."""
    found = Question(lesson, signature.__name__, reference, signature_text(signature), **options)
    QUESTIONS.setdefault(lesson, {})[found.name] = found
    return found


def signature_text(stub: Callable) -> str:
    """A stub's contract as text: a function's ``(parameters)``; a class's constructor
    parameters, then its ``forward`` or ``step`` (``"(config); forward(idx, targets=None)"``)."""
    if not isinstance(stub, type):
        return str(inspect.signature(stub))
    methods = [name for name in ("forward", "step") if name in vars(stub)]
    if len(methods) != 1:
        raise TypeError(f"the stub class {stub.__name__} defines forward or step (one of them)")
    method = inspect.signature(vars(stub)[methods[0]])
    after_self = method.replace(parameters=list(method.parameters.values())[1:])
    return f"{inspect.signature(stub)}; {methods[0]}{after_self}"


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
    modules: dict[str, object] = {}
    namespace = ReferenceNamespace()
    for questions in QUESTIONS.values():
        for name, found in questions.items():
            home = found.reference
            if home not in modules:
                modules[home] = (reference(home) if fresh
                                 else importlib.import_module(f"nanolm_lib.course.{home}"))
            namespace[name] = getattr(modules[home], name)
    return namespace
