"""Control methods: maps that carry no information about the model, to bound the metrics."""

from __future__ import annotations

import torch

from audiobench.contracts.registry import METHODS
from audiobench.methods.base import ExplainContext, Explainer


@METHODS.register("random")
class RandomMap(Explainer):
    """Uniform random map, seeded per batch: the floor any real method should beat."""

    display_name = "Random"
    needs_gradients = False
    signed_maps = False

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        return torch.rand(x.shape, generator=ctx.generator(x.device), device=x.device, dtype=x.dtype)
