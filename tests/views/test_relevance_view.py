"""L2I's relevance vectors kept with the masks and their coherence by class (the journal's Fig. 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_score

from audiobench.contracts.explanation import Explanation
from audiobench.store.masks import concat, read_masks, write_masks
from audiobench.tables.relevance import coherence, embed


def test_relevance_survives_the_kept_masks(tmp_path: Path) -> None:
    rel = torch.rand(4, 6, generator=torch.Generator().manual_seed(0))
    e = Explanation(mask=torch.rand(4, 1, 5, 3), relevance=rel)
    stored = concat([(["a", "b", "c", "d"], np.array([0, 1, 0, 2]), e)], set())
    path = tmp_path / "masks" / "cell.npz"
    write_masks(path, stored, "float32")
    back = read_masks(path)
    torch.testing.assert_close(back.explanation.relevance, rel, rtol=0, atol=0)
    assert back.explanation.subset(torch.tensor([1, 3])).relevance.shape == (2, 6)
    with pytest.raises(ValueError, match="relevance has 3 rows"):
        Explanation(mask=torch.rand(4, 1, 5, 3), relevance=rel[:3])


def test_coherence_is_the_cosine_silhouette_and_separates_grouped_vectors() -> None:
    g = np.random.default_rng(0)
    centres = np.eye(5)[:3] * 5
    y = np.repeat([0, 1, 2], 10)
    grouped = centres[y] + 0.1 * g.standard_normal((30, 5))
    assert abs(coherence(grouped, y) - silhouette_score(grouped, y, metric="cosine")) < 1e-12
    assert coherence(grouped, y) > 0.9  # tight groups by class
    shuffled = g.permutation(y)
    assert abs(coherence(grouped, shuffled)) < 0.2  # the same vectors, labels unrelated
    assert np.isnan(coherence(grouped[:5], np.zeros(5, dtype=int)))  # one class: undefined
    xy = embed(grouped, seed=0)
    assert xy.shape == (30, 2) and np.allclose(xy, embed(grouped, seed=0))  # seeded
