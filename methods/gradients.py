"""Gradient-family attributions through Captum: Saliency, SmoothGrad, IG, Guided Backprop, SHAP."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from captum import attr
from pydantic import Field

from audiobench.contracts.registry import METHODS
from audiobench.methods.base import ExplainContext, Explainer, ExplainerParams


@METHODS.register("saliency")
class Saliency(Explainer):
    """Vanilla gradient of the class score w.r.t. the representation (Simonyan et al., 2014)."""

    display_name = "Saliency"

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        return attr.Saliency(ctx.model).attribute(x, target=target, abs=False)


@METHODS.register("smoothgrad")
class SmoothGrad(Explainer):
    """Gradients averaged over noisy copies of the input, noise drawn per copy (Smilkov et al., 2017).

    ``noise: range`` (default): the noise of clip b has standard deviation ``stdev`` x (max - min of
    clip b's representation), the noise level sigma / (x_max - x_min) of Smilkov et al. (2017; their
    experiments on it found 10-20 % best), so one ``stdev`` means the same on
    every grid: log1p|STFT| or log-mel (range ~2-5) and the linear |STFT| of ``stft2mel`` (range up to
    ~100 on a peak-normalised clip, where a fixed 0.15 perturbs its loud bins by ~0.2 %).
    ``noise: absolute``: ``stdev`` in units of the representation, as Captum's ``NoiseTunnel(stdevs=)``
    takes it (this method's behaviour before ``noise`` existed).
    """

    display_name = "SmoothGrad"
    stochastic = True

    class Params(ExplainerParams):
        n_samples: int = Field(50, ge=1, description="noisy copies per clip (Smilkov et al. 2017 sec. 3 and the recipe: 50)")
        stdev: float = Field(0.15, gt=0, description="noise standard deviation: a share of each clip's max - min (noise: range), or in units of the representation (noise: absolute)")
        noise: Literal["range", "absolute"] = Field(
            "range", description="range: stdev x each clip's max - min (Smilkov et al. 2017); absolute: stdev as is (Captum)"
        )

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        p = self.params
        chunk = max(1, min(p.n_samples, ctx.max_rows // x.shape[0]))
        if p.noise == "absolute":
            nt = attr.NoiseTunnel(attr.Saliency(ctx.model))
            return nt.attribute(
                x, nt_type="smoothgrad", nt_samples=p.n_samples, nt_samples_batch_size=chunk,
                stdevs=p.stdev, target=target, abs=False,
            )
        flat = x.detach().flatten(1)
        sigma = (p.stdev * (flat.amax(1) - flat.amin(1))).view(-1, *([1] * (x.dim() - 1)))
        saliency = attr.Saliency(ctx.model)
        total = torch.zeros_like(x)
        for start in range(0, p.n_samples, chunk):
            k = min(chunk, p.n_samples - start)
            reps = (k,) + (1,) * (x.dim() - 1)
            noisy = x.detach().repeat(reps) + torch.randn((k * x.shape[0], *x.shape[1:]), device=x.device,
                                                          dtype=x.dtype) * sigma.repeat(reps)
            grads = saliency.attribute(noisy, target=target.repeat(k), abs=False)
            total += grads.view(k, *x.shape).sum(0)
        return total / p.n_samples


@METHODS.register("integrated_gradients")
class IntegratedGradients(Explainer):
    """Path integral of gradients from a zero baseline (Sundararajan et al., 2017)."""

    display_name = "IG"

    class Params(ExplainerParams):
        n_steps: int = Field(50, ge=2, description="integration steps")
        method: str = Field("gausslegendre", pattern="^(gausslegendre|riemann_trapezoid|riemann_left|riemann_right|riemann_middle)$")

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        p = self.params
        return attr.IntegratedGradients(ctx.model).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=p.n_steps, method=p.method,
            internal_batch_size=max(x.shape[0], ctx.max_rows),
        )


@METHODS.register("guided_backprop")
class GuidedBackprop(Explainer):
    """Gradients with negative signals stopped at every ReLU (Springenberg et al., 2015)."""

    display_name = "Guided Backprop"

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        return attr.GuidedBackprop(ctx.model).attribute(x, target=target)


@METHODS.register("shap")
class GradientShap(Explainer):
    """SHAP values by expected gradients from a zero baseline (Captum GradientShap; Lundberg & Lee, 2017)."""

    display_name = "SHAP"
    stochastic = True

    class Params(ExplainerParams):
        n_samples: int = Field(20, ge=1, description="random points between baseline and input")
        stdev: float = Field(0.09, ge=0, description="noise added to each sampled point")

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        p = self.params
        explainer = attr.GradientShap(ctx.model, multiply_by_inputs=True)
        # Captum expands every clip n_samples times at once; chunk the clips to bound the rows per pass.
        step = max(1, ctx.max_rows // p.n_samples)
        # Captum draws the path points from numpy's global RNG: seed it from torch's (which the runner
        # seeds per batch) so SHAP is reproducible like every other method, and restore it afterwards.
        state = np.random.get_state()
        np.random.seed(int(torch.randint(0, 2**31 - 1, (1,))))
        try:
            return torch.cat([
                explainer.attribute(
                    x[i : i + step], baselines=torch.zeros_like(x[:1]), n_samples=p.n_samples, stdevs=p.stdev,
                    target=target[i : i + step],
                )
                for i in range(0, x.shape[0], step)
            ])
        finally:
            np.random.set_state(state)
