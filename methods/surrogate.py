"""Surrogate methods on audio segments: LIME (Ribeiro, Singh & Guestrin, KDD 2016) and Kernel SHAP
(Lundberg & Lee, NeurIPS 2017), batched over clips and perturbations.

The interpretable components of a clip are a partition of the masking domain's grid into time
segments, frequency bands or time-frequency patches (the regions of :mod:`audiobench.methods.occlusion`
without overlap; SoundLIME and audioLIME's segment factorisation divide audio the same way), or
``nmf``: the clip's own NMF parts, W_k H_k / (W H) of its grid factorised into ``n_components``
(a soft partition: the parts sum to 1 wherever W H > 0; audioLIME's source-separation components, here
with the sparse NMF of :mod:`audiobench.kernel.nmf` on the log-magnitude grid as L2I, so each part is
listenable in ``stft2mel``). A perturbation z in {0, 1}^d keeps
the components with z_k = 1 and fills the others (0: silence on both grids); the classifier's score
for the target on each perturbed copy is regressed on z by a weighted linear model fitted per
(clip, target), and a bin's attribution is its component's coefficient.

``lime`` follows ``lime_image.LimeImageExplainer.explain_instance`` (the ``lime`` package, which
audioLIME wraps): ``n_samples`` 1000 perturbations, each component kept with probability 1/2 and
the first perturbation the whole clip; weights sqrt(exp(-d^2 / w^2)) with d the cosine distance of z
to the all-ones vector and kernel width w = 0.25; ``Ridge(alpha=1)`` with an intercept; the score is
the class probability (LIME explains ``classifier_fn``'s probabilities).

``kernel_shap`` follows Captum's ``KernelShap``: the all-ones and all-zeros coalitions first, with
weight 10^6 (the Shapley kernel's infinite end points), then coalitions whose size k is drawn from
p(k) ∝ (d - 1) / (k (d - k)) and whose members are uniform among the size-k sets, each with weight 1
(sampling by the kernel replaces weighting by it); ordinary least squares with an intercept.

The surrogate is fitted for every clip of a batch at once (:func:`weighted_linear_fit`, checked
against scikit-learn's ``Ridge`` / ``LinearRegression`` with ``sample_weight``); scikit-learn would
fit one clip per call. The random draws come from the batch's seed (``ExplainContext.generator``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator

from audiobench.contracts.registry import METHODS
from audiobench.kernel.batching import row_clips
from audiobench.kernel.errors import AudiobenchError
from audiobench.kernel.nmf import sparse_nmf
from audiobench.methods.base import ExplainContext, Explainer, ExplainerParams
from audiobench.methods.occlusion import check_size, occlusion_windows, on_axis, scorer

KERNEL_SHAP_END_WEIGHT = 1e6  # Captum's ``inf_weight``: the weight of the all-ones and all-zeros coalitions


def weighted_linear_fit(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float = 0.0) -> torch.Tensor:
    """Weighted (ridge) least squares with an unpenalised intercept, for B problems at once.

    ``z`` [B, S, d] inputs, ``y`` [B, S] targets, ``w`` [B, S] non-negative sample weights, ``alpha`` the
    ridge penalty (0: ordinary least squares, the minimum-norm solution where it is not unique).
    Minimises sum_i w_i (y_i - c - z_i . beta)^2 + alpha |beta|^2 as scikit-learn's ``Ridge`` /
    ``LinearRegression`` with ``sample_weight`` do: centre by the weighted means, then solve the normal
    equations. Returns beta [B, d] (float64 inside, the input's dtype out)."""
    z64, y64, w64 = z.double(), y.double(), w.double()
    total = w64.sum(1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    z_mean = (w64[..., None] * z64).sum(1, keepdim=True) / total[..., None]
    y_mean = (w64 * y64).sum(1, keepdim=True) / total
    zc, yc = z64 - z_mean, y64 - y_mean
    gram = zc.transpose(1, 2) @ (w64[..., None] * zc)  # [B, d, d]
    rhs = zc.transpose(1, 2) @ (w64 * yc)[..., None]  # [B, d, 1]
    if alpha > 0:
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        beta = torch.linalg.solve(gram + alpha * eye, rhs)
    else:
        beta = torch.linalg.pinv(gram, hermitian=True) @ rhs
    return beta[..., 0].to(z.dtype)


def lime_samples(b: int, d: int, n: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """LIME's perturbations [b, n, d] in {0, 1}: every component kept with probability 1/2, the first
    row all ones (``lime_image``'s sampling)."""
    z = torch.randint(0, 2, (b, n, d), generator=generator, device=device).float()
    z[:, 0] = 1
    return z


def lime_weights(z: torch.Tensor, kernel_width: float) -> torch.Tensor:
    """LIME's sample weights [b, n]: sqrt(exp(-d^2 / width^2)), d = cosine distance of each row of ``z``
    [b, n, d] to the all-ones vector (``lime_image``'s ``kernel_fn`` and ``pairwise_distances(metric='cosine')``;
    an all-zeros row is at distance 1, as scikit-learn gives it)."""
    norm = z.norm(dim=-1) * z.shape[-1] ** 0.5
    cos = torch.where(norm > 0, z.sum(-1) / norm.clamp_min(1e-12), torch.zeros_like(norm))
    dist = 1 - cos
    return torch.sqrt(torch.exp(-(dist**2) / kernel_width**2))


def kernel_shap_samples(b: int, d: int, n: int, generator: torch.Generator,
                        device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel SHAP's coalitions [b, n, d] and weights [b, n] (Captum's ``KernelShap`` sampling): rows 0
    and 1 all ones and all zeros (weight 10^6), the others of size k ~ p(k) ∝ (d-1)/(k(d-k)), 0 < k < d,
    members uniform, weight 1. Raises ``ValueError`` for d < 2 or n < 3."""
    if d < 2 or n < 3:
        raise ValueError(f"kernel_shap needs at least 2 components and 3 samples, got {d} and {n}")
    k = torch.arange(1, d, dtype=torch.float64)
    p = (d - 1) / (k * (d - k))
    sizes = torch.multinomial((p / p.sum()).float(), b * (n - 2), replacement=True, generator=generator) + 1
    ranks = torch.rand(b * (n - 2), d, generator=generator).argsort(dim=1).argsort(dim=1)  # a uniform permutation
    body = (ranks < sizes[:, None]).float().view(b, n - 2, d)
    z = torch.cat([torch.ones(b, 1, d), torch.zeros(b, 1, d), body], dim=1).to(device)
    w = torch.ones(b, n, device=device)
    w[:, :2] = KERNEL_SHAP_END_WEIGHT
    return z, w


def perturbed_scores(model: object, x: torch.Tensor, target: torch.Tensor, regions: torch.Tensor, z: torch.Tensor,
                     fill: torch.Tensor, max_rows: int) -> torch.Tensor:
    """The target's score on every perturbed copy: [B, S].

    ``x`` [B, 1, T, F]; ``regions`` [d, T, F] shared by the clips or [B, d, T, F] per clip, a (soft)
    partition summing to at most 1 per bin; ``z`` [B, S, d]; ``fill`` broadcastable to ``x`` per clip;
    ``model`` maps [N, 1, T, F] -> [N, C]. A copy is x * (z @ regions) + fill * (1 - z @ regions); at
    most ``max_rows`` copies per forward pass."""
    b, s, d = z.shape
    flat_regions = regions.flatten(-2)  # [d, T*F] shared, or [B, d, T*F] per clip
    flat_x = x.flatten(-2)  # [B, 1, T*F]
    zero_fill = not bool(fill.any())
    fill = fill.expand(b, *fill.shape[1:])
    rows = torch.arange(b * s, device=x.device)
    zf = z.reshape(b * s, d)
    out = torch.empty(b * s, device=x.device, dtype=x.dtype)
    for start in range(0, len(rows), max_rows):
        r = rows[start:start + max_rows]
        ci = r // s
        # rows are clip-major: the chunk's rows of clip c are one slice (at most ceil(max_rows / S) + 1 clips)
        spans = [(c, slice(max(c * s - start, 0), min((c + 1) * s - start, len(r))))
                 for c in range(start // s, (start + len(r) - 1) // s + 1)]
        if flat_regions.dim() == 2:  # one matrix product for the chunk; no copy of the regions per row
            keep = (zf[r] @ flat_regions)[:, None]  # [R, 1, T*F]
        else:  # per-clip regions: one batched product per clip, its regions expanded, not copied for every row
            # (the same kernel as a per-row copy, so the same bits; a plain matrix product differs by an ulp)
            zr = zf[r]
            keep = torch.cat([torch.bmm(zr[rs][:, None], flat_regions[c].expand(rs.stop - rs.start, -1, -1))
                              for c, rs in spans])  # [R, 1, T*F]
        if zero_fill:  # x * keep, in place, clip by clip (no gathered copy of x): x * keep + 0 * (1 - keep)'s bits
            for c, rs in spans:
                keep[rs].mul_(flat_x[c])
            copies = keep.view(len(r), *x.shape[1:])
        else:
            keep = keep.view(len(r), *x.shape[1:])
            copies = x[ci] * keep + fill[ci] * (1 - keep)
        with row_clips(ci):  # clip-major copies: row r is clip ci[r] (a waveform model reads its phase)
            out[start:start + len(r)] = model(copies).gather(1, target[ci].view(-1, 1))[:, 0]
    return out.view(b, s)


class SegmentSurrogate(Explainer):
    """A linear surrogate of the classifier on segments of the grid, fitted per (clip, target)."""

    needs_gradients = False
    stochastic = True

    class Params(ExplainerParams):
        nonneg: Literal["abs", "relu", "none"] = Field(
            "relu", description="relu: components that lower the score are not evidence for the class")
        components: Literal["time", "frequency", "patch", "nmf"] = Field(
            "time", description="the interpretable components: time segments, frequency bands, patches or the clip's NMF parts")
        window: int | float = Field(8, gt=0, description="frames per segment (time, patch), or a share of the frames below 1")
        band: int | float = Field(32, gt=0, description="bins per band on the domain's grid (frequency, patch), or a share "
                                  "of the bins below 1")

        @field_validator("window", "band")
        @classmethod
        def _bins_or_share(cls, v: int | float) -> int | float:
            return check_size(v)
        n_samples: int = Field(1000, ge=3, description="perturbations per clip (lime_image's num_samples)")
        n_components: int = Field(8, ge=2, description="nmf: parts per clip")
        nmf_iter: int = Field(100, ge=1, description="nmf: multiplicative-update iterations per clip")
        fill: Literal["zero", "mean"] = Field("zero", description="what a removed component becomes")
        score: Literal["probability", "logit"] = Field("probability", description="the regressed score of the target")

    def regions(self, t: int, f: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The segments as a partition [d, T, F] (float) of a (T, F) grid (no overlap: stride = size;
        a last segment flush with the end would overlap, so the last one is cut short instead)."""
        p = self.params
        if p.components == "nmf":
            raise ValueError("nmf components are per clip: use clip_regions")
        w, b = on_axis(p.window, t), on_axis(p.band, f)
        windows = occlusion_windows(t, f, p.components, w, b, w, b, device)
        taken = torch.cumsum(windows.int(), dim=0) - windows.int()  # bins already in an earlier region
        return (windows & (taken == 0)).float()

    def grid_problem(self, frames: int, bins: int) -> tuple[str, str] | None:
        """One segment covering the grid leaves the surrogate nothing to weigh (its map is constant, its mask all
        ones): at least 2 are needed. NMF parts are counted by ``n_components`` (its own check)."""
        if self.params.components == "nmf":
            return None
        return self._too_few(int(self.regions(frames, bins).shape[0]), frames, bins)

    def _too_few(self, d: int, frames: int, bins: int) -> tuple[str, str] | None:
        """(parameter, problem) when ``d`` segments on a ``frames`` x ``bins`` grid are fewer than 2, else None."""
        p = self.params
        if d >= 2:
            return None
        return ("band" if p.components == "frequency" else "window",
                f"window {p.window} / band {p.band} on the {frames} x {bins} grid gives {d} component; a surrogate "
                "needs at least 2: lower window or band")

    def clip_regions(self, x: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """The components of each clip: [d, T, F] segments, or [B, d, T, F] NMF parts of the domain's
        log-magnitude grid (a soft partition; bins where W H = 0 belong to no part and always keep their value)."""
        if self.params.components != "nmf":
            return self.regions(x.shape[-2], x.shape[-1], x.device)
        v = ctx.model.domain.log_magnitude(x)[:, 0].clamp_min(0).transpose(1, 2)  # [B, F, T], as L2I factorises
        k = self.params.n_components
        fit = sparse_nmf(v, k, n_iter=self.params.nmf_iter, generator=torch.Generator().manual_seed(ctx.seed), track=False)
        parts = fit.W.transpose(1, 2)[..., None] * fit.H[:, :, None, :]  # [B, K, F, T]: W_k h_k
        total = parts.sum(1, keepdim=True)
        soft = torch.where(total > 0, parts / total.clamp_min(torch.finfo(parts.dtype).tiny), torch.zeros_like(parts))
        return soft.transpose(2, 3).to(x.dtype)  # [B, K, T, F]

    def draw(self, b: int, d: int, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    alpha: float = 0.0

    @torch.no_grad()
    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        regions = self.clip_regions(x, ctx)
        if (problem := self._too_few(regions.shape[-3], *x.shape[-2:])) is not None:  # the regions just built
            raise AudiobenchError(f"{self.row_label()}: {problem[1]}")
        z, w = self.draw(x.shape[0], regions.shape[-3], torch.Generator().manual_seed(ctx.seed), x.device)
        fill = x.mean(dim=(1, 2, 3), keepdim=True) if self.params.fill == "mean" else torch.zeros_like(x[:, :1, :1, :1])
        y = perturbed_scores(scorer(ctx.model, self.params.score), x, target, regions, z, fill, ctx.max_rows)
        beta = weighted_linear_fit(z, y, w, self.alpha)  # [B, d]
        return torch.bmm(beta[:, None], regions.flatten(-2).expand(x.shape[0], beta.shape[1], -1))[:, 0].view(x.shape)


@METHODS.register("lime")
class Lime(SegmentSurrogate):
    """LIME on time segments, frequency bands or patches (Ribeiro et al. 2016; lime_image's defaults)."""

    display_name = "LIME"
    alpha = 1.0  # lime_image: Ridge(alpha=1, fit_intercept=True)

    class Params(SegmentSurrogate.Params):
        kernel_width: float = Field(0.25, gt=0, description="width of LIME's exponential kernel on the cosine distance")

    def row_label(self) -> str:
        return f"LIME ({self.params.components})"

    def draw(self, b: int, d: int, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        z = lime_samples(b, d, self.params.n_samples, generator, "cpu").to(device)
        return z, lime_weights(z, self.params.kernel_width)


@METHODS.register("kernel_shap")
class KernelShap(SegmentSurrogate):
    """Kernel SHAP on time segments, frequency bands or patches (Lundberg & Lee 2017; Captum's sampling)."""

    display_name = "Kernel SHAP"

    def row_label(self) -> str:
        return f"Kernel SHAP ({self.params.components})"

    def draw(self, b: int, d: int, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return kernel_shap_samples(b, d, self.params.n_samples, generator, device)
