"""Prompt analyses of a zero-shot run (LMAC-ZS paper, Fig. 3 and Fig. 4).

For every method whose rows explain each clip for several prompts (a method entry with
``targets: all``), over its (clip, prompt) rows:

* **mask mean vs similarity** (Fig. 3): the Pearson and Spearman correlation between the mask mean
  (``mm``) and the prompt-audio similarity (``similarity``: logit_scale x cosine); a faithful
  prompt-conditioned mask grows with the similarity (the paper: LMAC-ZS positive, GradCAM++ flat);
* **predicted vs unrelated prompt** (Fig. 4): per clip, the mask mean for the predicted prompt and
  the mean over the other prompts; the share of clips where the unrelated prompts' masks are smaller.

Writes ``tables/prompts__<dataset>.{md,csv}`` and the scatter plots
``plots/mm_vs_similarity__<dataset>__<domain>__<contamination>.png`` (one panel per method).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

CELL = ["dataset", "domain", "contamination", "method", "row"]


def prompt_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Wide (clip, prompt) rows [CELL..., sample_id, target, mm, similarity, pred_orig] of the cells
    that explained some clip for more than one prompt; empty when there are none."""
    need = {"mm", "similarity", "pred_orig"}
    sub = frame[frame["metric"].isin(need)]
    if sub.empty or not need <= set(sub["metric"].unique()):
        return pd.DataFrame()
    wide = sub.pivot_table(index=[*CELL, "sample_id", "target"], columns="metric", values="value", aggfunc="first",
                           observed=True).reset_index()
    wide = wide.dropna(subset=["mm", "similarity"])
    per_clip = wide.groupby([*CELL, "sample_id"], observed=True)["target"].transform("nunique")
    return wide[per_clip > 1].reset_index(drop=True)


def prompt_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (dataset, domain, contamination, method): pairs, Pearson r and Spearman rho of
    mm vs similarity, the mean mask mean for the predicted prompt and for the other prompts, and the
    share of clips whose unrelated-prompt mask mean is below the predicted prompt's."""
    out = []
    for key, g in rows.groupby(CELL, observed=True, sort=False):
        r = stats.pearsonr(g["mm"], g["similarity"])[0] if g["mm"].std() > 0 and g["similarity"].std() > 0 else np.nan
        rho = stats.spearmanr(g["mm"], g["similarity"])[0] if g["mm"].nunique() > 1 else np.nan
        pred = g["target"] == g["pred_orig"]
        own = g[pred].set_index("sample_id")["mm"]
        other = g[~pred].groupby("sample_id")["mm"].mean()
        both = own.index.intersection(other.index)
        out.append({**dict(zip(CELL, key, strict=True)), "pairs": len(g), "pearson_r": r, "spearman_rho": rho,
                    "mm_predicted": float(own[both].mean()) if len(both) else np.nan,
                    "mm_unrelated": float(other[both].mean()) if len(both) else np.nan,
                    "share_unrelated_smaller": float((other[both] < own[both]).mean()) if len(both) else np.nan,
                    "clips": len(both)})
    return pd.DataFrame(out)


def scatter(rows: pd.DataFrame, path: Path, title: str) -> None:
    """Mask mean vs similarity, one panel per method; predicted-prompt rows highlighted (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(rows["row"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.2), squeeze=False, sharey=False)
    for ax, method in zip(axes[0], methods, strict=True):
        g = rows[rows["row"] == method]
        pred = g["target"] == g["pred_orig"]
        ax.scatter(g.loc[~pred, "similarity"], g.loc[~pred, "mm"], s=6, alpha=0.4, label="other prompts", color="tab:gray")
        ax.scatter(g.loc[pred, "similarity"], g.loc[pred, "mm"], s=8, alpha=0.8, label="predicted prompt", color="tab:red")
        r = stats.pearsonr(g["mm"], g["similarity"])[0] if g["mm"].std() > 0 else float("nan")
        ax.set_title(f"{method} (r = {r:.2f})", fontsize=9)
        ax.set_xlabel("similarity (logit scale x cos)")
        ax.set_ylabel("mask mean")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_prompt_analysis(run_dir: str | Path, frame: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write the prompt analyses of a run (see the module docstring); returns name -> path written
    (nothing when no method explained several prompts per clip)."""
    from audiobench.store.run_dir import load_run

    run_dir = Path(run_dir)
    frame = load_run(run_dir) if frame is None else frame
    rows = prompt_rows(frame)
    if rows.empty:
        return {}
    written: dict[str, Path] = {}
    summary = prompt_summary(rows)
    for dataset, part in summary.groupby("dataset", sort=False):
        stem = run_dir / "tables" / f"prompts__{dataset}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        shown = part.drop(columns=["dataset", "method"]).rename(columns={"row": "method"})
        shown.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.4f")
        text = ("Mask mean vs prompt-audio similarity over (clip, prompt) pairs (LMAC-ZS Fig. 3), and the mask mean "
                "for the predicted vs the unrelated prompts (Fig. 4).\n\n" + shown.to_markdown(index=False, floatfmt=".3f"))
        stem.with_suffix(".md").write_text(text + "\n")
        written[f"prompts__{dataset}"] = stem.with_suffix(".md")
    for key, g in rows.groupby(["dataset", "domain", "contamination"], observed=True, sort=False):
        path = run_dir / "plots" / f"mm_vs_similarity__{'__'.join(map(str, key))}.png"
        scatter(g, path, f"{key[0]}, {key[1]}, {key[2]}: mask mean vs similarity")
        written[path.stem] = path
    return written
