"""Faithfulness metrics on the probability p_t of each row's target t (by default the decision).

Formulas of the L-MAC paper (sec. 3.1) as the reference recipe computes them, each per row:
AI = 100 [p_t(MX) > p_t(X) + tol], AD = 100 relu(p_t(X) - p_t(MX)) / p_t(X),
AG = 100 relu(p_t(MX) - p_t(X)) / (1 - p_t(X)), FF = p_t(X) - p_t((1-M)X), Fid-In = [t is still the
decision on MX]. Probabilities are computed once (no second softmax), by the model's output kind:
softmax over classes (``softmax``) or prompts (``similarity``), one sigmoid per label (``sigmoid``).

Fid-In by output kind: ``softmax`` and ``similarity``: argmax p(MX) = t. ``sigmoid`` (multi-label):
p_t(MX) > threshold, i.e. the label is still detected on the masked-in input whatever the other
labels do (the suite's ``targets.threshold``, 0.5 by default).

AI's tolerance ``AI_TOLERANCE``: an increase smaller than 1e-6 is float noise, not an increase
(M = 1 gives M*X = X, whose p_t differs from p_t(X) only by the batch it was computed in).
"""

from __future__ import annotations

import torch

from audiobench.metrics.base import MetricInputs, register_metric
from audiobench.metrics.budget import FIXED_BUDGET

AI_TOLERANCE = 1e-6  # p_t(MX) - p_t(X) at or below this is not an increase


def average_increase(p_orig: torch.Tensor, p_in: torch.Tensor) -> torch.Tensor:
    """[B] 100 [p_t(in) > p_t(X) + tol] (L-MAC paper, sec. 3.1)."""
    return 100.0 * (p_in > p_orig + AI_TOLERANCE).to(p_orig.dtype)


def average_drop(p_orig: torch.Tensor, p_in: torch.Tensor) -> torch.Tensor:
    """[B] 100 relu(p_t(X) - p_t(in)) / p_t(X) (L-MAC paper, sec. 3.1)."""
    return 100.0 * (p_orig - p_in).clamp_min(0) / p_orig


@register_metric("ai", "AI", higher_is_better=True)
def ai(m: MetricInputs) -> torch.Tensor:
    """Average Increase: % of samples whose class confidence rises on the masked-in input."""
    return average_increase(m.p_orig, m.p_in)


@register_metric("ad", "AD", higher_is_better=False)
def ad(m: MetricInputs) -> torch.Tensor:
    """Average Drop: % of class confidence lost on the masked-in input."""
    return average_drop(m.p_orig, m.p_in)


@register_metric("ag", "AG", higher_is_better=True)
def ag(m: MetricInputs) -> torch.Tensor:
    """Average Gain: % of the possible confidence gain reached on the masked-in input (0 when p_c(X) = 1)."""
    room = 1.0 - m.p_orig
    gain = (m.p_in - m.p_orig).clamp_min(0)
    return 100.0 * torch.where(room > 0, gain / torch.where(room > 0, room, torch.ones_like(room)), torch.zeros_like(gain))


@register_metric("ff", "FF", higher_is_better=True)
def ff(m: MetricInputs) -> torch.Tensor:
    """Faithfulness on spectra: class probability lost when the masked-in part is removed."""
    return m.p_orig - m.p_out


@register_metric("fid_in", "Fid-In", higher_is_better=True)
def fid_in(m: MetricInputs) -> torch.Tensor:
    """Input fidelity: the target is still the model's decision on the masked-in input."""
    return m.kept.to(m.p_orig.dtype)


# Budget-matched faithfulness (:mod:`audiobench.metrics.budget`): every map reduced to its ranking and
# scored at the same budgets, so a metric cannot be won by the size of a mask.


@register_metric("ins_auc", "Ins. AUC", higher_is_better=True, needs=("budget",))
def ins_auc(m: MetricInputs) -> torch.Tensor:
    """Insertion AUC: area under p_t as the map's top bins are kept, from none to all (Petsiuk et al. 2018)."""
    return m.budget.areas()[0]


@register_metric("del_auc", "Del. AUC", higher_is_better=False, needs=("budget",))
def del_auc(m: MetricInputs) -> torch.Tensor:
    """Deletion AUC: area under p_t as the map's top bins are removed, from none to all (MoRF)."""
    return m.budget.areas()[1]


@register_metric("ins_del", "Ins.-Del.", higher_is_better=True, needs=("budget",))
def ins_del(m: MetricInputs) -> torch.Tensor:
    """Insertion AUC minus deletion AUC: both curves in one number."""
    ins, dele = m.budget.areas()
    return ins - dele


def _at_10(m: MetricInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    j = m.budget.at(FIXED_BUDGET)
    return m.budget.ins[:, j], m.budget.dele[:, j], m.budget.ins_kept[:, j]


@register_metric("ad_at_10", "AD@10%", higher_is_better=False, needs=("budget",))
def ad_at_10(m: MetricInputs) -> torch.Tensor:
    """Average Drop keeping only the map's top 10 % of bins."""
    return average_drop(m.p_orig, _at_10(m)[0])


@register_metric("ai_at_10", "AI@10%", higher_is_better=True, needs=("budget",))
def ai_at_10(m: MetricInputs) -> torch.Tensor:
    """Average Increase keeping only the map's top 10 % of bins."""
    return average_increase(m.p_orig, _at_10(m)[0])


@register_metric("ff_at_10", "FF@10%", higher_is_better=True, needs=("budget",))
def ff_at_10(m: MetricInputs) -> torch.Tensor:
    """Faithfulness removing the map's top 10 % of bins."""
    return m.p_orig - _at_10(m)[1]


@register_metric("fid_in_at_10", "Fid-In@10%", higher_is_better=True, needs=("budget",))
def fid_in_at_10(m: MetricInputs) -> torch.Tensor:
    """Input fidelity keeping only the map's top 10 % of bins."""
    return _at_10(m)[2].to(m.p_orig.dtype)


@register_metric("ad_at_mean", "AD@mean", higher_is_better=False, needs=("budget",))
def ad_at_mean(m: MetricInputs) -> torch.Tensor:
    """Average Drop keeping the map's top bins, as many as its own mask mean (a binary mask of its size)."""
    return average_drop(m.p_orig, m.budget.own_ins)


@register_metric("ai_at_mean", "AI@mean", higher_is_better=True, needs=("budget",))
def ai_at_mean(m: MetricInputs) -> torch.Tensor:
    """Average Increase keeping the map's top bins, as many as its own mask mean."""
    return average_increase(m.p_orig, m.budget.own_ins)


@register_metric("ff_at_mean", "FF@mean", higher_is_better=True, needs=("budget",))
def ff_at_mean(m: MetricInputs) -> torch.Tensor:
    """Faithfulness removing the map's top bins, as many as its own mask mean."""
    return m.p_orig - m.budget.own_del


@register_metric("fid_in_at_mean", "Fid-In@mean", higher_is_better=True, needs=("budget",))
def fid_in_at_mean(m: MetricInputs) -> torch.Tensor:
    """Input fidelity keeping the map's top bins, as many as its own mask mean."""
    return m.budget.own_kept.to(m.p_orig.dtype)


BUDGET_METRICS = ("ins_auc", "del_auc", "ins_del", "ad_at_10", "ai_at_10", "ff_at_10", "fid_in_at_10",
                  "ad_at_mean", "ai_at_mean", "ff_at_mean", "fid_in_at_mean")
