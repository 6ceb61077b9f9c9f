"""The L2I journal's fidelity table for multi-label runs: how well an interpreter's own output agrees
with the classifier's decisions over a whole condition (journal sec. IV-C, Table IV layout).

"we utilize the same metric used to evaluate the classifier performance but instead treat classifiers
output as ground truth and evaluate the interpreter's approximation Theta(H_I(x)) w.r.t to it"; for
SONYC-UST "the macro-AUPRC, micro-AUPRC and max-F1 for the interpreter output w.r.t classifier"
(sec. V-A.1). Here, per cell of a sigmoid run whose method keeps interpreter scores (L2I): the scores
are sigmoid(Theta(H)) of each evaluated clip, the reference its decided labels (the labels the run
explained: p > ``targets.threshold``), from the kept masks and the stored rows; no recomputation.
A clip with no decided label has no row and is left out (the journal scores every test clip: a
departure the caption states). Scores: :mod:`audiobench.metrics.multilabel` (scikit-learn's average
precision; max-F1 micro over all pairs at the best threshold, as the authors' ``calc_PRC_metrics``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from audiobench.metrics.multilabel import macro_auprc, max_f1, micro_auprc
from audiobench.store.masks import kept_with
from audiobench.store.records import Manifest

COLUMNS = ["macro-AUPRC", "micro-AUPRC", "max-F1"]


def cell_fidelity(scores: torch.Tensor, sample_ids: list[str], targets: np.ndarray, n_classes: int) -> dict[str, float]:
    """The three scores of one cell: ``scores`` [R, C] the interpreter's logits of each kept (clip, label)
    row (a clip's rows share them), ``sample_ids`` and ``targets`` [R] the rows' clip and label.

    Returns {column: value} (NaN where undefined: no positive, or a single clip). Raises nothing."""
    clips = list(dict.fromkeys(sample_ids))
    first = {s: i for i, s in reversed(list(enumerate(sample_ids)))}
    probs = scores[[first[s] for s in clips]].double().sigmoid()
    decided = torch.zeros(len(clips), n_classes, dtype=torch.float64)
    where = {s: i for i, s in enumerate(clips)}
    decided[[where[s] for s in sample_ids], torch.as_tensor(targets, dtype=torch.long)] = 1.0
    out = {}
    for name, fn in zip(COLUMNS, (macro_auprc, micro_auprc, max_f1), strict=True):
        try:
            out[name] = float(fn(probs, decided))
        except ValueError:
            out[name] = float("nan")
    return out


def fidelity_frame(run_dir: str | Path, manifest: Manifest) -> pd.DataFrame:
    """Per (row, domain, contamination) of a sigmoid run: the interpreter's fidelity to the classifier's
    decisions and the number of clips scored; empty when the run is not multi-label or no cell kept
    interpreter scores."""
    if manifest.output_kind != "sigmoid":
        return pd.DataFrame()
    records = []
    for cell, stored in kept_with(run_dir, manifest.cells, "interpreter_scores"):
        scores = stored.explanation.interpreter_scores
        assert scores is not None  # kept_with: the file holds them
        values = cell_fidelity(scores, list(stored.sample_ids), np.asarray(stored.targets), len(manifest.classes))
        records.append({"row": cell.row, "domain": cell.domain, "contamination": cell.contamination,
                        "clips": len(set(stored.sample_ids)), **values})
    return pd.DataFrame(records)


def write_fidelity(run_dir: str | Path, manifest: Manifest, out: Path) -> list[Path]:
    """``out/fidelity.md`` and ``.csv`` (the journal's Table IV columns) when the run has such cells; the
    paths written (none otherwise)."""
    frame = fidelity_frame(run_dir, manifest)
    if frame.empty:
        return []
    out.mkdir(parents=True, exist_ok=True)
    show = frame.copy()
    show["domain"] = [manifest.display_name("domain", d) for d in show.domain]
    show["contamination"] = [manifest.display_name("contamination", c) for c in show.contamination]
    caption = ("Table: Interpreter fidelity to the classifier (L2I journal, Table IV layout): the interpreter's "
               "sigmoid outputs scored against the classifier's decided labels (p > threshold) of each clip, "
               "over the clips with at least one decided label (the journal scores every test clip). "
               "Higher is better.")
    text = caption + "\n\n" + show.to_markdown(index=False, floatfmt=".3f") + "\n"
    paths = [out / "fidelity.md", out / "fidelity.csv"]
    paths[0].write_text(text, encoding="utf-8")
    frame.to_csv(paths[1], index=False, lineterminator="\n")
    return paths
