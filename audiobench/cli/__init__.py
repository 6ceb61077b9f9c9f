"""The ``audiobench`` command line: one module per command, assembled here.

Each command module (``run``, ``status``, ``score``, ``validate``, ``train``, ``listing``, ``table``,
``report``, ``listen``) has ``NAME``, ``add_parser(sub)`` (its help, description and arguments) and
``run(args) -> int`` (its handler). Handlers import what they need when they run, so that the
command line starts fast. Shared helpers and the error handling are in :mod:`audiobench.cli.common`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import ModuleType

from audiobench.cli import listen, listing, report, run, score, status, table, train, validate
from audiobench.cli.common import dispatch

DESCRIPTION = """\
Benchmark interpretability methods for audio classifiers.

A suite (YAML) names a dataset, a classifier, masking domains, contaminations, methods and
metrics; `audiobench run` evaluates every combination and writes the papers' comparison
tables. Start with:  audiobench run suites/quickstart.yaml
"""

COMMANDS: tuple[ModuleType, ...] = (run, status, score, validate, train, listing, table, report, listen)
"""The command modules, in the order ``audiobench --help`` lists them."""


def parser() -> argparse.ArgumentParser:
    """The ``audiobench`` parser: one subparser per module of :data:`COMMANDS`."""
    p = argparse.ArgumentParser(prog="audiobench", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def command(name: str) -> ModuleType:
    """The module of command ``name`` (``list`` is :mod:`audiobench.cli.listing`)."""
    return next(c for c in COMMANDS if c.NAME == name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""
    args = parser().parse_args(argv)
    if args.command is None:
        parser().print_help()
        return 2
    return dispatch(command(args.command).run, args)
