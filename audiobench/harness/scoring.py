"""``audiobench score``: add or recompute metrics of a finished run from its kept explanations.

Nothing is explained again: each cell's stored masks (``RUN_DIR/masks``) are scored by the same
engine a run uses (:func:`audiobench.harness.engine.score_rows`) on the same clips, so a recomputed metric
equals the run's own to the precision the masks were kept at (``masks.precision``: float32 reproduces
the run to float rounding; the default log8 to about 1e-3 on continuous metrics, see :mod:`audiobench.store.masks`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from audiobench.contracts.registry import CONTAMINATIONS, METRICS
from audiobench.harness.cells import clip_truth, explain_rows, with_cell_columns
from audiobench.harness.engine import AUX_METRICS, score_rows
from audiobench.harness.finish import finish
from audiobench.harness.session import RunResult, Session, prepare
from audiobench.kernel.errors import AudiobenchError, did_you_mean
from audiobench.metrics.budget import CURVE_PREFIXES, Budget
from audiobench.store.lock import run_lock
from audiobench.store.masks import check_kept_rows, read_masks, recompute_cell_command
from audiobench.store.run_dir import load_manifest
from audiobench.suite import Suite, parse_suite


def suite_from_resolved(resolved: dict[str, Any], in_domain: set[str] | None = None) -> Suite:
    """The :class:`Suite` a manifest's resolved suite describes (every default already filled in).

    ``in_domain``: keys of the conditions the run labelled in-domain, for manifests written before the
    resolved suite recorded the label (``manifest["contaminations"][key]["domain"]``)."""
    def entry(spec: dict[str, Any]) -> dict[str, Any]:
        return {"name": spec["name"], **({"label": spec["label"]} if spec.get("label") else {}),
                **({"targets": spec["targets"]} if spec.get("targets") else {}),
                **({"in_domain": True} if spec.get("in_domain") else {}), **spec.get("params", {})}

    data = {k: resolved[k] for k in ("name", "description", "seed", "frontend", "split", "batch_size", "metrics",
                                     "tables", "audio", "targets", "masks", "plugins", "sanity", "budget")
            if resolved.get(k) not in (None, [])}
    if resolved.get("limit"):
        data["limit"] = resolved["limit"]
    data["dataset"] = entry(resolved["dataset"])
    data["model"] = {**entry(resolved["model"]), "train": resolved["model"].get("train", {})}
    for key in ("domains", "contaminations", "methods"):
        data[key] = [entry(s) for s in resolved[key]]
    for spec in data["contaminations"]:
        if in_domain and spec["name"] != "none" and CONTAMINATIONS.get(spec["name"])(
                {k: v for k, v in spec.items() if k not in ("name", "label", "targets", "in_domain")}).key() in in_domain:
            spec["in_domain"] = True
    if resolved.get("train", {}).get("augment"):
        data["train"] = {"augment": [entry(s) for s in resolved["train"]["augment"]]}
    suite = parse_suite(data)
    for spec, written in zip(suite.methods, resolved["methods"], strict=True):
        spec.identity_label = written.get("identity_label", spec.identity_label)  # the label its cells hash
    return suite


def in_domain_keys(manifest: dict[str, Any]) -> set[str]:
    """The conditions a run's manifest labels in-domain."""
    return {k for k, rec in manifest.get("contaminations", {}).items() if rec.get("domain") == "in-domain"}


def score_run(
    run_dir: str | Path, metrics: list[str] | None = None, device: str = "cpu", progress: bool = True,
    replace: bool = False,
) -> RunResult:
    """Compute ``metrics`` (default: the run's own) for every stored cell of ``run_dir`` from its kept
    masks, add their rows, and rewrite the run's results, manifest and tables.

    A metric a cell already has (stored rows, or recorded as not applicable) is kept as the run computed
    it, from the method's float32 masks, unless ``replace``: then it is recomputed from the kept masks
    (exact to float rounding at ``masks.precision: float32``; at the default log8 within about 1e-3 on
    continuous metrics, and a few AI / Fid-In indicators can flip) and ``RunResult.changes`` says, per
    metric, how many stored values moved and by how much. With nothing to compute the run is left as it is.

    Raises :class:`AudiobenchError` for an unknown metric, a run without kept masks, or an unfinished run.
    """
    if not (Path(run_dir) / "manifest.json").is_file():  # before the lock, which would create the folder
        raise AudiobenchError(f"{run_dir}: not a run directory (no manifest.json): run a suite into it first")
    with run_lock(run_dir):
        return _score_run(run_dir, metrics, device, progress, replace)


def _moved(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per metric: stored values compared with recomputed ones on the same (clip, target) rows."""
    keys = ["sample_id", "target", "metric"]
    joined = old[keys + ["value"]].merge(new[keys + ["value"]], on=keys, suffixes=("_old", "_new"))
    out = {}
    for metric, part in joined.groupby("metric", sort=False):
        diff = (part.value_new - part.value_old).abs()
        out[str(metric)] = {"rows": len(part), "moved": int((diff > 1e-9).sum()), "max_abs": float(diff.max()),
                            "mean_abs": float(diff.mean())}
    return out


def _score_run(run_dir: str | Path, metrics: list[str] | None, device: str, progress: bool, replace: bool) -> RunResult:
    t_start = time.perf_counter()
    manifest = load_manifest(run_dir)
    if manifest.get("schema", 1) < 2:
        raise AudiobenchError(f"{run_dir} was written before runs kept their masks (schema 1): run it again to score it")
    suite = suite_from_resolved(manifest["suite"], in_domain_keys(manifest))
    for name in metrics or []:
        if name not in METRICS:
            raise AudiobenchError(f"unknown metric '{name}'{did_you_mean(name, METRICS.names())}")
    names = list(metrics or suite.metrics)
    session = prepare(suite, run_dir, manifest.get("limit"), device, progress=progress)
    suite.metrics = list(dict.fromkeys([*suite.metrics, *names]))  # after the cells are named: their ids stay
    session.store.reconcile({c.id: c.hash for c in session.cells}, discard_stale=False)  # ids of older versions
    missing = [c.id for c in session.cells if not session.store.has(c.id)]
    if missing:
        raise AudiobenchError(f"{run_dir}: {len(missing)} cell(s) not finished (e.g. {missing[0]}); run the suite first")
    stored = {c.id: session.store.read_cell(c.id) for c in session.cells}
    todo = {cid: names if replace else [n for n in names if n not in set(frame.metric) | set(meta.get("not_applicable", {}))]
            for cid, (frame, meta) in stored.items()}
    if not any(todo.values()):
        from audiobench.tables import render_run

        return RunResult(Path(run_dir), manifest, render_run(run_dir, write=False))
    cell_meta, changes = [], {}
    for cell in tqdm(session.cells, desc="score", unit="cell", disable=not progress):
        frame, meta = stored[cell.id]
        chosen = todo[cell.id]
        if chosen:
            # --replace recomputes the stored probabilities too, so the rows agree with each other (AI with p_in)
            new, not_applicable = score_cell(session, cell, [METRICS.get(n) for n in chosen], with_aux=replace)
            replaced = frame.metric.isin(chosen) | (frame.metric.isin(AUX_METRICS) if replace else False)
            if new.metric.str.startswith(CURVE_PREFIXES).any():  # the budget curves were recomputed too
                replaced |= frame.metric.str.startswith(CURVE_PREFIXES)
            for metric, c in _moved(frame[replaced], new).items():
                total = changes.setdefault(metric, {"rows": 0, "moved": 0, "max_abs": 0.0, "sum_abs": 0.0})
                total.update(rows=total["rows"] + c["rows"], moved=total["moved"] + c["moved"],
                             max_abs=max(total["max_abs"], c["max_abs"]), sum_abs=total["sum_abs"] + c["mean_abs"] * c["rows"])
            frame = pd.concat([frame[~replaced], with_cell_columns(new, cell, {
                "dataset": suite.dataset.name, "model": suite.model.name})], ignore_index=True)
            meta = {**meta, "not_applicable": {**{k: v for k, v in meta.get("not_applicable", {}).items() if k not in chosen},
                                               **not_applicable}}
            session.store.write_cell(cell.id, frame, meta)
        cell_meta.append(meta | {"resumed": True})
    # after-cell stages that read the rows run again; the others (sanity) keep the run's record
    result = finish(session, cell_meta, t_start, manifest.get("executor"), scoring=True, kept=manifest)
    result.computed = list(dict.fromkeys(n for chosen in todo.values() for n in chosen))
    result.changes = {m: {"rows": c["rows"], "moved": c["moved"], "max_abs": c["max_abs"],
                          "mean_abs": c["sum_abs"] / max(c["rows"], 1)} for m, c in changes.items()}
    return result


@torch.no_grad()
def score_cell(session: Session, cell: Any, metrics: list, with_aux: bool = False) -> tuple[pd.DataFrame, dict[str, str]]:
    """The rows (sample_id, target, metric, value) of ``metrics`` for one stored cell, from its kept masks
    (and of the stored probabilities every metric is recomputed from, ``p_in`` etc., when ``with_aux``)."""
    path = session.store.masks_path(cell.id)
    stored = read_masks(path)
    clips = session.condition(cell)
    model = session.model(cell)
    position = {sid: i for i, sid in enumerate(clips.sample_ids)}
    foreign = [sid for sid in stored.sample_ids if sid not in position]
    if foreign:
        raise AudiobenchError(f"stored masks {path} name {len(foreign)} clip(s) this run did not evaluate (e.g. "
                              f"{foreign[0]}): compute the cell again with {recompute_cell_command(session.store.root, cell.id)}")
    step, device = session.suite.batch_size, session.device
    parts, not_applicable = [], {}
    for start in range(0, len(stored.sample_ids), step):
        idx = torch.arange(start, min(start + step, len(stored.sample_ids)))
        ids = [stored.sample_ids[i] for i in idx.tolist()]
        clip_idx = torch.tensor([position[s] for s in ids], dtype=torch.long)
        rep = model.domain.represent(model.frontend, clips.waveforms[clip_idx].to(device))
        x = rep.x
        truth = clip_truth(clips, clip_idx, model.domain, model.frontend, rep, metrics)
        e = stored.explanation.subset(idx)
        check_kept_rows(path, stored, None, tuple(x.shape[1:]))
        e.mask = e.mask.to(device, x.dtype)
        e.removals = {k: v.to(device, x.dtype) for k, v in e.removals.items()}
        target = torch.as_tensor(stored.targets[idx.numpy()], device=device)
        with model.reading(rep):
            values, skipped, _ = score_rows(model, x, e, model(x), target, metrics, clips.labels[clip_idx].to(device),
                                            session.suite.targets, max(explain_rows(device), step),
                                            None if truth is None else truth.for_labels(target),
                                            Budget.of(session.suite.budget, session.suite.seed))
        not_applicable.update(skipped)
        aux = [k for k in AUX_METRICS if k in values] if with_aux else []
        for name in [m.name for m in metrics if m.name in values] + [k for k in values if k.startswith(CURVE_PREFIXES)] + aux:
            v = values[name].double().cpu().numpy()
            ok = v == v
            parts.append(pd.DataFrame({"sample_id": pd.Series(ids, dtype=object)[ok], "target": target.cpu().numpy()[ok],
                                       "metric": name, "value": v[ok]}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["sample_id", "target", "metric", "value"])
    return frame.astype({"target": "int64", "value": "float64"}), not_applicable
