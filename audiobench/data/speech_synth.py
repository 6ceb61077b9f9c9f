"""A synthetic speech-like contaminant: formant-synthesised vowel sequences, one voice or babble.

Real suites contaminate with speech from a local corpus (``noise_folder`` on LJ-Speech, as the
LMAC-ZS paper's OOD tables); the embedded suites use this stand-in, which has what makes speech a
hard contaminant for a sound-event classifier: a harmonic source with a moving pitch (f0 100-230
Hz, falling through each phrase) shaped by vowel formants (F1-F3 of /a e i o u/, Peterson & Barney
1952), syllables of 90-260 ms in words separated by short pauses, and fricative-like noise bursts.
``voices: 1`` is one talker; more voices sum talkers into babble. Each clip's contaminant depends
only on (seed, sample id).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from audiobench.contracts.registry import CONTAMINATIONS
from audiobench.data.base import ClipSet
from audiobench.data.contaminations import Contamination, MixParams, _Mixing, sample_rng

#: Formant frequencies (Hz) and bandwidths of five vowels (adult male averages).
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]], float)
BANDWIDTHS = np.array([90.0, 110.0, 170.0])


def _resonance(f: np.ndarray, centre: float, bandwidth: float) -> np.ndarray:
    """Magnitude of a second-order resonance at frequencies ``f`` (unit gain at 0 Hz)."""
    r = f / centre
    return 1.0 / np.sqrt((1 - r**2) ** 2 + (f * bandwidth / centre**2) ** 2)


def talker(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """``n`` samples of one synthetic talker at ``sr`` Hz (unit RMS over the voiced parts)."""
    out = np.zeros(n)
    pos = int(rng.uniform(0, 0.15) * sr)
    f0_base = rng.uniform(100, 230)
    nyq = 0.45 * sr
    while pos < n:
        syllables = int(rng.integers(1, 4))
        phrase_f0 = f0_base * rng.uniform(0.9, 1.15)
        for s in range(syllables):
            length = int(rng.uniform(0.09, 0.26) * sr)
            stop = min(n, pos + length)
            if stop <= pos:
                break
            t = np.arange(stop - pos) / sr
            f0 = phrase_f0 * (1 - 0.08 * s)  # falling through the phrase
            glide = 1 + rng.uniform(-0.06, 0.06) * t / max(t[-1], 1e-3)
            formants = VOWELS[int(rng.integers(len(VOWELS)))] * rng.uniform(0.92, 1.08)
            k = np.arange(1, int(nyq // (f0 * 1.1)) + 1)
            freqs = k[:, None] * (f0 * glide * (1 + 0.004 * np.sin(2 * np.pi * 5 * t)))[None, :]  # [K, L]
            gain = np.prod([_resonance(k * f0, fc, bw) for fc, bw in zip(formants, BANDWIDTHS, strict=True)], axis=0) / k
            phase = 2 * np.pi * np.cumsum(freqs, axis=1) / sr
            voiced = (gain[:, None] * np.sin(phase)).sum(axis=0)
            env = np.sin(np.pi * np.linspace(0, 1, len(t))) ** 0.6
            out[pos:stop] += env * voiced / max(float(np.sqrt(np.mean(voiced**2))), 1e-12)
            if rng.uniform() < 0.3:  # a fricative after the vowel
                burst = min(n - stop, int(rng.uniform(0.03, 0.08) * sr))
                if burst > 0:
                    noise = np.diff(rng.standard_normal(burst + 1))  # high-passed noise
                    out[stop : stop + burst] += 0.3 * noise * np.hanning(burst)
                    stop += burst
            pos = stop
        pos += int(rng.uniform(0.05, 0.3) * sr)  # pause between words
    return out


@CONTAMINATIONS.register("speech_synth")
class SpeechSynth(_Mixing, Contamination):
    """Synthetic speech (formant-synthesised vowel sequences; babble with several voices) at the given SNR."""

    default_gains, unit_norm = (1.0, 0.5), True

    class Params(MixParams):
        voices: int = Field(1, ge=1, le=8, description="talkers summed: 1 is speech, more is babble")

    def key(self) -> str:
        what = "speech" if self.params.voices == 1 else f"babble{self.params.voices}"
        return f"{what}_{self.level_key()}"

    def title(self) -> str:
        what = "synthetic speech" if self.params.voices == 1 else f"babble of {self.params.voices} voices"
        return f"{what} {self.level_title()}"

    def apply(self, clips: ClipSet, pool: ClipSet, seed: int) -> ClipSet:
        if len(clips) == 0:
            return clips
        length, sr = clips.waveforms.shape[1], clips.sample_rate
        speech = []
        for sid in clips.sample_ids:
            rng = sample_rng(seed, self.name, sid)
            speech.append(sum(talker(rng, length, sr) for _ in range(self.params.voices)))
        return self.mixed(clips, torch.from_numpy(np.stack(speech)), seed=seed)
