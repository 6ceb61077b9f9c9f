"""Executors: the cells of a run in this process, in local worker processes, a Slurm job array, or Ray tasks.

A run is a shared stage (data, classifier, every trainable method's fit; each cached by a hash of
what shaped it) followed by cells that are independent (:mod:`audiobench.harness.session`). Every
executor, the in-process loop included, is a thin layer on that, driven by :func:`run_with`:

1. the shared stage runs once (in this process for ``sequential`` and ``local``; one job for
   ``submitit``, one task for ``ray``) and returns the ids of the cells not yet stored;
2. each missing cell runs by its id (:func:`cell_task`): in this process, or in a worker that
   rebuilds the shared stage from the cache (loads, never retrains) and writes the cell atomically
   into the same run directory, holding the cell writers' shared lock (:mod:`audiobench.store.lock`);
3. when every cell is stored, :func:`finish_stage` writes the results, manifest and tables and runs
   the after-cell stages (sanity checks, prompt analysis: :data:`audiobench.harness.finish.AFTER_CELLS`),
   the same for every executor.

A cell that fails is reported with its id and error (its traceback in
``RUN_DIR/status/<cell>.failed.json``, :mod:`audiobench.store.status`); the others still run, and no
table is written until it succeeds: re-run the suite (with any executor) to compute only what is
missing, or the cell alone with ``audiobench run SUITE --cell ID``. A worker that dies (killed by the
OOM killer, a crash in native code) or a job that dies is reported as such, its cells counted as
``audiobench status`` shows them (:func:`unfinished_report`), never as failures of the cells. Stopping
a ``--workers`` run (SIGTERM) stops its workers (:mod:`audiobench.harness.pool`). ``--executor ray
--address`` with no cluster behind it is a one-line error within seconds (:func:`connect_ray`).

Executors change where cells run, never what they compute: each cell's random draws come from its
own hash. Results equal the sequential run's at the same number of torch threads per cell (and
differ in the last float bits otherwise, like any change of thread count).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from audiobench.contracts.registry import load_plugin_file
from audiobench.harness.finish import finish
from audiobench.harness.pool import run_pool
from audiobench.harness.ray_connect import RAY_CONNECT_ENV, connect_ray, env_set
from audiobench.harness.session import RunResult, Session, find_cell, prepare, resolve_device, run_cell
from audiobench.harness.unfinished import unfinished_report
from audiobench.kernel.cache import cache_dir, stable_hash
from audiobench.kernel.errors import AudiobenchError, error_line
from audiobench.store.lock import cells_lock, run_lock
from audiobench.store.run_dir import RunStore
from audiobench.store.status import write_plan
from audiobench.suite import Suite
from audiobench.suite.schema import ExecutorParams

ENV_KEYS = ("AUDIOBENCH_CACHE", "AUDIOBENCH_SHIPPED")  # what a worker must see as this process does


@dataclass(frozen=True)
class Job:
    """What a worker needs to rebuild a run's shared stage: the suite, the run directory (absolute),
    the clip limit, the device and the environment that locates the cache."""

    suite: Suite
    root: str
    limit: int | None
    device: str
    env: dict[str, str] = field(default_factory=dict)


_SESSIONS: dict[str, Session] = {}  # one shared stage per worker process (Ray reuses its workers)


def _session(job: Job, progress: bool = False) -> Session:
    """The shared stage of ``job`` in this process, built once (classifier and fits from the cache)."""
    os.environ.update(job.env)
    for path in job.suite.plugins:  # registered before anything names their components
        load_plugin_file(path)
    key = stable_hash([job.suite.resolved(), job.root, job.limit, job.device])
    if key not in _SESSIONS:
        _SESSIONS.clear()
        _SESSIONS[key] = prepare(job.suite, job.root, job.limit, job.device, progress=progress)
    return _SESSIONS[key]


def shared_stage(job: Job, progress: bool = False, only: str | None = None, redo: bool = False) -> list[str]:
    """Data, classifier and every trainable method's fit (cached); writes the run's plan
    (``RUN_DIR/status/plan.json``) and returns the ids of the cells not stored yet, in table order
    (``only``: just that cell, by id or unique prefix; an unknown id raises :class:`AudiobenchError`;
    ``redo``: that cell is discarded first and computed again, the others kept)."""
    session = _session(job, progress)
    store = session.store
    write_plan(store.root, job.suite.name, session.cells)
    if only and redo:
        store.discard(find_cell(session, only).id)
    renamed, discarded = store.reconcile({c.id: c.hash for c in session.cells})
    if renamed:
        print(f"{len(renamed)} stored cell(s) renamed to this version's ids (nothing recomputed)", file=sys.stderr)
    if discarded:
        print(f"{len(discarded)} stored cell(s) were written under other output settings (audio, masks or metrics): "
              "computed again to rewrite their outputs; their numbers do not change", file=sys.stderr)
    cells = [c for c in ([find_cell(session, only)] if only else session.cells) if not store.has(c.id)]
    for c in cells:  # fits before any cell, so workers only load them
        if c.method.cls().trainable:
            session.explainer(c)
    return [c.id for c in cells]


def cell_task(job: Job, cell_id: str, executor: str = "local", threads: int | None = None) -> dict[str, Any]:
    """Run one cell by its id in this process (``threads``: torch threads) and store it; returns its
    metadata (``resumed``: it was stored already). Raises what the cell raises (recorded as failed)."""
    if threads:
        torch.set_num_threads(threads)
    with cells_lock(job.root):
        session = _session(job)
        cell = find_cell(session, cell_id)
        if session.store.has(cell.id):
            return {**session.store.read_cell(cell.id)[1], "resumed": True}
        meta = run_cell(session, cell, executor)
        session.fitted.pop(cell.id, None)
        return {**meta, "resumed": False}


def cell_group_task(job: Job, cell_ids: list[str], executor: str = "submitit", threads: int | None = None) -> dict[str, str]:
    """Run several cells one after the other in this process (one array task of a cluster job, so
    short cells share one start-up); returns the error line of each cell that failed (the others
    are stored). A failed cell does not stop the next."""
    failures: dict[str, str] = {}
    for cid in cell_ids:
        try:
            cell_task(job, cid, executor, threads)
        except Exception as exc:
            failures[cid] = error_line(exc)
    return failures


def finish_stage(job: Job, fresh: list[str], seconds: float, executor: dict[str, Any] | None) -> RunResult:
    """Join the stored cells into per_sample.parquet, manifest.json (with the executor, None for the
    in-process loop, and the run's wall time ``seconds``) and the tables, then run the after-cell
    stages (:func:`audiobench.harness.finish.finish`); ``fresh``: the cells computed by this run.
    Raises :class:`AudiobenchError` when a cell is not stored."""
    session = _session(job)
    store = session.store
    missing = [c.id for c in session.cells if not store.has(c.id)]
    if missing:
        raise AudiobenchError(f"{len(missing)} cell(s) of {store.root} are not stored: {', '.join(missing[:3])}")
    fresh_ids = set(fresh)
    metas = [store.read_cell(c.id)[1] | {"resumed": c.id not in fresh_ids} for c in session.cells]
    return finish(session, metas, time.perf_counter() - seconds, executor)


class _Sequential:
    """The cells one after the other in this process (the default). A failing cell stops the run
    with its own exception (recorded as failed in ``RUN_DIR/status``); ``only``: ``--cell ID``."""

    name = "sequential"

    def __init__(self, progress: bool, only: str | None = None, redo: bool = False):
        self.progress, self.only, self.redo = progress, only, redo
        self.incidents: list[str] = []

    def shared(self, job: Job) -> list[str]:
        return shared_stage(job, self.progress, self.only, self.redo)

    def cells(self, job: Job, ids: list[str]) -> dict[str, str]:
        session = _session(job)
        outer = tqdm([find_cell(session, cid) for cid in ids], desc=job.suite.name, unit="cell", disable=not self.progress)
        for c in outer:  # ids from shared_stage: the cells not stored
            outer.set_postfix_str(f"{c.domain.build().key()} | {c.contamination.build().key()} | {c.method.label}")
            run_cell(session, c)
        return {}

    def finish(self, job: Job, fresh: list[str], seconds: float) -> RunResult:
        return finish_stage(job, fresh, seconds, None)

    def close(self) -> None:
        pass


class _Local:
    """``workers`` processes on this machine (spawned), each with ``threads`` torch threads
    (:mod:`audiobench.harness.pool`: a stop stops them, a dead worker is reported as such)."""

    name = "local"

    def __init__(self, params: ExecutorParams, progress: bool):
        self.params, self.progress = params, progress
        total = torch.get_num_threads()
        self.threads = params.threads or max(1, total // params.workers)
        self.incidents: list[str] = []

    def shared(self, job: Job) -> list[str]:
        return shared_stage(job, self.progress)  # here: the session is reused by finish

    def cells(self, job: Job, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        task = partial(cell_task, job, executor="local", threads=self.threads)
        out = run_pool(task, ids, self.params.workers, error_line, desc=job.suite.name, progress=self.progress,
                       stop_note=f" (audiobench status {job.root} lists the interrupted cells)")
        self.incidents = out.incidents
        return out.failures

    def finish(self, job: Job, fresh: list[str], seconds: float) -> Any:
        return finish_stage(job, fresh, seconds, self.params.model_dump(mode="json"))

    def close(self) -> None:
        pass


class _Submitit:
    """The shared stage as one job, then the missing cells as a job array (Slurm through ``submitit``;
    ``cluster: local`` runs the same jobs as local subprocesses), then a job that writes the tables."""

    name = "submitit"

    def __init__(self, params: ExecutorParams, root: Path, suite: Suite):
        try:
            import submitit
        except ImportError as exc:
            raise AudiobenchError("--executor submitit needs the submitit package: pip install submitit") from exc
        self.params = params
        folder = params.folder or str(root / "submitit" / "%j")
        self.executor = submitit.AutoExecutor(folder=folder, cluster=params.cluster)
        kw: dict[str, Any] = {
            "name": f"audiobench-{suite.name}", "timeout_min": params.time_min, "cpus_per_task": params.cpus_per_task,
            "gpus_per_node": params.gpus_per_task, "tasks_per_node": 1, "nodes": 1,
            "slurm_array_parallelism": params.array_parallelism,
        }
        if params.mem_gb is not None:
            kw["mem_gb"] = params.mem_gb
        if params.partition:
            kw["slurm_partition"] = params.partition
        if params.setup:
            kw["slurm_setup"] = list(params.setup)
        if params.slurm:
            kw["slurm_additional_parameters"] = dict(params.slurm)
        self.executor.update_parameters(**kw)
        self.slurm = self.executor.cluster == "slurm"
        self.incidents: list[str] = []

    def shared(self, job: Job) -> list[str]:
        return self.executor.submit(shared_stage, job).result()

    def cells(self, job: Job, ids: list[str]) -> dict[str, str]:
        k = self.params.cells_per_task
        groups = [ids[i : i + k] for i in range(0, len(ids), k)]
        args = [(job, g, "submitit", self.params.cpus_per_task) for g in groups]
        failures: dict[str, str] = {}
        if self.slurm:  # one array; Slurm keeps array_parallelism of it running
            with self.executor.batch():
                submitted = [self.executor.submit(cell_group_task, *a) for a in args]
            for g, j in zip(groups, submitted, strict=True):
                self._wait(g, j, failures)
            return failures
        window = self.params.array_parallelism  # local subprocesses: at most array_parallelism at once
        pending = list(zip(groups, args, strict=True))
        running: list[tuple[list[str], Any]] = []
        while pending or running:
            while pending and len(running) < window:
                g, a = pending.pop(0)
                running.append((g, self.executor.submit(cell_group_task, *a)))
            g, j = running.pop(0)
            self._wait(g, j, failures)
        return failures

    @staticmethod
    def _wait(group: list[str], j: Any, failures: dict[str, str]) -> None:
        try:
            failures.update(j.result())
        except Exception as exc:  # the job died (time limit, memory): its cells (the report leaves out those stored)
            for cid in group:
                failures[cid] = f"{error_line(exc)} (job {j.job_id}, logs {j.paths.stderr})"

    def finish(self, job: Job, fresh: list[str], seconds: float) -> Any:
        return self.executor.submit(finish_stage, job, fresh, seconds, self.params.model_dump(mode="json")).result()

    def close(self) -> None:
        pass


class _Ray:
    """The shared stage, each missing cell and the final join as Ray tasks, each requesting
    ``cpus_per_task`` CPUs, ``gpus_per_task`` GPUs and ``mem_gb`` memory."""

    name = "ray"

    def __init__(self, params: ExecutorParams, progress: bool):
        target = os.environ.get("RAY_ADDRESS") or params.address  # Ray's own precedence
        with env_set(RAY_CONNECT_ENV if target not in (None, "", "local") else {}):  # Ray reads them on import
            try:
                import ray
            except ImportError as exc:
                raise AudiobenchError("--executor ray needs the ray package: pip install ray") from exc
            self.ray, self.params, self.progress = ray, params, progress
            self.incidents: list[str] = []
            self.started = False
            if not ray.is_initialized():
                connect_ray(ray, params.address)
                self.started = True
        opts: dict[str, Any] = {"num_cpus": params.cpus_per_task, "num_gpus": params.gpus_per_task, "max_retries": 0}
        if params.mem_gb is not None:
            opts["memory"] = int(params.mem_gb * 1e9)
        self.opts = opts

    def _remote(self, fn: Any) -> Any:
        return self.ray.remote(fn).options(**self.opts)

    def shared(self, job: Job) -> list[str]:
        return self.ray.get(self._remote(shared_stage).remote(job))

    def cells(self, job: Job, ids: list[str]) -> dict[str, str]:
        task = self._remote(cell_task)
        refs = {task.remote(job, cid, "ray", self.params.cpus_per_task): cid for cid in ids}
        failures: dict[str, str] = {}
        pending = list(refs)
        bar = tqdm(total=len(refs), desc=job.suite.name, unit="cell", disable=not self.progress)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    self.ray.get(ref)
                except Exception as exc:  # ray.exceptions.RayTaskError wraps the cell's error
                    cause = getattr(exc, "cause", None)
                    failures[refs[ref]] = error_line(cause if isinstance(cause, BaseException) else exc)
                bar.update(1)
        bar.close()
        return failures

    def finish(self, job: Job, fresh: list[str], seconds: float) -> Any:
        return self.ray.get(self._remote(finish_stage).remote(job, fresh, seconds, self.params.model_dump(mode="json")))

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _job_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_KEYS if k in os.environ}
    env["AUDIOBENCH_CACHE"] = str(cache_dir().resolve())  # workers use this process's cache
    return env


def run_with(
    suite: Suite, root: str | Path, limit: int | None, device: str, overwrite: bool, progress: bool,
    params: ExecutorParams | None, cell: str | None = None,
) -> RunResult:
    """Run ``suite`` into ``root``: shared stage, the missing cells, then :func:`finish_stage`.

    ``params``: the executor (None or not parallel: this process, in order). ``cell``: run only that
    cell (its id or a unique prefix) in this process (with ``overwrite``: that cell is computed again,
    the other stored cells kept); the run is finished (results, tables, after-cell
    stages) only when every cell is then stored, else the result has ``complete=False``.
    A suite run holds the run lock (a second one on ``root`` is refused); a ``cell`` run without
    ``overwrite`` holds only the cell writers' shared lock, so several may write one directory.
    Raises :class:`AudiobenchError` when a parallel executor leaves cells unstored, after the others are
    stored: each failed cell (id and error), each worker or job that died, and the counts of
    :func:`unfinished_report`; the in-process loop raises the failing cell's own exception.
    :class:`audiobench.kernel.errors.RunStopped`: SIGTERM stopped the ``local`` workers.
    """
    parallel = cell is None and params is not None and params.parallel
    root = Path(root).resolve() if parallel else Path(root)
    t0 = time.perf_counter()
    job = Job(suite, str(root), limit, device, _job_env() if parallel else {})
    # --cell ID --overwrite recomputes that cell only (under the run lock); --overwrite alone starts over
    whole = overwrite and cell is None
    lock = cells_lock(root) if cell is not None and not overwrite else run_lock(root, RunStore(root).clear if whole else None)
    with lock:
        backend: Any
        if not parallel:
            resolve_device(device)
            backend = _Sequential(progress, cell, redo=cell is not None and overwrite)
        elif params.name == "local":
            resolve_device(device)
            backend = _Local(params, progress)
        elif params.name == "submitit":
            backend = _Submitit(params, root, suite)
        else:
            backend = _Ray(params, progress)
        try:
            todo = backend.shared(job)
            failures = backend.cells(job, todo)
            lines = unfinished_report(root, todo, failures, backend.incidents, backend.name)
            if lines:
                raise AudiobenchError("\n".join(lines))
            if cell is not None:
                session = _session(job)
                if not all(session.store.has(c.id) for c in session.cells):
                    metas = [session.store.read_cell(cid)[1] | {"resumed": False} for cid in todo]
                    return RunResult(session.store.root, {"cells": metas}, complete=False)
            return backend.finish(job, todo, time.perf_counter() - t0)
        finally:
            backend.close()
            _SESSIONS.clear()
