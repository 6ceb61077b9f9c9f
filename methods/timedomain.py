"""How a time-domain explanation (a waveform) is scored on a masking domain's grid: the re-analysis mask.

The harness scores masks M on a domain's grid (p(M*X), p((1-M)*X), SPS, ...). A method whose explanation is
a waveform e (LMAC-TD, :mod:`audiobench.methods.lmac_td`; L-MAC's listenable ISTFT(M*X) under ``reanalyse:
waveform``) is scored through the mask that, multiplied into the input's grid, gives the explanation's own
grid wherever the explanation is below the input::

    M = clamp(G(e) / max(G(x), FLOOR * max G(x)), 0, 1)      (FLOOR = 1e-3, the max over the clip's grid)

G the domain's analysis (:meth:`Domain.represent`): |STFT| on ``stft2mel`` (so M*X = min(|E|, |X|)),
log1p|STFT| on ``stft2mel_log1p``, log1p(mel(|STFT|)) on ``mel``. On ``mel`` this is the LMAC-TD recipe's own
saliency map, ``X_mel_interp / (X_mel + 1e-8)`` (``train_lmactd.py``, ``compute_forward``), clamped to [0, 1].
No phase is needed: e is re-analysed, not resynthesised. The dB grid (``mel{grid: db}``) is refused
(:func:`reanalysis_problem`): its values are not >= 0 and 0 is not silence, so a ratio of grids is no mask.

The floor keeps the ratio well-conditioned: in bins 60 dB (linear grid) below the clip's peak both G(e) and G(x)
are at the level of the STFT's leakage, and a ratio of two such values would swing between 0 and 1 with float
rounding (a batch would differ from its rows explained one at a time); there M = G(e) / (FLOOR x peak).

Known answers: e = the input gives 1 wherever the input is above the floor; e = silence gives 0 everywhere.
"""

from __future__ import annotations

import torch

from audiobench.contracts.domains import Domain, Representation
from audiobench.contracts.frontend import Frontend
from audiobench.kernel.batching import clips_of_rows
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import DomainModel

FLOOR = 1e-3  # relative to the clip's peak on the grid: below it the ratio's denominator is the floor


def reanalysis_problem(domain: Domain, needs_waveform: bool = False) -> str | None:
    """Why a waveform explanation cannot be scored on ``domain`` by :func:`reanalysis_mask`, in one line; None
    when it can. ``needs_waveform``: the explanation is resynthesised from a mask on this grid (L-MAC's
    ISTFT(M*X)), which needs the grid's STFT bins (a listenable domain)."""
    if needs_waveform and not domain.listenable:
        return (f"domain {domain.key()} has no STFT bins: a mask on its grid has no waveform to re-analyse "
                "(use stft2mel)")
    if getattr(domain.params, "grid", None) == "db":
        return (f"domain {domain.key()}: the dB grid is not >= 0 (0 dB is not silence), so the ratio of the "
                "explanation's grid to the input's is no mask (use grid: log1p)")
    return None


def reanalysis_mask(domain: Domain, frontend: Frontend, wave: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The mask clamp(G(wave) / max(G(x), FLOOR x max G(x)), 0, 1) [B, 1, T, F] scoring the explanation waveforms
    ``wave`` [B, L] of the inputs ``x`` [B, 1, T, F] on ``domain``'s grid (module docstring); 0 for a silent clip.

    Raises ``ValueError`` when the re-analysed grid is not shaped like ``x`` (another length or front end),
    :class:`AudiobenchError` on a domain :func:`reanalysis_problem` refuses."""
    if (problem := reanalysis_problem(domain)) is not None:
        raise AudiobenchError(problem)
    g = domain.represent(frontend, wave.to(x.dtype)).x
    if g.shape != x.shape:
        raise ValueError(f"re-analysed explanation has grid {tuple(g.shape)}, the input {tuple(x.shape)}")
    floor = FLOOR * x.flatten(1).amax(dim=1).clamp_min(0).view(-1, 1, 1, 1)
    den = torch.maximum(x, floor)
    return torch.where(den > 0, g.clamp_min(0) / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(x)).clamp(0, 1)


def clip_stft(model: DomainModel, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The complex STFT [B, 1, T, F_linear] of the clips the rows ``x`` [B, 1, T, F] stand for, and their length
    in samples. On a listenable domain: the linear magnitude of ``x`` itself with the clips' phase, so it follows
    ``x`` (|X| e^{j phi}); on ``mel`` (no STFT bins in ``x``): the clips' own STFT. The clips are those of
    :meth:`DomainModel.reading` (rows tiled over them, or named with ``row_clips``).

    Raises :class:`AudiobenchError` when no clips are being read or the rows cannot be mapped to them."""
    clips = model.clips
    if clips is None:
        raise AudiobenchError("a time-domain explanation needs the clips: explain within model.reading(rep)")
    b = x.shape[0]
    if model.domain.listenable:
        phase = clips.phase() if isinstance(clips, Representation) else clips
        mag = model.domain.linear_magnitude(model.frontend, x)
        return mag.to(phase.phasor.real.dtype) * phase.rows(b), phase.length
    if not isinstance(clips, Representation):
        raise AudiobenchError(f"domain {model.domain.key()}: the clips' STFT is needed, not only their phase")
    index = clips_of_rows(b, clips.x.shape[0])
    if index is None:
        raise AudiobenchError(f"{b} rows derived from {clips.x.shape[0]} clips: rows must tile the clips or be "
                              "named with row_clips()")
    return clips.stft[index.to(clips.stft.device)], clips.length


def clip_waveform(model: DomainModel, x: torch.Tensor) -> torch.Tensor:
    """The waveforms [B, L] of the rows ``x`` (:func:`clip_stft`, inverted): what a time-domain method reads."""
    spec, length = clip_stft(model, x)
    return model.frontend.istft(spec, length).to(x.dtype)


def resynthesis_mask(model: DomainModel, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A grid mask's listenable interpretation ISTFT(M X) (what the harness writes, :meth:`Domain.to_audio`),
    re-analysed by :func:`reanalysis_mask`: [B, 1, T, F], rows ``x`` as in :func:`clip_stft`. Raises
    :class:`AudiobenchError` on a domain without STFT bins (``mel``)."""
    if (problem := reanalysis_problem(model.domain, needs_waveform=True)) is not None:
        raise AudiobenchError(problem)
    spec, length = clip_stft(model, x)
    wave = model.frontend.istft(mask.to(spec.real.dtype) * spec, length)
    return reanalysis_mask(model.domain, model.frontend, wave, x)
