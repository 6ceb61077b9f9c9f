"""``audiobench run``: run a suite's cells (here, in worker processes, on Slurm or Ray) and print its tables."""

from __future__ import annotations

import argparse
import sys

from audiobench.cli.common import FORMATS, add_set
from audiobench.kernel.errors import AudiobenchError

NAME = "run"

EXECUTOR_FLAGS = {"executor": "name", "workers": "workers", "address": "address", "cluster": "cluster",
                  "partition": "partition", "time_min": "time_min", "cpus_per_task": "cpus_per_task",
                  "gpus_per_task": "gpus_per_task", "array_parallelism": "array_parallelism"}
"""The executor flags of ``run`` (their ``args`` attribute) and the ``executor:`` key each sets."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``run`` to the subcommands ``sub`` and return its parser."""
    r = sub.add_parser(NAME, help="run a suite and print its tables", description=(
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
    r.add_argument("--format", default="markdown", choices=FORMATS, help="format printed at the end")
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
    add_set(r)
    return r


def executor_params(args: argparse.Namespace, suite: object) -> object | None:
    """The suite's ``executor:`` section with the command line's executor flags applied (None: neither set)."""
    update = {key: getattr(args, flag) for flag, key in EXECUTOR_FLAGS.items() if getattr(args, flag) is not None}
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


def run(args: argparse.Namespace) -> int:
    """Run the suite (or list its cells, or run one cell) and print its tables; 0 when done."""
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
    executor = executor_params(args, suite)
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
