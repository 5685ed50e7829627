"""User-facing errors: one precise message and an exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path


class FaerecError(Exception):
    """An error caused by the user's input or environment.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code``.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(FaerecError):
    """A bad configuration key or value (exit code 2, like a bad argument)."""

    exit_code = 2


class DataError(FaerecError):
    """Malformed or missing input data; the message names the file and, if known, the line."""

    exit_code = 2

    def __init__(
        self, message: str, *, path: str | Path | None = None, line: int | None = None
    ) -> None:
        location = ""
        if path is not None:
            location = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(location + message)
        self.path = None if path is None else Path(path)
        self.line = line


class TrainingError(FaerecError):
    """Training could not go on (for example a NaN loss)."""

    exit_code = 1
