"""Planted: the synthetic dataset with a planted cue, so the true explanation of one class is known.

The clips of ``cue_class`` carry the *event of another class* (``twin_class``'s generator, drawn from
the item's own seed, so the two classes' events have the same distribution) plus a short tone burst
(the cue: ``cue_hz``, ``cue_seconds`` long, at a random time, ``cue_db`` relative to the event's RMS).
A classifier trained on it can tell the two classes apart by the cue alone. For those clips
``ClipSet.targets`` is the cue, so the ground-truth metrics (``gt_mass``, ``gt_auc``) score a map by
how much of it lies on the cue's bins, and the event is part of the contaminant. Every other class is
the synthetic dataset's (target: its event).

``cue: false`` gives the same clips without the cue (the cue class's clips are then twin events,
their target the event), so a model trained with the cue can be shown to rely on it (its accuracy on
the cue class falls to chance or below without it). ``cue: test`` plants it in the test split only:
a model trained on the other splits never saw it, so its maps of the (cued) test clips are those of a
classifier that cannot use the cue (the control of ``suites/planted_control.yaml``): a method that
still points at the cue explains the input, not the model.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from audiobench.contracts.registry import DATASETS
from audiobench.data.base import ClipSet
from audiobench.data.synth import (
    PEAK,
    SynthDataset,
    SynthItem,
    _generate_all,
    _Generated,
    generate_item,
    split_counts,
)
from audiobench.kernel.errors import AudiobenchError

GENERATOR_VERSION = 1


def planted_item(index: int, params: PlantedDataset.Params, sample_rate: int) -> SynthItem:
    """Item ``index``: a synthetic item, or for the cue class a twin-class event plus the cue (module docstring)."""
    label = index // params.clips_per_class
    if label != params.cue_class:
        return generate_item(index, label, params.seed, params.seconds, sample_rate, params.background_db)
    base = generate_item(index, params.twin_class, params.seed, params.seconds, sample_rate, params.background_db)
    n_train, n_valid, _ = split_counts(params.clips_per_class, params.splits)
    in_test = index % params.clips_per_class >= n_train + n_valid
    if not params.cue or (params.cue == "test" and not in_test):
        return SynthItem(base.waveform, base.target, label, base.onset, base.offset)
    rng = np.random.default_rng([params.seed, index, 1])  # the cue's own draws: the event is the same with or without it
    n_clip = len(base.waveform)
    n_cue = min(max(int(round(params.cue_seconds * sample_rate)), 8), n_clip)
    onset = int(rng.integers(0, n_clip - n_cue + 1))
    t = np.arange(n_cue) / sample_rate
    cue = np.sin(2 * np.pi * params.cue_hz * t + rng.uniform(0, 2 * np.pi)) * np.hanning(n_cue)
    event_rms = float(np.sqrt(np.mean(base.target[base.onset : base.offset] ** 2)))
    cue *= event_rms * 10 ** (params.cue_db / 20) / max(float(np.sqrt(np.mean(cue**2))), 1e-12)
    target = np.zeros(n_clip)
    target[onset : onset + n_cue] = cue
    waveform = base.waveform + target
    scale = PEAK / max(float(np.abs(waveform).max()), 1e-12)
    return SynthItem(waveform * scale, target * scale, label, onset, onset + n_cue)


@DATASETS.register("planted")
class PlantedDataset(SynthDataset):
    """The synthetic dataset with a planted cue deciding one class (see the module docstring)."""

    display_name = "Planted"

    class Params(SynthDataset.Params):
        cue_class: int = Field(0, ge=0, description="the class whose clips carry the cue (and a twin-class event)")
        twin_class: int = Field(1, ge=0, description="the class whose kind of event the cue class's clips carry")
        cue: bool | Literal["test"] = Field(True, description="add the cue (false: the same clips without it; "
                                            "test: only to the test split's clips, so a model trained on the others "
                                            "never saw it: the control)")
        cue_hz: float = Field(3000.0, gt=0, description="frequency of the cue's tone burst, Hz")
        cue_seconds: float = Field(0.1, gt=0, description="length of the burst, seconds")
        cue_db: float = Field(-6.0, description="the burst's RMS relative to the event's RMS, dB")
        test_classes: list[int] | None = Field(
            None, description="evaluate only these classes' test clips (e.g. [0]: the cue class); train and valid keep every class")

        @field_validator("cue", mode="before")
        @classmethod
        def _cue(cls, value: object) -> object:
            if isinstance(value, bool) or value == "test":
                return value
            raise ValueError(f"cue is true, false or test, not {value!r}")

        @model_validator(mode="after")
        def _check_classes(self) -> PlantedDataset.Params:
            for name in ("cue_class", "twin_class"):
                if getattr(self, name) >= self.classes:
                    raise ValueError(f"{name} {getattr(self, name)} is not a class of {self.classes}")
            if self.cue_class == self.twin_class:
                raise ValueError("cue_class and twin_class must differ")
            if self.test_classes is not None and (not self.test_classes or any(not 0 <= c < self.classes for c in self.test_classes)):
                raise ValueError(f"test_classes must list classes in 0..{self.classes - 1}, got {self.test_classes}")
            return self

    params: Params

    def _generated(self, sample_rate: int) -> _Generated:
        if self.params.cue_hz >= sample_rate / 2:
            raise AudiobenchError(f"planted: cue_hz {self.params.cue_hz:g} is not below the Nyquist frequency "
                                  f"{sample_rate / 2:g} Hz")
        return _generate_all(self.params, sample_rate, planted_item)

    def load(self, split: str, sample_rate: int) -> ClipSet:
        """``split`` as the synthetic dataset loads it, the cue class named ``cue`` (test: ``test_classes`` only)."""
        clips = super().load(split, sample_rate)
        clips.class_names = self.known_class_names()
        if split == "test" and self.params.test_classes is not None:
            keep = torch.isin(clips.labels, torch.tensor(self.params.test_classes)).nonzero().flatten()
            clips = clips.subset(keep)
        return clips

    def event_bounds(self, split: str, sample_rate: int) -> torch.Tensor:
        """(onset, offset) of each clip's target (the cue for the cue class), in ``load`` order."""
        bounds = super().event_bounds(split, sample_rate)
        if split == "test" and self.params.test_classes is not None:
            labels = super().load(split, sample_rate).labels
            bounds = bounds[torch.isin(labels, torch.tensor(self.params.test_classes))]
        return bounds

    def known_class_names(self) -> list[str]:
        names = super().known_class_names()
        names[self.params.cue_class] = "cue"
        return names

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "planted_version": GENERATOR_VERSION}
