"""Errors raised for bad input or bad arguments (shown to users without a traceback)."""

from __future__ import annotations

__all__ = ["InputFormatError", "LookalikeError"]


class LookalikeError(Exception):
    """A problem the user can fix: bad arguments, missing or unwritable files."""


class InputFormatError(LookalikeError):
    """Malformed input data, located by file and line.

    Parameters
    ----------
    path : str
        File that holds the problem.
    line : int or None
        1-based line number, or ``None`` when the problem is the whole file.
    message : str
        What is wrong.
    """

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
