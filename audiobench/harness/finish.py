"""The end of every run, whatever executor ran its cells: join, manifest, tables, after-cell stages.

:func:`finish` is the one place a run ends (the in-process loop, ``--workers``, submitit and Ray all
call it, and so does ``audiobench score``): the stored cells are joined into ``per_sample.parquet``,
the manifest is written, the tables rendered, then every stage of :data:`AFTER_CELLS` that applies to
the suite runs, in order, and the manifest is written once more with their records.

An after-cell stage is a :class:`AfterCellsStage`: a name (the manifest key of its record, if it
returns one), when it applies, and what it does. Adding one here adds it to every executor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from audiobench.data.levels import level_record
from audiobench.harness.session import RunResult, Session
from audiobench.kernel.cache import atomic_write_json
from audiobench.store.manifest import build_manifest
from audiobench.suite.separation import classifier_trains_here, training_record
from audiobench.tables import render_run


@dataclass(frozen=True)
class AfterCellsStage:
    """A stage that runs once every cell is stored.

    ``applies(session)``: whether the suite asks for it. ``run(session, frame)`` (``frame``: the run's
    long per-sample rows) writes its outputs into the run directory and returns its manifest record
    (stored under ``name``) or None. ``on_score``: whether ``audiobench score`` runs it again (its
    inputs are the scored rows); otherwise the record of the run is kept as it was.
    """

    name: str
    applies: Callable[[Session], bool]
    run: Callable[[Session, pd.DataFrame], dict[str, Any] | None]
    on_score: bool


def _prompt_analysis(session: Session, frame: pd.DataFrame) -> None:
    from audiobench.tables.prompts import write_prompt_analysis

    write_prompt_analysis(session.store.root, frame)
    return None


def _sanity(session: Session, frame: pd.DataFrame) -> dict[str, Any]:
    from audiobench.sanity.stage import run_sanity

    return run_sanity(session)


AFTER_CELLS: list[AfterCellsStage] = [
    # zero-shot runs: LMAC-ZS Fig. 3 and 4 (mask mean against similarity per prompt)
    AfterCellsStage("prompt_analysis", lambda s: {"mm", "similarity"} <= set(s.suite.metrics), _prompt_analysis, True),
    # the suite's sanity: section (randomisation, ROAR, plots), resumable from RUN_DIR/sanity
    AfterCellsStage("sanity", lambda s: s.suite.sanity is not None, _sanity, False),
]


def finish(
    session: Session, cell_meta: list[dict[str, Any]], t_start: float, executor: dict[str, Any] | None = None,
    scoring: bool = False, kept: dict[str, Any] | None = None,
) -> RunResult:
    """Join the stored cells into the run's results, manifest and tables, then run the after-cell stages.

    ``cell_meta``: each cell's stored metadata (with ``resumed``), in table order. ``t_start``:
    ``time.perf_counter()`` at the run's start (its wall time goes into the manifest). ``executor``:
    the executor's parameters, recorded under ``executor`` (None for the in-process loop).
    ``scoring``: called by ``audiobench score``: stages with ``on_score=False`` do not run and their
    records are taken from ``kept`` (the manifest being rescored). Returns the :class:`RunResult`.
    """
    store = session.store
    frame = pd.concat([store.read_cell(c.id)[0] for c in session.cells], ignore_index=True)
    manifest = build_manifest(session.suite, session.trained.info, cell_meta, session.load_skips, frame, session.limit,
                              session.device, t_start, session.classifier.class_names)
    manifest["output_kind"] = session.classifier.output_kind  # the network's own (a trained record may not say)
    manifest.update(level_record(session.suite.model.build().peak_normalise))  # only where it departs from the recipe
    manifest["selection"] = session.selection
    manifest["training"] = training_record(session.splits, session.suite.augment, session.suite.train,
                                           classifier_trains_here(session.suite.model), session.suite.model)
    if executor is not None:
        manifest["executor"] = executor
    store.write_results(frame, manifest)
    tables = render_run(store.root)
    for stage in AFTER_CELLS:
        if not stage.applies(session):
            continue
        if scoring and not stage.on_score:
            if kept is not None and stage.name in kept:
                manifest[stage.name] = kept[stage.name]
            continue
        record = stage.run(session, frame)
        if record is not None:
            manifest[stage.name] = record
    atomic_write_json(store.root / "manifest.json", manifest)
    return RunResult(store.root, manifest, tables)

