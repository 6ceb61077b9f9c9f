"""A hand-built classifier whose exact attribution is known: class scores from the energy in one band.

``band_energy`` (no training, no weights): the score of ``band_class`` is ``gain`` times the sum of
the magnitudes of the grid's bins whose frequency lies in ``band_hz`` (every frame), divided by the
number of frames; every other class has a constant score: ``threshold`` for ``twin_class``, 10 below
it for the rest. So ``band_class`` is decided when the band's energy per frame exceeds
``threshold / gain`` (with ``suites/planted_handbuilt.yaml``'s settings: when the planted 3 kHz cue
is there).

The score is a sum of functions of single bins, s = Σ_i w_i m_i(x_i) (m_i: the magnitude a grid bin
stands for, the bin itself in ``stft2mel``, expm1 of it in the log1p grids), so its exact attribution
is known in closed form: the Shapley value of bin i, and its Integrated Gradients from a zero
baseline, is w_i m_i(x_i) − w_i m_i(0) = w_i m_i(x_i) (Sundararajan et al. 2017, completeness for
additively separable functions): :meth:`BandEnergy.exact_attribution`, the ``exact`` control's map.
The constant classes have no attribution at all. One block (the band-weighted magnitudes, one
channel, the grid's own shape) lets CAM methods run: Grad-CAM's channel weight is the mean gradient,
so its map is the exact attribution up to scale.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from audiobench.contracts.component import Params
from audiobench.contracts.domains import Domain
from audiobench.contracts.frontend import Frontend
from audiobench.contracts.registry import MODELS
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.base import AudioClassifier, ModelSpec


def grid_frequencies(domain: Domain, frontend: Frontend, n_bins: int) -> torch.Tensor:
    """[F] Hz: the frequency each bin of a grid with ``n_bins`` bins stands for: k · sr / n_fft on the
    linear STFT grid (n_fft / 2 + 1 bins), the peak of each mel filter on the mel grid. Raises
    ``ValueError`` for a grid of neither size."""
    p = frontend.params
    linear = torch.arange(frontend.n_freqs, dtype=torch.float64) * p.sample_rate / p.n_fft
    if n_bins == frontend.n_freqs:
        return linear
    if n_bins == p.n_mels:
        return linear[frontend.mel_fb.double().cpu().argmax(dim=0)]
    raise ValueError(f"{domain.key()}: a grid of {n_bins} bins is neither the STFT's ({frontend.n_freqs}) nor the "
                     f"mel's ({p.n_mels})")


class BandWeights(nn.Module):
    """The block: magnitudes [B, 1, T, F] -> magnitudes times the band's 0/1 weights (one channel)."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: torch.Tensor | None = None  # [F], set by the model for the grid it reads

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        return magnitude * self.weights.to(magnitude)


class BandEnergy(AudioClassifier):
    """The hand-built classifier (module docstring). Network input: the grid's linear magnitudes."""

    output_kind: ClassVar[str] = "softmax"

    def __init__(self, n_classes: int, band_class: int, twin_class: int, band_hz: tuple[float, float], gain: float,
                 threshold: float):
        super().__init__()
        self.n_classes, self.band_class, self.twin_class = n_classes, band_class, twin_class
        self.band_hz, self.gain, self.threshold = band_hz, gain, threshold
        self.band = BandWeights()

    def weights(self, domain: Domain, frontend: Frontend, n_bins: int) -> torch.Tensor:
        """[F] float: 1 for the grid's bins inside ``band_hz``, 0 elsewhere."""
        f = grid_frequencies(domain, frontend, n_bins)
        w = ((f >= self.band_hz[0]) & (f <= self.band_hz[1])).float()
        if not bool(w.any()):
            raise AudiobenchError(f"band_energy: band_hz {list(self.band_hz)} holds no bin of the {domain.key()} grid "
                                  f"(bins {float(f[0]):g}-{float(f[-1]):g} Hz, about {float(f[1] - f[0]):g} Hz apart on the "
                                  "linear grid): widen it or move it below the Nyquist frequency")
        return w

    def network_input(self, domain: Domain, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        self.band.weights = self.weights(domain, frontend, x.shape[-1]).to(x.device)
        return domain.magnitude(x)

    def blocks(self) -> list[nn.Module]:
        return [self.band]

    def block_names(self) -> list[str]:
        return ["band"]

    def block_channels(self) -> list[int]:
        return [1]

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        return [self.band(inp)]

    def head(self, last: torch.Tensor) -> torch.Tensor:
        score = self.gain * last.flatten(1).sum(dim=1) / last.shape[-2]  # per frame: clips of any length compare
        out = torch.full((last.shape[0], self.n_classes), self.threshold - 10.0, dtype=last.dtype, device=last.device)
        out[:, self.twin_class] = self.threshold
        out[:, self.band_class] = score
        return out

    def exact_attribution(self, domain: Domain, frontend: Frontend, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """[B, 1, T, F]: the exact (Shapley = zero-baseline IG) attribution of each row's ``target`` score to
        the bins of representations ``x`` [B, 1, T, F]: gain / T · w_i · m_i(x_i) for ``band_class``, 0 for
        the constant classes."""
        w = self.weights(domain, frontend, x.shape[-1]).to(x)
        a = self.gain / x.shape[-2] * domain.magnitude(x) * w
        return a * (target == self.band_class).to(x).view(-1, 1, 1, 1)


@MODELS.register("band_energy")
class BandEnergySpec(ModelSpec):
    """Hand-built, nothing to train: one class scored by the energy in a frequency band, the others constant.

    Its exact attribution is known in closed form (:mod:`audiobench.models.handbuilt`)."""

    display_name = "Band energy (hand-built)"
    trainable = False
    knows_exact_attribution = True

    class Params(Params):
        band_class: int = Field(0, ge=0, description="the class scored by the band's energy")
        twin_class: int = Field(1, ge=0, description="the class with the constant score `threshold` (the decision's "
                                "alternative); every other class scores threshold - 10")
        band_hz: tuple[float, float] = Field((2800.0, 3200.0), description="the band [low, high] in Hz")
        gain: float = Field(1.0, gt=0, description="score per unit of band magnitude per frame")
        threshold: float = Field(1.0, description="the twin class's score: band_class wins above threshold / gain")

        @field_validator("band_hz")
        @classmethod
        def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
            if not 0 <= value[0] < value[1]:
                raise ValueError(f"band_hz needs 0 <= low < high, not {list(value)}")
            return value

        @model_validator(mode="after")
        def _two_classes(self) -> BandEnergySpec.Params:
            if self.band_class == self.twin_class:
                raise ValueError("band_class and twin_class must differ")
            return self

    def check(self, n_mels: int | None = None, n_classes: int | None = None) -> list[str]:
        """Class indices beyond the dataset's classes, one line each (``validate`` prints them at the model)."""
        p = self.params
        return [f"model.{key}: {getattr(p, key)} is not a class of a {n_classes}-class dataset"
                for key in ("band_class", "twin_class") if n_classes is not None and getattr(p, key) >= n_classes]

    def build(self, class_names: list[str], n_mels: int, sample_rate: int) -> BandEnergy:
        p = self.params
        for key in ("band_class", "twin_class"):
            if getattr(p, key) >= len(class_names):
                raise ValueError(f"model.{key} {getattr(p, key)} is not a class of a {len(class_names)}-class dataset")
        model = BandEnergy(len(class_names), p.band_class, p.twin_class, tuple(p.band_hz), p.gain, p.threshold)
        model.class_names = list(class_names)
        model.sample_rate = sample_rate
        return model.eval()
