"""``audiobench table``: re-render a finished run's tables, beside the papers' (``--compare``) or its MOS (``--mos``)."""

from __future__ import annotations

import argparse
import sys

from audiobench.cli.common import FORMATS, RUN_DIR_HELP

NAME = "table"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``table`` to the subcommands ``sub`` and return its parser."""
    t = sub.add_parser(NAME, help="re-render the tables of a finished run", description=(
        "Render the tables of RUN_DIR from its stored results only (per_sample.parquet and "
        "manifest.json); nothing is recomputed. Also rewrites RUN_DIR/tables/."))
    t.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    t.add_argument("--format", default="markdown", choices=FORMATS)
    t.add_argument("--compare", metavar="REF:TABLE", help=(
        "print the published numbers beside ours for the same rows, e.g. lmac_icml2024:2 (L-MAC Table 2); "
        "blocks of multi-block tables are chosen with :column=value,... (see audiobench/reference/README.md); "
        "l2i_tasl: a multi-label run's L2I interpreter fidelity beside the L2I journal's Table IV (SONYC-UST "
        "AUPRC); lmactd_icassp2025:1: the LMAC-TD code's README (ESC-50 out-of-domain). References: lmac_icml2024, "
        "lmaczs_neurips2024, lmactd_icassp2025, l2i_tasl"))
    t.add_argument("--mos", action="store_true", help=(
        "print the mean opinion scores of the run's listening test (audiobench listen) with 95%% confidence "
        "intervals, in the layout of the L-MAC paper's Table 3, after MUSHRA post-screening"))
    return t


def run(args: argparse.Namespace) -> int:
    """Print the MOS table (``--mos``), the comparison (``--compare``) or the run's tables, rewriting tables/."""
    if args.mos:
        from audiobench.listen.mos import render_mos

        print(render_mos(args.run_dir, args.format))
        return 0
    if args.compare:
        from audiobench.tables.compare import render_comparison

        for text in render_comparison(args.run_dir, args.compare, args.format).values():
            print(text)
        return 0
    from audiobench.tables import render_run

    try:
        tables = render_run(args.run_dir, args.format)
    except OSError as exc:  # a read-only run directory: print what was asked, say what was not saved
        tables = render_run(args.run_dir, args.format, write=False)
        print(f"audiobench: note: tables printed but not saved ({exc.strerror or exc}: {exc.filename or args.run_dir})",
              file=sys.stderr)
    for text in tables.values():
        print(text)
    return 0
