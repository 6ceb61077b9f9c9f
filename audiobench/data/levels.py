"""Levels: what level a clip reaches the model at, and mixing two signals at an SNR.

By default every clip a model reads is peak-normalised, as the reference recipe normalises every input;
a model that declares ``ModelSpec.peak_normalise = False`` reads clips at their recorded level
(:func:`input_level`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from audiobench.data.base import ClipSet


def peak_normalise(clips: ClipSet, peak: float = 1.0) -> ClipSet:
    """Divide each clip (and its target and clean source) by its peak so the loudest sample is ``peak``.

    The factor is computed in float64, so very quiet (even subnormal) and very loud float32 clips
    reach ``peak`` too; an all-zero clip is left as it is.
    """
    amax = clips.waveforms.double().abs().amax(dim=1, keepdim=True)
    scale = peak / torch.where(amax > 0, amax, torch.ones_like(amax))

    def scaled(x: torch.Tensor) -> torch.Tensor:
        return (x.double() * scale).to(x.dtype)

    clips.waveforms = scaled(clips.waveforms)
    if clips.targets is not None:
        clips.targets = scaled(clips.targets)
    if clips.clean is not None:
        clips.clean = scaled(clips.clean)
    if clips.events is not None:
        clips.events = (clips.events.double() * scale[:, :, None]).to(clips.events.dtype)
    return clips


_PEAK_NORMALISE: ContextVar[bool] = ContextVar("peak_normalise", default=True)


@contextmanager
def input_level(peak: bool) -> Iterator[None]:
    """Inside, every condition (:meth:`Contamination.apply`) and :func:`at_input_level` peak-normalise their
    clips (``peak=True``, the default outside: the reference recipe's) or keep each clip at its recorded
    level (``peak=False``: what a model declaring ``ModelSpec.peak_normalise = False`` reads, e.g. a
    level-dependent detector, which peak normalisation would show room tone at full scale). The harness
    enters it with the suite's model's declaration around training, fits and conditions."""
    token = _PEAK_NORMALISE.set(bool(peak))
    try:
        yield
    finally:
        _PEAK_NORMALISE.reset(token)


def peak_normalising() -> bool:
    """Whether conditions peak-normalise here (:func:`input_level`)."""
    return _PEAK_NORMALISE.get()


def level_record(peak: bool) -> dict[str, str]:
    """What a cache key, a cell id or a manifest adds for a model's declared level: ``{"input_level": "recorded"}``
    for clips at their recorded level, nothing for peak-normalised ones (so every earlier key and id stays)."""
    return {} if peak else {"input_level": "recorded"}


def at_input_level(clips: ClipSet) -> ClipSet:
    """A copy of ``clips`` at the level models read here: peak-normalised (:func:`peak_normalise`), or as
    recorded inside ``input_level(False)``."""
    clips = clips.subset(slice(None))
    return peak_normalise(clips) if peak_normalising() else clips


def mix_at_snr(signal: torch.Tensor, noise: torch.Tensor, snr_db: float | torch.Tensor) -> torch.Tensor:
    """signal + g * noise [N, L], g chosen per row so that 10 log10(P_signal / P_gnoise) = ``snr_db``
    (one value, or one per row as an [N, 1] tensor).

    Powers and gain are computed in float64 (exact for very loud and very quiet float32 rows); the
    result has ``signal``'s dtype. A row of ``noise`` without energy gets g = 0 (the caller skips it).
    """
    s, n = signal.double(), noise.double()
    p_s = s.pow(2).mean(dim=1, keepdim=True)
    p_n = n.pow(2).mean(dim=1, keepdim=True)
    ok = (p_n > 0) & torch.isfinite(p_n)
    snr = torch.as_tensor(snr_db, dtype=torch.float64)
    gain = torch.where(ok, torch.sqrt(p_s / (torch.where(ok, p_n, 1.0) * 10 ** (snr / 10))), 0.0)
    return (s + gain * n).to(signal.dtype)


def effective_snr_db(mixed: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """10 log10(P_clean / P_(mixed - clean)) per row [N] (float64, dB): the SNR a mixture really has."""
    c = clean.double()
    added = mixed.double() - c
    return 10 * torch.log10(c.pow(2).sum(dim=1) / added.pow(2).sum(dim=1))
