"""User-facing errors: one line, no traceback, from the CLI."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AudiobenchError(Exception):
    """An error caused by user input (a suite, a path, a name); the CLI prints it on one line."""


class SuiteError(AudiobenchError):
    """A problem in a suite file, located as ``file:line: message``."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.message, self.file, self.line = message, file, line
        super().__init__(self.located())

    def located(self) -> str:
        where = self.file or "<suite>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint, or the list of known names when nothing is close."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known: {', '.join(choices)})" if choices else ""
