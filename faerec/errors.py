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
    """A bad configuration key or value (exit code 2, like a bad argument).

    ``key`` is the key it is about (None when no single key is); ``str()`` is then
    ``key: detail``, and a caller that names the key its own way (a study spec's
    ``FILE:LINE: fixed.KEY``) shows ``detail`` alone.
    """

    exit_code = 2

    def __init__(
        self, message: str, *, key: str | None = None, exit_code: int | None = None
    ) -> None:
        super().__init__(f"{key}: {message}" if key else message, exit_code=exit_code)
        self.key = key
        self.detail = message


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
