"""``audiobench run``: a suite's cells, by whichever executor, then its results and tables.

The one entry point of a run (:func:`run_suite`); how cells are spread over processes is the
executor's business (:mod:`audiobench.harness.executors`), how a run ends is
:mod:`audiobench.harness.finish`'s, the same for every executor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiobench.harness.executors import run_with
from audiobench.harness.session import RunResult
from audiobench.suite import Suite, load_suite


def run_suite(
    suite: Suite | str | Path,
    output: str | Path | None = None,
    limit: int | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    cell: str | None = None,
    executor: Any = None,
) -> RunResult:
    """Run every cell of ``suite`` not already stored under ``output`` (default ``results/<suite name>``);
    write results, manifest and tables, and run the after-cell stages (sanity checks, prompt analysis).

    With ``cell``, run only that cell (stored like in a full run) and return without results or
    tables unless every cell is then complete. The run directory is locked for the whole run
    (:mod:`audiobench.store.lock`): a second run on it raises :class:`AudiobenchError`; cell workers
    (``cell``) only take the cell writers' shared lock, so several may write one directory.
    ``executor`` (:class:`audiobench.suite.schema.ExecutorParams`, default: the suite's ``executor:``)
    runs the cells in worker processes, on Slurm or on Ray (:mod:`audiobench.harness.executors`).
    """
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    root = Path(output or Path("results") / suite.name)
    params = executor if executor is not None else suite.executor
    return run_with(suite, root, limit, device, overwrite, progress, params, cell)
