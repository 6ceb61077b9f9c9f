"""Synth: an embedded synthetic sound-event dataset with exact ground truth (no download).

Every clip holds one procedurally generated sound event (a tone, a chirp, a click train, ...) at a
random onset over a steady, quiet pink-noise floor. ``targets`` is the clean event alone, so the
ideal time-frequency mask of what the classifier should attend to is known exactly.

Item ``i`` (class ``i // clips_per_class``) is drawn from ``np.random.default_rng([seed, i])``:
it does not depend on the split, on the load order or on how many classes are requested.
Scalar parameters (onset, duration, frequencies, rates) are drawn before any noise, so one item
has the same timing and frequencies at every sample rate. The events themselves are generated in
:mod:`audiobench.data.synth_events`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from audiobench.contracts.component import Params as _BaseParams
from audiobench.contracts.registry import DATASETS
from audiobench.data.base import SPLITS, ClipSet, Dataset
from audiobench.data.synth_events import CLASS_NAMES, GENERATORS, _fade, _pink_noise
from audiobench.kernel.errors import AudiobenchError

#: Bump when generation changes, so cached results keyed on ``fingerprint()`` are invalidated.
GENERATOR_VERSION = 1

PEAK = 0.9  # peak of every normalised waveform
DURATION_RANGE = (0.25, 0.6)  # event length as a fraction of the clip
MIN_SAMPLE_RATE = 2000


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
