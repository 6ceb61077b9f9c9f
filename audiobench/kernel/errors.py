"""User-facing errors: one line, no traceback, from the CLI."""

from __future__ import annotations

import difflib
import signal
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


class RunStopped(BaseException):
    """A run stopped by a signal (SIGTERM from ``kill``, ``timeout`` or a batch system) after it stopped its
    workers; completed cells are kept. Not an :class:`Exception`, so no ``except Exception`` swallows it;
    the CLI prints it on one line and exits with 128 + the signal's number, as a shell reports it."""

    def __init__(self, signum: int, message: str = ""):
        self.signum = signum
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint, or the list of known names when nothing is close."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known: {', '.join(choices)})" if choices else ""


def error_line(exc: BaseException) -> str:
    """One line for an exception raised in a worker, a job or a library: the last line of its text
    (submitit and Ray wrap the worker's traceback, whose last line is the error itself), prefixed by
    the exception's type when that line does not name one."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return last if ":" in last else f"{type(exc).__name__}: {last}"
