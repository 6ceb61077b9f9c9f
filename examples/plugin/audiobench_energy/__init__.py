"""An example audiobench plugin: one explanation method, registered through an entry point."""

from __future__ import annotations

import torch
from pydantic import Field

from audiobench.api import ExplainContext, Explainer, ExplainerParams


class InputEnergy(Explainer):
    """The representation's own energy raised to ``power`` as the map: a model-agnostic baseline
    (audiobench's built-in control ``energy`` is the domain's linear magnitude)."""

    display_name = "Input energy^p"
    needs_gradients = False

    class Params(ExplainerParams):
        power: float = Field(1.0, gt=0, description="exponent applied to the representation")

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        return x.clamp_min(0) ** self.params.power
