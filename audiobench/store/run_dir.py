"""A run directory: per-cell results written atomically, then the long per-sample table and manifest.

Layout::

    RUN_DIR/manifest.json         resolved suite, seeds, versions, git hash, accuracy, timings, skips
    RUN_DIR/per_sample.parquet    long form: dataset, model, domain, contamination, method, row,
                                  sample_id, target, metric, value
    RUN_DIR/tables/*.md|.tex|.csv
    RUN_DIR/cells/<cell>.parquet  one completed cell (its .json, written last, marks it complete)
    RUN_DIR/masks/<cell>.npz      the cell's kept explanations (audiobench.store.masks)
    RUN_DIR/audio/...             listenable interpretations (stft2mel)

``row`` is the table row (a method's label); ``target`` the class (0-based index into the
manifest's ``classes``) the row's clip was explained for.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from audiobench.kernel.cache import atomic_write_bytes, atomic_write_json
from audiobench.kernel.errors import AudiobenchError
from audiobench.kernel.faults import kill_point

COLUMNS = ["dataset", "model", "domain", "contamination", "method", "row", "sample_id", "target", "metric", "value"]


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.cells = self.root / "cells"

    def masks_path(self, cell_id: str) -> Path:
        """Where a cell's kept explanations live."""
        return self.root / "masks" / f"{cell_id}.npz"

    def has(self, cell_id: str, cell_hash: str | None = None) -> bool:
        """Whether the cell is stored complete (its rows and record); with ``cell_hash``, also that its
        record was written for that hash (:attr:`audiobench.harness.cells.Cell.hash`): a cell stored
        under other output settings is not."""
        record = self.cells / f"{cell_id}.json"
        if not (record.exists() and (self.cells / f"{cell_id}.parquet").exists()):
            return False
        return cell_hash is None or self.stored_hash(cell_id) == cell_hash

    def stored_hash(self, cell_id: str) -> str | None:
        """The hash a stored cell's record was written for (None when unreadable or absent)."""
        try:
            meta = json.loads((self.cells / f"{cell_id}.json").read_text())
        except (OSError, ValueError):
            return None
        return meta.get("hash") if isinstance(meta, dict) else None

    def reconcile(self, cells: dict[str, str], discard_stale: bool = True) -> tuple[list[str], list[str]]:
        """Bring stored cells in line with the suite's cells ``{id: hash}`` before a run computes any.

        A cell stored under another id with the same hash (ids written before they left out the
        output-only settings, or a GradCAM++ row's earlier stem) is renamed to its id, masks
        included: nothing is recomputed. A cell stored under its id for another hash (the suite's
        ``audio``, ``masks`` or ``metrics`` changed) is discarded, so it is computed again; its
        numbers do not change (the seeds come from the explanation hash); ``discard_stale=False`` (``score``)
        keeps it. Returns (renamed, discarded) ids.
        """
        renamed, discarded = [], []
        wanted = {h: cid for cid, h in cells.items() if not self.has(cid)}
        for record in sorted(self.cells.glob("*.json")) if self.cells.is_dir() else []:
            old = record.stem
            target = wanted.get(self.stored_hash(old) or "")
            if old in cells or target is None or not (self.cells / f"{old}.parquet").exists():
                continue
            for src, dst in ((self.masks_path(old), self.masks_path(target)),
                             (self.cells / f"{old}.parquet", self.cells / f"{target}.parquet")):
                if src.exists():
                    src.replace(dst)
            atomic_write_json(self.cells / f"{target}.json", {**json.loads(record.read_text()), "id": target})  # last: complete
            record.unlink()
            wanted.pop(cells[target])
            renamed.append(target)
        for cid, h in cells.items() if discard_stale else ():
            if self.has(cid) and not self.has(cid, h):
                self.discard(cid)
                discarded.append(cid)
        return renamed, discarded

    def write_cell(self, cell_id: str, frame: pd.DataFrame, meta: dict[str, Any]) -> None:
        """Store a completed cell: the rows first, then the metadata that marks it complete."""
        atomic_write_bytes(self.cells / f"{cell_id}.parquet", _parquet_bytes(frame[COLUMNS]))
        kill_point("cell_write")  # rows without their record: not complete, recomputed on resume
        atomic_write_json(self.cells / f"{cell_id}.json", meta)

    def read_cell(self, cell_id: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        frame = pd.read_parquet(self.cells / f"{cell_id}.parquet")
        return frame, json.loads((self.cells / f"{cell_id}.json").read_text())

    def discard(self, cell_id: str) -> None:
        """Remove one stored cell (its rows, record and kept masks), so it is computed again
        (``run --cell ID --overwrite``); the other cells and the run's results stay."""
        for path in (self.cells / f"{cell_id}.json", self.cells / f"{cell_id}.parquet", self.masks_path(cell_id)):
            path.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove everything a run writes (``--overwrite``)."""
        for name in ("cells", "tables", "audio", "masks", "status", "sanity", "plots"):
            shutil.rmtree(self.root / name, ignore_errors=True)
        for name in ("per_sample.parquet", "manifest.json"):
            (self.root / name).unlink(missing_ok=True)

    def write_results(self, frame: pd.DataFrame, manifest: dict[str, Any]) -> None:
        atomic_write_bytes(self.root / "per_sample.parquet", _parquet_bytes(frame[COLUMNS]))
        atomic_write_json(self.root / "manifest.json", manifest)


def load_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The manifest of a finished run."""
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        raise AudiobenchError(f"no manifest.json in {run_dir}: not a finished audiobench run")
    return json.loads(path.read_text())


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """The per-sample results of a finished run as a long pandas DataFrame."""
    path = Path(run_dir) / "per_sample.parquet"
    if not path.exists():
        raise AudiobenchError(f"no per_sample.parquet in {run_dir}: not a finished audiobench run")
    return pd.read_parquet(path)
