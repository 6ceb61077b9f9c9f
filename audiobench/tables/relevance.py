"""Coherence of L2I's interpretations on a multi-label run (the L2I journal's Fig. 5, sec. V-B): the
relevance vector r_{c,x} in R^K of every explained (clip, class), embedded in 2-D by t-SNE and coloured
by the class; "Interpretations for any single class are coherent and similar to each other".

The figure is a view; the number behind the claim is the silhouette of the relevance vectors grouped by
class (cosine distance, scikit-learn's ``silhouette_score``; in [-1, 1], 0: no grouping by class), per
(condition, domain, L2I row): ``RUN_DIR/tables/relevance_coherence.csv``. Figures:
``RUN_DIR/plots/relevance_tsne__<condition>.png|.pdf``, a panel per (domain, row). Read from the kept
masks (``relevance`` [rows, K]); t-SNE seeded with the run's seed (``init="pca"``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from audiobench.kernel.figures import pyplot, save
from audiobench.store.masks import kept_with
from audiobench.store.records import Manifest


def coherence(relevance: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette of ``relevance`` [N, K] grouped by ``labels`` [N] (cosine distance); NaN with fewer
    than two classes or fewer than three vectors (undefined)."""
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2 or len(labels) < 3 or len(np.unique(labels)) >= len(labels):
        return float("nan")
    return float(silhouette_score(relevance, labels, metric="cosine"))


def embed(relevance: np.ndarray, seed: int) -> np.ndarray:
    """t-SNE of ``relevance`` [N, K] to [N, 2] (perplexity min(30, (N - 1) / 3), PCA initialisation)."""
    from sklearn.manifold import TSNE

    perplexity = max(1.0, min(30.0, (len(relevance) - 1) / 3))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(relevance)


def relevance_vectors(run_dir: str | Path, manifest: Manifest) -> list[tuple[str, str, str, np.ndarray, np.ndarray]]:
    """(condition, domain, row, relevance [N, K], class [N]) of every cell that kept relevance vectors."""
    return [(cell.contamination, cell.domain, cell.row, stored.explanation.relevance.double().numpy(),  # type: ignore[union-attr]
             np.asarray(stored.targets, dtype=np.int64))
            for cell, stored in kept_with(run_dir, manifest.cells, "relevance")]


def write_relevance(run_dir: str | Path, manifest: Manifest, tables: Path, plots: Path) -> list[Path]:
    """For a sigmoid run with L2I rows: the coherence table and a t-SNE figure per condition; the files
    written (none otherwise)."""
    if manifest.output_kind != "sigmoid":
        return []
    cells = relevance_vectors(run_dir, manifest)
    if not cells:
        return []
    names = [str(c) for c in manifest.classes]
    records = [{"contamination": c, "domain": d, "row": r, "rows": len(y), "classes": len(np.unique(y)),
                "silhouette": coherence(v, y)} for c, d, r, v, y in cells]
    tables.mkdir(parents=True, exist_ok=True)
    written = [tables / "relevance_coherence.csv"]
    pd.DataFrame(records).to_csv(written[0], index=False, lineterminator="\n", float_format="%.4f")
    plt = pyplot()
    colours = plt.get_cmap("tab20")
    for condition in dict.fromkeys(c for c, *_ in cells):
        mine = [cell for cell in cells if cell[0] == condition]
        fig, axes = plt.subplots(1, len(mine), figsize=(3.6 * len(mine), 3.6), squeeze=False, constrained_layout=True)
        for ax, (_, domain, row, v, y) in zip(axes[0], mine, strict=True):
            xy = embed(v, manifest.seed or 0) if len(v) > 3 else np.zeros((len(v), 2))
            for k in np.unique(y).tolist():
                pick = y == k
                ax.scatter(xy[pick, 0], xy[pick, 1], s=8, color=colours(k % 20), label=names[k] if k < len(names) else str(k))
            ax.set_title(f"{manifest.display_name('domain', domain)}: {row}\nsilhouette {coherence(v, y):.2f}", fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
        axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.suptitle(f"L2I relevance vectors (t-SNE), {manifest.display_name('contamination', condition)}", fontsize=9)
        written += save(fig, plots / f"relevance_tsne__{condition}")
    return written
