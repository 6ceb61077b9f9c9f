"""The audio front end: STFT and log-mel features as in the L-MAC reference recipe."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_serializer, model_validator

from audiobench.contracts.component import Params
from audiobench.kernel.torchaudio_shim import AF

_FILTERBANK_DEFAULTS: dict[str, Any] = {"mel_scale": "htk", "mel_norm": None, "mel_power": 1}


class FrontendParams(Params):
    """STFT / mel settings. Defaults are the L-MAC recipe's (16 kHz, 23.2 ms Hamming window)."""

    sample_rate: int = Field(16000, ge=4000)
    n_fft: int = Field(1024, ge=16)
    win_length: int = Field(372, ge=16)
    hop_length: int = Field(186, ge=1)
    window: str = Field("hamming", pattern="^(hamming|hann)$")
    n_mels: int = Field(80, ge=8)
    f_min: float = Field(0.0, ge=0)
    f_max: float | None = None  # None: Nyquist
    # The mel filterbank's kind. The defaults are the L-MAC recipe's (HTK scale, unnormalised
    # triangles on the magnitude); PANNs/CLAP-style networks read librosa's filters
    # (``mel_scale: slaney, mel_norm: slaney``) on the power spectrum (``mel_power: 2``).
    mel_scale: Literal["htk", "slaney"] = "htk"
    mel_norm: Literal["slaney"] | None = None
    mel_power: Literal[1, 2] = Field(1, description="mel(|STFT|^mel_power): 1 magnitude, 2 power")

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        # the filterbank keys are left out at their defaults, so the cache keys of every existing
        # fit (which hash the dumped front end) stay what they were before these keys existed
        out = handler(self)
        if isinstance(out, dict):
            for key, default in _FILTERBANK_DEFAULTS.items():
                if key in out and out[key] == default:
                    del out[key]
        return out

    @model_validator(mode="after")
    def _check(self) -> FrontendParams:
        if self.win_length > self.n_fft:
            raise ValueError("win_length must not exceed n_fft")
        if self.f_max is not None and self.f_max > self.sample_rate / 2:
            raise ValueError("f_max must not exceed sample_rate / 2")
        return self


class Frontend(torch.nn.Module):
    """Waveform -> complex STFT -> |STFT| -> log1p(mel(|STFT|)); all on [B, 1, T, F] grids."""

    def __init__(self, params: FrontendParams | None = None):
        super().__init__()
        self.params = p = params or FrontendParams()
        win = torch.hamming_window if p.window == "hamming" else torch.hann_window
        self.register_buffer("window", win(p.win_length), persistent=False)
        fb = AF.melscale_fbanks(
            n_freqs=p.n_fft // 2 + 1,
            f_min=p.f_min,
            f_max=p.f_max or p.sample_rate / 2,
            n_mels=p.n_mels,
            sample_rate=p.sample_rate,
            norm=p.mel_norm,
            mel_scale=p.mel_scale,
        )
        self.register_buffer("mel_fb", fb, persistent=False)  # [F, n_mels]

    @property
    def n_freqs(self) -> int:
        return self.params.n_fft // 2 + 1

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, L] -> complex [B, 1, T, F]."""
        spec = torch.stft(wave, **self._stft_args(), return_complex=True)
        return spec.transpose(1, 2).unsqueeze(1)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """complex [B, 1, T, F] -> [B, L]."""
        return torch.istft(spec.squeeze(1).transpose(1, 2), **self._stft_args(), length=length)

    def _stft_args(self) -> dict[str, Any]:
        """The analysis settings :meth:`stft` and :meth:`istft` share (one place, so they invert each other)."""
        p = self.params
        return {"n_fft": p.n_fft, "hop_length": p.hop_length, "win_length": p.win_length, "window": self.window,
                "center": True}

    def mel(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Linear magnitude [..., F] -> mel energies [..., n_mels]: ``|X|^mel_power @ mel_fb``
        (magnitude by default, power with ``mel_power: 2``)."""
        if self.params.mel_power == 2:
            magnitude = magnitude.square()
        return magnitude @ self.mel_fb

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, L] -> the classifier's input log1p(mel(|STFT|)) (``mel_power: 2``: of |STFT|^2), [B, 1, T, n_mels]."""
        return torch.log1p(self.mel(self.stft(wave).abs()))

    def mel_to_linear(self, grid: torch.Tensor) -> torch.Tensor:
        """Spread a map on the mel grid [..., n_mels] onto the linear grid [..., F].

        Each linear bin takes the filter-weighted average of the mel values covering it (the
        transpose of the filterbank, row-normalised); bins no filter covers take the nearest one.
        """
        fb = self.mel_fb
        weight = fb / fb.sum(dim=1, keepdim=True).clamp_min(1e-12)
        uncovered = fb.sum(dim=1) <= 0
        if bool(uncovered.any()):
            nearest = fb.argmax(dim=1)  # 0 for empty rows; replace by nearest covered bin's filter
            covered = (~uncovered).nonzero().flatten()
            idx = torch.arange(fb.shape[0], device=fb.device)
            nearest_cov = covered[(idx[:, None] - covered[None, :]).abs().argmin(dim=1)]
            nearest = fb[nearest_cov].argmax(dim=1)
            weight = weight.clone()
            weight[uncovered] = torch.nn.functional.one_hot(nearest[uncovered], fb.shape[1]).to(fb.dtype)
        return grid @ weight.T
