"""Control methods: maps that carry no information about the model, to bound the metrics."""

from __future__ import annotations

import torch

from audiobench.contracts.registry import METHODS
from audiobench.methods.base import ExplainContext, Explainer

#: the registered controls: maps that carry nothing about the model (tables compare every method with them)
CONTROLS = ("random", "energy", "ones", "zeros")


class ModelFree(Explainer):
    """A control: a map computed without the model (no gradients, never negative)."""

    needs_gradients = False
    signed_maps = False


@METHODS.register("random")
class RandomMap(ModelFree):
    """Uniform random map, seeded per batch: the floor any real method should beat."""

    display_name = "Random"
    stochastic = True

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        return torch.rand(x.shape, generator=ctx.generator(x.device), device=x.device, dtype=x.dtype)


@METHODS.register("energy")
class EnergyMap(ModelFree):
    """The input's own magnitude as the map, no model involved.

    The domain's linear magnitude, divided by its per-clip maximum. A method that does not beat it at a matched budget says no more
    about the model than where the sound is loud."""

    display_name = "Energy"

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        return ctx.model.domain.magnitude(x)


@METHODS.register("ones")
class OnesMap(ModelFree):
    """The full mask (M = 1): every mask metric at its "explain nothing away" end.

    Its bins tie, so the budget metrics rank them in the seeded random order (:mod:`audiobench.metrics.budget`)."""

    display_name = "Ones"

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        return torch.ones_like(x)


@METHODS.register("zeros")
class ZerosMap(ModelFree):
    """The empty mask (M = 0): M*X is silence. Its bins tie, as ``ones``'s, and its own-mean budget is 0."""

    display_name = "Zeros"

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        return torch.zeros_like(x)
