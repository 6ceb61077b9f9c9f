"""Masking domains: the grid a mask lives on, and the log-mel spectrogram a masked grid stands for.

``stft2mel`` masks the linear-frequency STFT grid and maps it to the classifier's log-mel input; it
is listenable through ISTFT with the input's phase. Its ``operator`` says what the mask multiplies:
``linear`` (the default, the L-MAC paper's sec. 2) the magnitude |X|, so the classifier reads the
log-mel of exactly the signal written as audio; ``log1p`` (the SpeechBrain recipe's) log1p|X|.
``mel`` masks the log-mel input directly.

A domain instance is named by :meth:`Domain.key` (file-name-safe: cell ids, result rows, folders)
and :meth:`Domain.title` (tables and pages); two instances of one domain with different
parameters are separate table groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import Field

from audiobench.contracts.component import Component, Params
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

    def key(self) -> str:
        """A short, file-name-safe identifier of this instance, e.g. ``stft2mel`` or ``stft2mel_log1p``."""
        return self.name

    def title(self) -> str:
        """The instance's display name in tables and pages, e.g. ``STFT→Mel (log1p)``."""
        return self.display_name or self.name

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """A representation on this domain's grid -> the (linear) magnitudes its bins stand for, >= 0
        (|STFT| bins, or mel-band energies): what a spectrogram picture or a level threshold reads."""
        raise NotImplementedError

    def log_magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """log1p of :meth:`magnitude`: the log-magnitude view of the grid (log1p|STFT|, or the log1p-mel),
        the grid itself, bit for bit, where the grid already is that."""
        return torch.log1p(self.magnitude(x))

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
    """Mask on the linear-frequency STFT grid, mapped to log-mel for the classifier; listenable.

    ``operator`` (``mel`` below is the front end's filterbank on |.|^``mel_power``, as in
    :meth:`Frontend.logmel`; phi is the input's phase):

    * ``linear`` (default): the grid is x = |X| and the classifier reads log1p(mel(M * |X|)). This is
      the L-MAC paper's operator (Paissan et al., ICML 2024, sec. 2: the mask selects portions of the
      linear spectrogram X, and M * X is converted to the classifier's features), and the written
      interpretation ISTFT(M * |X| e^{j phi}) is the signal whose log-mel the classifier scored (to
      the STFT round trip's error): what is scored is what is heard.
    * ``log1p``: the grid is x = log1p|X| and the classifier reads log1p(mel(expm1(M * log1p|X|))),
      i.e. the magnitude (1 + |X|)^M - 1, as the SpeechBrain L-MAC recipe does. For a mask strictly
      between 0 and 1 that is not the written ISTFT(M * |X| e^{j phi}). Key ``stft2mel_log1p``.
    """

    display_name = "STFT→Mel"
    listenable = True

    class Params(Params):
        operator: Literal["linear", "log1p"] = Field(
            "linear", description="what the mask multiplies: |STFT| (linear, the L-MAC paper's) or log1p|STFT| (the recipe's)"
        )

    def key(self) -> str:
        return self.name if self.params.operator == "linear" else f"{self.name}_{self.params.operator}"

    def title(self) -> str:
        return self.display_name if self.params.operator == "linear" else f"{self.display_name} ({self.params.operator})"

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        # a magnitude is never negative: noise-perturbed inputs (SmoothGrad, SHAP) must not make log1p NaN
        return x.clamp_min(0) if self.params.operator == "linear" else torch.expm1(x).clamp_min(0)

    def log_magnitude(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x.clamp_min(0)) if self.params.operator == "linear" else x

    def represent(self, frontend: Frontend, wave: torch.Tensor) -> Representation:
        spec = frontend.stft(wave)
        mag = spec.abs()
        return Representation(mag if self.params.operator == "linear" else torch.log1p(mag), spec, wave.shape[-1])

    def to_logmel(self, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(frontend.mel(self.magnitude(x)))

    def from_mel_grid(self, frontend: Frontend, grid: torch.Tensor) -> torch.Tensor:
        return frontend.mel_to_linear(grid)

    def to_audio(self, frontend: Frontend, mask: torch.Tensor, rep: Representation) -> torch.Tensor:
        return frontend.istft(mask.to(rep.stft.real.dtype) * rep.stft, rep.length)


@DOMAINS.register("mel")
class Mel(Domain):
    """Mask on the classifier's log-mel input directly (not listenable)."""

    display_name = "Mel"

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        return torch.expm1(x).clamp_min(0)

    def log_magnitude(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def represent(self, frontend: Frontend, wave: torch.Tensor) -> Representation:
        spec = frontend.stft(wave)
        return Representation(torch.log1p(frontend.mel(spec.abs())), spec, wave.shape[-1])

    def to_logmel(self, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        return x

    def from_mel_grid(self, frontend: Frontend, grid: torch.Tensor) -> torch.Tensor:
        return grid
