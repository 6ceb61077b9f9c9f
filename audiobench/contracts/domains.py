"""Masking domains: the grid a mask lives on, and the log-mel spectrogram a masked grid stands for.

``stft2mel`` masks the linear-frequency STFT grid and maps it to the classifier's log-mel input; it
is listenable through ISTFT with the input's phase. Its ``operator`` says what the mask multiplies:
``linear`` (the default, the L-MAC paper's sec. 2) the magnitude |X|, so the classifier reads the
log-mel of exactly the signal written as audio; ``log1p`` (the SpeechBrain recipe's) log1p|X|;
``log1p_power`` (the LMAC-ZS paper's sec. 3.2 "log power-STFT") log1p(|X|^2).
``mel`` masks a mel grid directly: by default (``grid: log1p``) the log1p-mel the CNN14 family reads;
``grid: db`` CLAP's and PANNs' own feature, 10 log10(max(mel, 1e-10)) (LMAC-ZS sec. 3.2: Mel masking
"directly in the feature space on which CLAP operates").

What a model reads from a (masked) grid is the model's choice (:meth:`AudioClassifier.network_input`):
the log1p-mel the grid stands for (:meth:`Domain.to_logmel`, CNN14), or its dB mel
(:meth:`Domain.to_db_mel`, ``msclap``); every domain gives both, so every model reads every domain,
and the grid that *is* a model's feature is handed over as it is (the mask lives in that feature).

A domain instance is named by :meth:`Domain.key` (file-name-safe: cell ids, result rows, folders)
and :meth:`Domain.title` (tables and pages); two instances of one domain with different
parameters are separate table groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch.nn import functional as F

from audiobench.contracts.component import Component, Params
from audiobench.contracts.frontend import Frontend
from audiobench.contracts.registry import DOMAINS
from audiobench.kernel.batching import clips_of_rows
from audiobench.kernel.errors import AudiobenchError

#: torchlibrosa's ``power_to_db`` floor (``amin``, ref 1, no top_db): what CLAP 2022 / PANNs clamp mel energies at
DB_AMIN = 1e-10
DB_FLOOR = 10.0 * math.log10(DB_AMIN)  # -100 dB: the lowest value of a dB mel grid
_DB_SCALE = math.log(10.0) / 10.0  # 10^(x/10) = exp(x * _DB_SCALE)


def _sqrt0(u: torch.Tensor) -> torch.Tensor:
    """sqrt(u) for u >= 0 with a zero (not infinite) gradient at u = 0 (silent bins, zero padding); 0 for u <= 0."""
    return torch.where(u > 0, u.clamp_min(torch.finfo(u.dtype).tiny).sqrt(), torch.zeros_like(u))


def _db_to_log1p(x: torch.Tensor) -> torch.Tensor:
    """dB mel [..] -> log1p(10^(x/10)) = softplus(x ln10 / 10) (no overflow, a smooth gradient); below -100 dB as -100 dB."""
    return F.softplus(x.clamp_min(DB_FLOOR) * _DB_SCALE)


@dataclass
class ClipPhase:
    """The phase of a batch of clips, for models that read the waveform (input kind ``waveform``).

    ``phasor``: complex unit phasors exp(j angle X) [N, 1, T, F] of the clips' STFT (1 where |X| = 0);
    ``length``: the waveform length in samples. A batch of B rows derived from these N clips reads row
    j's phase from clip j mod N (:meth:`rows`): the tiling every built-in method and metric uses when it
    expands a batch (SmoothGrad's noisy copies, the integrated path, the budget passes: ``x.repeat``).
    """

    phasor: torch.Tensor
    length: int

    def rows(self, b: int) -> torch.Tensor:
        """Phasors for the ``b`` rows given to the model now [b, 1, T, F]: clip j mod N for row j of a tiled
        batch (its chunk's offset included), or the clips :func:`~audiobench.kernel.batching.row_clips` names.
        :class:`AudiobenchError` when no mapping is known (``b`` not a multiple of N outside a chunk)."""
        n = self.phasor.shape[0]
        index = clips_of_rows(b, n)
        if index is None:
            raise AudiobenchError(f"a waveform model read {b} rows derived from {n} clips: rows must tile the clips "
                                  f"(row j from clip j mod {n}) or be named with row_clips() for each row to get its phase")
        if b == n and bool((index == torch.arange(n)).all()):
            return self.phasor
        return self.phasor[index.to(self.phasor.device)]

    def subset(self, index: torch.Tensor) -> ClipPhase:
        """The phase of the rows ``index`` (repeats allowed)."""
        return ClipPhase(self.phasor[index], self.length)


@dataclass
class Representation:
    """A batch on a domain's grid: ``x`` [B, 1, T, F] (what masks multiply) and the complex STFT."""

    x: torch.Tensor
    stft: torch.Tensor  # complex [B, 1, T, F_linear], for listening
    length: int  # waveform length in samples

    def subset(self, index: torch.Tensor) -> Representation:
        """The rows ``index`` of the batch (repeats allowed)."""
        return Representation(self.x[index], self.stft[index], self.length)

    def phase(self) -> ClipPhase:
        """The clips' phase (:class:`ClipPhase`): what a waveform model reads beside the masked magnitudes."""
        mag = self.stft.abs()
        unit = torch.where(mag > 0, self.stft / mag.clamp_min(torch.finfo(mag.dtype).tiny), torch.ones_like(self.stft))
        return ClipPhase(unit, self.length)


class Domain(Component):
    """Where masks live; subclasses define the grid and the map to the classifier's input."""

    listenable: ClassVar[bool] = False

    def key(self) -> str:
        """A short, file-name-safe identifier of this instance, e.g. ``stft2mel`` or ``stft2mel_log1p``."""
        return self.name

    def title(self) -> str:
        """The instance's display name in tables and pages, e.g. ``STFT→Mel (log1p)``."""
        return self.display_name or self.name

    def grid_bins(self, n_fft: int, n_mels: int) -> int | None:
        """Bins on this domain's frequency axis for a front end of ``n_fft`` and ``n_mels`` (what ``validate``
        checks a method's windows against, before anything runs); None (the default): not known ahead."""
        return None

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """A representation on this domain's grid -> the (linear) magnitudes its bins stand for, >= 0
        (|STFT| bins, or mel-band energies): what a spectrogram picture or a level threshold reads."""
        raise NotImplementedError

    def linear_magnitude(self, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        """A (masked) representation -> the linear STFT magnitudes |X| [B, 1, T, n_fft/2 + 1] it stands
        for: what a model of input kind ``linear`` reads. :class:`AudiobenchError` where the grid has no
        STFT bins (the mel domain: its filterbank cannot be inverted)."""
        raise AudiobenchError(f"domain {self.key()} has no linear STFT magnitudes to give a model that reads them "
                              "(use stft2mel)")

    def waveform(self, frontend: Frontend, x: torch.Tensor, phase: ClipPhase) -> torch.Tensor:
        """A (masked) representation [B, 1, T, F] -> the waveform it stands for [B, L]:
        ISTFT(M⊙|X| exp(j angle X)) with the clips' own phase (:meth:`ClipPhase.rows`), what a model of input
        kind ``waveform`` reads. :class:`AudiobenchError` where the grid has no STFT bins (the mel domain)."""
        raise AudiobenchError(f"domain {self.key()} has no STFT bins to rebuild a waveform from (use stft2mel)")

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

    def to_db_mel(self, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        """A (masked) representation [B, 1, T, F] -> the dB mel it stands for, 10 log10(max(mel, 1e-10))
        [B, 1, T, n_mels] (torchlibrosa's ``power_to_db``, ref 1, amin 1e-10, no top_db: CLAP 2022's and
        PANNs' input when the front end's ``mel_power`` is 2).

        By default ``mel`` = expm1 of :meth:`to_logmel`; a grid that is this feature returns itself
        (``mel{grid: db}``), so the mask multiplies exactly what the model reads.
        """
        return 10.0 * torch.log10(torch.expm1(self.to_logmel(frontend, x)).clamp_min(DB_AMIN))

    def model_problem(self, model: Any) -> str | None:
        """Why this instance cannot serve the model spec (or its class) ``model``, in one line; None when it can.

        ``audiobench validate`` reports it at the domain's line. By default every model reads every domain.
        """
        return None

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
    * ``log1p_power``: the grid is x = log1p(|X|^2), the LMAC-ZS paper's "linear frequency-scale log
      power-STFT domain" (Paissan et al., NeurIPS 2024, sec. 3.2), and the classifier reads the mel of
      the power expm1(M * log1p(|X|^2)) = (1 + |X|^2)^M - 1 (its square root, the magnitude, on a
      ``mel_power: 1`` front end). The log is log1p, not log: log|X|^2 is -inf at silence (zero padding,
      digital silence), where M * log|X|^2 is undefined, and a mask M < 1 on a negative log power would
      *raise* quiet bins; log1p(|X|^2) is >= 0, 0 exactly at silence, so a mask in [0, 1] only lowers a
      bin and 0 silences it, and it is the power counterpart of the recipe's log1p|X| (no public
      LMAC-ZS code fixes the offset; the paper names the domain only). The written interpretation is
      the paper's x_int = ISTFT(X * M) (sec. 2.3, "Producing Listenable Interpretations": M and X in the
      linear-scale STFT domain), as for ``log1p``; for 0 < M < 1 that is not the scored power
      (1 + |X|^2)^M - 1. Key ``stft2mel_log1p_power``.
    """

    display_name = "STFT→Mel"
    listenable = True

    class Params(Params):
        operator: Literal["linear", "log1p", "log1p_power"] = Field(
            "linear", description="what the mask multiplies: |STFT| (linear, the L-MAC paper's sec. 2), log1p|STFT| "
            "(log1p, the SpeechBrain L-MAC recipe's) or log1p(|STFT|^2) (log1p_power, the LMAC-ZS paper's sec. 3.2 "
            "log power-STFT)"
        )

    #: the operator's words in a title (tables, pages)
    TITLES: ClassVar[dict[str, str]] = {"log1p": "log1p", "log1p_power": "log1p power"}

    def grid_bins(self, n_fft: int, n_mels: int) -> int | None:
        return n_fft // 2 + 1  # the one-sided STFT's bins

    def key(self) -> str:
        return self.name if self.params.operator == "linear" else f"{self.name}_{self.params.operator}"

    def title(self) -> str:
        op = self.params.operator
        return self.display_name if op == "linear" else f"{self.display_name} ({self.TITLES[op]})"

    def _power(self, x: torch.Tensor) -> torch.Tensor:
        """``log1p_power`` grid -> the power |X|^2 it stands for, >= 0."""
        return torch.expm1(x).clamp_min(0)

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        # a magnitude is never negative: noise-perturbed inputs (SmoothGrad, SHAP) must not make log1p NaN
        op = self.params.operator
        if op == "linear":
            return x.clamp_min(0)
        if op == "log1p":
            return torch.expm1(x).clamp_min(0)
        return _sqrt0(self._power(x))

    def linear_magnitude(self, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        return self.magnitude(x)

    def log_magnitude(self, x: torch.Tensor) -> torch.Tensor:
        op = self.params.operator
        if op == "linear":
            return torch.log1p(x.clamp_min(0))
        return x if op == "log1p" else torch.log1p(self.magnitude(x))

    def represent(self, frontend: Frontend, wave: torch.Tensor) -> Representation:
        spec = frontend.stft(wave)
        mag = spec.abs()
        op = self.params.operator
        x = mag if op == "linear" else torch.log1p(mag) if op == "log1p" else torch.log1p(mag.square())
        return Representation(x, spec, wave.shape[-1])

    def to_logmel(self, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        if self.params.operator == "log1p_power" and frontend.params.mel_power == 2:
            # the power itself, not the square of its square root: exact, and smooth at silent bins
            return torch.log1p(self._power(x) @ frontend.mel_fb)
        return torch.log1p(frontend.mel(self.magnitude(x)))

    def from_mel_grid(self, frontend: Frontend, grid: torch.Tensor) -> torch.Tensor:
        return frontend.mel_to_linear(grid)

    def waveform(self, frontend: Frontend, x: torch.Tensor, phase: ClipPhase) -> torch.Tensor:
        mag = self.magnitude(x)
        return frontend.istft(mag.to(phase.phasor.real.dtype) * phase.rows(len(x)), phase.length)

    def to_audio(self, frontend: Frontend, mask: torch.Tensor, rep: Representation) -> torch.Tensor:
        return frontend.istft(mask.to(rep.stft.real.dtype) * rep.stft, rep.length)


@DOMAINS.register("mel")
class Mel(Domain):
    """Mask on a mel grid the classifier reads (not listenable): its log1p-mel, or CLAP's dB mel.

    ``grid`` (``mel`` is the front end's filterbank on |X|^``mel_power``, :meth:`Frontend.mel`):

    * ``log1p`` (default): x = log1p(mel), the CNN14 family's input and the SpeechBrain recipe's Mel
      masking; a model reading dB (``msclap``) reads 10 log10(max(expm1(M * x), 1e-10)).
    * ``db``: x = 10 log10(max(mel, 1e-10)), torchlibrosa's ``power_to_db`` (ref 1, amin 1e-10, no
      top_db): CLAP 2022's (and PANNs') own input on a ``mel_power: 2`` front end, so the mask multiplies
      "directly the feature space on which CLAP operates" (LMAC-ZS paper, Paissan et al., NeurIPS 2024,
      sec. 3.2) and ``msclap`` reads M * x as it is. A model reading log1p-mel reads log1p(10^(M x / 10)).
      On this grid 0 is 0 dB (mel energy 1), not silence: a zero mask, a masked-out bin (1 - M) and a
      zero baseline (Integrated Gradients, SHAP) all stand for 0 dB; a mask below 1 raises a bin below
      0 dB towards it. Values below -100 dB (noise-perturbed inputs) count as -100 dB. Key ``mel_db``.
      :meth:`model_problem` refuses a model whose exact attribution takes a zero grid value for silence
      (``band_energy``).
    """

    display_name = "Mel"

    class Params(Params):
        grid: Literal["log1p", "db"] = Field(
            "log1p", description="what the mask multiplies: log1p(mel) (log1p, the CNN14 input and the SpeechBrain "
            "recipe's Mel masking) or 10 log10(max(mel, 1e-10)) (db, CLAP's own feature: LMAC-ZS paper sec. 3.2)"
        )

        added_fields: ClassVar[frozenset[str]] = frozenset({"grid"})

    TITLES: ClassVar[dict[str, str]] = {"db": "dB"}

    @property
    def _db(self) -> bool:
        return self.params.grid == "db"

    def grid_bins(self, n_fft: int, n_mels: int) -> int | None:
        return n_mels

    def key(self) -> str:
        return f"{self.name}_{self.params.grid}" if self._db else self.name

    def title(self) -> str:
        return f"{self.display_name} ({self.TITLES[self.params.grid]})" if self._db else self.display_name

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        if self._db:
            return torch.exp(x.clamp_min(DB_FLOOR) * _DB_SCALE)  # 10^(x / 10), >= 1e-10
        return torch.expm1(x).clamp_min(0)

    def log_magnitude(self, x: torch.Tensor) -> torch.Tensor:
        return _db_to_log1p(x) if self._db else x

    def represent(self, frontend: Frontend, wave: torch.Tensor) -> Representation:
        spec = frontend.stft(wave)
        mel = frontend.mel(spec.abs())
        x = 10.0 * torch.log10(mel.clamp_min(DB_AMIN)) if self._db else torch.log1p(mel)
        return Representation(x, spec, wave.shape[-1])

    def to_logmel(self, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        return _db_to_log1p(x) if self._db else x

    def to_db_mel(self, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        if self._db:  # the grid is the feature: handed over as it is (above the floor)
            return x.clamp_min(DB_FLOOR)
        return super().to_db_mel(frontend, x)

    def model_problem(self, model: Any) -> str | None:
        name = model.name or type(model).__name__
        if model.input_kind == "linear":
            return (f"domain mel cannot serve model '{name}': it reads the linear STFT magnitude, and the mel "
                    "filterbank cannot be inverted (use stft2mel)")
        if model.input_kind == "waveform":
            return (f"domain mel cannot serve model '{name}': it reads the waveform, and a mel grid has neither "
                    "the STFT bins nor the phase to rebuild it (use stft2mel)")
        if self._db and model.knows_exact_attribution:
            return (f"domain mel with grid: db cannot serve model '{name}': its exact attribution takes a zero grid "
                    "value for silence, and 0 dB is a mel energy of 1 (use grid: log1p)")
        return None

    def from_mel_grid(self, frontend: Frontend, grid: torch.Tensor) -> torch.Tensor:
        return grid
