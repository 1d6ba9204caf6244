"""A staged student kit: references that are not released yet, and the student's own instead.

``python -m autograde student-kit OUT --released NN`` ships this package with the reference
bodies of lessons after NN removed (:mod:`autograde.authoring.kit` rewrites their source). What is
left of each such graded name is a stub made by :func:`not_released`: calling it runs the student's
own version when one is known, and otherwise raises :class:`NotReleasedError` saying which lesson
releases it. The student's own version is, in this order:

1. one loaded from the student's earlier notebook by :func:`use_earlier_work`, which every
   lesson's set-up cell calls (``../05_gpt/05_gpt.ipynb`` next to the running lesson);
2. a definition of the same name in the running notebook itself (the kernel's ``__main__``):
   lesson 06 defines ``train_step``, and the library's ``train`` loop then uses it.

So library code that is not graded (the training loop, ``load_model``, ``tell_story``) keeps
working in a staged kit, on the student's pieces. Ungraded helpers that answer a graded
question (``autograde.sandbox.staged_library.ANSWERING_HELPERS``) are staged with it;
``optimize``, which the training loop calls, then runs the student's own ``train_step`` (:data:`STAND_INS`). Where
every reference is released (the repository, a ``--released all`` kit, the grader) nothing
here is used.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import json
import sys
import types
from pathlib import Path

from nanolm_lib.grading.curriculum import GRADED

# name -> the student's own implementation, loaded from an earlier notebook
_OWN: dict[str, object] = {}
# the lessons a set-up cell asked use_earlier_work to load, in this process
_ASKED_FOR: set[str] = set()


class NotReleasedError(RuntimeError):
    """A graded reference that this kit does not ship yet was called."""

    @classmethod
    def for_name(cls, lesson: str, name: str) -> NotReleasedError:
        number = lesson[:2]
        first = (f"the reference of lesson {number}'s {name} is released after lesson "
                 f"{number} is due")
        if Path.cwd().name == lesson:  # the running lesson's own exercise
            return cls(f"{first}: it is this lesson's to write; run the cell that defines "
                       f"{name} first")
        if lesson in _ASKED_FOR:  # the set-up cell loads this lesson's work: it had no name
            return cls(f"{first}; use your own from lesson {number} (define {name} in this "
                       f"notebook, or in ../{lesson}/{lesson}.ipynb, and run the set-up cell "
                       "again, which loads it)")
        return cls(f"{first}, and this notebook's set-up cell does not load your own: this "
                   f"cell needs lesson {number}, which is not released at this kit's stage "
                   f"(define {name} in this notebook to run it now)")


def is_staged(obj) -> bool:
    """True for a stub that stands in for an unreleased reference."""
    return getattr(obj, "__nanolm_staged__", None) is not None


def _optimize_with_own_train_step(model, optimizer, x, y, grad_clip=1.0, *, scaler=None,
                                  precision: str = "fp32", loss_scale: float = 1.0,
                                  check_ids: bool = True):
    """A staged library's ``optimize`` (which answers lesson 06's ``train_step``): one step of
    the student's own ``train_step``, its loss as a 0-d tensor, so that the library's ``train``
    loop keeps working on the student's pieces."""
    import torch

    if loss_scale != 1.0 or (scaler is not None and scaler.is_enabled()):
        raise NotReleasedError("the library's optimize with a loss scale or a gradient scaler "
                               "(several processes, fp16) is released after lesson 06 is due")
    loss = call_own("06_training", "train_step", (model, optimizer, x, y, grad_clip),
                    {"precision": precision})
    return torch.as_tensor(float(loss), device=x.device)


class _BatchStreamOfOwnGetBatch:
    """A staged library's ``BatchStream`` (which answers lesson 02's ``get_batch``): each
    step's global batch from the student's own ``get_batch``, this process's rows of it."""

    def __init__(self, tokens, batch_size: int, context_length: int, generator, device,
                 dist_info):
        # here, not at the top: a staged course module imports this module first thing, and
        # the trainer imports the course
        from nanolm_lib.lab.trainer import local_share

        self.tokens, self.batch_size, self.context_length = tokens, batch_size, context_length
        self.generator, self.device = generator, device
        self.rows = local_share(batch_size, dist_info)

    def next(self):
        x, y = call_own("02_data", "get_batch", (self.tokens, self.batch_size,
                                                 self.context_length, self.generator,
                                                 self.device), {})
        return x[self.rows], y[self.rows]


# ungraded helpers (autograde.sandbox.staged_library.ANSWERING_HELPERS) that run the student's
# answer to the question they answer, rather than a same-named function of the student's
STAND_INS = {"optimize": _optimize_with_own_train_step,
             "BatchStream": _BatchStreamOfOwnGetBatch}


def own_version(lesson: str, name: str):
    """The student's own ``name`` (see the module docstring), or raise NotReleasedError."""
    if name in STAND_INS:
        return STAND_INS[name]
    own = _OWN.get(name)
    if own is None:
        candidate = getattr(sys.modules.get("__main__"), name, None)
        if candidate is not None and not is_staged(candidate):
            own = candidate
    if own is None:
        raise NotReleasedError.for_name(lesson, name)
    return own


def call_own(lesson: str, name: str, args: tuple, kwargs: dict):
    """Call the student's own ``name``. The library's calls may pass the optional arguments a
    later lesson added to the reference (``impl=`` for lesson 04's fused attention, ``precision=``
    for mixed precision); those the student's version does not take are left out, so that it
    runs the way its own lesson defined it."""
    own = own_version(lesson, name)
    try:
        signature = inspect.signature(own)
        signature.bind(*args, **kwargs)
    except TypeError:  # arguments the student's version does not take
        kinds = [p.kind for p in signature.parameters.values()]
        if inspect.Parameter.VAR_POSITIONAL not in kinds:
            positional = sum(kind in (inspect.Parameter.POSITIONAL_ONLY,
                                      inspect.Parameter.POSITIONAL_OR_KEYWORD) for kind in kinds)
            args = args[:positional]
        if inspect.Parameter.VAR_KEYWORD not in kinds:
            kwargs = {k: v for k, v in kwargs.items() if k in signature.parameters}
    except ValueError:  # no signature to read (a builtin): call it as it is
        pass
    return own(*args, **kwargs)


def not_released(lesson: str):
    """Decorator for a graded function or class whose reference body was removed."""

    def stage(obj):
        name = obj.__name__
        if isinstance(obj, type):
            def __new__(cls, *args, **kwargs):
                return call_own(lesson, name, args, kwargs)

            obj.__new__ = __new__
            obj.__nanolm_staged__ = (lesson, name)
            return obj

        @functools.wraps(obj)
        def forward(*args, **kwargs):
            return call_own(lesson, name, args, kwargs)

        forward.__nanolm_staged__ = (lesson, name)
        return forward

    return stage


def _staged_names(lesson: str) -> list[str]:
    names = []
    for name, module in GRADED[lesson].items():
        if is_staged(getattr(importlib.import_module(f"nanolm_lib.course.{module}"), name, None)):
            names.append(name)
    return names


def use_earlier_work(*lessons: str, workspace: Path | str | None = None) -> list[str]:
    """Load the student's own graded pieces of ``lessons`` (earlier lessons this one builds on)
    wherever this kit has not released their reference yet, from
    ``workspace/<NN_slug>/<NN_slug>.ipynb`` (default: the folder above the running lesson).

    Returns one line per lesson loaded, e.g. ``"05_gpt: your own GPT, ..."``; an empty list
    when every reference they need is released (the repository, a full kit, the grader).
    """
    workspace = Path(workspace) if workspace is not None else Path.cwd().parent
    used = []
    for earlier in sorted(lessons):
        if earlier not in GRADED:
            raise ValueError(f"use_earlier_work({earlier!r}): not a lesson of this course")
        _ASKED_FOR.add(earlier)
        names = _staged_names(earlier)
        if not names:
            continue
        notebook = workspace / earlier / f"{earlier}.ipynb"
        if not notebook.is_file():
            raise FileNotFoundError(
                f"this lesson needs your own {', '.join(names)} from lesson {earlier[:2]} (its "
                f"reference is not released yet), but {notebook} does not exist")
        namespace = _run_definitions(notebook, earlier)
        missing = [name for name in names if name not in namespace]
        if missing:
            raise NameError(f"{notebook} defines no {', '.join(missing)}, which this lesson "
                            "needs")
        for name in names:
            _OWN[name] = namespace[name]
        used.append(f"{earlier}: your own {', '.join(names)} (from {notebook})")
    return used


def earlier_pieces(lesson: str, *names: str) -> tuple:
    """The library's ``names`` of an earlier ``lesson`` (a set-up cell's import of what it
    builds on, e.g. ``earlier_pieces("03_attention", "attention", "causal_mask")``): only names
    that lesson grades, so a set-up cell cannot hand over its own lesson's pieces. In a staged
    kit they run the student's own version (:func:`use_earlier_work` loads it)."""
    unknown = [name for name in names if name not in GRADED.get(lesson, {})]
    if unknown:
        raise ValueError(f"earlier_pieces({lesson!r}): lesson {lesson} grades no "
                         f"{', '.join(unknown)}")
    return tuple(getattr(importlib.import_module(f"nanolm_lib.course.{GRADED[lesson][name]}"),
                         name) for name in names)


def _code_cells(notebook: Path) -> list[dict]:
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{notebook}: not a readable notebook ({error})") from error
    return [cell for cell in nb.get("cells", []) if cell.get("cell_type") == "code"]


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    text = "".join(source) if isinstance(source, list) else source
    # IPython magics and shell escapes are not Python
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in text.splitlines())


def _run_definitions(notebook: Path, lesson: str) -> dict:
    """Execute a notebook's imports and its solution cells (the student's definitions) into a
    fresh module; the demonstrations, plots and tests in between are not run."""
    module = types.ModuleType(f"_nanolm_own_{lesson}")
    module.__file__ = str(notebook)
    sys.modules[module.__name__] = module  # dataclasses look their module up while defining
    for index, cell in enumerate(_code_cells(notebook)):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            continue  # test cells
        try:
            tree = ast.parse(_source(cell))
        except SyntaxError as error:
            if meta.get("solution"):
                raise SyntaxError(f"{notebook}, code cell {index + 1}: {error}") from error
            continue
        if not meta.get("solution"):
            tree.body = [node for node in tree.body
                         if isinstance(node, (ast.Import, ast.ImportFrom))]
        exec(compile(tree, f"{notebook} (code cell {index + 1})", "exec"), module.__dict__)
    return module.__dict__

