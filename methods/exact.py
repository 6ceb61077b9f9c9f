"""The known answer as a row: a hand-built model's own exact attribution."""

from __future__ import annotations

import torch

from audiobench.contracts.registry import METHODS
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import ExplainContext, Explainer


@METHODS.register("exact")
class ExactAttribution(Explainer):
    """The known answer as a row: a hand-built model's own exact attribution (band_energy only).

    :meth:`AudioClassifier.exact_attribution`, for hand-built models that know theirs in closed form:
    every other row is compared with it. ``validate`` refuses it for a model whose spec does not
    declare ``knows_exact_attribution = True``."""

    display_name = "Exact (known)"
    needs_gradients = False
    needs_exact_attribution = True

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        clf = ctx.model.classifier
        exact = clf.exact_attribution(ctx.model.domain, ctx.model.frontend, x, target)
        if exact is None:
            raise AudiobenchError(f"exact: the model {type(clf).__name__} has no exact attribution "
                                  "(only hand-built models such as band_energy declare one)")
        return exact
