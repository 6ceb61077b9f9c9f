"""What a run directory holds: which cells are done, running, failed or missing (``audiobench status``).

Whichever executor runs the cells (in order, ``--workers``, Slurm through submitit, Ray), the same
files say where each cell stands::

    RUN_DIR/status/plan.json            every cell of the suite, in table order (written by the shared stage)
    RUN_DIR/status/<cell>.running.json  host, pid, executor and start time of the worker running it
    RUN_DIR/status/<cell>.failed.json   the error and traceback of its last failed attempt
    RUN_DIR/cells/<cell>.json           the cell is complete (:mod:`audiobench.store.run_dir`)

A marker is written atomically and removed when the cell completes; a completed cell is done
whatever markers remain. A ``running`` marker whose process is gone (same host, pid not alive) is
reported as ``interrupted``: the cell is missing and a re-run computes it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiobench.kernel.errors import AudiobenchError

STATUS_DIR = "status"
STATES = ("done", "running", "failed", "interrupted", "missing")


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON so readers see a whole file. Unlike :func:`audiobench.kernel.cache.atomic_write_json`
    it has no test kill point: markers are bookkeeping, and the crash tests count the result writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def status_dir(root: str | Path) -> Path:
    return Path(root) / STATUS_DIR


def write_plan(root: str | Path, suite_name: str, cells: list[Any]) -> None:
    """Record every cell of the run (id, domain, contamination key, method, row) in table order."""
    atomic_write_json(status_dir(root) / "plan.json", {"suite": suite_name, "cells": [
        {"id": c.id, "domain": c.domain.build().key(), "contamination": c.contamination.build().key(),
         "method": c.method.name, "row": c.method.label} for c in cells]})


def _marker(root: str | Path, cell_id: str, kind: str) -> Path:
    return status_dir(root) / f"{cell_id}.{kind}.json"


@contextmanager
def tracked(root: str | Path, cell_id: str, executor: str = "sequential") -> Iterator[None]:
    """Mark ``cell_id`` running while the block runs; on an exception record it as failed (error and
    traceback) and re-raise (an interruption only removes the running marker); on success remove its markers."""
    running = _marker(root, cell_id, "running")
    atomic_write_json(running, {"host": socket.gethostname(), "pid": os.getpid(), "executor": executor,
                                "started": time.time()})
    try:
        yield
    except (KeyboardInterrupt, SystemExit):  # stopped, not failed: the cell is missing
        running.unlink(missing_ok=True)
        raise
    except BaseException as exc:
        atomic_write_json(_marker(root, cell_id, "failed"), {
            "host": socket.gethostname(), "pid": os.getpid(), "executor": executor, "time": time.time(),
            "error": f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__,
            "traceback": traceback.format_exc()})
        running.unlink(missing_ok=True)
        raise
    running.unlink(missing_ok=True)
    _marker(root, cell_id, "failed").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclass
class RunStatus:
    """Where every cell of a run stands: ``cells`` maps each id to its state (one of :data:`STATES`)."""

    root: Path
    suite: str
    cells: dict[str, str]
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # running / failed: the marker's content
    finished: bool = False  # per_sample.parquet and manifest.json are written and cover every cell
    stages_pending: list[str] = field(default_factory=list)  # after-cell stages the suite asks for, not recorded yet

    def count(self, state: str) -> int:
        return sum(s == state for s in self.cells.values())

    def ids(self, state: str) -> list[str]:
        return [c for c, s in self.cells.items() if s == state]

    def lines(self) -> list[str]:
        """A human-readable report: counts, then each failed, running and missing cell."""
        n = len(self.cells)
        out = [f"{self.root}: suite {self.suite}, {n} cells: " + ", ".join(f"{self.count(s)} {s}" for s in STATES)
               + ("; results and tables written" if self.finished else "")]
        if self.finished and self.stages_pending:
            out.append(f"not finished: the {', '.join(self.stages_pending)} stage(s) after the cells (interrupted or "
                       "failed); re-run the suite to resume them")
        for cid in self.ids("failed"):
            d = self.details[cid]
            out.append(f"failed   {cid}  ({d.get('executor')} on {d.get('host')}, pid {d.get('pid')}): {d.get('error')}")
        for cid in self.ids("running"):
            d = self.details[cid]
            out.append(f"running  {cid}  ({d.get('executor')} on {d.get('host')}, pid {d.get('pid')}, "
                       f"for {time.time() - float(d.get('started', time.time())):.0f} s)")
        for cid in self.ids("interrupted"):
            out.append(f"interrupted {cid}  (its worker, pid {self.details[cid].get('pid')}, is gone)")
        for cid in self.ids("missing"):
            out.append(f"missing  {cid}")
        if self.count("failed") or self.count("missing") or self.count("interrupted"):
            out.append("re-run the suite to compute what is missing, or one cell alone: audiobench run SUITE -o "
                       f"{self.root} --cell ID")
        return out


def run_status(root: str | Path) -> RunStatus:
    """The state of every cell of the run in ``root``. Raises :class:`AudiobenchError` when ``root``
    has no plan (not a run directory, or its shared stage has not finished yet)."""
    root = Path(root)
    plan_path = status_dir(root) / "plan.json"
    if not plan_path.exists():
        what = "not a run directory" if not (root / "cells").exists() and not root.exists() else \
            "its shared stage (data, classifier, fits) has not finished yet"
        raise AudiobenchError(f"no {STATUS_DIR}/plan.json in {root}: {what}")
    plan = json.loads(plan_path.read_text())
    host = socket.gethostname()
    cells: dict[str, str] = {}
    details: dict[str, dict[str, Any]] = {}
    for c in plan["cells"]:
        cid = c["id"]
        if (root / "cells" / f"{cid}.json").exists() and (root / "cells" / f"{cid}.parquet").exists():
            cells[cid] = "done"
            continue
        running, failed = _marker(root, cid, "running"), _marker(root, cid, "failed")
        if running.exists():
            details[cid] = json.loads(running.read_text())
            local_dead = details[cid].get("host") == host and not _alive(int(details[cid].get("pid", 0)))
            cells[cid] = "interrupted" if local_dead else "running"
        elif failed.exists():
            details[cid] = json.loads(failed.read_text())
            cells[cid] = "failed"
        else:
            cells[cid] = "missing"
    finished = (root / "manifest.json").exists() and all(s == "done" for s in cells.values())
    pending: list[str] = []
    if finished:  # the manifest is written once before the after-cell stages and again with their records
        manifest = json.loads((root / "manifest.json").read_text())
        sanity = (manifest.get("suite") or {}).get("sanity") or {}
        if any(sanity.get(k) is not None for k in ("randomisation", "roar", "meta_consistency", "plots")) \
                and "sanity" not in manifest:
            pending.append("sanity")
    return RunStatus(root, plan["suite"], cells, details, finished, pending)
