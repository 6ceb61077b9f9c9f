"""``audiobench listen``: serve a MUSHRA listening test of a finished run, or export it for webMUSHRA."""

from __future__ import annotations

import argparse

from audiobench.cli.common import RUN_DIR_HELP

NAME = "listen"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``listen`` to the subcommands ``sub`` and return its parser."""
    li = sub.add_parser(NAME, help="serve a MUSHRA listening test of a finished run on 127.0.0.1", description=(
        "Serve a MUSHRA-style rating page (L-MAC paper, sec. 3.3) for RUN_DIR's listenable interpretations on "
        "127.0.0.1 only: a training page, then per trial the input, the predicted class and one 0-100 slider per "
        "method, with a hidden reference and the random control as anchor. Ratings are stored as given in "
        "RUN_DIR/listening.sqlite; a listener who comes back resumes. Summarise with audiobench table RUN_DIR --mos."))
    li.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    li.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default: 8765; 0: any free port)")
    li.add_argument("--listener", metavar="NAME", help="open the page for this listener (otherwise the page asks)")
    li.add_argument("--method", dest="methods", metavar="ROW", action="append", help=(
        "rate only this row (its label in the tables, e.g. --method 'L-MAC, FT, λg=4'; repeat for more); the "
        "hidden reference and the random anchor are always on the page"))
    li.add_argument("--per-page", type=int, metavar="N", help=(
        "at most N methods per page: each clip's rows are split over pages (MUSHRA: keep pages small, "
        "ITU-R BS.1534 allows 12 conditions); default: every row on one page"))
    li.add_argument("--webmushra", metavar="DIR", help=(
        "write the same test as a webMUSHRA experiment instead (DIR/DIR.yaml and the WAVs in DIR/audio/; copy DIR "
        "into webMUSHRA's configs/) and exit"))
    return li


def run(args: argparse.Namespace) -> int:
    """Write the webMUSHRA experiment (``--webmushra``) and print its path, or serve the test until stopped."""
    if args.webmushra:
        from audiobench.listen.webmushra import export_webmushra

        print(export_webmushra(args.run_dir, args.webmushra, args.methods, args.per_page))
        return 0
    from audiobench.listen.server import serve

    serve(args.run_dir, args.port, args.listener, args.methods, args.per_page)
    return 0
