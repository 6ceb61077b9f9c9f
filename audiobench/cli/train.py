"""``audiobench train``: train (or fine-tune) a suite's classifier and write a checkpoint."""

from __future__ import annotations

import argparse

from audiobench.cli.common import add_set

NAME = "train"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``train`` to the subcommands ``sub`` and return its parser."""
    tr = sub.add_parser(NAME, help="train the suite's classifier and write a checkpoint", description=(
        "Train (or, with model.checkpoint set, fine-tune) the suite's classifier on its dataset's train "
        "split, selecting the epoch by valid accuracy (ESC-50: folds 1-3 and 4, as the L-MAC paper), and "
        "write it in the PANNs key layout with a JSON of its accuracies next to it. Evaluate it with "
        "`audiobench run SUITE --set model.checkpoint=PATH`."))
    tr.add_argument("suite", metavar="SUITE")
    tr.add_argument("-o", "--output", metavar="PATH", help="checkpoint file (default: results/<suite name>/classifier/cnn14.pt)")
    tr.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    tr.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_set(tr)
    return tr


def run(args: argparse.Namespace) -> int:
    """Train, then print the checkpoint's path and accuracies and how to evaluate it."""
    from audiobench.harness.train import train_suite
    from audiobench.suite import load_suite

    path, info = train_suite(load_suite(args.suite, args.overrides, training=True), args.output, args.device, progress=not args.quiet)
    acc = ", ".join(f"{k} {100 * v:.1f}%" for k, v in info["accuracy"].items())
    print(f"checkpoint: {path} ({acc}; best epoch {info['best_epoch']})")
    print(f"accuracy and training history: {path.with_suffix('.json')}")
    print(f"evaluate it: audiobench run {args.suite} --set model.checkpoint={path}")
    return 0
