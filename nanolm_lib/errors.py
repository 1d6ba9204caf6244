"""The project's own errors: what a user got wrong, as opposed to a bug.

:class:`UsageError` is a mistake the user can fix (an unknown preset, a setting out of range,
a data, tokenizer or checkpoint file that is not what it should be). The command line and
the demo print it as one line (:func:`run_reporting_user_errors`); any other exception is a
bug and shows its traceback. It is a ``ValueError``, so ``except ValueError`` in a notebook
still catches it.
"""

from __future__ import annotations

import os
import sys


class UsageError(ValueError):
    """A user's mistake, told in one line that names the input at fault."""


class CheckpointError(UsageError):
    """A checkpoint file is missing, truncated, foreign, or holds more than plain data."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


# What a command reports in one line: the project's own errors, and the operating system's
# answers about the files the user named.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UsageError, TrainingDiverged, FileNotFoundError, FileExistsError, NotADirectoryError,
    IsADirectoryError, PermissionError,
)


def run_reporting_user_errors(prog: str, command, interrupted: str) -> int:
    """``command()``'s exit status; a user error is one line on stderr and status 1, Ctrl-C is
    ``interrupted`` and status 130. ``NANOLM_DEBUG=1`` shows a user error's traceback too.
    Every other exception propagates: a bug shows its traceback."""
    try:
        return command()
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if os.environ.get("NANOLM_DEBUG"):
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
