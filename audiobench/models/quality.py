"""How well a multi-label classifier ranks its labels (recorded with every classifier trained here)."""

from __future__ import annotations

import torch

from audiobench.metrics.multilabel import macro_auprc


@torch.no_grad()
def ranking_quality(model: torch.nn.Module, feats: torch.Tensor, labels: torch.Tensor, label_mask: torch.Tensor | None,
                    batch: int = 128) -> float | None:
    """Multi-label classifiers: macro-AUPRC of the sigmoid outputs against the multi-hot ``labels`` [N, C]
    over the known pairs (:func:`audiobench.metrics.multilabel.macro_auprc`; the L2I journal's and DCASE's
    measure), None when no class has a positive."""
    model.eval()
    scores = torch.cat([model(feats[i : i + batch]) for i in range(0, len(feats), batch)]).cpu()
    try:
        return float(macro_auprc(model.probabilities(scores), labels.cpu(), None if label_mask is None else label_mask.cpu()))
    except ValueError:
        return None
