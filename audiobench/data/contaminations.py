"""Contaminations: what is added to each test clip (nothing, another clip, noise) at an explicit SNR.

Every contamination is deterministic per sample: its random draws come from a generator seeded by
the suite seed, the contamination and the sample id, so a clip is contaminated the same way
whatever the batch, order or ``--limit``. The SNR is that of the clip (its target event and
background) to the added signal, by power over the whole clip. The result is peak-normalised,
as the reference recipe normalises every input, and the clean target is scaled with it.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from pydantic import Field

from audiobench.component import Component, Params
from audiobench.data.base import ClipSet
from audiobench.errors import AudiobenchError
from audiobench.registry import CONTAMINATIONS


def sample_rng(seed: int, salt: str, sample_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, salt, sample id)."""
    return np.random.default_rng([seed, zlib.crc32(salt.encode()), zlib.crc32(sample_id.encode())])


def peak_normalise(clips: ClipSet, peak: float = 1.0) -> ClipSet:
    """Divide each clip (and its target) by its peak so the loudest sample is ``peak``."""
    scale = peak / clips.waveforms.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    clips.waveforms = clips.waveforms * scale
    if clips.targets is not None:
        clips.targets = clips.targets * scale
    return clips


def mix_at_snr(signal: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """signal + g * noise with g chosen per row so that 10 log10(P_signal / P_gnoise) = snr_db."""
    p_s = signal.pow(2).mean(dim=1, keepdim=True)
    p_n = noise.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-20)
    gain = torch.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))
    return signal + gain * noise


class Contamination(Component):
    """Turns clean test clips into the evaluated condition."""

    def key(self) -> str:
        """A short, file-name-safe identifier, e.g. ``mixture_3db``."""
        return self.name

    def title(self) -> str:
        """The condition's display name in tables, e.g. ``mixture 3 dB``."""
        return self.display_name or self.name

    def apply(self, clips: ClipSet, pool: ClipSet, seed: int) -> ClipSet:
        """Contaminate ``clips``; ``pool`` supplies other clips (mixtures)."""
        raise NotImplementedError


class SnrParams(Params):
    snr_db: float = Field(..., ge=-30, le=60, description="signal-to-contaminant ratio in dB")


def _db(snr: float) -> str:
    return f"{snr:g}".replace("-", "m").replace(".", "p") + "db"


@CONTAMINATIONS.register("none")
class NoContamination(Contamination):
    """The clean test clips as they are (in-domain)."""

    name, display_name = "none", "in-domain"

    def apply(self, clips: ClipSet, pool: ClipSet, seed: int) -> ClipSet:
        return peak_normalise(clips.subset(slice(None)))


@CONTAMINATIONS.register("mixture")
class Mixture(Contamination):
    """Another clip of a different class from the same split, added at the given SNR."""

    name = "mixture"

    class Params(SnrParams):
        pass

    def key(self) -> str:
        return f"mixture_{_db(self.params.snr_db)}"

    def title(self) -> str:
        return f"mixture {self.params.snr_db:g} dB"

    def partners(self, clips: ClipSet, pool: ClipSet, seed: int) -> torch.Tensor:
        """For each clip, the index in ``pool`` of a clip of another class (deterministic per sample)."""
        pool_labels = pool.labels.numpy()
        out = []
        for sid, label in zip(clips.sample_ids, clips.labels.tolist(), strict=True):
            candidates = np.flatnonzero(pool_labels != label)
            if candidates.size == 0:
                raise AudiobenchError("mixture contamination needs clips of at least two classes")
            # salted by the name, not the SNR: a sweep over SNRs mixes the same clip pairs
            out.append(int(candidates[sample_rng(seed, self.name, sid).integers(candidates.size)]))
        return torch.tensor(out, dtype=torch.long)

    def apply(self, clips: ClipSet, pool: ClipSet, seed: int) -> ClipSet:
        other = pool.waveforms[self.partners(clips, pool, seed)]
        out = clips.subset(slice(None))
        out.waveforms = mix_at_snr(clips.waveforms, other, self.params.snr_db)
        return peak_normalise(out)


@CONTAMINATIONS.register("white_noise")
class WhiteNoise(Contamination):
    """Gaussian white noise added at the given SNR."""

    name = "white_noise"

    class Params(SnrParams):
        pass

    def key(self) -> str:
        return f"white_noise_{_db(self.params.snr_db)}"

    def title(self) -> str:
        return f"white noise {self.params.snr_db:g} dB"

    def apply(self, clips: ClipSet, pool: ClipSet, seed: int) -> ClipSet:
        if len(clips) == 0:
            return clips
        length = clips.waveforms.shape[1]
        noise = np.stack([sample_rng(seed, self.name, sid).standard_normal(length) for sid in clips.sample_ids])
        out = clips.subset(slice(None))
        out.waveforms = mix_at_snr(clips.waveforms, torch.from_numpy(noise).to(clips.waveforms), self.params.snr_db)
        return peak_normalise(out)
