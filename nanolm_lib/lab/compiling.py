"""Whether ``torch.compile`` can run here on a CPU: it generates C++ and needs a compiler.

``NANOLM_COMPILE=1 make demo`` compiles its model where this says yes and trains eagerly
otherwise, without a word: a missing compiler is not the user's mistake. (Off by default:
``nanolm bench train --compile`` measures the gain on the cpu preset, ~1.01x per step, too
little to repay the compile time within the demo's run.)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import warnings


def cpp_compiler() -> str | None:
    """The C++ compiler TorchInductor would call (``CXX``, else its default, e.g. g++),
    when it is on PATH; else None."""
    try:
        from torch._inductor import config

        candidates = config.cpp.cxx if isinstance(config.cpp.cxx, (list, tuple)) else (
            config.cpp.cxx,)
    except Exception:  # a torch without Inductor
        return None
    names = [os.environ.get("CXX")] + [c for c in candidates if c] + ["g++", "clang++"]
    return next((found for found in map(_which, names) if found), None)


def _which(name: str | None) -> str | None:
    return shutil.which(name) if name else None


def can_compile_on_cpu() -> str | None:
    """The compiler's path when a tiny function compiles and runs correctly on the CPU (a few
    seconds, once); None, quietly, when there is no compiler or compiling fails."""
    compiler = cpp_compiler()
    if compiler is None:
        return None
    import torch

    def probe(x):
        return torch.nn.functional.gelu(x) * 2.0 + 1.0

    x = torch.linspace(-2, 2, 7)
    logger = logging.getLogger("torch")
    level = logger.level
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logger.setLevel(logging.ERROR)
            compiled = torch.compile(probe)(x)
        return compiler if torch.allclose(compiled, probe(x), atol=1e-6) else None
    except Exception:  # Inductor raises many types when the toolchain is broken
        return None
    finally:
        logger.setLevel(level)


__all__ = ["cpp_compiler", "can_compile_on_cpu"]
