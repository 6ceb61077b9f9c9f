"""Uncertainty over clips: percentile-bootstrap confidence intervals and the paired test behind a bold mark.

* :func:`bootstrap_ci`: the percentile bootstrap (Efron & Tibshirani 1993, ch. 13): resample the
  clips with replacement ``n_resamples`` times, take the statistic (mean or median) of each
  resample, and report the 2.5th and 97.5th percentiles of those statistics (95 %). For a mean
  of n values with (plug-in) standard deviation s the half-width tends to 1.96 s / sqrt(n).
* :func:`paired_wilcoxon`: the Wilcoxon signed-rank test (Wilcoxon 1945; ``scipy.stats.wilcoxon``,
  two-sided, zero differences dropped) on per-clip differences of two rows scored on the same
  (clip, target) pairs.

Both are deterministic: the bootstrap draws from a generator seeded with ``seed`` and sorts
nothing itself, so callers pass values in a fixed order (the tables sort by clip and target).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # tables import this module and must not pull torch
    import torch

CI_LEVEL = 0.95
N_RESAMPLES = 2000
ALPHA = 0.05  # a best value is marked when the paired test's p-value is below this


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, statistic: str = "mean", n_resamples: int = N_RESAMPLES,
    level: float = CI_LEVEL, seed: int = 0,
) -> tuple[float, float]:
    """(low, high) percentile-bootstrap interval of ``statistic`` ("mean" or "median") of ``values`` [n].

    NaN values are dropped first; an empty input gives (nan, nan), a single value (v, v).
    Raises ``ValueError`` for an unknown statistic or a level outside (0, 1).
    """
    if statistic not in ("mean", "median"):
        raise ValueError(f"unknown statistic {statistic!r}; one of mean, median")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), not {level}")
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_resamples, len(v)))
    stats = v[idx].mean(axis=1) if statistic == "mean" else np.median(v[idx], axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def half_width(values: Sequence[float] | np.ndarray, statistic: str = "mean", seed: int = 0) -> float:
    """Half the width of the 95 % percentile-bootstrap interval (what a table prints after ``±``)."""
    lo, hi = bootstrap_ci(values, statistic, seed=seed)
    return (hi - lo) / 2


def paired_wilcoxon(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test on the paired differences ``a - b`` [n].

    1.0 when every difference is zero or fewer than two pairs remain (nothing separates them).
    Raises ``ValueError`` when ``a`` and ``b`` differ in length.
    """
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    d = a - b
    d = d[np.isfinite(d)]
    if np.count_nonzero(d) < 2:
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of each row of ``x`` [B, N], ties given their average rank (``scipy.stats.rankdata``'s
    "average", batched on the device: one sort, then one scatter per tie group) -> [B, N] float64."""
    import torch

    b, n = x.shape
    v, order = x.sort(dim=1, stable=True)
    new = torch.ones_like(v, dtype=torch.bool)
    new[:, 1:] = v[:, 1:] != v[:, :-1]
    gid = new.long().cumsum(dim=1) - 1  # tie group of each sorted position
    pos = torch.arange(n, device=x.device).expand(b, n)
    first = torch.full((b, n), n, dtype=torch.long, device=x.device).scatter_reduce(1, gid, pos, "amin")
    last = torch.zeros((b, n), dtype=torch.long, device=x.device).scatter_reduce(1, gid, pos, "amax")
    avg = ((first + last).double() / 2 + 1).gather(1, gid)
    return torch.empty_like(avg).scatter_(1, order, avg)


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between rankings ``a`` and ``b`` [..., n] along the last axis, batched over the
    leading axes (broadcast): (C - D) / sqrt((n0 - n1)(n0 - n2)), n0 the pairs, n1 / n2 the pairs tied
    in a / b (Kendall 1945; equals ``scipy.stats.kendalltau``, its oracle in the tests). NaN where
    either side is constant. NaN entries of a or b leave their pairs out."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    sa = np.sign(a[..., :, None] - a[..., None, :])
    sb = np.sign(b[..., :, None] - b[..., None, :])
    sa, sb = np.nan_to_num(sa, nan=0.0), np.nan_to_num(sb, nan=0.0)
    valid = ~(np.isnan(a[..., :, None] - a[..., None, :]) | np.isnan(b[..., :, None] - b[..., None, :]))
    sa, sb = sa * valid, sb * valid
    concordance = (sa * sb).sum(axis=(-1, -2)) / 2
    untied_a = np.abs(sa).sum(axis=(-1, -2)) / 2
    untied_b = np.abs(sb).sum(axis=(-1, -2)) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((untied_a > 0) & (untied_b > 0), concordance / np.sqrt(untied_a * untied_b), np.nan)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per sample over every bin of ``a``, ``b`` [B, ...] -> [B] float64
    (NaN where a map is constant)."""
    import torch

    ra = average_ranks(a.detach().flatten(1).double().cpu())
    rb = average_ranks(b.detach().flatten(1).double().cpu())
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    den = torch.sqrt((ra * ra).sum(dim=1) * (rb * rb).sum(dim=1))
    r = (ra * rb).sum(dim=1) / den.clamp_min(1e-300)
    return torch.where(den > 0, r, torch.full_like(r, float("nan")))
