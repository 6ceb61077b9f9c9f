"""Synth multi-label: the embedded events of :mod:`audiobench.data.synth`, several per clip, each known.

Every clip holds between ``events[0]`` and ``events[1]`` events of distinct classes, each at its own
onset, length (25-60 % of the clip, as in ``synth``) and level (uniform in ``level_db`` dB around unit
RMS), over the same quiet pink-noise floor; the clip is peak-normalised to 0.9. The labels are
multi-hot [N, C] (float32); ``events`` [N, K, L] holds each event alone (scaled like the clip) and
``event_labels`` [N, K] its class, so the ideal mask of explaining class c is known per (clip, label):
the clip's event of class c against everything else, the other events included. This is the data of
the L-MAC paper's second setup ("ii) Multi-label classification", sec. 3) and of the L2I journal's
multi-label track, made exact and embedded (no download).

Item ``i`` is drawn from ``np.random.default_rng([seed, STREAM, i])`` (a stream of its own, so no item
equals a ``synth`` item); splits are contiguous ranges of items (train first), independent of the
sample rate and of the load order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from pydantic import Field, model_validator

from audiobench.contracts.component import Params as _BaseParams
from audiobench.contracts.registry import DATASETS
from audiobench.data.base import SPLITS, ClipSet
from audiobench.data.synth import DURATION_RANGE, MIN_SAMPLE_RATE, PEAK, SynthClasses
from audiobench.data.synth_events import CLASS_NAMES, GENERATORS, _fade, _pink_noise
from audiobench.kernel.errors import AudiobenchError

GENERATOR_VERSION = 1  # bump when generation changes (cached classifiers and fits are keyed on it)
STREAM = 0x6D6C  # "ml": the random stream of this dataset's items


@dataclass(frozen=True)
class _Items:
    waveforms: np.ndarray  # [N, L] float32
    events: np.ndarray  # [N, K, L] float32
    event_labels: np.ndarray  # [N, K] int64, -1: empty slot
    labels: np.ndarray  # [N, C] float32 multi-hot


def generate_clip(index: int, params: SynthMultilabelDataset.Params, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item ``index``: (waveform [L], events [K, L], event labels [K]) in float64 / int64, K = ``events[1]``."""
    n_clip = int(round(params.seconds * sample_rate))
    rng = np.random.default_rng([params.seed, STREAM, index])
    lo, hi = params.events
    k = int(rng.integers(lo, hi + 1))
    classes = rng.choice(params.classes, size=k, replace=False)
    events = np.zeros((hi, n_clip))
    labels = np.full(hi, -1, dtype=np.int64)
    for slot, c in enumerate(classes.tolist()):
        duration, where, level = rng.uniform(*DURATION_RANGE), rng.uniform(), rng.uniform(*params.level_db)
        n_event = min(max(int(round(duration * n_clip)), 16), n_clip)
        onset = int(round(where * (n_clip - n_event)))
        event = GENERATORS[CLASS_NAMES[c]](rng, n_event, sample_rate) * _fade(n_event, sample_rate)
        event *= 10.0 ** (level / 20.0) / max(float(np.sqrt(np.mean(event**2))), 1e-12)
        events[slot, onset : onset + n_event] = event
        labels[slot] = c
    background = _pink_noise(rng, n_clip, sample_rate) * 10.0 ** (params.background_db / 20.0)
    waveform = events.sum(axis=0) + background
    scale = PEAK / max(float(np.abs(waveform).max()), 1e-12)
    return waveform * scale, events * scale, labels


@lru_cache(maxsize=2)
def _generate(params_json: str, sample_rate: int) -> _Items:
    params = SynthMultilabelDataset.Params.model_validate_json(params_json)
    n, k = params.clips, params.events[1]
    n_clip = int(round(params.seconds * sample_rate))
    waveforms = np.empty((n, n_clip), np.float32)
    events = np.empty((n, k, n_clip), np.float32)
    event_labels = np.empty((n, k), np.int64)
    for i in range(n):
        waveforms[i], events[i], event_labels[i] = generate_clip(i, params, sample_rate)
    labels = np.zeros((n, params.classes), np.float32)
    rows, slots = np.nonzero(event_labels >= 0)
    labels[rows, event_labels[rows, slots]] = 1.0
    return _Items(waveforms, events, event_labels, labels)


def split_range(params: SynthMultilabelDataset.Params, split: str) -> range:
    """The item indices of ``split``: train, valid and test are consecutive ranges (test takes the remainder)."""
    n_train = int(round(params.clips * params.splits[0]))
    n_valid = int(round(params.clips * params.splits[1]))
    bounds = (0, n_train, n_train + n_valid, params.clips)
    pos = SPLITS.index(split)
    return range(bounds[pos], bounds[pos + 1])


@DATASETS.register("synth_multilabel")
class SynthMultilabelDataset(SynthClasses):
    """Several synthetic events per clip (multi-label, each event's ground truth known), no download."""

    display_name = "Synth multi-label"
    generator_version = GENERATOR_VERSION

    class Params(_BaseParams):
        classes: int = Field(10, ge=2, le=len(GENERATORS), description="number of event classes")
        clips: int = Field(500, ge=10, description="clips generated in all (split by `splits`)")
        events: tuple[int, int] = Field((1, 3), description="fewest and most events per clip, of distinct classes")
        level_db: tuple[float, float] = Field(
            (-6.0, 0.0), description="range of each event's level in dB re unit RMS (uniform)")
        seconds: float = Field(2.0, ge=0.5, le=10.0, description="clip length in seconds")
        seed: int = Field(0, ge=0, description="generation seed")
        splits: tuple[float, float, float] = Field((0.6, 0.2, 0.2), description="train / valid / test fractions")
        background_db: float = Field(-30.0, lt=0, description="noise-floor RMS relative to unit event RMS, in dB")

        @model_validator(mode="after")
        def _check(self) -> SynthMultilabelDataset.Params:
            lo, hi = self.events
            if not 1 <= lo <= hi <= self.classes:
                raise ValueError(f"events must satisfy 1 <= fewest <= most <= classes ({self.classes}), got {self.events}")
            if self.level_db[0] > self.level_db[1]:
                raise ValueError(f"level_db must be (low, high), got {self.level_db}")
            if any(not f > 0 for f in self.splits) or abs(sum(self.splits) - 1.0) > 1e-6:
                raise ValueError(f"split fractions must be positive and sum to 1, got {self.splits}")
            if any(len(split_range(self, s)) < 1 for s in SPLITS):
                raise ValueError(f"splits {self.splits} of {self.clips} clips leave a split empty")
            return self

    params: Params

    def load(self, split: str, sample_rate: int) -> ClipSet:
        """``split`` at ``sample_rate`` Hz: multi-hot labels [N, C], events [N, K, L] and their sum as ``targets``.

        Raises :class:`AudiobenchError` for an unknown split or a sample rate below 2 kHz."""
        if split not in SPLITS:
            raise AudiobenchError(f"synth_multilabel: unknown split '{split}' (expected one of {', '.join(SPLITS)})")
        if int(sample_rate) != sample_rate or sample_rate < MIN_SAMPLE_RATE:
            raise AudiobenchError(f"synth_multilabel: sample_rate must be an integer >= {MIN_SAMPLE_RATE}, got {sample_rate}")
        items = _generate(self.params.model_dump_json(), int(sample_rate))
        idx = np.arange(split_range(self.params, split).start, split_range(self.params, split).stop)
        events = torch.from_numpy(items.events[idx])
        return ClipSet(
            waveforms=torch.from_numpy(items.waveforms[idx]),
            labels=torch.from_numpy(items.labels[idx]),
            sample_ids=[f"synthml-{i:05d}" for i in idx.tolist()],
            class_names=list(CLASS_NAMES[: self.params.classes]),
            sample_rate=int(sample_rate),
            targets=events.sum(dim=1),
            events=events,
            event_labels=torch.from_numpy(items.event_labels[idx]),
        )
