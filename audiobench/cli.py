"""The ``audiobench`` command line: run, validate, list, table."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from audiobench.kernel.errors import AudiobenchError, RunStopped

DESCRIPTION = """\
Benchmark interpretability methods for audio classifiers.

A suite (YAML) names a dataset, a classifier, masking domains, contaminations, methods and
metrics; `audiobench run` evaluates every combination and writes the papers' comparison
tables. Start with:  audiobench run suites/quickstart.yaml
"""

LIST_KINDS = ("methods", "metrics", "datasets", "contaminations", "domains", "models")
RUN_DIR_HELP = "a finished run directory (audiobench run writes results/<suite name>/ unless -o)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="audiobench", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run a suite and print its tables", description=(
        "Run every (domain, contamination, method) cell of SUITE. Completed cells are kept, so an "
        "interrupted run resumes; the classifier is trained once and cached "
        "($AUDIOBENCH_CACHE, default ~/.cache/audiobench)."))
    r.add_argument("suite", metavar="SUITE", help="suite YAML file, e.g. suites/quickstart.yaml")
    r.add_argument("-o", "--output", metavar="DIR", help="run directory (default: results/<suite name>/)")
    r.add_argument("--limit", type=int, metavar="N", help=(
        "evaluate a class-stratified sample of N clips drawn with the suite's seed (a quick look)"))
    r.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    r.add_argument("--overwrite", action="store_true", help=(
        "discard stored cells and recompute everything; with --cell, recompute that cell only (the others stay)"))
    r.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv"], help="format printed at the end")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    r.add_argument("--cell", metavar="ID", help=(
        "run only this cell (its id or a unique prefix, see --list-cells), e.g. in a process of its own on a "
        "cluster: it writes exactly the rows the full run writes; tables are written once every cell is done"))
    r.add_argument("--list-cells", action="store_true", help="print the suite's cell ids (done or to do) and exit")
    ex = r.add_argument_group("executors", "where the cells run (default: the suite's executor: section, else in "
                              "this process); the same cells and numbers whichever runs them")
    ex.add_argument("--workers", type=int, metavar="N", help="N local worker processes, each with its share of threads")
    ex.add_argument("--executor", choices=["local", "submitit", "ray"], help=(
        "local (worker processes), submitit (the cells as a Slurm job array after one job for the shared fits) "
        "or ray (tasks on a Ray cluster)"))
    ex.add_argument("--address", metavar="ADDR", help="ray: the cluster's address (auto, ray://head:10001)")
    ex.add_argument("--cluster", choices=["slurm", "local", "debug"], help="submitit: slurm (default where sbatch exists) or local")
    ex.add_argument("--partition", metavar="NAME", help="submitit: Slurm partition")
    ex.add_argument("--time-min", type=int, metavar="MIN", help="submitit: time limit per job, minutes")
    ex.add_argument("--cpus-per-task", type=int, metavar="N", help="submitit, ray: CPUs (torch threads) per cell")
    ex.add_argument("--gpus-per-task", type=int, metavar="N", help="submitit, ray: GPUs per cell")
    ex.add_argument("--array-parallelism", type=int, metavar="N", help="submitit: array tasks running at once")
    _add_set(r)

    st = sub.add_parser("status", help="which cells of a run are done, running, failed or missing", description=(
        "Read RUN_DIR's plan and cell markers (whichever executor ran it) and print how many cells are done, "
        "running, failed (with their errors) and missing. Exit status 0 when every cell is done."))
    st.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, finished or not (results/<suite name> by default)")
    st.add_argument("--json", action="store_true", help="print the state of each cell as JSON")

    sc = sub.add_parser("score", help="add or recompute metrics of a finished run from its kept masks", description=(
        "Score the explanations RUN_DIR kept (masks/, one file per cell) with METRICS (default: the run's own), "
        "without explaining again: metrics the run does not have yet are added to per_sample.parquet and the "
        "tables rewritten. Values the run already has (computed from the method's float32 masks) are kept "
        "unless --replace: then they (and the stored probabilities p_in, p_out...) are recomputed from the kept "
        "masks, exact to float rounding with masks.precision float32; with the default log8 the paper's "
        "continuous metrics move by about 1e-3 and a few AI / Fid-In indicators flip, and the budget-matched "
        "ones move more: rounding ties bins and changes each map's ranking, most for near-saturated masks "
        "(L-MAC's): on results/planted one clip's ins_del moved by 0.21 and AD@10% by 65 points, and L-MAC's "
        "Mel Ins.-Del. mean from 0.90 to 0.83 (keep masks at float32 to score budget metrics exactly). "
        "--replace prints how many values moved, and by how much, per metric."))
    sc.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    sc.add_argument("--metrics", nargs="+", metavar="METRIC", help="metrics to compute, e.g. --metrics ai ff sps")
    sc.add_argument("--replace", action="store_true",
                    help="recompute metrics the run already has from the kept masks and replace the stored values")
    sc.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    sc.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    v = sub.add_parser("validate", help="check a suite without running it", description=(
        "Check names, types, paths and combinations of SUITE. Each problem is printed as "
        "file:line: message; the exit status is 1 if there is any."))
    v.add_argument("suite", metavar="SUITE")
    _add_set(v)

    tr = sub.add_parser("train", help="train the suite's classifier and write a checkpoint", description=(
        "Train (or, with model.checkpoint set, fine-tune) the suite's classifier on its dataset's train "
        "split, selecting the epoch by valid accuracy (ESC-50: folds 1-3 and 4, as the L-MAC paper), and "
        "write it in the PANNs key layout with a JSON of its accuracies next to it. Evaluate it with "
        "`audiobench run SUITE --set model.checkpoint=PATH`."))
    tr.add_argument("suite", metavar="SUITE")
    tr.add_argument("-o", "--output", metavar="PATH", help="checkpoint file (default: results/<suite name>/classifier/cnn14.pt)")
    tr.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    tr.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    _add_set(tr)

    ls = sub.add_parser("list", help="list registered components", description=(
        "Print one name per line with a one-line description, including plugins."))
    ls.add_argument("kind", choices=LIST_KINDS)
    ls.add_argument("-v", "--verbose", action="store_true", help="also each component's parameters (name = default: meaning) and each dataset's URL, citation and licence")
    ls.add_argument("--plugins", nargs="+", metavar="FILE", default=[], help=(
        "also what these plugin files register: a .py plugin file, or a suite whose plugins: list is read"))

    t = sub.add_parser("table", help="re-render the tables of a finished run", description=(
        "Render the tables of RUN_DIR from its stored results only (per_sample.parquet and "
        "manifest.json); nothing is recomputed. Also rewrites RUN_DIR/tables/."))
    t.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    t.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv"])
    t.add_argument("--compare", metavar="REF:TABLE", help=(
        "print the published numbers beside ours for the same rows, e.g. lmac_icml2024:2 (L-MAC Table 2); "
        "blocks of multi-block tables are chosen with :column=value,... (see audiobench/reference/README.md); "
        "l2i_tasl: a multi-label run's L2I interpreter fidelity beside the L2I journal's Table IV (SONYC-UST "
        "AUPRC). References: lmac_icml2024, lmaczs_neurips2024, l2i_tasl"))
    t.add_argument("--mos", action="store_true", help=(
        "print the mean opinion scores of the run's listening test (audiobench listen) with 95%% confidence "
        "intervals, in the layout of the L-MAC paper's Table 3, after MUSHRA post-screening"))

    rp = sub.add_parser("report", help="write an HTML report of a finished run", description=(
        "Write RUN_DIR/report/index.html from the run's stored files only (no model is run): its tables, "
        "the classifier's accuracy and, per clip, the input, each method's mask, listenable interpretation, "
        "parts and metrics, with filters. Self-contained: opens from disk, no server, no network."))
    rp.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)

    li = sub.add_parser("listen", help="serve a MUSHRA listening test of a finished run on 127.0.0.1", description=(
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
    return p


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=(
        "set a suite key before validation, e.g. --set dataset.root=/data/ESC-50 --set model.checkpoint=w.pt "
        "(dotted keys, list indices as numbers, values read as YAML; repeatable)"))


_EXECUTOR_FLAGS = {"executor": "name", "workers": "workers", "address": "address", "cluster": "cluster",
                   "partition": "partition", "time_min": "time_min", "cpus_per_task": "cpus_per_task",
                   "gpus_per_task": "gpus_per_task", "array_parallelism": "array_parallelism"}


def _executor_params(args: argparse.Namespace, suite: object) -> object | None:
    """The suite's ``executor:`` section with the command line's executor flags applied (None: neither set)."""
    update = {key: getattr(args, flag) for flag, key in _EXECUTOR_FLAGS.items() if getattr(args, flag) is not None}
    if not update:
        return None
    from audiobench.suite import Suite, load_suite
    from audiobench.suite.schema import ExecutorParams

    if args.workers is not None and args.workers < 1:
        raise AudiobenchError("--workers must be at least 1")
    if args.address is not None and update.get("name", "ray") != "ray":
        raise AudiobenchError("--address is the Ray cluster's address: use it with --executor ray")
    if args.address is not None:
        update["name"] = "ray"
    base = (suite if isinstance(suite, Suite) else load_suite(suite)).executor
    if "workers" in update and "name" not in update and base.name != "local":
        update["name"] = "local"
    return ExecutorParams(**{**base.model_dump(), **update})


def _describe(kind: str, obj: Any) -> str:
    """A registered entry's one line: a component class's ``Component.description()``, a metric's
    ``description`` (metrics are registered as instances, every other kind as a class)."""
    return obj.description() if isinstance(obj, type) else obj.description


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    try:
        return _dispatch(args)
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


def _parameters(obj: Any) -> list[str]:
    """``name = default: description`` of each parameter a component takes (``list --verbose``); a
    metric (an instance) takes none."""
    fields = obj.Params.model_fields if isinstance(obj, type) else {}
    out = []
    for name, info in fields.items():
        default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
        out.append(f"{name} = {default}" + (f": {info.description}" if info.description else ""))
    return out


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "list":
        from audiobench.contracts.registry import REGISTRIES, load_plugin_file, plugin_files

        for path in plugin_files(args.plugins):
            load_plugin_file(path)
        for name, obj in REGISTRIES[args.kind].items():
            print(f"{name:<22} {_describe(args.kind, obj)}")
            if args.verbose and isinstance(obj, type):  # Component.details(); a metric has none
                for line in obj.details():
                    print(f"{'':<22}   {line}")
            if args.verbose:
                for line in _parameters(obj):
                    print(f"{'':<22}   {line}")
        return 0
    if args.command == "validate":
        from audiobench.suite import load_suite

        suite = load_suite(args.suite, args.overrides)
        n = len(suite.domains) * len(suite.contaminations) * len(suite.methods)
        print(f"{args.suite}: ok ({n} cells: {len(suite.methods)} methods x {len(suite.domains)} domains "
              f"x {len(suite.contaminations)} contaminations)")
        return 0
    if args.command == "table" and args.mos:
        from audiobench.listen.mos import render_mos

        print(render_mos(args.run_dir, args.format))
        return 0
    if args.command == "report":
        from audiobench.report import build_report

        try:
            print(build_report(args.run_dir))
        except OSError as exc:
            raise AudiobenchError(f"cannot write the report under {args.run_dir}/report ({exc.strerror or exc}); "
                                  "copy the run somewhere writable") from None
        return 0
    if args.command == "listen" and args.webmushra:
        from audiobench.listen.webmushra import export_webmushra

        print(export_webmushra(args.run_dir, args.webmushra, args.methods, args.per_page))
        return 0
    if args.command == "listen":
        from audiobench.listen.server import serve

        serve(args.run_dir, args.port, args.listener, args.methods, args.per_page)
        return 0
    if args.command == "table" and args.compare:
        from audiobench.tables.compare import render_comparison

        for text in render_comparison(args.run_dir, args.compare, args.format).values():
            print(text)
        return 0
    if args.command == "table":
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
    if args.command == "run":
        from audiobench.harness.runner import run_suite
        from audiobench.tables import render_run

        if args.limit is not None and args.limit < 1:
            raise AudiobenchError("--limit must be at least 1")
        from audiobench.suite import load_suite

        suite = load_suite(args.suite, args.overrides) if args.overrides else args.suite
        if args.list_cells:  # no training: the classifier's cache key is all the cell ids need
            from audiobench.harness.session import list_cells

            for cell, done in list_cells(suite, args.output, args.limit):
                print(f"{cell.id}\t{'done' if done else 'to do'}")
            return 0
        executor = _executor_params(args, suite)
        result = run_suite(suite, args.output, args.limit, args.device, args.overwrite, progress=not args.quiet,
                           cell=args.cell, executor=executor)
        if not result.complete:
            done = ", ".join(c["id"] for c in result.manifest.get("cells", [])) or args.cell  # the full id, not the prefix
            print(f"cell {done} stored in {result.run_dir}/cells/; other cells remain", file=sys.stderr)
            return 0
        for text in render_run(result.run_dir, args.format, write=False).values():
            print(text)
            print()
        cells = result.manifest.get("cells", [])
        resumed = sum(bool(c.get("resumed")) for c in cells)
        done = ("nothing recomputed: every cell was stored" if cells and resumed == len(cells) else
                f"{len(cells) - resumed} cell(s) computed, {resumed} stored already" if resumed else f"{len(cells)} cells computed")
        print(f"results in {result.run_dir}/ (tables/, per_sample.parquet, manifest.json); {done}", file=sys.stderr)
        return 0
    if args.command == "status":
        import json

        from audiobench.store.status import run_status

        status = run_status(args.run_dir)
        if args.json:
            print(json.dumps({"suite": status.suite, "finished": status.finished, "cells": status.cells,
                              "details": status.details}, indent=2, default=str))
        else:
            print("\n".join(status.lines()))
        return 0 if all(s == "done" for s in status.cells.values()) else 3
    if args.command == "score":
        from audiobench.harness.scoring import score_run

        result = score_run(args.run_dir, args.metrics, args.device, progress=not args.quiet, replace=args.replace)
        for text in result.tables.values():
            print(text)
            print()
        for metric, c in result.changes.items():
            print(f"{metric}: {c['moved']} of {c['rows']} stored values moved (max |change| {c['max_abs']:.3g}, "
                  f"mean {c['mean_abs']:.3g})", file=sys.stderr)
        if not result.computed:
            print(f"{args.run_dir}: every metric asked for is stored; nothing recomputed (--replace recomputes "
                  "from the kept masks)", file=sys.stderr)
        return 0
    if args.command == "train":
        from audiobench.harness.train import train_suite
        from audiobench.suite import load_suite

        path, info = train_suite(load_suite(args.suite, args.overrides, training=True), args.output, args.device, progress=not args.quiet)
        acc = ", ".join(f"{k} {100 * v:.1f}%" for k, v in info["accuracy"].items())
        print(f"checkpoint: {path} ({acc}; best epoch {info['best_epoch']})")
        print(f"accuracy and training history: {path.with_suffix('.json')}")
        print(f"evaluate it: audiobench run {args.suite} --set model.checkpoint={path}")
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    raise SystemExit(main())
