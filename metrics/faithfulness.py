"""Faithfulness metrics on softmax probabilities of the predicted class c = argmax p(X).

Formulas of the L-MAC paper (sec. 3.1) as the reference recipe computes them, each per sample:
AI = 100 [p_c(MX) > p_c(X)], AD = 100 relu(p_c(X) - p_c(MX)) / p_c(X),
AG = 100 relu(p_c(MX) - p_c(X)) / (1 - p_c(X)), FF = p_c(X) - p_c((1-M)X),
Fid-In = [argmax p(MX) = c]. Probabilities are computed once (no second softmax).
"""

from __future__ import annotations

import torch

from audiobench.metrics.base import MetricInputs, register_metric


@register_metric("ai", "AI", higher_is_better=True)
def ai(m: MetricInputs) -> torch.Tensor:
    """Average Increase: % of samples whose class confidence rises on the masked-in input."""
    return 100.0 * (m.p_in > m.p_orig).to(m.p_orig.dtype)


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
    """Input fidelity: the masked-in input keeps each sample's own predicted class."""
    return (m.pred_in == m.pred).to(m.p_orig.dtype)
