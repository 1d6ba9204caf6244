"""The visible tests' fixtures: fixed inputs and the reference's outputs, computed at release.

A visible test cell never loads the reference (a staged student kit does not have it): it
reads ``lessons/<lesson>/fixtures/<name>.pt`` with :func:`nanolm_lib.grading.checks.fixture`
and compares. Each question's file holds the recipe of its fixture (``@q.fixture``: fixed
inputs from a fixed seed, and what the reference returns on them;
:mod:`nanolm_lib.grading.question_base`). ``python -m autograde release`` writes them and
``release --check`` compares them as the visible tests compare (:func:`same`: within the
tightest tolerance of any test cell); a release rewrites a fixture only when the check would
call it stale, so a release on another CPU leaves git clean.

The keys a test cell reads are the recipe's keys; a recipe and its test cell change together.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from nanolm_lib.grading.checks import reference
from nanolm_lib.grading.curriculum import QUESTIONS


# --------------------------------------------------------------------------- writing, checking
def _reference_loader():
    loaded = {}

    def ref(module: str):
        if module not in loaded:
            loaded[module] = reference(module)
        return loaded[module]
    return ref


def compute(lesson: str) -> dict[str, object]:
    """Every fixture of ``lesson``: name -> content (empty for a lesson without recipes)."""
    torch.manual_seed(0)
    ref = _reference_loader()
    recipes = {name: found.recipe for name, found in QUESTIONS.get(lesson, {}).items()
               if found.recipe is not None}
    return {name: make(ref) for name, make in sorted(recipes.items())}


def same(a, b, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """Equal fixture contents, as the visible tests compare: a float tensor within ``rtol`` of
    relative error over the whole tensor (or ``atol`` of absolute error norm when the expected
    values are ~0), :func:`nanolm_lib.grading.checks.check_close`'s rule and its tightest tolerance
    in any test cell; shapes, dtypes, keys, lengths and everything else exactly.

    Why a tolerance and not bytes: the same recipe on another CPU, or with another number of
    threads, rounds float32 sums in another order (a few ulps), and a fixture is "stale" only
    when a visible test could tell the difference.
    """
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if not a.is_floating_point():
            return torch.equal(a, b)
        a64, b64 = a.double(), b.double()
        if not torch.equal(torch.isfinite(a64), torch.isfinite(b64)):
            return False
        finite = torch.isfinite(b64)
        if not torch.equal(a64[~finite], b64[~finite]) and not (
                a64[~finite].isnan() & b64[~finite].isnan()).all():
            return False
        error = (a64[finite] - b64[finite]).norm().item()
        return error <= max(rtol * b64[finite].norm().item(), atol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key], rtol, atol) for key in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(same(x, y, rtol, atol) for x, y in zip(a, b)))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)
    return type(a) is type(b) and a == b


def _load(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


def write(lesson: str, folder: Path, previous: Path | None = None) -> list[str]:
    """Write ``lesson``'s fixtures into ``folder``; a fixture equal by value to the one in
    ``previous`` keeps its bytes. Returns the names written."""
    contents = compute(lesson)
    if not contents:
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in contents.items():
        target = folder / f"{name}.pt"
        old = Path(previous) / f"{name}.pt" if previous is not None else None
        if old is not None and old.is_file() and same(_load(old), content):
            target.write_bytes(old.read_bytes())
        else:
            torch.save(content, target)
    return sorted(contents)


def stale(lesson: str, folder: Path) -> list[str]:
    """The fixtures of ``lesson`` in ``folder`` that are missing, extra or differ by value."""
    contents = compute(lesson)
    folder = Path(folder)
    present = {p.stem for p in folder.glob("*.pt")} if folder.is_dir() else set()
    problems = sorted(f"{name} (extra)" for name in present - contents.keys())
    for name, content in sorted(contents.items()):
        path = folder / f"{name}.pt"
        if not path.is_file():
            problems.append(f"{name} (missing)")
        elif not same(_load(path), content):
            problems.append(f"{name} (differs)")
    return problems
