"""The explainer contract: a batch on a domain's grid in, a mask in [0, 1] on the same grid out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from audiobench.component import Component, Params
from audiobench.domains import Domain
from audiobench.frontend import Frontend


class DomainModel(nn.Module):
    """The classifier seen from a masking domain: representation x [B, 1, T, F] -> logits."""

    def __init__(self, classifier: nn.Module, domain: Domain, frontend: Frontend):
        super().__init__()
        self.classifier, self.frontend = classifier, frontend
        self.domain = domain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.domain.to_classifier(self.frontend, x))


@dataclass
class ExplainContext:
    """What an explainer may use for one batch."""

    model: DomainModel
    seed: int = 0
    max_rows: int = 64  # largest batch an explainer should push through the model at once
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def classifier(self) -> nn.Module:
        return self.model.classifier

    @property
    def domain(self) -> Domain:
        return self.model.domain

    @property
    def frontend(self) -> Frontend:
        return self.model.frontend

    def generator(self, device: torch.device | str) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed)


class ExplainerParams(Params):
    """Parameters every method has: how its raw map becomes a mask."""

    nonneg: Literal["abs", "relu", "none"] = Field(
        "abs", description="make the map non-negative: absolute value, ReLU, or leave as is"
    )
    normalize: Literal["max", "none"] = Field("max", description="divide by the per-sample maximum")


def to_mask(raw: torch.Tensor, nonneg: str = "abs", normalize: str = "max") -> torch.Tensor:
    """Raw attribution [B, ...] -> mask: non-negative, divided by its per-sample max (all-zero stays 0).

    Non-finite values are left in place for the metric engine to record as skips.
    """
    if nonneg == "abs":
        raw = raw.abs()
    elif nonneg == "relu":
        raw = raw.clamp_min(0)
    if normalize == "max":
        peak = raw.flatten(1).amax(dim=1).view(-1, *([1] * (raw.dim() - 1)))
        raw = raw / torch.where(peak > 0, peak, torch.ones_like(peak))
    return raw


class Explainer(Component):
    """A registered explanation method.

    Subclasses implement :meth:`attribute` (a raw map shaped like ``x``); :meth:`explain` turns it
    into the mask the metrics use. Trainable methods also implement :meth:`fit`, whose result they
    cache by a hash of everything that shaped it.
    """

    Params: ClassVar[type[Params]] = ExplainerParams
    needs_gradients: ClassVar[bool] = True
    trainable: ClassVar[bool] = False
    domains: ClassVar[tuple[str, ...] | None] = None  # None: every domain

    def fit(self, ctx: Any) -> None:  # pragma: no cover - trainable methods override
        """Train whatever the method needs (decoders, dictionaries); a no-op for post-hoc maps."""

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        raise NotImplementedError

    def explain(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """Mask in [0, 1] shaped like ``x`` for the classes ``target`` [B]."""
        raw = self.attribute(x, target, ctx).detach()
        if raw.shape != x.shape:
            raise ValueError(f"method '{self.name}' returned a map of shape {tuple(raw.shape)} for input {tuple(x.shape)}")
        return to_mask(raw, self.params.nonneg, self.params.normalize)
