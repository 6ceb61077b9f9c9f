"""Localisation against ground truth: does the mask sit on the target event? (datasets with clean targets)

The ideal binary mask I (target-dominated bins, :mod:`audiobench.contracts.groundtruth`) of each clip's own
event is the reference; none of the papers could compute these (their data has no clean targets).
An audio precedent: Bolaños et al. 2025 compare faithfulness with an event-time ground truth.

* ``gt_mass`` ↑: the fraction of mask mass on target bins, sum(M I) / sum(M) (the "energy-based
  pointing game" of Wang et al. 2020, Score-CAM). NaN for an all-zero mask.
* ``gt_auc`` ↑: ROC-AUC of the map's values as scores of the bins' labels I (Mann-Whitney form,
  ties counted half: sklearn's ``roc_auc_score``). 1: every target bin ranks above every other
  bin; 0.5: chance; 0: inverted. NaN when I is all 0 or all 1.
* ``sisdr_target`` ↑ and ``sisdr_contaminant`` ↓ (dB, listenable domains only): scale-invariant
  SDR (Le Roux et al. 2019, "SDR - half-baked or well done?") of the listenable interpretation
  ISTFT(M ⊙ |X| e^{j∠X}) against the clean target and against the contaminant (zero-mean signals).
  NaN when the reference is silent.
* ``exact_overlap`` ↑ (hand-built models only, :mod:`audiobench.models.handbuilt`): sum_i min(p_i, q_i)
  of the map and of the model's own exact attribution (its closed-form Shapley values, absolute),
  each normalised to sum 1: one minus their total variation distance, the share of the map's mass
  that sits where the known answer puts it (1: the same distribution; 0: disjoint supports). The
  known answer of a model rather than of the data. NaN where either is zero everywhere.
"""

from __future__ import annotations

import torch

from audiobench.kernel.stats import average_ranks
from audiobench.metrics.base import MetricInputs, register_metric

_EPS = 1e-12


def mass_fraction(mask: torch.Tensor, ideal: torch.Tensor) -> torch.Tensor:
    """sum(M I) / sum(M) per row: masks and ideal masks [B, ...] -> [B] float64 (NaN for all-zero M)."""
    m, i = mask.flatten(1).double(), ideal.flatten(1).double()
    total = m.sum(dim=1)
    out = (m * i).sum(dim=1) / torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, out, torch.full_like(out, float("nan")))


def distribution_overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_i min(a_i / sum a, b_i / sum b) per row of non-negative maps ``a``, ``b`` [B, ...] -> [B] float64:
    1 minus the total variation distance of the two normalised maps. NaN where a row sums to 0."""
    x, y = a.flatten(1).double(), b.flatten(1).double().to(a.device)
    sx, sy = x.sum(dim=1, keepdim=True), y.sum(dim=1, keepdim=True)
    ok = (sx > 0) & (sy > 0)
    out = torch.minimum(x / torch.where(ok, sx, 1.0), y / torch.where(ok, sy, 1.0)).sum(dim=1)
    return torch.where(ok.squeeze(1), out, torch.full_like(out, float("nan")))


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ROC-AUC per row of ``scores`` against binary ``labels`` [B, ...] -> [B] float64.

    Mann-Whitney: (sum of the positives' ranks - P (P + 1) / 2) / (P N), average ranks for ties
    (:func:`audiobench.kernel.stats.average_ranks`, batched on the device), equal to sklearn's ``roc_auc_score``;
    for float16-valued scores in [0, 1] (the masks the engine scores) the same sum from per-row
    histograms, without sorting. NaN where a row has no positive or no negative.
    """
    s = scores.detach().flatten(1)
    y = labels.detach().flatten(1).to(s.device) > 0.5
    pos = y.sum(dim=1).double()
    neg = y.shape[1] - pos
    half = s.to(torch.float16)
    if bool(((half.to(s.dtype) == s) & (s >= 0)).all()):
        # every score is a non-negative float16 (the engine scores float16-rounded masks): its bit pattern
        # orders it, so per-row histograms over those codes give the exact tie-aware AUC in O(n)
        code = half.view(torch.int16).long()
        size = int(code.max()) + 1
        pos_hist = torch.zeros((len(s), size), dtype=torch.float64, device=s.device).scatter_add_(1, code, y.double())
        neg_hist = torch.zeros_like(pos_hist).scatter_add_(1, code, (~y).double())
        below = neg_hist.cumsum(dim=1) - neg_hist
        auc = (pos_hist * (below + 0.5 * neg_hist)).sum(dim=1) / (pos * neg).clamp_min(1)
    else:
        ranks = average_ranks(s.double())
        auc = ((ranks * y).sum(dim=1) - pos * (pos + 1) / 2) / (pos * neg).clamp_min(1)
    return torch.where((pos > 0) & (neg > 0), auc, torch.full_like(auc, float("nan")))


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB per row of ``estimate`` against ``reference`` [B, L] -> [B] float64.

    Both are made zero-mean; s_t = (<ŝ, s> / ||s||²) s, e = ŝ - s_t, SI-SDR = 10 log10(||s_t||² / ||e||²)
    (Le Roux et al. 2019, eq. 1-3). NaN where the reference is silent; +inf is capped by a 1e-12 floor.
    """
    est = estimate.double() - estimate.double().mean(dim=-1, keepdim=True)
    ref = reference.double() - reference.double().mean(dim=-1, keepdim=True)
    energy = ref.pow(2).sum(dim=-1, keepdim=True)
    scale = (est * ref).sum(dim=-1, keepdim=True) / torch.where(energy > 0, energy, torch.ones_like(energy))
    target = scale * ref
    noise = est - target
    out = 10 * torch.log10((target.pow(2).sum(dim=-1) + _EPS) / (noise.pow(2).sum(dim=-1) + _EPS))
    return torch.where(energy.squeeze(-1) > 0, out, torch.full_like(out, float("nan")))


@register_metric("gt_mass", "Mass on target", True, needs=("mask", "ground_truth"),
                 undefined="an all-zero mask has no mass to place")
def gt_mass(m: MetricInputs) -> torch.Tensor:
    """Fraction of the mask's mass on the target's ideal-mask bins."""
    return mass_fraction(m.mask, m.ground_truth.ideal)  # type: ignore[union-attr]


@register_metric("gt_auc", "AUC (ideal mask)", True, needs=("mask", "ground_truth"),
                 undefined="the ideal mask is all target or all background: no ROC curve")
def gt_auc(m: MetricInputs) -> torch.Tensor:
    """ROC-AUC of the map against the ideal binary mask of the target."""
    return roc_auc(m.mask, m.ground_truth.ideal)  # type: ignore[union-attr]


def _listened(m: MetricInputs) -> torch.Tensor:
    return m.ground_truth.listen(m.mask)  # type: ignore[union-attr]


@register_metric("sisdr_target", "SI-SDR target (dB)", True, needs=("mask", "ground_truth", "audio"),
                 undefined="the clean target is silent")
def sisdr_target(m: MetricInputs) -> torch.Tensor:
    """SI-SDR (dB) of the listenable interpretation against the clean target."""
    return si_sdr(_listened(m), m.ground_truth.target)  # type: ignore[union-attr]


@register_metric("sisdr_contaminant", "SI-SDR contaminant (dB)", False, needs=("mask", "ground_truth", "audio"),
                 undefined="the contaminant is silent")
def sisdr_contaminant(m: MetricInputs) -> torch.Tensor:
    """SI-SDR (dB) of the listenable interpretation against the contaminant (lower: less of it kept)."""
    return si_sdr(_listened(m), m.ground_truth.contaminant)  # type: ignore[union-attr]


@register_metric("exact_overlap", "Overlap with exact", True, needs=("mask", "exact"),
                 undefined="the map or the exact attribution is zero on every bin")
def exact_overlap(m: MetricInputs) -> torch.Tensor:
    """The share of the map's mass where the model's exact attribution puts it: 1 − total variation (hand-built models)."""
    return distribution_overlap(m.mask, m.exact.abs())  # type: ignore[union-attr]
