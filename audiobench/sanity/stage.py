"""The sanity stage of a run: after the cells, the suite's ``sanity:`` section (:mod:`audiobench.suite.sanity`).

Results live in the run directory and are resumable: each method's randomisation (per-clip
SSIM and Spearman, ``sanity/randomisation/<method>__<hash>.parquet``) and each ROAR retraining
(``sanity/roar/<method>__<hash>.json``, one entry per (fraction, seed), written as it completes)
is named by a hash of its cell and parameters, so a second run reads what is there and computes
the rest. Summaries are written as tables (``tables/sanity_randomisation.md|csv``,
``tables/sanity_roar.md|csv``), figures under ``plots/``, and a record in the manifest (``sanity``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from audiobench.data.levels import at_input_level
from audiobench.harness.cells import Cell, explain_rows
from audiobench.kernel.batching import chunked
from audiobench.kernel.cache import atomic_write_json, stable_hash
from audiobench.kernel.errors import AudiobenchError
from audiobench.kernel.stats import bootstrap_ci
from audiobench.sanity.common import SANITY_CODE_VERSION, decisions, find_cell, write_parquet
from audiobench.sanity.plots import plot_clip, plot_randomisation, plot_roar
from audiobench.sanity.randomisation import cascading_randomisation, explain_all
from audiobench.sanity.roar import roar_curve
from audiobench.store.audio import slug
from audiobench.store.masks import read_masks
from audiobench.suite.sanity import PlotParams, RandomisationParams, RoarParams, roar_model

RANDOM_REMOVAL = "Random removal"


def _summary_ci(values: pd.Series) -> pd.Series:
    lo, hi = bootstrap_ci(values.to_numpy())
    return pd.Series({"mean": float(values.mean()), "low": lo, "high": hi, "n": int(values.count())})


# -- randomisation --------------------------------------------------------------------------------


def randomisation_stage(session: Any, p: RandomisationParams, progress: bool = True) -> dict[str, Any]:
    """Cascading randomisation of every chosen method; returns the manifest record."""
    suite, root, device = session.suite, session.store.root, session.device
    domain = p.domain or suite.domains[0].build().key()
    labels = p.methods or [m.label for m in suite.methods]
    folder = root / "sanity" / "randomisation"
    frames, seconds = [], {}
    for label in labels:
        cell = find_cell(session, domain, p.contamination, label)
        h = stable_hash({"cell": cell.explain_hash, "params": p.model_dump(mode="json"), "code": SANITY_CODE_VERSION})
        path = folder / f"{cell.folder}__{h[:10]}.parquet"
        if path.exists():
            frames.append(pd.read_parquet(path))
            continue
        t0 = time.perf_counter()
        clips = session.condition(cell).subset(slice(0, p.clips))
        model = session.model(cell)
        explainer = session.explainer(cell)[0]
        waves = clips.waveforms.to(device)
        x = model.domain.represent(model.frontend, waves).x
        rows, target = decisions(session, model, x, waves)
        res = cascading_randomisation(explainer, model, x[rows], target, p.seed, suite.batch_size, explain_rows(device),
                                      waves=waves[rows])
        ids = [clips.sample_ids[i] for i in rows.tolist()]
        parts = []
        for metric, values in (("ssim", res.ssim), ("spearman", res.spearman)):
            for s, layer in enumerate(res.steps):
                parts.append(pd.DataFrame({"row": label, "step": s, "layer": layer, "sample_id": ids,
                                           "target": target.cpu().numpy(), "metric": metric, "value": values[s]}))
        frame = pd.concat(parts, ignore_index=True)
        write_parquet(path, frame)
        frames.append(frame)
        seconds[label] = round(time.perf_counter() - t0, 2)
    per_sample = pd.concat(frames, ignore_index=True)
    summary = (per_sample.groupby(["row", "step", "layer", "metric"], sort=False)["value"]
               .apply(_summary_ci).unstack().reset_index())
    summary["n"] = summary["n"].astype(int)
    _write_randomisation_tables(summary, root / "tables", domain, p)
    last = summary[summary["step"] == summary["step"].max()]
    return {"params": p.model_dump(mode="json"), "domain": domain, "seconds": seconds,
            "steps": list(dict.fromkeys(summary.sort_values("step")["layer"])),
            "full_randomisation": {f"{r.row}/{r.metric}": [round(r.mean, 4), round(r.low, 4), round(r.high, 4)]
                                   for r in last.itertuples()},
            "summary": summary}


def _write_randomisation_tables(summary: pd.DataFrame, out: Path, domain: str, p: RandomisationParams) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "sanity_randomisation.csv", index=False, lineterminator="\n")
    lines = []
    for metric, name in (("ssim", "SSIM"), ("spearman", "Spearman rank correlation")):
        part = summary[summary["metric"] == metric].copy()
        part["cell"] = [f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in zip(part["mean"], part["low"], part["high"],
                                                                               strict=True)]
        wide = part.pivot_table(index="row", columns="step", values="cell", aggfunc="first", sort=False)
        layers = part.drop_duplicates("step").set_index("step")["layer"]
        wide.columns = [layers[s] for s in wide.columns]
        lines += [f"Table: cascading model randomisation ({domain}, {p.contamination}, {p.clips} clips): {name} "
                  "between the trained and the randomised model's maps, mean [95% bootstrap interval] over clips; "
                  "columns: randomised from the output down to this layer group.", "",
                  wide.to_markdown(tablefmt="pipe"), ""]
    (out / "sanity_randomisation.md").write_text("\n".join(lines), encoding="utf-8")


# -- ROAR -----------------------------------------------------------------------------------------


def _explain_split(session: Any, cell: Cell, x: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
    """Per clip: the mask [N, 1, T, F] of the method for the suite's targets (several targets: their maximum);
    ``waves`` [N, L]: the clips ``x`` represents (what a method reading the clips needs)."""
    model = session.model(cell)
    explainer = session.explainer(cell)[0]
    rows, target = decisions(session, model, x)
    bs = session.suite.batch_size
    seeds = [int(stable_hash([cell.explain_hash, "roar", b], 8), 16) % (2**31) for b in range((len(rows) + bs - 1) // bs)]
    masks = explain_all(explainer, model, x[rows], target, seeds, bs, explain_rows(session.device),
                        waves[rows.cpu()].to(x.device))
    return _per_clip(masks, rows.cpu(), len(x))


def _per_clip(masks: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros((n, *masks.shape[1:]), dtype=masks.dtype)
    index = rows.view(-1, 1, 1, 1).expand_as(masks)
    return out.scatter_reduce(0, index, masks, reduce="amax", include_self=True)


def _stored_masks(session: Any, cell: Cell, ids: list[str], shape: torch.Size) -> tuple[torch.Tensor, int]:
    """The cell's kept masks per clip of ``ids`` (max over a clip's targets) and how many clips had none."""
    stored = read_masks(session.store.masks_path(cell.id))
    pos = {sid: i for i, sid in enumerate(ids)}
    rows = torch.tensor([pos[s] for s in stored.sample_ids], dtype=torch.long)
    masks = _per_clip(stored.explanation.mask.float(), rows, len(ids))
    return masks.view(shape), len(ids) - len(set(stored.sample_ids))


def roar_stage(session: Any, p: RoarParams, progress: bool = True) -> dict[str, Any]:
    """ROAR for every chosen method and the random baseline; returns the manifest record."""
    suite, root, device = session.suite, session.store.root, session.device
    spec = roar_model(suite.model, p)
    if not spec.trainable:
        raise AudiobenchError(f"sanity.roar retrains the classifier, but model '{suite.model.name}' is not trainable")
    domain_name = p.domain or suite.domains[0].build().key()
    labels = p.methods or [m.label for m in suite.methods]
    cells = {label: find_cell(session, domain_name, "none", label) for label in labels}
    any_cell = next(iter(cells.values()))
    domain, frontend = any_cell.domain.build(), session.frontend
    clf0 = session.classifier
    with session.input_level():  # as the "none" condition reads them
        train = at_input_level(session.splits["train"])

    def represent(wave: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return chunked(lambda w: domain.represent(frontend, w.to(device)).x, wave)

    x_train, y_train = represent(train.waveforms), train.labels
    test = session.condition(any_cell)
    x_test, y_test = represent(test.waveforms), test.labels

    def build():  # noqa: ANN202
        return spec.build(list(clf0.class_names), suite.frontend.n_mels, suite.frontend.sample_rate)

    folder = root / "sanity" / "roar"
    seeds = list(range(p.seeds))
    # the domain with its parameters: a key alone (``stft2mel``) named the log1p operator before ``operator`` existed
    ident = {"params": p.model_dump(mode="json"), "classifier": session.trained.info["hash"], "domain": any_cell.domain.resolved(),
             "data": session.common["dataset"], "clips": session.common["clips"], "code": SANITY_CODE_VERSION}
    results: dict[str, dict[tuple[float, int], float]] = {}
    notes, seconds = [], {}
    if session.limit is not None:  # --limit is a quick look at the evaluated clips; ROAR's retraining is not limited
        notes.append(f"--limit {session.limit} limits the evaluated clips only: ROAR retrains on all {len(train)} "
                     "training clips at every removal share and seed")
        if progress:
            print(f"audiobench: note: {notes[-1]}", file=sys.stderr)
    for label in [RANDOM_REMOVAL, *labels]:
        t0 = time.perf_counter()
        h = stable_hash({**ident, "cell": None if label == RANDOM_REMOVAL else cells[label].explain_hash})
        path = folder / f"{slug(label)}__{h[:10]}.json"
        done = {(e["fraction"], e["seed"]): e["accuracy"] for e in json.loads(path.read_text())} if path.exists() else {}
        fractions = [0.0, *p.fractions] if label == RANDOM_REMOVAL else list(p.fractions)
        todo = [(k, s) for k in fractions for s in seeds if (k, s) not in done]
        s_train = s_test = None
        if todo and label != RANDOM_REMOVAL:
            s_train = _explain_split(session, cells[label], x_train, train.waveforms).to(x_train.dtype)
            s_test, missing = _stored_masks(session, cells[label], test.sample_ids, x_test.shape)
            if missing:
                notes.append(f"{label}: {missing} test clip(s) without a kept mask: their bins removed at random")

        def record(k: float, s: int, acc: float, path: Path = path, done: dict = done) -> None:
            done[(k, s)] = acc
            atomic_write_json(path, [{"fraction": f, "seed": sd, "accuracy": a} for (f, sd), a in sorted(done.items())])

        bar = tqdm(total=len(todo), desc=f"ROAR {label}", unit="fit", leave=False, disable=not progress or not todo)

        def record_and_tick(k: float, s: int, acc: float, record=record, bar=bar) -> None:  # noqa: ANN001
            record(k, s, acc)
            bar.update(1)

        results[label] = roar_curve(build, domain, frontend, x_train, y_train, s_train, x_test, y_test, s_test,
                                    fractions, seeds, p.epochs, p.lr, p.batch_size, device, done, record_and_tick)
        bar.close()
        if todo:
            seconds[label] = round(time.perf_counter() - t0, 2)
    rows = [{"row": label, "fraction": k, "seed": s, "accuracy": a}
            for label, res in results.items() for (k, s), a in res.items()]
    base = [r for r in rows if r["row"] == RANDOM_REMOVAL and r["fraction"] == 0.0]
    for label in labels:  # every curve starts at the unmodified data (k = 0, shared)
        rows += [{**r, "row": label} for r in base]
    frame = pd.DataFrame(rows)
    summary = (frame.groupby(["row", "fraction"], sort=False)["accuracy"]
               .agg(mean="mean", sd="std", n="count").reset_index())
    _write_roar_tables(summary, frame, root / "tables", domain_name, p, labels)
    claim = {}
    for k in p.fractions:
        if k >= 0.4 - 1e-9:
            at = summary[summary["fraction"] == k].set_index("row")["mean"]
            best = at.drop(RANDOM_REMOVAL).idxmin()
            claim[f"{k:g}"] = {"random": round(float(at[RANDOM_REMOVAL]), 4), "lowest_method": best,
                               "lowest": round(float(at[best]), 4),
                               "random_above": bool(at[RANDOM_REMOVAL] > at[best])}
    return {"params": p.model_dump(mode="json"), "domain": domain_name, "seconds": seconds, "notes": notes,
            "train_clips": len(x_train), "test_clips": len(x_test), "random_above_best_method": claim,
            "summary": summary}


def _write_roar_tables(summary: pd.DataFrame, frame: pd.DataFrame, out: Path, domain: str, p: RoarParams,
                       labels: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    frame.sort_values(["row", "fraction", "seed"]).to_csv(out / "sanity_roar_runs.csv", index=False, lineterminator="\n")
    summary.to_csv(out / "sanity_roar.csv", index=False, lineterminator="\n")
    cells = summary.assign(cell=[f"{100 * m:.1f} ± {100 * (0 if np.isnan(s) else s):.1f}"
                                 for m, s in zip(summary["mean"], summary["sd"], strict=True)])
    wide = cells.pivot_table(index="row", columns="fraction", values="cell", aggfunc="first", sort=False)
    wide = wide.reindex([RANDOM_REMOVAL, *labels])
    wide.columns = [f"{100 * k:g}% removed" for k in wide.columns]
    text = (f"Table: ROAR ({domain}): test accuracy (%) of a classifier retrained from scratch after the most salient "
            f"bins of every clip are removed, mean ± sd over {p.seeds} seeds, {p.epochs} epochs each.\n\n"
            + wide.to_markdown(tablefmt="pipe") + "\n")
    (out / "sanity_roar.md").write_text(text, encoding="utf-8")


# -- plots ----------------------------------------------------------------------------------------


def plots_stage(session: Any, p: PlotParams, done: dict[str, Any]) -> list[str]:
    """Per-clip figures of the first ``p.clips`` clips of every (domain, contamination), and the curves."""
    suite, root = session.suite, session.store.root
    paths: list[Path] = []
    plots = root / "plots"
    for cont in suite.contaminations:
        ckey = cont.build().key()
        for dom in suite.domains:
            dkey = dom.build().key()
            cells = [find_cell(session, dkey, ckey, m.label) for m in suite.methods]
            clips = session.condition(cells[0]).subset(slice(0, p.clips))
            if not len(clips) or not p.clips:
                continue
            domain = dom.build()
            with torch.no_grad():
                # the input drawn as log1p of the magnitudes the grid stands for, whatever the grid holds (|X| or log1p|X|)
                x = torch.log1p(domain.magnitude(domain.represent(session.frontend, clips.waveforms.to(session.device)).x)).cpu()
            maps: dict[str, dict[str, np.ndarray]] = {sid: {} for sid in clips.sample_ids}
            for c in cells:
                stored = read_masks(session.store.masks_path(c.id))
                first = {}
                for i, sid in enumerate(stored.sample_ids):
                    first.setdefault(sid, i)
                for sid in clips.sample_ids:
                    if sid in first:
                        maps[sid][c.method.label] = stored.explanation.mask[first[sid], 0].numpy()
            for i, sid in enumerate(clips.sample_ids):
                name = clips.class_names[int(clips.labels[i])] if clips.labels.dim() == 1 else ""
                paths += plot_clip(x[i, 0].numpy(), maps[sid], f"{sid} ({name}) — {dkey}, {ckey}",
                                   plots / "clips" / f"{dkey}__{ckey}__{slug(sid)}", p.dpi)
    if "randomisation" in done:
        r = done["randomisation"]
        paths += plot_randomisation(r["summary"], plots / "randomisation",
                                    f"cascading randomisation ({r['domain']}, {r['params']['contamination']})", p.dpi)
    if "roar" in done:
        r = done["roar"]
        paths += plot_roar(r["summary"], plots / "roar", RANDOM_REMOVAL, f"ROAR ({r['domain']})", p.dpi)
    return [str(q.relative_to(root)) for q in paths]


def run_sanity(session: Any) -> dict[str, Any]:
    """Every stage of the suite's ``sanity:`` section, in order (randomisation, ROAR, meta-consistency,
    plots); returns the
    manifest record (summaries as lists of rows)."""
    s = session.suite.sanity
    out: dict[str, Any] = {}
    if s is None:
        return out
    t0 = time.perf_counter()
    if s.randomisation is not None:
        out["randomisation"] = randomisation_stage(session, s.randomisation, session.progress)
    if s.roar is not None:
        out["roar"] = roar_stage(session, s.roar, session.progress)
    if s.meta_consistency is not None:
        from audiobench.sanity.meta_stage import meta_consistency_stage

        out["meta_consistency"] = meta_consistency_stage(session, s.meta_consistency, session.progress)
    if s.plots is not None:
        out["plots"] = plots_stage(session, s.plots, out)
    for stage in ("randomisation", "roar", "meta_consistency"):
        if stage in out:
            out[stage]["summary"] = json.loads(out[stage]["summary"].to_json(orient="records"))
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
