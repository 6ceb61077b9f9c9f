"""Masking domains: the grid a mask lives on, and the log-mel spectrogram a masked grid stands for.

``stft2mel`` masks log1p|STFT| on the linear-frequency grid and maps it to the classifier's
log-mel input (expm1 -> mel filterbank -> log1p), as the L-MAC recipe does; it is listenable
through ISTFT with the input's phase. ``mel`` masks the log-mel input directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from audiobench.contracts.component import Component
from audiobench.contracts.frontend import Frontend
from audiobench.contracts.registry import DOMAINS


@dataclass
class Representation:
    """A batch on a domain's grid: ``x`` [B, 1, T, F] (what masks multiply) and the complex STFT."""

    x: torch.Tensor
    stft: torch.Tensor  # complex [B, 1, T, F_linear], for listening
    length: int  # waveform length in samples

    def subset(self, index: torch.Tensor) -> Representation:
        """The rows ``index`` of the batch (repeats allowed)."""
        return Representation(self.x[index], self.stft[index], self.length)


class Domain(Component):
    """Where masks live; subclasses define the grid and the map to the classifier's input."""

    listenable: ClassVar[bool] = False

    def represent(self, frontend: Frontend, wave: torch.Tensor) -> Representation:
        raise NotImplementedError

    def to_logmel(self, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        """A (masked) representation [B, 1, T, F] -> the log1p-mel spectrogram it stands for [B, 1, T, n_mels].

        What a model reads is the model's choice (:meth:`AudioClassifier.network_input`); CNN14 reads this.
        """
        raise NotImplementedError

    def from_mel_grid(self, frontend: Frontend, grid: torch.Tensor) -> torch.Tensor:
        """A map on the classifier's mel grid -> a map on this domain's grid."""
        raise NotImplementedError

    def to_audio(self, frontend: Frontend, mask: torch.Tensor, rep: Representation) -> torch.Tensor:
        """The listenable interpretation ISTFT(M * |X| * exp(j phase X)), [B, L]."""
        raise NotImplementedError(f"domain '{self.name}' is not listenable")


@DOMAINS.register("stft2mel")
class Stft2Mel(Domain):
    """Mask on the linear log1p|STFT| grid, mapped to log-mel for the classifier; listenable."""

    display_name = "STFT→Mel"
    listenable = True

    def represent(self, frontend: Frontend, wave: torch.Tensor) -> Representation:
        spec = frontend.stft(wave)
        return Representation(torch.log1p(spec.abs()), spec, wave.shape[-1])

    def to_logmel(self, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        # a magnitude is never negative: noise-perturbed inputs (SmoothGrad, SHAP) must not make log1p NaN
        return torch.log1p(frontend.mel(torch.expm1(x).clamp_min(0)))

    def from_mel_grid(self, frontend: Frontend, grid: torch.Tensor) -> torch.Tensor:
        return frontend.mel_to_linear(grid)

    def to_audio(self, frontend: Frontend, mask: torch.Tensor, rep: Representation) -> torch.Tensor:
        return frontend.istft(mask.to(rep.stft.real.dtype) * rep.stft, rep.length)


@DOMAINS.register("mel")
class Mel(Domain):
    """Mask on the classifier's log-mel input directly (not listenable)."""

    display_name = "Mel"

    def represent(self, frontend: Frontend, wave: torch.Tensor) -> Representation:
        spec = frontend.stft(wave)
        return Representation(torch.log1p(frontend.mel(spec.abs())), spec, wave.shape[-1])

    def to_logmel(self, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        return x

    def from_mel_grid(self, frontend: Frontend, grid: torch.Tensor) -> torch.Tensor:
        return grid
