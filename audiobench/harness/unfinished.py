"""What an executor says when a run ends with cells not stored: each cell counted as ``audiobench
status`` shows it, and what happened to the workers or jobs (:func:`unfinished_report`)."""

from __future__ import annotations

from pathlib import Path

from audiobench.kernel.errors import AudiobenchError
from audiobench.store.run_dir import RunStore
from audiobench.store.status import run_status, status_dir


def unfinished_report(root: str | Path, todo: list[str], failures: dict[str, str], incidents: list[str],
                      where: str) -> list[str]:
    """The lines of the error that ends a run whose cells ``todo`` are not all stored (empty: all are).

    ``failures``: the error line of each cell reported failed by the executor; ``incidents``: what
    happened to the workers (a worker killed by a signal, a job that died). Each cell not stored is
    counted as ``audiobench status`` shows it: failed (its traceback in ``status/<cell>.failed.json``,
    pointed to only when such files exist), interrupted (its worker died while running it), running
    (another host's marker) or missing (never started); a cell whose job died without a record of
    its own is listed with that job's error, not as a failure of the cell.
    """
    root = Path(root)
    store = RunStore(root)
    left = [c for c in todo if not store.has(c)]
    if not left:  # e.g. a worker that died idle, after the last cell: nothing is missing
        return []
    try:
        status = run_status(root)
        states, details = status.cells, status.details
    except AudiobenchError:  # no plan (a shared stage that did not finish)
        states, details = {}, {}
    failed: dict[str, str] = {}  # the cell raised: its traceback is in its failed.json
    lost: dict[str, str] = {}  # its job or worker died with it: no record of the cell's own
    counts: dict[str, list[str]] = {"interrupted": [], "running": [], "missing": []}
    for c in left:
        traced = (status_dir(root) / f"{c}.failed.json").exists()
        if c in failures:
            (failed if traced else lost)[c] = failures[c]
        elif states.get(c) == "failed":
            failed[c] = str(details.get(c, {}).get("error"))
        else:
            state = states.get(c, "missing")
            counts[state if state in counts else "missing"].append(c)
    lines = list(incidents)
    parts = [f"{len(failed)} failed"] if failed else []
    parts += [f"{len(lost)} lost with their job or worker"] if lost else []
    parts += [f"{len(counts['interrupted'])} interrupted (their worker was stopped or died)"] if counts["interrupted"] else []
    parts += [f"{len(counts['running'])} still marked running"] if counts["running"] else []
    parts += [f"{len(counts['missing'])} missing (never started)"] if counts["missing"] else []
    lines.append(f"{len(left)} of {len(todo)} cell(s) not stored on {where} workers: {', '.join(parts)}; "
                 f"the {len(todo) - len(left)} other(s) are stored"
                 + ("" if failed else "; nothing failed in the cells themselves"))
    if failed:
        lines.append(f"failed (tracebacks in {root}/status/<cell>.failed.json):")
        lines += [f"  {cid}: {err}" for cid, err in failed.items()]
    if lost:
        lines.append("lost with their job or worker (no traceback of the cell's own; see the job's log):")
        lines += [f"  {cid}: {err}" for cid, err in lost.items()]
    lines.append(f"  re-run the suite to compute only the {len(left)} missing cell(s) (audiobench status {root} lists "
                 f"them), or one alone: audiobench run SUITE -o {root} --cell ID")
    return lines
