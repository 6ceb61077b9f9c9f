"""Similarity of two maps per sample, batched: SSIM and Spearman rank correlation.

* :func:`ssim`: the structural similarity index (Wang et al. 2004) as ``skimage.metrics.structural_similarity``
  computes it by default: a 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample (N - 1) covariances,
  averaged over the windows that fit inside the map; ``data_range`` per sample as Quantus 0.6's
  ``similarity_func.ssim`` sets it (max - min over both maps). Tested against skimage.
* :func:`spearman` (:mod:`audiobench.kernel.stats`): Pearson correlation of the per-sample average ranks
  (as ``scipy.stats.spearmanr``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WIN = 7
K1, K2 = 0.01, 0.03


def ssim(a: torch.Tensor, b: torch.Tensor, win_size: int = WIN) -> torch.Tensor:
    """SSIM per sample of maps ``a``, ``b`` [B, 1, H, W] (or [B, H, W]) -> [B] float64.

    Raises ``ValueError`` when the maps differ in shape or are smaller than the window.
    """
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() == 3:
        a, b = a.unsqueeze(1), b.unsqueeze(1)
    if min(a.shape[-2:]) < win_size:
        raise ValueError(f"maps of {tuple(a.shape[-2:])} are smaller than the {win_size}x{win_size} SSIM window")
    a, b = a.double(), b.double()
    both = torch.cat([a.flatten(1), b.flatten(1)], dim=1)
    data_range = (both.amax(dim=1) - both.amin(dim=1)).clamp_min(1e-12).view(-1, 1, 1, 1)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    n = win_size * win_size
    cov_norm = n / (n - 1)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, win_size, stride=1)

    ux, uy = mean(a), mean(b)
    vx = cov_norm * (mean(a * a) - ux * ux)
    vy = cov_norm * (mean(b * b) - uy * uy)
    vxy = cov_norm * (mean(a * b) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)
