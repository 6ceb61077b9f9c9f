"""``audiobench validate``: check a suite without running it."""

from __future__ import annotations

import argparse

from audiobench.cli.common import add_set

NAME = "validate"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``validate`` to the subcommands ``sub`` and return its parser."""
    v = sub.add_parser(NAME, help="check a suite without running it", description=(
        "Check names, types, paths and combinations of SUITE. Each problem is printed as "
        "file:line: message; the exit status is 1 if there is any."))
    v.add_argument("suite", metavar="SUITE")
    add_set(v)
    return v


def run(args: argparse.Namespace) -> int:
    """Load the suite (its errors raise) and print its number of cells."""
    from audiobench.suite import load_suite

    suite = load_suite(args.suite, args.overrides)
    n = len(suite.domains) * len(suite.contaminations) * len(suite.methods)
    print(f"{args.suite}: ok ({n} cells: {len(suite.methods)} methods x {len(suite.domains)} domains "
          f"x {len(suite.contaminations)} contaminations)")
    return 0
