"""Gradient-family attributions: Saliency, SmoothGrad, IG, Guided Backprop (Captum) and SHAP (Captum, or a
batched expected-gradients sampler for its backgrounds and range-relative noise)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from captum import attr
from pydantic import Field, model_validator

from audiobench.contracts.registry import METHODS
from audiobench.kernel.cache import stable_hash
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import ExplainContext, Explainer, ExplainerParams, FitContext


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


def expected_gradients(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    target: torch.Tensor,
    background: torch.Tensor,
    n_samples: int,
    sigma: torch.Tensor,
    max_rows: int = 64,
) -> torch.Tensor:
    """SHAP values by expected gradients, batched (Lundberg & Lee 2017; Erion et al. 2021).

    For every clip b and each of ``n_samples`` draws: a reference r from clip b's pool (uniformly),
    alpha ~ U(0, 1) and input noise x~ = x_b + sigma_b z, z ~ N(0, 1) per bin; the attribution is the
    mean over draws of (x~ - r) * grad f_{target_b}(r + alpha (x~ - r)). This is Captum
    ``GradientShap``'s sampling (``NoiseTunnel`` smoothgrad over ``draw_baseline_from_distrib``,
    ``multiply_by_inputs=True``) and SHAP's ``GradientExplainer`` with ``local_smoothing``; for a
    linear model w.x it converges to w * (x - E[r]), the model's SHAP values.

    ``x`` [B, *S] (on the domain's grid), ``target`` [B] long, ``background`` [N, *S] (one pool for
    every clip) or [B, N, *S] (a pool per clip), ``sigma`` [B] the noise's standard deviation per clip
    in units of x (0: none). At most ``max(max_rows, B)`` rows per forward pass. Draws from torch's
    global RNG (the runner seeds it per batch). Returns the signed attribution, shaped like ``x``.
    Raises ``ValueError`` when the background's shape does not fit ``x``.
    """
    b, shape = x.shape[0], tuple(x.shape[1:])
    per_clip = background.dim() == x.dim() + 1
    if tuple(background.shape[2 if per_clip else 1 :]) != shape or (per_clip and background.shape[0] != b):
        raise ValueError(f"background {tuple(background.shape)} does not fit inputs {tuple(x.shape)}")
    n_ref = background.shape[1 if per_clip else 0]
    background = background.to(x.device, x.dtype)
    view = (-1,) + (1,) * len(shape)
    chunk = max(1, min(n_samples, max_rows // b))
    total = torch.zeros_like(x)
    for start in range(0, n_samples, chunk):
        k = min(chunk, n_samples - start)
        reps = (k,) + (1,) * len(shape)
        noisy = x.detach().repeat(reps)  # row j is clip j % B
        noisy = noisy + torch.randn_like(noisy) * sigma.to(x.device, x.dtype).repeat(k).view(view)
        pick = torch.randint(n_ref, (k * b,), device=x.device)
        ref = background[torch.arange(b, device=x.device).repeat(k), pick] if per_clip else background[pick]
        alpha = torch.rand(k * b, device=x.device, dtype=x.dtype).view(view)
        with torch.enable_grad():
            point = (ref + alpha * (noisy - ref)).requires_grad_(True)
            score = model(point).gather(1, target.repeat(k).view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, point)
        total += ((noisy - ref) * grad).view(k, *x.shape).sum(0)
    return total / n_samples


def _fit_frames(background: torch.Tensor, frames: int) -> torch.Tensor:
    """A background [N, 1, T', F] on ``frames`` frames: cut, or repeated along time (clips of another length)."""
    have = background.shape[-2]
    if have == frames:
        return background
    return background.repeat(1, 1, -(-frames // have), 1)[..., :frames, :]


class ShapParams(ExplainerParams):
    """Parameters of ``shap`` (:class:`GradientShap`)."""

    added_fields: ClassVar[frozenset[str]] = frozenset({"baselines", "n_baselines", "noise"})

    n_samples: int = Field(20, ge=1, description="random points between baseline and input")
    stdev: float = Field(0.09, ge=0, description="noise added to each sampled point: in units of the "
                         "representation (noise: absolute) or a share of each clip's max - min (noise: range)")
    baselines: Literal["zero", "abs_normal", "train"] = Field(
        "zero", description="the reference distribution: zero (one silent reference, Captum with our "
        "baseline), abs_normal (|N(0,1)| draws per clip: the SpeechBrain recipe's gradient_based.py), train "
        "(clean training clips: the background of Lundberg & Lee 2017 / SHAP GradientExplainer)")
    n_baselines: int | None = Field(
        None, ge=1, description="references in the background: left out, 3 for abs_normal (the recipe's "
        "range(3)) and 100 training clips for train (our choice: SHAP gives no count); not for zero")
    noise: Literal["absolute", "range"] = Field(
        "absolute", description="absolute: stdev in units of the representation (Captum GradientShap's "
        "stdevs); range: stdev x each clip's max - min (Smilkov et al. 2017's noise level, as smoothgrad)")

    @model_validator(mode="after")
    def _one_reference_for_zero(self) -> ShapParams:
        if self.baselines == "zero" and self.n_baselines is not None:
            raise ValueError("n_baselines sizes an abs_normal or train background; baselines zero has one "
                             "reference: leave n_baselines out")
        return self


#: references per clip when ``n_baselines`` is left out: the recipe's 3 |N(0, 1)| draws, 100 training clips
DEFAULT_BASELINES = {"abs_normal": 3, "train": 100}


@METHODS.register("shap")
class GradientShap(Explainer):
    """SHAP values by expected gradients over a baseline distribution (Captum GradientShap; Lundberg & Lee, 2017).

    For each clip, ``n_samples`` draws of a reference r from the background, a point
    r + alpha (x~ - r) with alpha ~ U(0, 1) and x~ the input plus Gaussian noise, and the mean of
    (x~ - r) * the gradient there (:func:`expected_gradients`; Erion et al. 2021's expected gradients).

    ``baselines`` (the background distribution; ``n_baselines`` sizes it):

    * ``zero`` (default): one all-zero reference (silence on every grid). With one reference this is
      a noisy IG at random alpha rather than SHAP over a background; the behaviour before
      ``baselines`` existed, through Captum ``GradientShap`` (numpy's RNG, seeded from torch's).
    * ``abs_normal``: the SpeechBrain recipe's (``gradient_based.py``, ``shap``): ``n_baselines``
      (3) draws of \\|N(0, 1)\\| shaped like the clip, drawn afresh for every clip, in units of the grid.
    * ``train``: a background of ``n_baselines`` (100) clean clips of the training split on the
      domain's grid, drawn once per (row, domain) with the suite's seed in :meth:`fit` (SHAP's
      ``GradientExplainer`` background data; expected gradients). The method sees neither the
      evaluated conditions nor ``train.augment`` (:meth:`augments` is False) and trains nothing.

    ``noise``: ``absolute`` (default, Captum's ``stdevs``): the noise's standard deviation is
    ``stdev`` in units of the representation; ``range``: ``stdev`` x each clip's max - min of the
    representation, as SmoothGrad's ``noise: range`` (Smilkov et al. 2017's noise level), so one value
    means the same on the linear \\|STFT\\| grid (range up to ~100) and on log grids (~2-5).
    """

    display_name = "SHAP"
    stochastic = True

    Params = ShapParams

    def __init__(self, params: ExplainerParams | dict[str, Any] | None = None):
        super().__init__(params)
        # only a training background needs fit(): the session calls it for instances that say trainable (a draw
        # of clean training clips, no training; the class stays post-hoc, so the shared stage prepares nothing)
        self.trainable = self.params.baselines == "train"
        self.background: torch.Tensor | None = None  # [N, 1, T, F] on the domain's grid, after fit

    @property
    def n_references(self) -> int:
        """The background's size: ``n_baselines``, or its default for the kind (1 for ``zero``)."""
        p = self.params
        return 1 if p.baselines == "zero" else p.n_baselines or DEFAULT_BASELINES[p.baselines]

    def augments(self) -> bool:
        """Never: the background is clean training clips, whatever ``train.augment`` lists."""
        return False

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        """``baselines: train``: draw the background, ``n_references`` clips of the clean training split
        (``ctx.train``; fewer when it has fewer) without replacement, seeded by ``ctx.seed``, on the domain's
        grid [N, 1, T, F]. Reads nothing else of ``ctx`` (no valid split, no augmentation). Returns
        ``background``: the split, the clip count asked and drawn, and a hash of the clip ids."""
        if self.params.baselines != "train":
            return {}
        n_clips = len(ctx.train)
        n = min(self.n_references, n_clips)
        order = torch.randperm(n_clips, generator=torch.Generator().manual_seed(ctx.seed))[:n].sort().values
        waves = ctx.train.waveforms[order]
        domain, frontend = ctx.model.domain, ctx.model.frontend
        step = max(1, ctx.max_rows)
        with torch.no_grad():
            self.background = torch.cat([
                domain.represent(frontend, waves[i : i + step].to(ctx.device)).x for i in range(0, n, step)
            ])
        ids = [ctx.train.sample_ids[i] for i in order.tolist()]
        return {"background": {"split": "train", "asked": self.n_references, "clips": n, "sha": stable_hash(ids)},
                "trained_on": {"clips": ["train"], "augment": []}}

    def fit_notes(self, info: dict[str, Any]) -> list[str]:
        """A note when the training split held fewer clips than ``n_baselines`` asked for."""
        bg = info.get("background")
        if bg and bg["clips"] < bg["asked"]:
            return [f"shap background: {bg['clips']} training clips (the split has no more), not {bg['asked']}"]
        return []

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """The signed SHAP map [B, 1, T, F]; ``baselines: train`` raises :class:`AudiobenchError` before :meth:`fit`."""
        p = self.params
        if p.baselines == "zero" and p.noise == "absolute":
            return self._captum_zero(x, target, ctx)
        flat = x.detach().flatten(1)
        spread = flat.amax(1) - flat.amin(1) if p.noise == "range" else torch.ones_like(flat[:, 0])
        sigma = p.stdev * spread
        if p.baselines == "zero":
            background = torch.zeros_like(x[:1])
        elif p.baselines == "abs_normal":  # the recipe: torch.randn_like(X).abs(), 3 times, per clip
            background = torch.randn((x.shape[0], self.n_references, *x.shape[1:]), device=x.device, dtype=x.dtype).abs()
        else:
            if self.background is None:
                raise AudiobenchError("shap: baselines train draws its background in fit(), which was not called")
            background = _fit_frames(self.background, x.shape[-2])
        return expected_gradients(ctx.model, x, target, background, p.n_samples, sigma, ctx.max_rows)

    def _captum_zero(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """The default (one zero reference, absolute noise) through Captum, as before ``baselines`` existed."""
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
