"""Insertion and deletion curves of a finished run (:mod:`audiobench.metrics.budget`), as figures.

One figure per evaluated condition, ``RUN_DIR/plots/curves__<condition>.png|.pdf``: a row of two
panels (insertion, deletion) per masking domain, mean p_t against the share of bins kept / removed,
one line per table row; the model-free controls dashed. Read from the stored ``p_ins@K`` / ``p_del@K``
rows only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audiobench.kernel.figures import pyplot, save
from audiobench.methods.control import CONTROLS
from audiobench.metrics.budget import CURVE_PREFIXES
from audiobench.store.records import Manifest


def curve_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean p_t per (contamination, domain, method, row, curve, budget) of the stored curve rows."""
    sub = frame[frame.metric.str.startswith(CURVE_PREFIXES)]
    if sub.empty:
        return pd.DataFrame(columns=["contamination", "domain", "method", "row", "curve", "budget", "p"])
    sub = sub.assign(curve=sub.metric.str.slice(2, 5), budget=sub.metric.str.split("@").str[1].astype(float))
    out = sub.groupby(["contamination", "domain", "method", "row", "curve", "budget"], sort=False).value.mean()
    return out.rename("p").reset_index()


def plot_curves(frame: pd.DataFrame, manifest: Manifest, folder: Path) -> list[Path]:
    """Write the curves of every condition of the run under ``folder``; returns the files written
    (none when the run has no budget metrics)."""
    means = curve_means(frame)
    if means.empty:
        return []
    plt = pyplot()
    written: list[Path] = []
    for condition, per_condition in means.groupby("contamination", sort=False):
        domains = list(dict.fromkeys(per_condition.domain))
        fig, axes = plt.subplots(len(domains), 2, figsize=(10, 3.0 * len(domains)), squeeze=False,
                                 constrained_layout=True)
        rows = list(dict.fromkeys(per_condition.row))
        colours = plt.get_cmap("tab20")
        for i, domain in enumerate(domains):
            sub = per_condition[per_condition.domain == domain]
            for j, (curve, title) in enumerate([("ins", "insertion (top bins kept) ↑"), ("del", "deletion (top bins removed) ↓")]):
                ax = axes[i, j]
                for (method, row), line in sub[sub.curve == curve].groupby(["method", "row"], sort=False):
                    line = line.sort_values("budget")
                    ax.plot(100 * line.budget, line.p, "--" if method in CONTROLS else "-", label=row, lw=1.2,
                            color=colours(rows.index(row) % 20))
                ax.set_title(f"{manifest.display_name('domain', domain)}: {title}", fontsize=9)
                ax.set_ylim(0, 1)
                ax.tick_params(labelsize=8)
                if i == len(domains) - 1:
                    ax.set_xlabel("share of time-frequency bins (%)", fontsize=8)
                if j == 0:
                    ax.set_ylabel("mean p_t", fontsize=8)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right center", fontsize=7)
        fig.suptitle(f"Budget-matched faithfulness, {manifest.display_name('contamination', condition)}"
                     " (controls dashed)", fontsize=10)
        written += save(fig, folder / f"curves__{condition}")
    return written
