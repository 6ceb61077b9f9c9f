"""What the commands share: the ``--set`` option, the run-directory argument's help, the error handling."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from audiobench.kernel.errors import AudiobenchError, RunStopped

RUN_DIR_HELP = "a finished run directory (audiobench run writes results/<suite name>/ unless -o)"
FORMATS = ["markdown", "latex", "csv"]


def add_set(p: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--set KEY=VALUE`` suite override (``args.overrides``) to ``p``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=(
        "set a suite key before validation, e.g. --set dataset.root=/data/ESC-50 --set model.checkpoint=w.pt "
        "(dotted keys, list indices as numbers, values read as YAML; repeatable)"))


def dispatch(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``handler(args)`` and turn the errors a user can meet into a message on stderr and an exit status.

    An :class:`AudiobenchError` prints one ``audiobench: error: ...`` line per line of its message
    (lines that start with ``file:line:`` as they are) and returns 1; a run stopped by a signal returns
    128 + the signal; Ctrl-C returns 130; a closed output pipe (``| head``) returns 0.
    """
    try:
        return handler(args)
    except AudiobenchError as exc:
        for line in str(exc).splitlines() or ["error"]:
            print(f"audiobench: error: {line}" if ":" not in line.split(" ")[0] else line, file=sys.stderr)
        return 1
    except RunStopped as exc:  # SIGTERM while workers ran: they are stopped
        print(f"audiobench: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("audiobench: interrupted; completed cells are kept, run again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early (| head): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
