"""Cells: one (domain, contamination, method) of a suite, explained and scored on every evaluated clip.

A cell is independent once the shared stage (data, classifier, trainable methods' fits) is done:
:func:`evaluate_cell` runs it in batches through the engine, writes its listenable interpretations,
and returns its long rows, kept explanations and metadata; the runner stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from audiobench.contracts.domains import Domain, Representation
from audiobench.contracts.explanation import Explanation
from audiobench.contracts.frontend import Frontend
from audiobench.contracts.groundtruth import GroundTruth, batch_truth
from audiobench.contracts.targets import TargetParams
from audiobench.data.base import ClipSet, Skip
from audiobench.harness.engine import BatchResult, evaluate_batch
from audiobench.kernel.batching import rows_per_pass
from audiobench.kernel.cache import stable_hash
from audiobench.kernel.faults import kill_point
from audiobench.methods.base import DomainModel, Explainer
from audiobench.metrics.base import Metric
from audiobench.metrics.budget import Budget
from audiobench.store.audio import audio_name, method_folders, slug, write_wavs
from audiobench.store.masks import StoredExplanations, concat, encoded_explanation
from audiobench.store.run_dir import COLUMNS
from audiobench.suite import ComponentSpec, Suite

#: settings of the cells' shared hash that shape no explanation (what is scored, written or kept)
OUTPUT_ONLY = ("metrics", "audio", "masks", "budget")

CELL_CODE_VERSION = 2  # bump when evaluation changes what a cell stores (2: per-target rows, kept masks)


@dataclass
class Cell:
    """One unit of work. ``id`` names its files and is what a run resumes by: domain, condition, the
    method row's stem and :attr:`explain_hash`, so settings that only shape outputs (``audio.n``,
    ``masks.precision``, the metric list) keep it. ``hash`` covers everything the cell stores: a stored
    cell whose ``hash`` differs is computed again under the same id (same numbers, new outputs)."""

    domain: ComponentSpec
    contamination: ComponentSpec
    method: ComponentSpec
    hash: str
    id: str
    folder: str = ""  # the method's folder under audio/ and logs/, unique within the suite
    # what the explanation depends on: the hash without the output-only settings (metrics, audio,
    # masks, budget), so the seeds of stochastic methods do not move when a metric is added
    explain_hash: str = ""


@dataclass
class CellOutput:
    """What a cell produced: long rows, kept explanations (None when every row was skipped), skips."""

    frame: pd.DataFrame
    explanations: StoredExplanations | None
    skips: list[Skip] = field(default_factory=list)
    not_applicable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def expand_cells(suite: Suite, common: dict[str, Any]) -> list[Cell]:
    """Every (domain, contamination, method) of the suite, in table order."""
    cells = []
    folders = method_folders(suite.methods)
    shaping = {k: v for k, v in common.items() if k not in OUTPUT_ONLY}
    output_kind = suite.model.build().output_kind
    for contamination in suite.contaminations:
        for domain in suite.domains:
            for method, folder in zip(suite.methods, folders, strict=True):
                version = method.cls().code_version
                by_kind = method.build().cell_identity(output_kind)
                this = {
                    "domain": domain.identity(), "contamination": contamination.identity(), "method": method.identity(),
                    **({"method_code": version} if version is not None else {}),  # absent: earlier hashes kept
                    **({"method_on_model": by_kind} if by_kind else {}),  # likewise
                }
                h = stable_hash({**common, **this, "code": CELL_CODE_VERSION})
                explain = stable_hash({**shaping, **this})
                cid = f"{domain.build().key()}__{contamination.build().key()}__{method_stem(method.identity_label or method.label or method.name)}__{explain[:10]}"
                cells.append(Cell(domain, contamination, method, h, cid, folder, explain))
    return cells


def method_stem(label: str) -> str:
    """The method row's part of a cell id: its label file-name-safe, with ``+`` kept as ``p`` so
    ``GradCAM`` and ``GradCAM++`` cells do not share the stem ``gradcam`` (``gradcampp``)."""
    return slug(label.replace("+", "p"))


def explain_rows(device: torch.device) -> int:
    """Rows per forward pass inside an explainer (:func:`audiobench.kernel.batching.rows_per_pass`)."""
    return rows_per_pass(device)


def batch_seed(cell_hash: str, batch: int) -> int:
    """The seed of a cell's batch: a function of the cell's explanation hash (:attr:`Cell.explain_hash`)
    and the batch index only."""
    return int(stable_hash([cell_hash, batch], 12), 16) % (2**31)


def evaluate_cell(
    cell: Cell, explainer: Explainer, model: DomainModel, clips: ClipSet, metrics: list[Metric], targets: TargetParams,
    batch_size: int, device: torch.device, audio_dir: Path | None = None, audio_n: int = 0, progress: bool = True,
    keep_precision: str | None = None, budget: Budget | None = None,
) -> CellOutput:
    """Explain and score every clip of a cell in batches; write the interpretations of its first
    ``audio_n`` clips to ``audio_dir`` (listenable domains); return its rows and kept explanations.
    ``keep_precision``: encode each batch's kept masks at once at this ``masks.precision`` (log8: a
    quarter of float32's memory; the written file is the same), instead of keeping float32 masks.
    ``budget``: the budgets and fill of the budget-matched metrics (their defaults when None)."""
    domain: Domain = model.domain
    classifier = model.classifier
    one_per_clip = targets.select == "decision" and classifier.output_kind != "sigmoid"
    results: list[BatchResult] = []
    audio_ids = set(clips.sample_ids[:audio_n]) if audio_dir is not None and domain.listenable else set()
    bar = tqdm(range(0, len(clips), batch_size), desc=cell.method.label, unit="batch", leave=False, disable=not progress)
    for b, start in enumerate(bar):
        stop = min(start + batch_size, len(clips))
        ids = clips.sample_ids[start:stop]
        rep = domain.represent(model.frontend, clips.waveforms[start:stop].to(device))
        truth = clip_truth(clips, slice(start, stop), domain, model.frontend, rep, metrics)
        res = evaluate_batch(explainer, model, rep, ids, clips.labels[start:stop], metrics, targets,
                             batch_seed(cell.explain_hash, b), max(explain_rows(device), batch_size), cell.id,
                             truth, budget)
        results.append(res)
        if audio_ids and res.explanation is not None:
            write_audio(audio_dir, res, rep, ids, model, audio_ids, classifier.class_names, one_per_clip)
        if keep_precision is not None and res.explanation is not None:
            res.explanation = encoded_explanation(res.explanation, keep_precision)
        kill_point("batch")
    frame = long_frame(results)
    stored = concat([(r.sample_ids, r.targets, r.explanation) for r in results if r.explanation is not None], audio_ids)
    if stored is not None and keep_precision is not None:
        stored.encoded = keep_precision
    not_applicable = {k: v for r in results for k, v in r.not_applicable.items()}
    clipped = sum(r.clipped for r in results)
    notes = [f"{clipped} mask(s) had values outside [0, 1] and were clipped to it before scoring"] if clipped else []
    notes += explainer.run_notes  # what the method noted of its maps (a 1-D block's, time only)
    return CellOutput(frame, stored, [s for r in results for s in r.skips] + undefined_skips(results, metrics, cell.id),
                      not_applicable, notes)


def clip_truth(
    clips: ClipSet, index: slice | torch.Tensor, domain: Domain, frontend: Frontend, rep: Representation,
    metrics: list[Metric],
) -> GroundTruth | None:
    """The ground truth of ``clips[index]`` (represented as ``rep``) when a metric needs it and the
    dataset has it (:attr:`ClipSet.targets`); None otherwise, so other runs compute nothing extra."""
    if clips.targets is None or not any("ground_truth" in m.needs for m in metrics):
        return None
    device = rep.x.device
    target = clips.targets[index].to(device)
    events = None if clips.events is None else clips.events[index].to(device)
    labels = None if clips.event_labels is None else clips.event_labels[index].to(device)
    return batch_truth(domain, frontend, rep, target, clips.waveforms[index].to(device) - target, events, labels)


def long_frame(results: list[BatchResult]) -> pd.DataFrame:
    """Rows (sample_id, target, metric, value) of every finite value of a cell's batches."""
    parts = []
    for r in results:
        for name, v in r.values.items():
            ok = np.isfinite(v)
            parts.append(pd.DataFrame({"sample_id": np.asarray(r.sample_ids, dtype=object)[ok],
                                       "target": r.targets[ok], "metric": name, "value": v[ok]}))
    if not parts:
        return pd.DataFrame({"sample_id": pd.Series(dtype=object), "target": pd.Series(dtype="int64"),
                             "metric": pd.Series(dtype=object), "value": pd.Series(dtype="float64")})
    frame = pd.concat(parts, ignore_index=True)
    return frame.astype({"target": "int64", "value": "float64"})


def undefined_skips(results: list[BatchResult], metrics: list[Metric], where: str) -> list[Skip]:
    """A recorded skip for every NaN metric value, with the metric's stated reason."""
    reason = {m.name: m.undefined for m in metrics}
    out = []
    for r in results:
        for name, v in r.values.items():
            out += [Skip(r.sample_ids[i], f"{name}: {reason.get(name) or 'undefined value'}", where)
                    for i in np.flatnonzero(~np.isfinite(v))]
    return out


def with_cell_columns(frame: pd.DataFrame, cell: Cell, names: dict[str, str]) -> pd.DataFrame:
    """The cell's rows with the identifying columns of the store, in :data:`~audiobench.store.run_dir.COLUMNS` order."""
    frame = frame.assign(
        dataset=names["dataset"], model=names["model"], domain=cell.domain.build().key(),
        contamination=cell.contamination.build().key(), method=cell.method.name, row=cell.method.label,
    )
    return frame[COLUMNS]


def write_audio(
    folder: Path, res: BatchResult, rep: Representation, ids: list[str], model: DomainModel, wanted: set[str],
    class_names: list[str], one_per_clip: bool,
) -> None:
    """The listenable interpretation of each wanted (clip, target) row (``<stem>.wav``) and of each of its
    parts (``<stem>__<part>.wav``, e.g. L2I's relevant components), all with the input's phase."""
    e: Explanation = res.explanation  # type: ignore[assignment]
    take = [i for i, sid in enumerate(res.sample_ids) if sid in wanted]
    if not take:
        return
    position = {sid: i for i, sid in enumerate(ids)}
    clip_rows = torch.tensor([position[res.sample_ids[i]] for i in take], dtype=torch.long)
    stems = [audio_name(res.sample_ids[i], int(res.targets[i]), class_names, one_per_clip) for i in take]
    frontend, domain, sr = model.frontend, model.domain, model.frontend.params.sample_rate
    device = rep.x.device
    with torch.no_grad():
        mask = e.mask[torch.tensor(take)].to(device, torch.float32)
        write_wavs(folder, stems, domain.to_audio(frontend, mask, rep.subset(clip_rows.to(device))).cpu().numpy(), sr)
        if e.parts is not None and len(e.parts.rows):
            row_of = {r: k for k, r in enumerate(take)}
            sel = [j for j, r in enumerate(e.parts.rows.tolist()) if r in row_of]
            if sel:
                prow = torch.tensor([row_of[int(e.parts.rows[j])] for j in sel], dtype=torch.long)
                audio = domain.to_audio(frontend, e.parts.masks[torch.tensor(sel)].to(device, torch.float32),
                                        rep.subset(clip_rows[prow].to(device))).cpu().numpy()
                names = [f"{stems[int(k)]}__{e.parts.names[j]}" for k, j in zip(prow.tolist(), sel, strict=True)]
                write_wavs(folder, names, audio, sr)
