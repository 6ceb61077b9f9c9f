"""Figures of a run (matplotlib, Agg backend): each written as PNG and PDF under ``RUN_DIR/plots``.

* :func:`plot_clip`: a clip's representation, then each method's map on one colour scale [0, 1];
* :func:`plot_randomisation`: SSIM and Spearman vs the number of randomised layer groups, one line
  per method with its 95 % interval (as L-MAC Fig. 3 and Adebayo et al. Fig. 2 draw them);
* :func:`plot_roar`: test accuracy vs the share of bins removed, the random baseline dashed
  (as L-MAC Fig. 4 left and Hooker et al. Fig. 4 draw them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from audiobench.kernel.figures import pyplot, save


def plot_clip(spec: np.ndarray, maps: dict[str, np.ndarray], title: str, stem: Path, dpi: int = 80) -> list[Path]:
    """A clip's representation ``spec`` [T, F] and each method's map [T, F] (values in [0, 1], one scale)."""
    plt = pyplot()
    n = 1 + len(maps)
    fig, axes = plt.subplots(1, n, figsize=(1.7 * n + 0.6, 2.4), squeeze=False)
    axes = axes[0]
    axes[0].imshow(spec.T, origin="lower", aspect="auto", cmap="magma")
    axes[0].set_title("input", fontsize=8)
    im = None
    for ax, (label, m) in zip(axes[1:], maps.items(), strict=True):
        im = ax.imshow(m.T, origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(label, fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel("frequency bin", fontsize=7)
    axes[0].set_xlabel("time", fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=list(axes[1:]), fraction=0.02, pad=0.01)
    fig.suptitle(title, fontsize=8, y=1.06)
    return save(fig, stem, dpi)


def plot_randomisation(summary: pd.DataFrame, stem: Path, title: str = "", dpi: int = 80) -> list[Path]:
    """``summary`` rows (row, step, layer, metric, mean, low, high): one panel per metric, similarity vs
    the number of randomised layer groups (x labels: the group randomised last), one line per method."""
    plt = pyplot()
    metrics = [m for m in ("ssim", "spearman") if m in set(summary["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        part = summary[summary["metric"] == metric]
        for row, line in part.groupby("row", sort=False):
            line = line.sort_values("step")
            ax.plot(line["step"], line["mean"], marker="o", ms=3, label=row)
            ax.fill_between(line["step"], line["low"], line["high"], alpha=0.2)
        steps = part.drop_duplicates("step").sort_values("step")
        ax.set_xticks(steps["step"], steps["layer"], rotation=35, ha="right", fontsize=7)
        ax.set_ylabel({"ssim": "SSIM", "spearman": "Spearman rank correlation"}[metric])
        ax.set_xlabel("randomised down to (cascading)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save(fig, stem, dpi)


def plot_roar(summary: pd.DataFrame, stem: Path, baseline: str, title: str = "", dpi: int = 80) -> list[Path]:
    """``summary`` rows (row, fraction, mean, sd): accuracy vs % removed, one line per method, ``baseline`` dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for row, line in summary.groupby("row", sort=False):
        line = line.sort_values("fraction")
        style = {"linestyle": "--", "color": "black"} if row == baseline else {}
        ax.errorbar(100 * line["fraction"], 100 * line["mean"], yerr=100 * line["sd"].fillna(0), marker="o", ms=3,
                    capsize=2, label=row, **style)
    ax.set_xlabel("bins removed (%)")
    ax.set_ylabel("test accuracy after retraining (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save(fig, stem, dpi)
