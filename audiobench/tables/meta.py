"""Which metric of a run can be trusted, and how much: a meta-evaluation from the stored rows only.

For every metric with a direction, in every (condition, domain) block, over the table rows (methods
and controls) that have a value on every (clip, target) of the block:

* **Stability**: Kendall's tau-b between the rows' ranking by the metric's mean on all clips and on
  ``n_boot`` bootstrap resamples of the clips (seeded): its mean and 2.5-97.5 % interval. Near 1: the
  ranking does not depend on which clips were drawn; low: it is noise.
* **Agreement with the known answer** where the run has one (the ``truth`` metric: ``exact_overlap``, the
  map's rank correlation with a hand-built model's exact attribution, where the run has it; otherwise
  ``gt_auc``, how well the map ranks the target event's own bins; :mod:`audiobench.metrics.localisation`):
  tau-b between the ranking by the metric (its direction applied) and the ranking by the truth
  metric, on all clips and on the same resamples. A faithfulness metric need not agree with
  localisation (a model may rely on context), so read it as "does this metric rank methods as the
  place of the sound does", not as a verdict.

Stability over seeds of the stochastic methods, and MetaQuantus's noise resilience and adversary
reactivity, need new explanations: the ``sanity.meta_consistency`` stage
(:mod:`audiobench.sanity.meta_stage`). Kendall's tau-b: :func:`audiobench.kernel.stats.kendall_tau_b`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from audiobench.kernel.stats import kendall_tau_b

TRUTH = "gt_auc"
N_BOOT = 200
MIN_ROWS = 3  # a ranking of fewer rows says nothing


def _matrix(block: pd.DataFrame, metric: str) -> pd.DataFrame:
    """[(sample_id, target), row] values of ``metric``; only the clips every row has."""
    sub = block[block.metric == metric]
    wide = sub.pivot_table(index=["sample_id", "target"], columns="row", values="value", sort=False)
    return wide.dropna(axis=0, how="any")


def _summary(taus: np.ndarray) -> tuple[float, float, float]:
    """Mean and 2.5 / 97.5 % percentiles of the finite values (NaN when there are none)."""
    finite = taus[np.isfinite(taus)]
    if finite.size == 0:
        return np.nan, np.nan, np.nan
    return float(finite.mean()), float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))


def metric_trust(
    frame: pd.DataFrame, metric_info: Mapping[str, Mapping], truth: str = TRUTH, n_boot: int = N_BOOT, seed: int = 0,
) -> pd.DataFrame:
    """One row per (contamination, domain, metric): rows ranked, stability tau (mean, lo, hi) and the
    agreement tau with ``truth`` (all clips, lo, hi; NaN without ground truth). ``frame``: a run's
    long rows (:func:`audiobench.store.run_dir.load_run`); ``metric_info``: name -> its registration
    (``higher_is_better``)."""
    out = []
    rng = np.random.default_rng(seed)
    for (condition, domain), block in frame.groupby(["contamination", "domain"], sort=False):
        truth_wide = _matrix(block, truth) if truth in set(block.metric) else None
        for metric, info in metric_info.items():
            if info.get("higher_is_better") is None or metric == truth or metric not in set(block.metric):
                continue
            wide = _matrix(block, metric)
            if wide.shape[1] < MIN_ROWS or len(wide) < 2:
                continue
            sign = 1.0 if info["higher_is_better"] else -1.0
            values = sign * wide.to_numpy()
            idx = rng.integers(0, len(values), size=(n_boot, len(values)))
            full = values.mean(axis=0)
            boot = values[idx].mean(axis=1)  # [n_boot, rows]
            stability = kendall_tau_b(boot, full[None, :])
            if np.isnan(stability).all():  # the rows tie on all clips: no ranking to judge
                continue
            mean, lo, hi = _summary(stability)
            entry = {"contamination": condition, "domain": domain, "metric": metric, "rows": wide.shape[1],
                     "clips": len(values), "stability": mean, "stability_lo": lo, "stability_hi": hi,
                     "vs_truth": np.nan, "vs_truth_lo": np.nan, "vs_truth_hi": np.nan}
            if truth_wide is not None:
                common = wide.index.intersection(truth_wide.index)
                cols = [c for c in wide.columns if c in truth_wide.columns]
                if len(cols) >= MIN_ROWS and len(common) >= 2:
                    m = sign * wide.loc[common, cols].to_numpy()
                    t = truth_wide.loc[common, cols].to_numpy()
                    j = rng.integers(0, len(common), size=(n_boot, len(common)))
                    agree = kendall_tau_b(m[j].mean(axis=1), t[j].mean(axis=1))
                    _, lo, hi = _summary(agree)
                    entry.update(vs_truth=float(kendall_tau_b(m.mean(axis=0), t.mean(axis=0))), vs_truth_lo=lo, vs_truth_hi=hi)
            out.append(entry)
    return pd.DataFrame(out)


def _cell(mean: float, lo: float, hi: float) -> str:
    return "–" if np.isnan(mean) else f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def trust_markdown(trust: pd.DataFrame, condition: str, display: Mapping[str, Mapping[str, str]],
                   metric_info: Mapping[str, Mapping], truth: str = TRUTH) -> str:
    """The meta-evaluation of one condition as a Markdown table: a row per metric, per domain its
    stability and its agreement with ``truth``."""
    sub = trust[trust.contamination == condition]
    domains = list(dict.fromkeys(sub.domain))
    shown = {d: display.get("domain", {}).get(d, d) for d in domains}
    header = ["Metric"] + [f"{shown[d]}: {what}" for d in domains for what in ("stability τ", f"τ vs {truth}")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric in dict.fromkeys(sub.metric):
        info = metric_info.get(metric, {})
        name = info.get("display", metric) + ("↑" if info.get("higher_is_better") else "↓")
        cells = [name]
        for d in domains:
            r = sub[(sub.metric == metric) & (sub.domain == d)]
            if r.empty:
                cells += ["–", "–"]
                continue
            r = r.iloc[0]
            cells += [_cell(r.stability, r.stability_lo, r.stability_hi), _cell(r.vs_truth, r.vs_truth_lo, r.vs_truth_hi)]
        lines.append("| " + " | ".join(cells) + " |")
    n_rows = int(sub.rows.max()) if len(sub) else 0
    caption = (f"Table: Which metric can be trusted — {display.get('contamination', {}).get(condition, condition)}. "
               f"Kendall's τ-b over up to {n_rows} rows (methods and controls) with a value on every clip: stability, "
               f"the ranking on {N_BOOT} bootstrap resamples of the clips against the ranking on all clips "
               f"(mean [2.5 %, 97.5 %]); τ vs {truth}, the metric's ranking (its direction applied) against the "
               f"ranking by the known answer's {truth}, on all clips [bootstrap interval]; – where the data has no "
               "ground truth or too few rows.")
    return caption + "\n\n" + "\n".join(lines) + "\n"


def known_answer(frame: pd.DataFrame) -> str:
    """The truth metric of a run: the model's own exact attribution (``exact_overlap``, hand-built models)
    where the run has it, else the data's ideal mask (``gt_auc``)."""
    return "exact_overlap" if "exact_overlap" in set(frame.metric) else TRUTH


def write_trust(frame: pd.DataFrame, metric_info: Mapping[str, Mapping], display: Mapping[str, Mapping[str, str]],
                folder: Path, dataset: str, seed: int = 0) -> list[Path]:
    """Write ``meta__<dataset>__<condition>.md`` and ``.csv`` per condition under ``folder``; returns the
    paths (none when no metric ranks enough rows)."""
    truth = known_answer(frame)
    trust = metric_trust(frame, metric_info, truth=truth, seed=seed)
    if trust.empty:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for condition in dict.fromkeys(trust.contamination):
        stem = folder / f"meta__{dataset}__{condition}"
        stem.with_suffix(".md").write_text(trust_markdown(trust, condition, display, metric_info, truth), encoding="utf-8")
        trust[trust.contamination == condition].round(6).to_csv(stem.with_suffix(".csv"), index=False)
        paths += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
    return paths
