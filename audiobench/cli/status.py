"""``audiobench status``: which cells of a run are done, running, failed or missing."""

from __future__ import annotations

import argparse

NAME = "status"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``status`` to the subcommands ``sub`` and return its parser."""
    st = sub.add_parser(NAME, help="which cells of a run are done, running, failed or missing", description=(
        "Read RUN_DIR's plan and cell markers (whichever executor ran it) and print how many cells are done, "
        "running, failed (with their errors) and missing. Exit status 0 when every cell is done."))
    st.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, finished or not (results/<suite name> by default)")
    st.add_argument("--json", action="store_true", help="print the state of each cell as JSON")
    return st


def run(args: argparse.Namespace) -> int:
    """Print the run's state (text or ``--json``); 0 when every cell is done, else 3."""
    import json

    from audiobench.store.status import run_status

    status = run_status(args.run_dir)
    if args.json:
        print(json.dumps({"suite": status.suite, "finished": status.finished, "cells": status.cells,
                          "details": status.details}, indent=2, default=str))
    else:
        print("\n".join(status.lines()))
    return 0 if all(s == "done" for s in status.cells.values()) else 3
