"""Test-only method that ignores the model: its map is the input representation itself.

Model randomisation cannot change it, so its SSIM with the trained model's map is 1 at every
depth: the sanity check's negative control (Adebayo et al. 2018 show edge detectors behave so).
"""

from __future__ import annotations

import torch

from audiobench.contracts.registry import METHODS
from audiobench.methods.base import ExplainContext, Explainer


@METHODS.register("input_only")
class InputOnly(Explainer):
    """The input's own magnitude as the map (no model involved)."""

    display_name = "Input only"
    needs_gradients = False
    signed_maps = False

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        return x.clone()
