"""Synth: an embedded synthetic sound-event dataset with exact ground truth (no download).

Every clip holds one procedurally generated sound event (a tone, a chirp, a click train, ...) at a
random onset over a steady, quiet pink-noise floor. ``targets`` is the clean event alone, so the
ideal time-frequency mask of what the classifier should attend to is known exactly.

Item ``i`` (class ``i // clips_per_class``) is drawn from ``np.random.default_rng([seed, i])``:
it does not depend on the split, on the load order or on how many classes are requested.
Scalar parameters (onset, duration, frequencies, rates) are drawn before any noise, so one item
has the same timing and frequencies at every sample rate.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from audiobench.contracts.component import Params as _BaseParams
from audiobench.contracts.registry import DATASETS
from audiobench.data.base import SPLITS, ClipSet, Dataset
from audiobench.kernel.errors import AudiobenchError

#: Bump when generation changes, so cached results keyed on ``fingerprint()`` are invalidated.
GENERATOR_VERSION = 1

PEAK = 0.9  # peak of every normalised waveform
DURATION_RANGE = (0.25, 0.6)  # event length as a fraction of the clip
FADE_SECONDS = 0.005  # raised-cosine ramps at both ends of an event
MIN_SAMPLE_RATE = 2000

_TWO_PI = 2.0 * math.pi
_TABLE = 4096  # wavetable length for harmonic sounds

EventGenerator = Callable[[np.random.Generator, int, int], np.ndarray]


# -- helpers -----------------------------------------------------------------------------------
def _fmax(sr: int) -> float:
    """Highest frequency a generator may use: 0.9 x Nyquist."""
    return 0.45 * sr


def _clip(hz: np.ndarray | float, sr: int) -> np.ndarray | float:
    return np.minimum(hz, _fmax(sr))


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _time(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _osc(freq: np.ndarray, sr: int, phase0: float) -> np.ndarray:
    """A sine following the instantaneous frequency ``freq`` [n] (phase-continuous)."""
    return np.sin(_TWO_PI * np.cumsum(freq) / sr + phase0)


def _harmonic_wave(f0: float, amps: np.ndarray, phases: np.ndarray, n: int, sr: int) -> np.ndarray:
    """Sum of ``amps[k-1] * sin(2 pi k f0 t + phases[k-1])``, k = 1..K, from a one-period wavetable.

    Harmonics at or above the frequency limit are dropped (the fundamental is always kept).
    """
    k = np.arange(1, amps.size + 1)
    keep = (k * f0 < _fmax(sr)) | (k == 1)
    spec = np.zeros(_TABLE // 2 + 1, dtype=complex)
    spec[k[keep]] = amps[keep] * np.exp(1j * (phases[keep] - 0.5 * np.pi)) * (_TABLE / 2)
    table = np.fft.irfft(spec, _TABLE)
    table = np.append(table, table[0])
    pos = (min(f0, _fmax(sr)) / sr * np.arange(n)) % 1.0 * _TABLE
    i = pos.astype(np.int64)
    return table[i] + (pos - i) * (table[i + 1] - table[i])


@lru_cache(maxsize=8)
def _freqs(n: int, sr: int) -> np.ndarray:
    return np.fft.rfftfreq(n, 1.0 / sr)


def _shaped_noise(
    rng: np.random.Generator, n: int, sr: int, gain: Callable[[np.ndarray], np.ndarray] | np.ndarray
) -> np.ndarray:
    """Gaussian noise of ``n`` samples with spectral magnitude ``gain(freqs_hz)``, drawn in the frequency domain."""
    f = _freqs(n, sr)
    g = gain(f) if callable(gain) else gain
    spec = rng.standard_normal((f.size, 2), dtype=np.float32).view(np.complex64)[:, 0]  # float32: 3x faster
    spec *= g.astype(np.float32)
    return np.fft.irfft(spec, n=n).astype(np.float64)


def _band_gain(lo: float, hi: float, sr: int) -> Callable[[np.ndarray], np.ndarray]:
    """A band-pass with raised-cosine skirts a sixth of an octave wide on each side (all under the limit)."""
    hi = min(hi, _fmax(sr) * 2 ** (-1 / 6))
    lo = min(lo, hi / 1.2)

    def gain(f: np.ndarray) -> np.ndarray:
        skirt = 1.0 / 6.0
        a, b = np.searchsorted(f, [lo * 2**-skirt, hi * 2**skirt])
        lf = np.log2(f[a:b])
        lower = np.clip((lf - (np.log2(lo) - skirt)) / skirt, 0.0, 1.0)
        upper = np.clip(((np.log2(hi) + skirt) - lf) / skirt, 0.0, 1.0)
        out = np.zeros_like(f)
        out[a:b] = np.sin(0.5 * np.pi * np.minimum(lower, upper)) ** 2
        return out

    return gain


def _smooth(x: np.ndarray, sr: int, seconds: float = 0.002) -> np.ndarray:
    """Smooth a gate with a short Hann window so its edges do not click."""
    k = max(int(round(seconds * sr)), 3)
    w = np.hanning(k)
    return np.convolve(x, w / w.sum(), mode="same")


def _fade(n: int, sr: int) -> np.ndarray:
    ramp = min(max(int(round(FADE_SECONDS * sr)), 2), n // 4)
    env = np.ones(n)
    r = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    env[:ramp] = r
    env[n - ramp :] = r[::-1]
    return env


@lru_cache(maxsize=8)
def _pink_gain(n: int, sr: int) -> np.ndarray:
    f = _freqs(n, sr)
    return np.where(f < 20.0, 0.0, 1.0 / np.sqrt(np.maximum(f, 50.0)))


def _pink_noise(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Unit-RMS pink (1/f power) noise above 50 Hz, flat below it, nothing under 20 Hz."""

    x = _shaped_noise(rng, n, sr, _pink_gain(n, sr))
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


# -- event generators: (rng, n_samples, sample_rate) -> unnormalised event -----------------------
# Convention: draw every scalar parameter before any noise array.
def _tone(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Steady pure tone, 400-1000 Hz."""
    f = _clip(_loguniform(rng, 400, 1000), sr)
    return np.sin(_TWO_PI * f * _time(n, sr) + rng.uniform(0, _TWO_PI))


def _chirp_up(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Exponential up-sweep from 150-400 Hz over 2.6-3.3 octaves."""
    f1 = _loguniform(rng, 150, 400)
    f2 = f1 * rng.uniform(6, 10)
    freq = _clip(f1 * (f2 / f1) ** (np.arange(n) / n), sr)
    return _osc(freq, sr, rng.uniform(0, _TWO_PI))


def _chirp_down(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Exponential down-sweep from 2-4 kHz over 2.6-3.3 octaves."""
    f1 = float(_clip(_loguniform(rng, 2000, 4000), sr))
    f2 = f1 / rng.uniform(6, 10)
    freq = f1 * (f2 / f1) ** (np.arange(n) / n)
    return _osc(freq, sr, rng.uniform(0, _TWO_PI))


def _harmonic(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Harmonic stack: 6-10 partials of a 110-260 Hz fundamental, amplitudes ~1/k."""
    f0 = _loguniform(rng, 110, 260)
    k = np.arange(1, int(rng.integers(6, 11)) + 1)
    amps = rng.uniform(0.7, 1.0, k.size) / k
    phases = rng.uniform(0, _TWO_PI, k.size)
    return _harmonic_wave(f0, amps, phases, n, sr)


def _am_tone(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Amplitude-modulated tone: 1-1.8 kHz carrier, 4-12 Hz tremolo, depth 0.8-1."""
    fc = _clip(_loguniform(rng, 1000, 1800), sr)
    rate, depth = rng.uniform(4, 12), rng.uniform(0.8, 1.0)
    p_mod, p_car = rng.uniform(0, _TWO_PI, 2)
    t = _time(n, sr)
    env = 1.0 - depth * (0.5 + 0.5 * np.cos(_TWO_PI * rate * t + p_mod))
    return env * np.sin(_TWO_PI * fc * t + p_car)


def _fm_tone(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Vibrato: 2-3 kHz carrier, 4-8 Hz frequency modulation of 4-8 %."""
    fc = _loguniform(rng, 2000, 3000)
    rate, depth = rng.uniform(4, 8), rng.uniform(0.04, 0.08)
    p_mod, p_car = rng.uniform(0, _TWO_PI, 2)
    fc = float(_clip(fc * (1 + depth), sr)) / (1 + depth)
    freq = fc * (1 + depth * np.sin(_TWO_PI * rate * _time(n, sr) + p_mod))
    return _osc(freq, sr, p_car)


def _noise_band(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Third-octave noise band centred at 3-6 kHz."""
    fc = _loguniform(rng, 3000, 6000)
    fc = min(fc, _fmax(sr) / 2 ** (1 / 3))  # keep band and skirt under the limit
    return _shaped_noise(rng, n, sr, _band_gain(fc * 2 ** (-1 / 6), fc * 2 ** (1 / 6), sr))


def _rumble(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Low rumble: noise low-passed at 80-200 Hz (nothing under 25 Hz)."""
    cutoff = _loguniform(rng, 80, 200)
    return _shaped_noise(rng, n, sr, _band_gain(25.0 * 2 ** (1 / 6), cutoff, sr))


def _click_train(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Periodic clicks at about 6-20 Hz, each a 1-2 ms damped resonance at 1.5-3 kHz.

    The first click follows the fade-in and the last one dies out just before the fade-out.
    """
    rate = rng.uniform(6, 20)
    fc = min(_loguniform(rng, 1500, 3000), 0.7 * _fmax(sr))
    tau = rng.uniform(0.001, 0.002)
    tk = _time(max(int(round(6 * tau * sr)), 4), sr)
    span = max(n / sr - 2 * FADE_SECONDS - tk.size / sr, 0.0)  # first click to last click
    clicks = max(int(round(span * rate)), 1)
    at = np.round((FADE_SECONDS + np.linspace(0.0, span, clicks + 1)) * sr).astype(np.int64)
    pulses = np.zeros(n)
    pulses[at[at < n]] = 1.0
    kernel = (1.0 - np.exp(-tk / 2e-4)) * np.exp(-tk / tau) * np.sin(_TWO_PI * fc * tk)
    return np.convolve(pulses, kernel)[:n]


def _bell(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Bell-like: inharmonic partials of a 300-700 Hz base, decaying exponentially (faster when higher)."""
    f0 = _loguniform(rng, 300, 700)
    ratios = np.array([1.0, 2.76, 5.40, 8.93])
    tau0 = rng.uniform(0.3, 0.6) * n / sr
    amps = rng.uniform(0.5, 1.0, ratios.size) / np.sqrt(ratios)
    phases = rng.uniform(0, _TWO_PI, ratios.size)
    t = _time(n, sr)
    keep = f0 * ratios < _fmax(sr)
    keep[0] = True
    f = np.asarray(_clip(f0 * ratios[keep], sr))
    decay = np.exp(-t[None, :] / (tau0 / ratios[keep, None] ** 0.7))
    return (amps[keep, None] * decay * np.sin(_TWO_PI * f[:, None] * t[None, :] + phases[keep, None])).sum(0)


def _siren(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Two-tone siren: alternates between 600-1000 Hz and 1.25-1.5x that, 2-4 times a second."""
    lo = _loguniform(rng, 600, 1000)
    hi = lo * rng.uniform(1.25, 1.5)
    rate = rng.uniform(2, 4)
    p_alt, p_car = rng.uniform(0, 1), rng.uniform(0, _TWO_PI)
    high = ((_time(n, sr) * rate + p_alt) % 1.0) < 0.5
    return _osc(np.asarray(_clip(np.where(high, hi, lo), sr)), sr, p_car)


def _gated_noise(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Broadband noise (300 Hz-6 kHz) switched on and off at about 3-8 Hz, duty 30-60 %.

    The rate is adjusted so that the event starts and ends with the gate open.
    """
    rate, duty = rng.uniform(3, 8), rng.uniform(0.3, 0.6)
    seconds = n / sr
    rate = (max(int(round(seconds * rate - duty)), 1) + duty) / seconds
    gate = (((_time(n, sr) * rate) % 1.0) < duty).astype(float)
    noise = _shaped_noise(rng, n, sr, _band_gain(300, 6000, sr))
    return _smooth(gate, sr) * noise


def _buzz(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Buzz: band-limited square wave (odd harmonics up to 4 kHz) at 55-100 Hz."""
    f0 = _loguniform(rng, 55, 100)
    phase = rng.uniform(0, _TWO_PI)
    k = np.arange(1, int(min(4000.0, _fmax(sr)) // f0) + 1)
    amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
    return _harmonic_wave(f0, amps, phase * k, n, sr)


def _drips(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Water drops: about 3-6 short (20-40 ms) rising blips a second, 500-1000 Hz up 2-3x.

    The rate is adjusted so that the first drop starts the event and the last one ends it.
    """
    rate, length = rng.uniform(3, 6), rng.uniform(0.02, 0.04)
    f1 = _loguniform(rng, 500, 1000)
    ratio = rng.uniform(2, 3)
    seconds = n / sr
    length = min(length, 0.5 * seconds)
    rate = max(int(round((seconds - length) * rate)), 1) / max(seconds - length, 1e-9)
    pos = ((_time(n, sr) * rate) % 1.0) / rate / length  # position within a drop, 0..1 while on
    on = pos < 1.0
    freq = np.asarray(_clip(f1 * ratio ** np.minimum(pos, 1.0), sr))
    env = np.where(on, np.sin(np.pi * np.minimum(pos, 1.0)) ** 2 * np.exp(-3.0 * pos), 0.0)
    return env * _osc(freq, sr, 0.0)


#: Class name -> generator, in class-index order; ``classes=k`` uses the first k.
GENERATORS: dict[str, EventGenerator] = {
    "tone": _tone,
    "chirp_up": _chirp_up,
    "chirp_down": _chirp_down,
    "harmonic": _harmonic,
    "am_tone": _am_tone,
    "fm_tone": _fm_tone,
    "noise_band": _noise_band,
    "rumble": _rumble,
    "click_train": _click_train,
    "bell": _bell,
    "siren": _siren,
    "gated_noise": _gated_noise,
    "buzz": _buzz,
    "drips": _drips,
}
CLASS_NAMES: tuple[str, ...] = tuple(GENERATORS)


# -- items and splits --------------------------------------------------------------------------
@dataclass(frozen=True)
class SynthItem:
    """One generated clip (float64, before conversion to tensors)."""

    waveform: np.ndarray  # [L]
    target: np.ndarray  # [L], zero outside [onset, offset)
    label: int
    onset: int  # first sample of the event
    offset: int  # one past its last sample


def generate_item(
    index: int, label: int, seed: int, seconds: float, sample_rate: int, background_db: float
) -> SynthItem:
    """Generate item ``index`` of class ``label`` deterministically from ``(seed, index)``."""
    n_clip = int(round(seconds * sample_rate))
    rng = np.random.default_rng([seed, index])
    duration, where = rng.uniform(*DURATION_RANGE), rng.uniform()
    n_event = min(max(int(round(duration * n_clip)), 16), n_clip)
    onset = int(round(where * (n_clip - n_event)))

    event = GENERATORS[CLASS_NAMES[label]](rng, n_event, sample_rate) * _fade(n_event, sample_rate)
    event /= max(float(np.sqrt(np.mean(event**2))), 1e-12)  # unit RMS over the event
    target = np.zeros(n_clip)
    target[onset : onset + n_event] = event

    background = _pink_noise(rng, n_clip, sample_rate) * 10.0 ** (background_db / 20.0)
    waveform = target + background
    scale = PEAK / max(float(np.abs(waveform).max()), 1e-12)
    return SynthItem(waveform * scale, target * scale, label, onset, onset + n_event)


def split_counts(clips_per_class: int, splits: tuple[float, float, float]) -> tuple[int, int, int]:
    """Clips per class in train, valid and test (test takes the rounding remainder)."""
    n_train = int(round(clips_per_class * splits[0]))
    n_valid = int(round(clips_per_class * splits[1]))
    return n_train, n_valid, clips_per_class - n_train - n_valid


def split_indices(params: SynthDataset.Params, split: str) -> np.ndarray:
    """Global item indices of ``split``: the same contiguous share of every class's items."""
    counts = split_counts(params.clips_per_class, params.splits)
    pos = SPLITS.index(split)
    lo, hi = sum(counts[:pos]), sum(counts[: pos + 1])
    base = np.arange(params.classes)[:, None] * params.clips_per_class
    return (base + np.arange(lo, hi)[None, :]).reshape(-1)


@dataclass(frozen=True)
class _Generated:
    waveforms: np.ndarray  # [N, L] float32, every item of every class
    targets: np.ndarray  # [N, L] float32
    bounds: np.ndarray  # [N, 2] int64 (onset, offset)


_CACHE: OrderedDict[tuple[str, int], _Generated] = OrderedDict()
_CACHE_SIZE = 2


def synth_item(index: int, params: SynthDataset.Params, sample_rate: int) -> SynthItem:
    """Item ``index`` of the dataset ``params`` describes (class ``index // clips_per_class``)."""
    return generate_item(index, index // params.clips_per_class, params.seed, params.seconds, sample_rate,
                         params.background_db)


def _generate_all(
    params: SynthDataset.Params, sample_rate: int,
    item: Callable[[int, SynthDataset.Params, int], SynthItem] = synth_item,
) -> _Generated:
    """Every item of every class (cached in-process by parameters and rate); ``item`` makes one."""
    key = (type(params).__qualname__ + params.model_dump_json(), sample_rate)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    n = params.classes * params.clips_per_class
    n_clip = int(round(params.seconds * sample_rate))
    waveforms = np.empty((n, n_clip), dtype=np.float32)
    targets = np.empty((n, n_clip), dtype=np.float32)
    bounds = np.empty((n, 2), dtype=np.int64)
    for i in range(n):
        one = item(i, params, sample_rate)
        waveforms[i], targets[i], bounds[i] = one.waveform, one.target, (one.onset, one.offset)
    out = _Generated(waveforms, targets, bounds)
    _CACHE[key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


# -- the dataset -------------------------------------------------------------------------------
class SynthClasses(Dataset):
    """What the embedded synthetic datasets share: the first ``params.classes`` of :data:`CLASS_NAMES`,
    and a fingerprint that moves with the generator (:attr:`generator_version`)."""

    generator_version: ClassVar[int] = GENERATOR_VERSION

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "generator_version": self.generator_version}

    def class_count(self) -> int:
        return self.params.classes  # type: ignore[attr-defined]

    def known_class_names(self) -> list[str]:
        return list(CLASS_NAMES[: self.params.classes])  # type: ignore[attr-defined]


@DATASETS.register("synth")
class SynthDataset(SynthClasses):
    """Synthetic sound events (tones, chirps, clicks, noise bursts...) with exact ground truth, no download.

    Each clip is one event at a random onset (25-60 % of the clip long) over a steady pink-noise
    floor ``background_db`` below the event's RMS, peak-normalised to 0.9. ``targets`` is the
    event alone. Splits are stratified per class, disjoint and deterministic.
    """

    display_name = "Synth"

    class Params(_BaseParams):
        classes: int = Field(10, ge=2, le=len(GENERATORS), description="number of event classes")
        clips_per_class: int = Field(50, ge=5, description="clips generated per class")
        seconds: float = Field(2.0, ge=0.5, le=10.0, description="clip length in seconds")
        seed: int = Field(0, ge=0, description="generation seed")
        splits: tuple[float, float, float] = Field(
            (0.6, 0.2, 0.2), description="train / valid / test fractions (positive, sum 1)"
        )
        background_db: float = Field(
            -30.0, lt=0, description="noise-floor RMS relative to the event RMS, in dB"
        )

        @field_validator("splits")
        @classmethod
        def _check_splits(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
            if any(not f > 0 for f in v):
                raise ValueError(f"split fractions must be positive, got {v}")
            if abs(sum(v) - 1.0) > 1e-6:
                raise ValueError(f"split fractions must sum to 1, got {sum(v):g}")
            return v

        @model_validator(mode="after")
        def _check_counts(self) -> SynthDataset.Params:
            counts = split_counts(self.clips_per_class, self.splits)
            if min(counts) < 1:
                raise ValueError(
                    f"splits {self.splits} with clips_per_class={self.clips_per_class} leave a split "
                    f"empty (per-class counts {counts})"
                )
            return self

    params: Params

    def _check(self, split: str, sample_rate: int) -> None:
        if split not in SPLITS:
            raise AudiobenchError(f"synth: unknown split '{split}' (expected one of {', '.join(SPLITS)})")
        if int(sample_rate) != sample_rate or sample_rate < MIN_SAMPLE_RATE:
            raise AudiobenchError(
                f"synth: sample_rate must be an integer >= {MIN_SAMPLE_RATE}, got {sample_rate}"
            )

    def load(self, split: str, sample_rate: int) -> ClipSet:
        """Generate (or fetch from the in-process cache) ``split`` at ``sample_rate`` Hz."""
        self._check(split, sample_rate)
        sample_rate = int(sample_rate)
        data = self._generated(sample_rate)
        idx = split_indices(self.params, split)
        return ClipSet(
            waveforms=torch.from_numpy(data.waveforms[idx]),
            labels=torch.from_numpy(idx // self.params.clips_per_class).to(torch.int64),
            sample_ids=[f"synth-{i:05d}" for i in idx.tolist()],
            class_names=list(CLASS_NAMES[: self.params.classes]),
            sample_rate=sample_rate,
            targets=torch.from_numpy(data.targets[idx]),
        )

    def event_bounds(self, split: str, sample_rate: int) -> torch.Tensor:
        """``[N, 2]`` int64 (onset, offset) sample positions of each clip's event, in ``load`` order."""
        self._check(split, sample_rate)
        data = self._generated(int(sample_rate))
        return torch.from_numpy(data.bounds[split_indices(self.params, split)])

    def _generated(self, sample_rate: int) -> _Generated:
        return _generate_all(self.params, sample_rate)
