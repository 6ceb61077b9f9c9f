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

AI_TOLERANCE = 1e-6  # p_t(MX) - p_t(X) at or below this is not an increase


@register_metric("ai", "AI", higher_is_better=True)
def ai(m: MetricInputs) -> torch.Tensor:
    """Average Increase: % of samples whose class confidence rises on the masked-in input."""
    return 100.0 * (m.p_in > m.p_orig + AI_TOLERANCE).to(m.p_orig.dtype)


@register_metric("ad", "AD", higher_is_better=False)
def ad(m: MetricInputs) -> torch.Tensor:
    """Average Drop: % of class confidence lost on the masked-in input."""
    return 100.0 * (m.p_orig - m.p_in).clamp_min(0) / m.p_orig


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
