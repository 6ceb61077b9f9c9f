"""The L2I journal's multi-label fidelity table: the interpreter's sigmoid outputs against the
classifier's decided labels, per cell, with scikit-learn as the oracle."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from audiobench.tables.fidelity import cell_fidelity


def test_one_cell_equals_scikit_learn_on_the_clips_decided_labels() -> None:
    # 3 clips, 4 classes; rows (clip, decided label): a:{0,2}, b:{1}, c:{1,3}; a clip's rows share its scores
    logits = torch.tensor([[2.0, -1.0, 0.5, -2.0], [-1.0, 1.5, -0.5, 0.0], [0.0, 0.3, -1.0, 1.0]])
    rows = [("a", 0), ("a", 2), ("b", 1), ("c", 1), ("c", 3)]
    position = {"a": 0, "b": 1, "c": 2}
    scores = logits[[position[s] for s, _ in rows]]
    got = cell_fidelity(scores, [s for s, _ in rows], np.array([t for _, t in rows]), 4)
    y = np.zeros((3, 4))
    for s, t in rows:
        y[position[s], t] = 1
    p = torch.sigmoid(logits.double()).numpy()
    assert abs(got["macro-AUPRC"] - average_precision_score(y, p, average="macro")) < 1e-12
    assert abs(got["micro-AUPRC"] - average_precision_score(y, p, average="micro")) < 1e-12
    # max-F1 by hand: a threshold at each score (no ties here), micro over the 12 pairs
    order = np.argsort(-p.ravel())
    best = max(2 * y.ravel()[order[:k]].sum() / (k + y.sum()) for k in range(1, 13))
    assert abs(got["max-F1"] - best) < 1e-12


def test_ties_and_classes_without_a_decision_by_hand() -> None:
    """One clip, one decided label (0) of 3, equal scores everywhere: classes 1 and 2 have no positive
    and leave the macro mean (class 0 alone: AP 1); all three pairs tie, so micro-AUPRC is the precision
    at the single threshold, 1/3, and max-F1 = 2 (1/3)(1) / (1/3 + 1) = 0.5."""
    got = cell_fidelity(torch.zeros(1, 3), ["a"], np.array([0]), 3)
    assert got == {"macro-AUPRC": 1.0, "micro-AUPRC": 1 / 3, "max-F1": 0.5}
