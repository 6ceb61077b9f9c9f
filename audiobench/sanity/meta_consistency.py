"""Meta-consistency of metrics: noise resilience and adversary reactivity (MetaQuantus).

Hedström, Bommer, Wickstrøm, Samek, Lapuschkin & Höhne (2023), "The meta-evaluation problem in
explainable AI: identifying reliable estimators with MetaQuantus", TMLR (sec. 4). A metric can be
trusted when (NR, noise resilience) its scores and its ranking of methods stay put under a *minor*
perturbation that leaves the model's decisions unchanged, and (AR, adversary reactivity) its scores
move, for the worse, under a *disruptive* perturbation that changes them. Two perturbations:
the model's weights (multiplicative Gaussian noise N(1, σ²), MetaQuantus's model perturbation
test) and the input (here the waveform, with Gaussian noise at a given SNR: the audio form of its
input perturbation test). For each, with q [M, N] the scores of M methods on N rows unperturbed and
q̂ the scores after the k-th perturbation (explained again and scored with the perturbed model or
input):

- IAC_NR: p-value of a Wilcoxon signed-rank test of q_m against q̂_m on the rows whose decision the
  minor perturbation kept, mean over methods and perturbations (1: indistinguishable);
- IAC_AR: 1 − that p-value on the rows whose decision the disruptive perturbation changed;
- IEC_NR: share of (row, rank position) pairs where the same method holds the same place in the
  ranking of methods before and after a minor perturbation;
- IEC_AR: share of (method, row) pairs whose score is *worse* after a disruptive perturbation,
  worse by the metric's own direction;
- MC: the mean of the four (1 is ideal).

Written from the paper, not from its public code, whose meta-evaluation read every estimator as
lower-is-better (``if score_direction:`` is always true; MetaQuantus PR #10): IEC_AR here takes the
direction as an argument and the tests check both directions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import wilcoxon
from torch import nn

#: the four criteria and their mean, in the order tables print them
CRITERIA = ("IAC_NR", "IAC_AR", "IEC_NR", "IEC_AR", "MC")


def iac(q: np.ndarray, q_hat: np.ndarray, rows: np.ndarray, adversary: bool) -> float:
    """Intra-consistency of one method under one perturbation.

    ``q``, ``q_hat``: [N] scores before and after; ``rows``: [N] bool, the rows the test reads (NR:
    the decision kept; AR: the decision changed). Returns the two-sided Wilcoxon signed-rank p-value
    (``zero_method="zsplit"``, as MetaQuantus), or 1 − p for the adversary test; NaN with fewer than
    two rows with finite scores.
    """
    ok = rows & np.isfinite(q) & np.isfinite(q_hat)
    if ok.sum() < 2:
        return float("nan")
    if np.array_equal(q[ok], q_hat[ok]):
        p = 1.0
    else:
        p = float(wilcoxon(q[ok], q_hat[ok], zero_method="zsplit", alternative="two-sided").pvalue)
    return 1.0 - p if adversary else p


def iec_resilience(q: np.ndarray, q_hat: np.ndarray, rows: np.ndarray) -> float:
    """Inter-consistency under a minor perturbation: ``q``, ``q_hat`` [M, N] (methods x rows), ``rows``
    [N] bool. Per row, the methods ordered by score (a stable sort, ties in method order) before and
    after; returns the share of (row, position) pairs holding the same method (NaN without rows)."""
    ok = rows & np.isfinite(q).all(axis=0) & np.isfinite(q_hat).all(axis=0)
    if not ok.any():
        return float("nan")
    before = np.argsort(q[:, ok], axis=0, kind="stable")
    after = np.argsort(q_hat[:, ok], axis=0, kind="stable")
    return float((before == after).mean())


def iec_adversary(q: np.ndarray, q_hat: np.ndarray, rows: np.ndarray, higher_is_better: bool) -> float:
    """Inter-consistency under a disruptive perturbation: the share of (method, row) pairs, over
    ``rows`` [N] bool, whose score got strictly worse (lower when ``higher_is_better``, higher
    otherwise). ``q``, ``q_hat`` [M, N]; NaN without finite pairs."""
    ok = rows[None, :] & np.isfinite(q) & np.isfinite(q_hat)
    if not ok.any():
        return float("nan")
    worse = q_hat < q if higher_is_better else q_hat > q
    return float(worse[ok].mean())


@dataclass
class PerturbationScores:
    """One perturbation test's scores of one metric: ``q`` [M, N] unperturbed, ``minor`` and
    ``disruptive`` [K, M, N] after each of K perturbations, ``kept`` / ``changed`` [K, N] bool: the
    rows whose decision the k-th minor perturbation kept / the k-th disruptive one changed."""

    q: np.ndarray
    minor: np.ndarray
    disruptive: np.ndarray
    kept: np.ndarray
    changed: np.ndarray


def meta_consistency(s: PerturbationScores, higher_is_better: bool) -> dict[str, float]:
    """IAC_NR, IAC_AR, IEC_NR, IEC_AR (each a mean over perturbations, IAC also over methods) and MC,
    their mean (NaN where a criterion had no rows: no decision kept, or none changed)."""
    k, m = s.minor.shape[0], s.q.shape[0]
    nr = [iac(s.q[j], s.minor[i, j], s.kept[i], False) for i in range(k) for j in range(m)]
    ar = [iac(s.q[j], s.disruptive[i, j], s.changed[i], True) for i in range(s.disruptive.shape[0]) for j in range(m)]
    out = {
        "IAC_NR": _nanmean(nr),
        "IAC_AR": _nanmean(ar),
        "IEC_NR": _nanmean([iec_resilience(s.q, s.minor[i], s.kept[i]) for i in range(k)]),
        "IEC_AR": _nanmean([iec_adversary(s.q, s.disruptive[i], s.changed[i], higher_is_better)
                            for i in range(s.disruptive.shape[0])]),
    }
    out["MC"] = float(np.mean(list(out.values())))  # NaN when a criterion is NaN: the score is incomplete
    return out


def _nanmean(values: list[float]) -> float:
    a = np.asarray(values, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def perturbed_model(model: nn.Module, std: float, seed: int) -> nn.Module:
    """A copy of ``model`` whose every parameter is multiplied elementwise by N(1, ``std``²) noise
    (MetaQuantus's multiplicative model perturbation; buffers such as batch-norm statistics are kept).
    The noise is drawn on the CPU from ``seed``, so it is the same on any device."""
    out = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            noise = 1.0 + std * torch.randn(p.shape, generator=gen, dtype=torch.float32)
            p.mul_(noise.to(p.device, p.dtype))
    return out


def noisy_waveforms(waves: torch.Tensor, snr_db: float, seed: int) -> torch.Tensor:
    """``waves`` [B, L] plus white Gaussian noise at ``snr_db`` dB below each clip's RMS (a silent clip
    stays silent). The noise is drawn on the CPU from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(waves.shape, generator=gen, dtype=torch.float32).to(waves.device, waves.dtype)
    rms = waves.pow(2).mean(dim=-1, keepdim=True).sqrt()
    scale = rms / noise.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-12) * 10 ** (-snr_db / 20)
    return waves + scale * noise
