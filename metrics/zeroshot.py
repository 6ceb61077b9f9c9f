"""Metrics of zero-shot (``similarity``) models."""

from __future__ import annotations

import torch

from audiobench.metrics.base import MetricInputs, register_metric


@register_metric("similarity", "Sim", higher_is_better=None, output_kinds=("similarity",))
def similarity(m: MetricInputs) -> torch.Tensor:
    """The model's score of the target prompt on X: logit_scale x cos(f_audio(X), f_text(prompt_t)) (CLAP eq. 3).

    With the mask mean (``mm``) over (clip, prompt) rows, it gives LMAC-ZS's Fig. 3 (mask mean vs similarity).
    """
    return m.scores_orig.gather(1, m.target.view(-1, 1)).squeeze(1).float()
