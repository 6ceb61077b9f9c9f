"""The shared stage of a run (:class:`Session`: data, classifier, fits) and one cell run on it.

Every executor (:mod:`audiobench.harness.executors`) builds a session with :func:`prepare`, runs
cells with :func:`run_cell` and ends with :func:`audiobench.harness.finish.finish`. Cells are
independent once the shared stage is done; each is written atomically when it completes, so an
interrupted run resumes where it stopped, and ``--cell ID`` runs one cell in a process of its own
with the same rows as the full run.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audiobench.contracts.frontend import Frontend
from audiobench.contracts.registry import METRICS
from audiobench.data.base import ClipSet, Skip
from audiobench.data.contaminations import condition_record
from audiobench.data.integrity import check_splits
from audiobench.data.levels import input_level, level_record
from audiobench.data.sampling import select_clips
from audiobench.harness.cells import (
    Cell,
    evaluate_cell,
    expand_cells,
    explain_rows,
    with_cell_columns,
)
from audiobench.kernel.cache import stable_hash
from audiobench.kernel.errors import AudiobenchError, did_you_mean
from audiobench.kernel.malloc import tune_allocator
from audiobench.methods.base import DomainModel, Explainer, FitContext
from audiobench.metrics.budget import Budget
from audiobench.models.training import TrainedClassifier, classifier_hash, get_classifier
from audiobench.store.audio import interpretation_dir, write_wavs
from audiobench.store.ids import safe_child
from audiobench.store.masks import write_masks
from audiobench.store.run_dir import RunStore
from audiobench.store.status import tracked
from audiobench.suite import Suite, load_suite


@dataclass
class RunResult:
    """A run directory with its manifest and tables (slug -> markdown); ``complete`` is False when
    ``--cell`` ran one cell and others remain (no manifest or tables written yet)."""

    run_dir: Path
    manifest: dict[str, Any]
    tables: dict[str, str] = field(default_factory=dict)
    complete: bool = True
    # audiobench score --replace: per recomputed metric, stored rows compared, how many moved, max / mean |change|
    changes: dict[str, dict[str, float]] = field(default_factory=dict)
    computed: list[str] = field(default_factory=list)  # audiobench score: the metrics it computed (none: nothing to do)


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu`` / ``cuda`` -> a torch device. Raises :class:`AudiobenchError` when CUDA is asked for but absent."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AudiobenchError("--device cuda was asked for but no CUDA device is available (torch.cuda.is_available() is False)")
    return device


@dataclass
class Session:
    """The shared stage of a run: what every cell reads, built once (classifier and fits cached)."""

    suite: Suite
    store: RunStore
    device: torch.device
    frontend: Frontend
    dataset: Any
    splits: dict[str, ClipSet]
    load_skips: list[Skip]
    trained: TrainedClassifier
    evaluated: ClipSet
    limit: int | None
    cells: list[Cell]
    common: dict[str, Any]
    selection: dict[str, Any] = field(default_factory=dict)  # which clips are evaluated, and why
    progress: bool = True
    conditions: dict[str, ClipSet] = field(default_factory=dict)
    fitted: dict[str, tuple[Explainer, dict[str, Any], float]] = field(default_factory=dict)  # cell id -> explainer

    @property
    def classifier(self) -> torch.nn.Module:
        return self.trained.model

    def condition(self, cell: Cell) -> ClipSet:
        """The evaluated clips under the cell's contamination (built once per contamination; its
        first ``audio.n`` inputs are written as audio beside the interpretations)."""
        ckey = cell.contamination.build().key()
        if ckey not in self.conditions:
            suite, sr = self.suite, self.suite.frontend.sample_rate
            contamination = cell.contamination.build()
            pool = contamination.pool(self.dataset, self.splits, suite.split, sr)  # mixture partners: a split, or folds
            with self.input_level():
                clips = self.conditions[ckey] = contamination.apply(self.evaluated, pool, suite.seed)
            if any(d.cls().listenable for d in suite.domains) and suite.audio.n:
                n = min(suite.audio.n, len(clips))
                inputs = self.store.root / "audio" / ckey / "input"
                write_wavs(inputs, clips.sample_ids[:n], clips.waveforms[:n].numpy(), sr)
                wanted = {safe_child(inputs, sid, ".wav") for sid in clips.sample_ids[:n]}
                for stale in set(inputs.glob("*.wav")) - wanted:  # an earlier, larger audio.n: no input without its interpretations
                    stale.unlink(missing_ok=True)
        return self.conditions[ckey]

    def input_level(self) -> AbstractContextManager[None]:
        """The level clips reach the model at (:func:`~audiobench.data.levels.input_level`), as the suite's model
        declares (``ModelSpec.peak_normalise``): entered around conditions and fits."""
        return input_level(self.suite.model.build().peak_normalise)

    def model(self, cell: Cell) -> DomainModel:
        return DomainModel(self.classifier, cell.domain.build(), self.frontend).eval()

    def explainer(self, cell: Cell) -> tuple[Explainer, dict[str, Any], float]:
        """The cell's method, fitted (trainable methods: trained once, cached): (explainer, fit info, seconds)."""
        if cell.id in self.fitted:
            return self.fitted[cell.id]
        explainer: Explainer = cell.method.build()
        t0 = time.perf_counter()
        info: dict[str, Any] = {}
        if explainer.trainable:
            suite = self.suite
            augment = [c.build() for c in suite.augment] if explainer.augments() else []
            identity = {"classifier": self.trained.info["hash"], "data": data_identity(self.common["dataset"]),
                        "domain": cell.domain.resolved(), "frontend": self.common["frontend"]}
            if explainer.augments():  # what the fit may see is part of what it is (absent: earlier keys kept;
                # fits cached before train.augment existed trained on the evaluated conditions and must not be reused)
                identity["augment"] = [c.identity() for c in suite.augment]  # a noise folder by its content
            identity.update(level_record(self.suite.model.build().peak_normalise))  # clips at the model's level
            with self.input_level():
                info = explainer.fit(FitContext(
                    model=self.model(cell), train=self.splits["train"], valid=self.splits["valid"],
                    augment=augment, seed=suite.seed, device=self.device, identity=identity,
                    log_dir=self.store.root / "logs" / cell.folder / cell.domain.build().key(),
                    progress=self.progress, max_rows=explain_rows(self.device),
                    targets=cell.method.targets or suite.targets,
                ))
            # what it trained on: the clean training splits (ids in the manifest's ``training``) and these conditions,
            # unless the fit says it read less (a SHAP background: the train split only)
            info = {"trained_on": {"clips": ["train", "valid"], "augment": [c.key() for c in augment]}, **info}
        self.fitted[cell.id] = (explainer, info, time.perf_counter() - t0)
        return self.fitted[cell.id]


def data_identity(resolved: dict[str, Any]) -> dict[str, Any]:
    """The dataset as a fit's cache key sees it: its resolved entry without ``root`` (the data may
    move: a fit shipped from one machine serves another where ESC-10 lies elsewhere; the
    classifier's key reads the files' fingerprint, never the path, for the same reason)."""
    params = resolved.get("params")
    if not isinstance(params, dict) or "root" not in params:
        return resolved
    return {**resolved, "params": {k: v for k, v in params.items() if k != "root"}}


def check_owner(store: RunStore, name: str, limit: int | None, seed: int | None = None) -> None:
    """Refuse a run directory that holds another run: another suite (its manifest's name), or the same
    suite on another selection of clips (another ``limit`` or ``seed``), which would replace its results. Raises
    :class:`AudiobenchError` in one line naming the remedy (another ``-o``, or ``--overwrite``)."""
    path = store.root / "manifest.json"
    if not path.exists():
        return
    try:
        held = json.loads(path.read_text())
    except (OSError, ValueError):
        raise AudiobenchError(f"{path} is not readable JSON: use another -o, or --overwrite to start over") from None
    held_name = (held.get("suite") or {}).get("name")
    cells = len(held.get("cells", []))
    if held_name is not None and held_name != name:
        raise AudiobenchError(f"{store.root} holds suite '{held_name}' ({cells} cells); use another -o, or --overwrite "
                              "to replace it")
    if seed is not None and held.get("seed") is not None and held["seed"] != seed:
        raise AudiobenchError(f"{store.root} holds a run with seed {held['seed']}; this run has seed {seed} (other clips, "
                              "other draws): use -o DIR, or --overwrite")
    if held.get("limit") != limit:
        def what(n: int | None) -> str:
            return "every clip of the split" if n is None else f"{n} clips (--limit {n})"
        again = f"--limit {held['limit']} to continue it" if held.get("limit") else "no --limit to continue it"
        raise AudiobenchError(f"{store.root} holds a run of {what(held.get('limit'))}; this run evaluates "
                              f"{what(limit)}: give {again}, use -o DIR, or --overwrite to replace it")


def _load(
    suite: Suite | str | Path, output: str | Path | None, limit: int | None, device: str, overwrite: bool,
) -> tuple[Suite, RunStore, torch.device, Frontend, Any, dict[str, ClipSet], list[Skip], int | None]:
    """The suite, its run store, device, front end, dataset and splits (checked), and the clip limit."""
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    limit = limit or suite.limit
    dev = resolve_device(device)
    store = RunStore(output or Path("results") / suite.name)
    if overwrite:
        store.clear()
    else:
        check_owner(store, suite.name, limit, suite.seed)
    frontend = Frontend(suite.frontend).to(dev)
    sr = suite.frontend.sample_rate
    dataset = suite.dataset.build()
    splits: dict[str, ClipSet] = {}
    load_skips: list[Skip] = []
    for split in ("train", "valid", "test"):
        clips = dataset.load(split, sr).drop_silent(where=f"{suite.dataset.name}:{split}")
        load_skips += clips.skips
        if len(clips) == 0:
            raise AudiobenchError(f"dataset '{suite.dataset.name}' has no usable clips in split '{split}'")
        splits[split] = clips
    check_splits(splits, suite.dataset.name)  # no clip in two splits, none twice
    return suite, store, dev, frontend, dataset, splits, load_skips, limit


def _cells(
    suite: Suite, splits: dict[str, ClipSet], classifier: str, limit: int | None,
) -> tuple[ClipSet, dict[str, Any], dict[str, Any], list[Cell]]:
    """The evaluated clips, their selection record, what every cell's hash shares, and the cells."""
    evaluated, selection = select_clips(splits[suite.split], limit, suite.seed)  # stratified, seeded, recorded
    common = {
        "dataset": suite.dataset.identity(), "split": suite.split, "limit": limit, "n": len(evaluated),
        "classifier": classifier, "frontend": suite.frontend.model_dump(mode="json"),
        "metrics": suite.metrics, "batch_size": suite.batch_size, "seed": suite.seed,
        "audio": suite.audio.model_dump(),
        "masks": suite.masks.model_dump(), "clips": stable_hash(evaluated.sample_ids),
    }
    common.update(level_record(suite.model.build().peak_normalise))  # clips at the model's level
    if suite.targets.model_dump() != type(suite.targets)().model_dump():  # the default keeps existing cells' hashes
        common["targets"] = suite.targets.model_dump(mode="json")
    if suite.uses_budget():  # only where it shapes a number: other suites' cell ids stay
        common["budget"] = suite.budget.model_dump(mode="json")
    return evaluated, selection, common, expand_cells(suite, common)


def prepare(
    suite: Suite | str | Path, output: str | Path | None = None, limit: int | None = None, device: str = "cpu",
    overwrite: bool = False, progress: bool = True,
) -> Session:
    """The shared stage: load the splits, get the classifier (trained once, cached), list the cells."""
    tune_allocator()
    suite, store, dev, frontend, dataset, splits, load_skips, limit = _load(suite, output, limit, device, overwrite)
    spec = suite.model.build()
    with input_level(spec.peak_normalise):  # training and the accuracy it records read clips at the model's level
        trained = get_classifier(  # model.checkpoint: loaded as it is; otherwise trained here and cached
            spec, suite.train, splits, frontend, dataset.fingerprint(), suite.seed, dev, progress, suite.split,
            augment=[c.build() for c in suite.augment],
        )
    trained.model.eval().requires_grad_(False)
    evaluated, selection, common, cells = _cells(suite, splits, trained.info["hash"], limit)
    return Session(suite, store, dev, frontend, dataset, splits, load_skips, trained, evaluated, limit,
                   cells, common, selection, progress)


def list_cells(suite: Suite | str | Path, output: str | Path | None = None, limit: int | None = None) -> list[tuple[Cell, bool]]:
    """Every cell of the suite and whether the run directory holds it, without training, loading or
    building the classifier (its cache key is enough for the cell ids): ``audiobench run --list-cells``."""
    suite, store, _, frontend, dataset, splits, _, limit = _load(suite, output, limit, "cpu", False)
    key = classifier_hash(suite.model.build(), suite.train, splits, frontend, dataset.fingerprint(), suite.seed,
                          suite.split, augment=[c.build() for c in suite.augment])
    return [(cell, store.has(cell.id, cell.hash)) for cell in _cells(suite, splits, key, limit)[3]]


def run_cell(session: Session, cell: Cell, executor: str = "sequential") -> dict[str, Any]:
    """Run one cell and store it (rows, kept explanations, then the metadata that marks it complete).
    While it runs it is marked running in ``RUN_DIR/status/`` (failed, with its error, if it raises)."""
    with tracked(session.store.root, cell.id, executor):
        return _run_cell(session, cell)


def audio_dir(session: Session, cell: Cell, ckey: str) -> Path:
    """Where the cell's interpretations are written (:func:`audiobench.store.audio.interpretation_dir`)."""
    listenable = [d.build().key() for d in session.suite.domains if d.cls().listenable]
    return interpretation_dir(session.store.root / "audio" / ckey, cell.domain.build().key(), listenable) / cell.folder


def _run_cell(session: Session, cell: Cell) -> dict[str, Any]:
    suite = session.suite
    clips = session.condition(cell)
    explainer, fit_info, t_fit = session.explainer(cell)
    t0 = time.perf_counter()
    ckey = cell.contamination.build().key()
    metrics = [METRICS.get(name) for name in suite.metrics]
    listen = audio_dir(session, cell, ckey)
    shutil.rmtree(listen, ignore_errors=True)  # a cell computed again (other audio.n) leaves none of its earlier WAVs
    out = evaluate_cell(
        cell, explainer, session.model(cell), clips, metrics, cell.method.targets or suite.targets, suite.batch_size, session.device,
        listen if suite.audio.n else None, suite.audio.n, session.progress,
        keep_precision=suite.masks.precision, budget=Budget.of(suite.budget, suite.seed),
    )
    seconds = time.perf_counter() - t0
    meta = {
        "id": cell.id, "hash": cell.hash, "domain": cell.domain.build().key(), "contamination": ckey,
        "method": cell.method.name, "row": cell.method.label, "params": cell.method.resolved().get("params", {}),
        "n": len(clips), "seconds": round(seconds + t_fit, 3), "fit_seconds": round(t_fit, 3),
        "seconds_per_clip": round(seconds / max(1, len(clips)), 5), "fit": fit_info,
        "not_applicable": out.not_applicable, "notes": out.notes + explainer.fit_notes(fit_info),  # e.g. a closed gate
        "skips": [s.as_dict() for s in out.skips],
        "condition": condition_record(clips, cell.contamination.build()),
    }
    if out.explanations is not None:
        write_masks(session.store.masks_path(cell.id), out.explanations, suite.masks.precision)
    names = {"dataset": suite.dataset.name, "model": suite.model.name}
    session.store.write_cell(cell.id, with_cell_columns(out.frame, cell, names), meta)
    return meta


def find_cell(session: Session, cell_id: str) -> Cell:
    """The cell named ``cell_id`` (its full id, or a unique prefix). Raises :class:`AudiobenchError` otherwise."""
    ids = [c.id for c in session.cells]
    matches = [c for c in session.cells if c.id == cell_id] or [c for c in session.cells if c.id.startswith(cell_id)]
    if len(matches) != 1:
        if matches:  # an ambiguous prefix: name the candidates (a few), not a guess
            shown = ", ".join(c.id for c in matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
            raise AudiobenchError(f"--cell {cell_id} matches {len(matches)} cells ({shown}); give more of the id")
        raise AudiobenchError(f"--cell {cell_id} is not a cell of this suite{did_you_mean(cell_id, ids)}; "
                              "`audiobench run SUITE --list-cells` lists them")
    return matches[0]
