"""The ``sanity.meta_consistency`` stage: which metric of a run can be trusted, under perturbation and over seeds.

For the first ``clips`` clips of one (domain, condition), every chosen method explains the suite's
targets again (the run's kept masks are not reused: each setting must be explained the same way)
in these settings, each scored by every chosen metric with the same engine as the cells:

- ``seed s`` (s = 0..seeds-1): the trained model on the clips, the stochastic methods
  (:attr:`Explainer.stochastic`) drawing from seed s; the deterministic ones are explained once;
- ``model minor k`` / ``model disruptive k``: weights times N(1, σ²) noise (σ = ``model_minor`` /
  ``model_disruptive``), the k-th draw; explained and scored with the perturbed model;
- ``input minor k`` / ``input disruptive k``: the waveforms plus white noise at ``input_minor_db`` /
  ``input_disruptive_db`` SNR; explained and scored on the noisy input.

The targets stay those the trained model chose on the clean clips. From the scores
(:mod:`audiobench.sanity.meta_consistency`): IAC/IEC for noise resilience (rows whose decision
the minor perturbation kept) and adversary reactivity (rows whose decision the disruptive one
changed) per perturbation kind, their MC mean, and Kendall's τ between the metric's ranking of the
methods (mean score per method) at seed 0 and at each other seed. Each setting's scores are stored
(``RUN_DIR/sanity/meta_consistency/*.parquet``, named by a hash of what shaped them) as it completes,
so an interrupted run resumes; the table is ``tables/meta_consistency.md|csv``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from audiobench.contracts.registry import METRICS
from audiobench.harness.cells import batch_seed, clip_truth, explain_rows
from audiobench.harness.engine import explain_batch, score_rows
from audiobench.kernel.batching import chunked
from audiobench.kernel.cache import stable_hash
from audiobench.kernel.stats import kendall_tau_b
from audiobench.methods.base import DomainModel
from audiobench.metrics.budget import Budget
from audiobench.models.base import is_decision
from audiobench.sanity.common import SANITY_CODE_VERSION, decisions, find_cell, reading_waves, write_parquet
from audiobench.sanity.meta_consistency import (
    CRITERIA,
    PerturbationScores,
    meta_consistency,
    noisy_waveforms,
    perturbed_model,
)
from audiobench.suite.sanity import MetaConsistencyParams

KINDS = ("model", "input")
DECIDED = "__decided"  # the stored rows' pseudo-metric: the target is the (perturbed) model's decision


def _settings(p: MetaConsistencyParams, kinds: tuple[str, ...] = KINDS) -> list[tuple[str, str, int]]:
    """(kind, level, index): the seeds, then K draws of each perturbation of ``kinds``."""
    out = [("seed", "", s) for s in range(p.seeds)]
    out += [(kind, level, k) for kind in kinds for level in ("minor", "disruptive") for k in range(p.perturbations)]
    return out


def _level(p: MetaConsistencyParams, kind: str, level: str) -> float:
    return {("model", "minor"): p.model_minor, ("model", "disruptive"): p.model_disruptive,
            ("input", "minor"): p.input_minor_db, ("input", "disruptive"): p.input_disruptive_db}[(kind, level)]


def meta_consistency_stage(session: Any, p: MetaConsistencyParams, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every setting and return the manifest record (``summary``: a frame, one row per metric;
    :func:`audiobench.sanity.stage.run_sanity` turns it into JSON rows with the other stages')."""
    suite, root, device = session.suite, session.store.root, session.device
    domain_key = p.domain or suite.domains[0].build().key()
    labels = p.methods or [m.label for m in suite.methods]
    names = p.chosen_metrics(suite.metrics)
    metrics = [METRICS.get(n) for n in names]
    cells = [find_cell(session, domain_key, p.contamination, label) for label in labels]
    clips = session.condition(cells[0]).subset(slice(0, p.clips))
    model = session.model(cells[0])
    waves = clips.waveforms.to(device)
    rep = model.domain.represent(model.frontend, waves)
    rows, target = decisions(session, model, rep.x, waves)
    truth = clip_truth(clips, slice(None), model.domain, model.frontend, rep, metrics)
    truth = None if truth is None else truth.subset(rows).for_labels(target)
    row_labels = clips.labels.to(device)[rows]
    budget = Budget.of(suite.budget, suite.seed)
    explainers = [session.explainer(c)[0] for c in cells]
    folder = root / "sanity" / "meta_consistency"
    ident = {"cells": [c.explain_hash for c in cells], "params": p.model_dump(mode="json"), "metrics": names,
             "code": SANITY_CODE_VERSION}
    frames: dict[tuple[str, str, int], pd.DataFrame] = {}
    seconds = 0.0
    # a model without weights (hand-built) has nothing to perturb: its model test is left out, not scored as perfect
    kinds = KINDS if any(t.numel() for t in model.classifier.parameters()) else ("input",)
    settings = _settings(p, kinds)
    bar = tqdm(settings, desc="meta-consistency", unit="setting", leave=False, disable=not progress)
    for kind, level, k in bar:
        h = stable_hash({**ident, "setting": [kind, level, k]})
        path = folder / f"{kind}_{level or 'seed'}_{k}__{h[:10]}.parquet"
        if path.exists():
            frames[(kind, level, k)] = pd.read_parquet(path)
            continue
        t0 = time.perf_counter()
        m, x, read = model, rep.x, waves
        if kind == "model":
            m = DomainModel(perturbed_model(model.classifier, _level(p, kind, level), p.seed * 1000 + k),
                            model.domain, model.frontend).eval()
        elif kind == "input":
            read = noisy_waveforms(waves, _level(p, kind, level), p.seed * 1000 + k)
            x = model.domain.represent(model.frontend, read).x
        seed = k if kind == "seed" else 0
        reuse = frames.get(("seed", "", 0)) if kind == "seed" and k > 0 else None
        frame = _score_setting(session, m, x[rows], target, row_labels, truth, budget, metrics, cells, explainers,
                               labels, seed, reuse, read[rows])
        write_parquet(path, frame)
        frames[(kind, level, k)] = frame
        seconds += time.perf_counter() - t0
    bar.close()
    summary, counts = _summarise(frames, p, labels, names, len(rows), kinds)
    _write_table(summary, counts, root / "tables", domain_key, p, len(rows), labels, kinds)
    return {"params": p.model_dump(mode="json"), "domain": domain_key, "rows": int(len(rows)),
            "methods": labels, "metrics": names, "decisions": counts, "seconds": round(seconds, 2),
            "summary": summary}


@torch.no_grad()
def _score_setting(
    session: Any, model: DomainModel, x: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, truth: Any,
    budget: Budget, metrics: list, cells: list, explainers: list, row_names: list[str], seed: int,
    reuse: pd.DataFrame | None, waves: torch.Tensor,
) -> pd.DataFrame:
    """Every method's scores on rows ``x`` [R, 1, T, F] of the clips ``waves`` [R, L] for ``target`` [R] under
    ``model``: long rows (method, row, metric, value), plus whether each row's target is the model's decision
    (``DECIDED``). Deterministic methods are copied from ``reuse`` (seed 0) when given. Each batch is read with
    its clips (:func:`~audiobench.sanity.common.reading_waves`: a waveform model, a method reading the clips)."""
    suite, device = session.suite, session.device
    bs = suite.batch_size
    max_rows = max(explain_rows(device), bs)
    with reading_waves(model, waves):
        scores = chunked(model, x, max_rows)
    probs = model.probabilities(scores)
    p_t = probs.gather(1, target.view(-1, 1)).squeeze(1)
    decided = is_decision(p_t, probs.argmax(dim=-1), target, model.classifier.output_kind, suite.targets.threshold)
    parts = [pd.DataFrame({"method": "", "row": np.arange(len(x)), "metric": DECIDED,
                           "value": decided.double().cpu().numpy()})]
    for cell, explainer, name in zip(cells, explainers, row_names, strict=True):
        if reuse is not None and not explainer.stochastic:
            parts.append(reuse[reuse.method == name])
            continue
        for b, start in enumerate(range(0, len(x), bs)):
            sl = slice(start, min(start + bs, len(x)))
            s = batch_seed(stable_hash([cell.explain_hash, "meta", seed]), b)
            with reading_waves(model, waves[sl]):
                e = explain_batch(explainer, model, x[sl], target[sl], s, max_rows)
                e.mask = e.mask.detach().nan_to_num(0.0).clamp(0, 1)
                values, _, _ = score_rows(model, x[sl], e, scores[sl], target[sl], metrics, labels[sl], suite.targets,
                                          max_rows, None if truth is None else truth.subset(torch.arange(sl.start, sl.stop)),
                                          budget)
            idx = np.arange(sl.start, sl.stop)
            for metric in metrics:
                if metric.name in values:
                    parts.append(pd.DataFrame({"method": name, "row": idx, "metric": metric.name,
                                               "value": values[metric.name].double().cpu().numpy()}))
    return pd.concat(parts, ignore_index=True)


def _matrix(frame: pd.DataFrame, metric: str, labels: list[str], n: int) -> np.ndarray:
    """[M, N] scores of ``metric`` (NaN where a method has none)."""
    out = np.full((len(labels), n), np.nan)
    part = frame[frame.metric == metric]
    pos = {name: i for i, name in enumerate(labels)}
    for r in part.itertuples():
        out[pos[r.method], int(r.row)] = r.value
    return out


def _decided(frame: pd.DataFrame, n: int) -> np.ndarray:
    part = frame[frame.metric == DECIDED].sort_values("row")
    out = np.zeros(n, dtype=bool)
    out[part.row.to_numpy(int)] = part.value.to_numpy() > 0.5
    return out


def _summarise(frames: dict, p: MetaConsistencyParams, labels: list[str], names: list[str],
               n: int, kinds: tuple[str, ...] = KINDS) -> tuple[pd.DataFrame, dict[str, Any]]:
    base = frames[("seed", "", 0)]
    decided0 = _decided(base, n)
    K = p.perturbations
    flags = {(kind, level): np.stack([_decided(frames[(kind, level, k)], n) == decided0 for k in range(K)])
             for kind in kinds for level in ("minor", "disruptive")}
    counts = {f"{kind} {level}": {"kept": round(float(flags[(kind, level)].mean()), 4)} for kind, level in flags}
    records = []
    for name in names:
        higher = bool(METRICS.get(name).higher_is_better)
        q = _matrix(base, name, labels, n)
        # a method the metric is undefined for on every row (the zeros map's mass) takes no place in a ranking
        use = np.isfinite(q).any(axis=1)
        q = q[use]
        rec: dict[str, Any] = {"metric": name, "higher_is_better": higher,
                               "methods": int(use.sum())}

        def at(kind: str, level: str, k: int, name: str = name, use: np.ndarray = use) -> np.ndarray:
            return _matrix(frames[(kind, level, k)], name, labels, n)[use]

        for kind in KINDS:
            if kind not in kinds:
                rec.update({f"{kind} {crit}": float("nan") for crit in CRITERIA})
                continue
            scores = PerturbationScores(
                q=q,
                minor=np.stack([at(kind, "minor", k) for k in range(K)]),
                disruptive=np.stack([at(kind, "disruptive", k) for k in range(K)]),
                kept=flags[(kind, "minor")], changed=~flags[(kind, "disruptive")])
            for crit, value in meta_consistency(scores, higher).items():
                rec[f"{kind} {crit}"] = value
        rec["MC"] = float(np.mean([rec[f"{kind} MC"] for kind in kinds]))
        taus = []
        for s in range(1, p.seeds):
            a, b = np.nanmean(q, axis=1), np.nanmean(at("seed", "", s), axis=1)
            taus.append(float(kendall_tau_b(a, b)))
        rec["tau_seeds_mean"] = float(np.mean(taus)) if taus else float("nan")
        rec["tau_seeds_min"] = float(np.min(taus)) if taus else float("nan")
        records.append(rec)
    return pd.DataFrame(records), counts


def _write_table(summary: pd.DataFrame, counts: dict[str, Any], out: Path, domain: str, p: MetaConsistencyParams,
                 n_rows: int, labels: list[str], kinds: tuple[str, ...] = KINDS) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "meta_consistency.csv", index=False, lineterminator="\n", float_format="%.6g")
    shown = pd.DataFrame({"Metric": [f"{METRICS.get(m).display} {'↑' if h else '↓'}"
                                     for m, h in zip(summary.metric, summary.higher_is_better, strict=True)]})
    if p.seeds > 1:
        shown["τ seeds"] = [f"{a:.2f} (min {b:.2f})" if a == a else "—"
                            for a, b in zip(summary.tau_seeds_mean, summary.tau_seeds_min, strict=True)]
    for kind in KINDS:
        for crit in CRITERIA:
            shown[f"{kind.capitalize()} {crit}"] = [f"{v:.2f}" if v == v else "—" for v in summary[f"{kind} {crit}"]]
    shown["MC"] = [f"{v:.2f}" if v == v else "—" for v in summary["MC"]]
    kept = "; ".join(f"{k}: {100 * v['kept']:.0f} % of rows kept their decision" for k, v in counts.items())
    caption = (
        f"Table: meta-consistency of each metric (MetaQuantus, Hedström et al. 2023; {domain}, {p.contamination}, "
        f"{n_rows} (clip, target) rows, {len(labels)} methods, K = {p.perturbations} perturbations per test). "
        f"Model: weights times N(1, σ²), σ = {p.model_minor:g} (minor) / {p.model_disruptive:g} (disruptive); "
        f"input: white noise at {p.input_minor_db:g} / {p.input_disruptive_db:g} dB SNR. IAC_NR: Wilcoxon p between "
        "scores before and after a minor perturbation (rows whose decision it kept); IAC_AR: 1 − p after a disruptive "
        "one (rows whose decision it changed); IEC_NR: share of ranking places unchanged; IEC_AR: share of scores "
        "made worse (by the metric's direction); MC: their mean; 1 is ideal for all. "
        + (f"τ seeds: Kendall τ between the methods' ranking at seed 0 and at seeds 1..{p.seeds - 1} of the "
           "stochastic methods (mean, min). " if p.seeds > 1 else "")
        + f"{kept}. —: no rows for that criterion."
        + ("" if "model" in kinds else " The model has no weights: no model perturbation (its columns are —, MC is "
           "the input test's).") + "".join(
            f" {METRICS.get(m).display} is undefined on every row for {len(labels) - k} method(s): ranked among {k}."
            for m, k in zip(summary.metric, summary.methods, strict=True) if k < len(labels)))
    (out / "meta_consistency.md").write_text(caption + "\n\n" + shown.to_markdown(index=False, tablefmt="pipe", disable_numparse=True) + "\n",
                                              encoding="utf-8")
