"""``audiobench report``: write a self-contained HTML report of a finished run."""

from __future__ import annotations

import argparse

from audiobench.cli.common import RUN_DIR_HELP
from audiobench.kernel.errors import AudiobenchError

NAME = "report"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``report`` to the subcommands ``sub`` and return its parser."""
    rp = sub.add_parser(NAME, help="write an HTML report of a finished run", description=(
        "Write RUN_DIR/report/index.html from the run's stored files only (no model is run): its tables, "
        "the classifier's accuracy and, per clip, the input, each method's mask, listenable interpretation, "
        "parts and metrics, with filters. Self-contained: opens from disk, no server, no network."))
    rp.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    return rp


def run(args: argparse.Namespace) -> int:
    """Write the report and print its path; a run directory that cannot be written is a one-line error."""
    from audiobench.report import build_report

    try:
        print(build_report(args.run_dir))
    except OSError as exc:
        raise AudiobenchError(f"cannot write the report under {args.run_dir}/report ({exc.strerror or exc}); "
                              "copy the run somewhere writable") from None
    return 0
