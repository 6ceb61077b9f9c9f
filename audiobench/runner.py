"""Run a suite: expand it into cells, explain and score each, store results, render tables.

A cell is (dataset, model, domain, contamination, method). Cells are independent; each is
written atomically when it completes, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import platform
import re
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from tqdm.auto import tqdm

import audiobench
from audiobench._malloc import tune_allocator
from audiobench.cache import stable_hash
from audiobench.data.base import ClipSet, Skip
from audiobench.data.contaminations import condition_record
from audiobench.data.ids import safe_child
from audiobench.data.integrity import check_splits
from audiobench.data.sampling import select_clips
from audiobench.domains import Domain, Representation
from audiobench.errors import AudiobenchError
from audiobench.faults import kill_point
from audiobench.frontend import Frontend
from audiobench.methods.base import DomainModel, ExplainContext, Explainer, FitContext
from audiobench.metrics.base import Metric, compute_inputs
from audiobench.models.training import get_classifier
from audiobench.registry import METRICS
from audiobench.runlock import run_lock
from audiobench.store import COLUMNS, RunStore
from audiobench.suite import ComponentSpec, Suite, load_suite
from audiobench.tables import render_run

# rows stored besides the metrics, so any metric can be recomputed from the store
AUX_METRICS = ("p_orig", "p_in", "p_out", "pred_orig", "pred_in", "y_true")
CELL_CODE_VERSION = 1  # bump when evaluation changes what a cell stores


@dataclass
class Cell:
    """One unit of work; ``id`` names its files, ``hash`` covers everything that shapes its numbers."""

    domain: ComponentSpec
    contamination: ComponentSpec
    method: ComponentSpec
    hash: str
    id: str
    folder: str = ""  # the method's folder under audio/ and logs/, unique within the suite


@dataclass
class RunResult:
    run_dir: Path
    manifest: dict[str, Any]
    tables: dict[str, str] = field(default_factory=dict)  # slug -> markdown


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def method_folders(methods: list[ComponentSpec]) -> list[str]:
    """A file-name-safe folder per method row, unique within the suite: labels that slug alike
    (``GradCAM``, ``GradCAM++``) get ``-2``, ``-3``... in suite order; ``input`` is the inputs' folder."""
    seen: dict[str, int] = {"input": 1}
    out = []
    for m in methods:
        base = slug(m.label or m.name)
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AudiobenchError("--device cuda was asked for but no CUDA device is available (torch.cuda.is_available() is False)")
    return device


def _git_hash() -> str | None:
    root = Path(audiobench.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str]:
    import captum

    return {
        "audiobench": audiobench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def expand_cells(suite: Suite, common: dict[str, Any]) -> list[Cell]:
    """Every (domain, contamination, method) of the suite, in table order."""
    cells = []
    folders = method_folders(suite.methods)
    for contamination in suite.contaminations:
        for domain in suite.domains:
            for method, folder in zip(suite.methods, folders, strict=True):
                h = stable_hash({
                    **common,
                    "domain": domain.resolved(),
                    "contamination": contamination.resolved(),
                    "method": method.resolved(),
                    "code": CELL_CODE_VERSION,
                })
                cid = f"{domain.name}__{contamination.build().key()}__{slug(method.label or method.name)}__{h[:10]}"
                cells.append(Cell(domain, contamination, method, h, cid, folder))
    return cells


def explain_rows(device: torch.device) -> int:
    """Rows per forward pass inside an explainer: ~64 is fastest on a CPU (cache-sized), GPUs want more."""
    return 64 if device.type == "cpu" else 1024


def _seed_of(cell_hash: str, batch: int) -> int:
    return int(stable_hash([cell_hash, batch], 12), 16) % (2**31)


def evaluate_cell(
    cell: Cell,
    explainer: Explainer,
    model: DomainModel,
    clips: ClipSet,
    metrics: list[Metric],
    batch_size: int,
    device: torch.device,
    audio_dir: Path | None = None,
    audio_n: int = 0,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], list[str], list[Skip]]:
    """Explain and score every clip of a cell in batches; returns per-metric arrays aligned with ids."""
    domain: Domain = model.domain
    values: dict[str, list[np.ndarray]] = {m: [] for m in [x.name for x in metrics] + list(AUX_METRICS)}
    ids_per_metric: dict[str, list[str]] = {m: [] for m in values}
    skips: list[Skip] = []
    written = 0
    bar = tqdm(range(0, len(clips), batch_size), desc=cell.method.label, unit="batch", leave=False, disable=not progress)
    for b, start in enumerate(bar):
        stop = min(start + batch_size, len(clips))
        ids = clips.sample_ids[start:stop]
        wave = clips.waveforms[start:stop].to(device)
        rep = domain.represent(model.frontend, wave)
        with torch.no_grad():
            logits_orig = model(rep.x)
        target = logits_orig.argmax(dim=-1)
        ctx = ExplainContext(model=model, seed=_seed_of(cell.hash, b), max_rows=max(explain_rows(device), batch_size))
        torch.manual_seed(ctx.seed)
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require gradients")
            warnings.filterwarnings("ignore", message=r"Setting backward hooks on ReLU activations")
            mask = explainer.explain(rep.x, target, ctx)
        finite = torch.isfinite(mask).flatten(1).all(dim=1)
        for i in (~finite).nonzero().flatten().tolist():
            skips.append(Skip(ids[i], "non-finite map (NaN or Inf)", cell.id))
        keep = finite.nonzero().flatten()
        if len(keep) == 0:
            continue
        kept_ids = [ids[i] for i in keep.tolist()]
        rows = rep.x.shape[0]  # per-sample extras the explainer left (batch first), kept rows only
        extras = {k: v[keep] for k, v in ctx.extras.items() if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == rows}
        inputs = compute_inputs(model, rep.x[keep], mask[keep], logits_orig[keep], extras=extras)
        per = {m.name: m(inputs) for m in metrics}
        per = {name: v for name, v in per.items() if v is not None}  # None: not applicable, no rows
        per.update(
            p_orig=inputs.p_orig, p_in=inputs.p_in, p_out=inputs.p_out, pred_orig=inputs.pred,
            pred_in=inputs.pred_in, y_true=clips.labels[start:stop][keep.cpu()],
        )
        undefined = {m.name: m.undefined for m in metrics}
        for name, v in per.items():
            v = v.detach().double().cpu().numpy()
            ok = np.isfinite(v)
            for i in np.flatnonzero(~ok):
                skips.append(Skip(kept_ids[i], f"{name}: {undefined.get(name) or 'undefined value'}", cell.id))
            values[name].append(v[ok])
            ids_per_metric[name].extend(i for i, good in zip(kept_ids, ok, strict=True) if good)
        if audio_dir is not None and domain.listenable and written < audio_n:
            take = keep[: audio_n - written]
            write_audio(audio_dir, [ids[i] for i in take.tolist()], mask[take], explainer, model, rep.subset(take),
                        target[take], ctx)
            written += len(take)
        kill_point("batch")
    arrays = {k: np.concatenate(v) if v else np.zeros(0) for k, v in values.items()}
    return arrays, ids_per_metric, skips  # type: ignore[return-value]


def write_audio(
    folder: Path, ids: list[str], mask: torch.Tensor, explainer: Explainer, model: DomainModel,
    rep: Representation, target: torch.Tensor, ctx: ExplainContext,
) -> None:
    """The listenable interpretation of each clip (``<id>.wav``) and of each of its mask parts, if the
    method has any (``<id>__<part>.wav``, e.g. L2I's relevant components), all with the input's phase."""
    frontend, domain, sr = model.frontend, model.domain, model.frontend.params.sample_rate
    with torch.no_grad():
        write_wavs(folder, ids, domain.to_audio(frontend, mask, rep).cpu().numpy(), sr)
        parts = explainer.mask_parts(rep.x, target, ctx)
        if parts is not None and len(parts.rows):
            audio = domain.to_audio(frontend, parts.masks, rep.subset(parts.rows)).cpu().numpy()
            names = [f"{ids[r]}__{name}" for r, name in zip(parts.rows.tolist(), parts.names, strict=True)]
            write_wavs(folder, names, audio, sr)


def write_wavs(folder: Path, ids: list[str], audio: np.ndarray, sample_rate: int) -> None:
    """Write each row of ``audio`` [N, L] (clipped to [-1, 1]) as a 16-bit WAV at ``sample_rate`` Hz in
    ``folder``, named by its id made a safe file name (:func:`audiobench.data.ids.file_stem`): never outside ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for sid, wav in zip(ids, audio, strict=True):
        sf.write(safe_child(folder, sid, ".wav"), np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16")


def _long_frame(cell: Cell, names: dict[str, str], arrays: dict[str, np.ndarray], ids: dict[str, list[str]]) -> pd.DataFrame:
    parts = [
        pd.DataFrame({"sample_id": ids[metric], "metric": metric, "value": arrays[metric]})
        for metric in arrays
    ]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["sample_id", "metric", "value"])
    frame["dataset"] = names["dataset"]
    frame["model"] = names["model"]
    frame["domain"] = cell.domain.name
    frame["contamination"] = cell.contamination.build().key()
    frame["method"] = cell.method.name
    frame["label"] = cell.method.label
    frame["value"] = frame["value"].astype("float64")
    return frame[COLUMNS]


def run_suite(
    suite: Suite | str | Path,
    output: str | Path | None = None,
    limit: int | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> RunResult:
    """Run every cell of ``suite`` not already stored under ``output``; write results and tables.

    The run directory is locked for the whole run (:mod:`audiobench.runlock`): a second run on it
    raises :class:`AudiobenchError`.
    """
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    with run_lock(output or Path("results") / suite.name):
        return _run_suite(suite, output, limit, device, overwrite, progress)


def _run_suite(
    suite: Suite | str | Path, output: str | Path | None, limit: int | None, device: str, overwrite: bool, progress: bool,
) -> RunResult:
    t_start = time.perf_counter()
    tune_allocator()
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    limit = limit or suite.limit
    dev = resolve_device(device)
    store = RunStore(output or Path("results") / suite.name)
    if overwrite:
        store.clear()
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

    trained = get_classifier(  # model.checkpoint: loaded as it is; otherwise trained here and cached
        suite.model.build(), suite.train, splits, frontend, dataset.fingerprint(), suite.seed, dev, progress, suite.split
    )
    classifier = trained.model.eval().requires_grad_(False)
    evaluated, selection = select_clips(splits[suite.split], limit, suite.seed)  # stratified, seeded, recorded
    metrics = [METRICS.get(name) for name in suite.metrics]
    names = {"dataset": suite.dataset.name, "model": suite.model.name}
    common = {
        "dataset": suite.dataset.resolved(), "split": suite.split, "limit": limit, "n": len(evaluated),
        "classifier": trained.info["hash"], "frontend": suite.frontend.model_dump(mode="json"),
        "metrics": suite.metrics, "batch_size": suite.batch_size, "seed": suite.seed,
        "audio": suite.audio.model_dump(), "clips": stable_hash(evaluated.sample_ids),
    }
    cells = expand_cells(suite, common)
    listenable = any(d.cls().listenable for d in suite.domains)

    cell_meta: list[dict[str, Any]] = []
    conditions: dict[str, ClipSet] = {}
    outer = tqdm(cells, desc=f"{suite.name}", unit="cell", disable=not progress)
    for cell in outer:
        ckey = cell.contamination.build().key()
        outer.set_postfix_str(f"{cell.domain.name} | {ckey} | {cell.method.label}")
        if store.has(cell.id):
            cell_meta.append({**store.read_cell(cell.id)[1], "resumed": True})
            continue
        if ckey not in conditions:
            contamination = cell.contamination.build()
            pool = contamination.pool(dataset, splits, suite.split, sr)  # mixture partners: a split, or folds
            conditions[ckey] = contamination.apply(evaluated, pool, suite.seed)
            if listenable and suite.audio.n:  # the inputs beside the interpretations, once per condition
                n = min(suite.audio.n, len(conditions[ckey]))
                write_wavs(store.root / "audio" / ckey / "input", conditions[ckey].sample_ids[:n],
                           conditions[ckey].waveforms[:n].numpy(), sr)
        clips = conditions[ckey]
        explainer: Explainer = cell.method.build()
        domain: Domain = cell.domain.build()
        model = DomainModel(classifier, domain, frontend).eval()
        t0 = time.perf_counter()
        fit_info = {}
        if explainer.trainable:
            fit_info = explainer.fit(FitContext(
                model=model, train=splits["train"], valid=splits["valid"],
                augment=[c.build() for c in suite.contaminations if c.name != "none"], seed=suite.seed,
                device=dev, identity={"classifier": trained.info["hash"], "data": common["dataset"],
                                      "domain": cell.domain.resolved(), "frontend": common["frontend"]},
                log_dir=store.root / "logs" / cell.folder / cell.domain.name,
                progress=progress, max_rows=explain_rows(dev),
            ))
        t_fit = time.perf_counter() - t0
        audio_dir = store.root / "audio" / ckey / cell.folder
        arrays, ids, skips = evaluate_cell(
            cell, explainer, model, clips, metrics, suite.batch_size, dev,
            audio_dir if suite.audio.n else None, suite.audio.n, progress,
        )
        seconds = time.perf_counter() - t0
        meta = {
            "id": cell.id, "hash": cell.hash, "domain": cell.domain.name, "contamination": ckey,
            "method": cell.method.name, "label": cell.method.label, "params": cell.method.resolved().get("params", {}),
            "n": len(clips), "seconds": round(seconds, 3), "fit_seconds": round(t_fit, 3),
            "seconds_per_clip": round((seconds - t_fit) / max(1, len(clips)), 5), "fit": fit_info,
            "skips": [s.as_dict() for s in skips], "condition": condition_record(clips, cell.contamination.build()),
        }
        store.write_cell(cell.id, _long_frame(cell, names, arrays, ids), meta)
        cell_meta.append({**meta, "resumed": False})

    frame = pd.concat([store.read_cell(c.id)[0] for c in cells], ignore_index=True)
    manifest = build_manifest(suite, trained.info, cells, cell_meta, load_skips, frame, limit, dev, t_start)
    manifest["selection"] = selection
    store.write_results(frame, manifest)
    tables = render_run(store.root)
    return RunResult(store.root, manifest, tables)


def build_manifest(
    suite: Suite, classifier: dict, cells: list[Cell], cell_meta: list[dict], load_skips: list[Skip],
    frame: pd.DataFrame, limit: int | None, device: torch.device, t_start: float,
) -> dict[str, Any]:
    """Everything needed to understand and regenerate a run."""
    from audiobench.registry import CONTAMINATIONS, DOMAINS

    acc = {}
    for ckey, part in frame[frame.metric.isin(["pred_orig", "y_true"])].groupby("contamination", sort=False):
        first = part[part.method == part.method.iloc[0]]
        wide = first[first.domain == first.domain.iloc[0]].pivot_table(index="sample_id", columns="metric", values="value")
        acc[ckey] = float((wide["pred_orig"] == wide["y_true"]).mean())
    metric_info = {name: METRICS.get(name).info() for name in suite.metrics}
    conditions = {m["contamination"]: m["condition"] for m in cell_meta if "condition" in m}  # SNRs, skips
    return {
        "suite": suite.resolved(),
        "suite_file": str(suite.file) if suite.file else None,
        "suite_hash": stable_hash(suite.resolved()),
        "seed": suite.seed,
        "limit": limit,
        "device": str(device),
        "versions": versions(),
        "git": _git_hash(),
        "classifier": {k: v for k, v in classifier.items() if k != "history"} | {"history": classifier.get("history", [])},
        "accuracy": {"clean_test": classifier.get("accuracy", {}).get("test"), "evaluated": acc},
        "metrics": metric_info,
        "display": {
            "domain": {d.name: DOMAINS.get(d.name).label() for d in suite.domains},
            "contamination": {c.build().key(): c.build().title() for c in suite.contaminations},
            "dataset": {suite.dataset.name: suite.dataset.cls().label()},
        },
        "order": {
            "label": [m.label for m in suite.methods],
            "domain": [d.name for d in suite.domains],
            "contamination": [c.build().key() for c in suite.contaminations],
        },
        "cells": [{k: v for k, v in m.items() if k != "condition"} for m in cell_meta],  # conditions once, below
        "contaminations": conditions,
        "skips": [s.as_dict() for s in load_skips] + [s for c in conditions.values() for s in c["skips"]]
        + [s for m in cell_meta for s in m.get("skips", [])],
        "seconds": round(time.perf_counter() - t_start, 2),
        "registered": {"contaminations": list(CONTAMINATIONS.names())},
    }
