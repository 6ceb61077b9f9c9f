"""The procedural sound events of the embedded synthetic datasets (:mod:`audiobench.data.synth`,
:mod:`audiobench.data.synth_multilabel`, :mod:`audiobench.data.planted`).

Each generator maps ``(rng, n_samples, sample_rate)`` to one unnormalised event (a tone, a chirp, a click
train, ...) below 0.9 x Nyquist; :data:`GENERATORS` lists them in class-index order. Convention: every
scalar parameter is drawn before any noise array, so an event has the same timing and frequencies at
every sample rate. A change to what a generator draws or returns changes the datasets: bump their
``GENERATOR_VERSION`` (:mod:`audiobench.data.synth`, and the datasets built on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

FADE_SECONDS = 0.005  # raised-cosine ramps at both ends of an event

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
