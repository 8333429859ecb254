"""The one exception type that reaches users as a clean, single-line error."""

from __future__ import annotations


class EofmError(Exception):
    """A user-facing error: the message names the file, band or key at fault.

    The command line prints it without a traceback and exits with ``exit_code``.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class RecipeError(EofmError):
    """An invalid recipe or override (exit code 2, like an argument error)."""

    exit_code = 2
