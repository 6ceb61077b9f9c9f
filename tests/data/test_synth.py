"""Tests of the embedded synthetic dataset: determinism, splits, ground truth, learnability, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from audiobench.contracts.registry import DATASETS
from audiobench.data import synth
from audiobench.data.base import SPLITS, ClipSet
from audiobench.data.synth import SynthDataset, generate_item, split_counts
from audiobench.data.synth_events import CLASS_NAMES, GENERATORS
from audiobench.kernel.errors import AudiobenchError

SR = 16000
SMALL = {"classes": 4, "clips_per_class": 10, "seconds": 1.0}


@pytest.fixture(scope="module")
def default_splits() -> dict[str, ClipSet]:
    ds = SynthDataset()
    return {split: ds.load(split, SR) for split in SPLITS}


def _rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


def test_registered_and_described() -> None:
    assert DATASETS.get("synth") is SynthDataset
    assert SynthDataset.name == "synth" and SynthDataset.label() == "Synth"
    desc = SynthDataset.description()
    assert desc and "\n" not in desc
    assert len(GENERATORS) >= 12 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    fp = SynthDataset({"seed": 3}).fingerprint()
    assert fp["name"] == "synth" and fp["seed"] == 3 and fp["classes"] == 10


def test_deterministic_and_seed_dependent() -> None:
    synth._CACHE.clear()
    a = SynthDataset(SMALL).load("valid", SR)
    synth._CACHE.clear()  # force a second generation rather than a cache hit
    b = SynthDataset(SMALL).load("valid", SR)
    assert torch.equal(a.waveforms, b.waveforms) and torch.equal(a.targets, b.targets)
    assert torch.equal(a.labels, b.labels) and a.sample_ids == b.sample_ids

    c = SynthDataset({**SMALL, "seed": 1}).load("valid", SR)
    assert c.sample_ids == a.sample_ids
    diff = (c.waveforms - a.waveforms).abs().amax(dim=1)
    assert bool((diff > 0.1).all()), "every clip should change with the seed"

    # callers get copies: editing a loaded set does not corrupt the cache
    a.waveforms.zero_()
    assert torch.equal(SynthDataset(SMALL).load("valid", SR).waveforms, b.waveforms)


def test_items_independent_of_split_order_and_class_count() -> None:
    p = SynthDataset.Params(**SMALL)
    test = SynthDataset(p).load("test", SR)
    pos = 3
    index = int(test.sample_ids[pos].split("-")[1])
    item = generate_item(index, int(test.labels[pos]), p.seed, p.seconds, SR, p.background_db)
    np.testing.assert_allclose(test.waveforms[pos].numpy(), item.waveform, atol=1e-6)
    np.testing.assert_allclose(test.targets[pos].numpy(), item.target, atol=1e-6)

    # adding classes appends items; the existing ones are unchanged
    more = SynthDataset({**SMALL, "classes": 6}).load("test", SR)
    n = len(test)
    assert more.sample_ids[:n] == test.sample_ids
    assert torch.equal(more.waveforms[:n], test.waveforms)


def test_splits_disjoint_stratified_and_complete(default_splits: dict[str, ClipSet]) -> None:
    p = SynthDataset.Params()
    assert len(default_splits["test"]) == 100  # 10 classes x 50 x 0.2
    ids = [set(default_splits[s].sample_ids) for s in SPLITS]
    assert [len(i) for i in ids] == [len(default_splits[s]) for s in SPLITS]  # unique within a split
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == {f"synth-{i:05d}" for i in range(p.classes * p.clips_per_class)}
    for split, frac in zip(SPLITS, p.splits, strict=True):
        counts = torch.bincount(default_splits[split].labels, minlength=p.classes)
        assert counts.tolist() == [round(frac * p.clips_per_class)] * p.classes
    for cs in default_splits.values():
        assert cs.class_names == list(CLASS_NAMES[:10]) and cs.sample_rate == SR
        assert cs.waveforms.dtype == torch.float32 and cs.labels.dtype == torch.int64
        assert cs.waveforms.shape == (len(cs), 2 * SR) and cs.targets is not None

    odd = SynthDataset({"classes": 3, "clips_per_class": 7, "splits": (0.5, 0.25, 0.25), "seconds": 0.5})
    counts = split_counts(7, (0.5, 0.25, 0.25))
    assert sum(counts) == 7 and min(counts) >= 1
    for split, n in zip(SPLITS, counts, strict=True):
        assert torch.bincount(odd.load(split, 8000).labels).tolist() == [n] * 3


@pytest.mark.parametrize("background_db", [-30.0, -20.0])
def test_ground_truth(background_db: float) -> None:
    ds = SynthDataset({"classes": len(CLASS_NAMES), "clips_per_class": 5, "background_db": background_db})
    cs = ds.load("train", SR)
    bounds = ds.event_bounds("train", SR)
    assert cs.targets is not None and bounds.shape == (len(cs), 2)
    background = cs.contaminants
    assert torch.allclose(cs.waveforms.abs().amax(dim=1), torch.full((len(cs),), 0.9), atol=1e-5)
    length = cs.waveforms.shape[1]
    for i in range(len(cs)):
        on, off = bounds[i].tolist()
        assert 0 <= on < off <= length
        assert 0.24 <= (off - on) / length <= 0.61
        target = cs.targets[i]
        assert not target[:on].any() and not target[off:].any(), "target must be zero outside the event"
        # the event fills its region: sound in its first and last tenth, no long silence inside
        tenth = (off - on) // 10
        peak = float(target.abs().amax())
        assert target[on : on + tenth].abs().amax() > 0.05 * peak
        assert target[off - tenth : off].abs().amax() > 0.01 * peak  # bells decay
        level = 20 * math.log10(_rms(background[i, on:off]) / _rms(target[on:off]))
        assert level == pytest.approx(background_db, abs=1.5), cs.class_names[int(cs.labels[i])]
        # the floor is steady: as loud before/after the event as during it
        whole = 20 * math.log10(_rms(background[i]) / _rms(target[on:off]))
        assert whole == pytest.approx(background_db, abs=1.5)


def _features(cs: ClipSet) -> torch.Tensor:
    """Mean and spread over the event frames of the log power spectrum."""
    window = torch.hann_window(512)
    power = torch.stft(cs.waveforms, 512, 256, window=window, return_complex=True).abs() ** 2
    logp = torch.log10(power + 1e-8)  # [N, F, T]
    assert cs.targets is not None
    energy = torch.stft(cs.targets, 512, 256, window=window, return_complex=True).abs().pow(2).sum(1)
    on = (energy > 1e-3 * energy.amax(1, keepdim=True)).float()[:, None, :]
    mean = (logp * on).sum(-1) / on.sum(-1)
    std = (((logp - mean[..., None]) ** 2 * on).sum(-1) / on.sum(-1)).sqrt()
    return torch.cat([mean - mean.amax(1, keepdim=True), std], dim=1)


def test_classes_are_distinguishable(default_splits: dict[str, ClipSet]) -> None:
    train, test = default_splits["train"], default_splits["test"]
    f_train, f_test = _features(train), _features(test)
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_test = (f_train - mu) / sd, (f_test - mu) / sd
    centroids = torch.stack([f_train[train.labels == c].mean(0) for c in range(len(train.class_names))])
    predicted = torch.cdist(f_test, centroids).argmin(dim=1)
    accuracy = float((predicted == test.labels).float().mean())
    assert accuracy >= 0.8, accuracy


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050])
def test_sample_rates(sample_rate: int) -> None:
    cs = SynthDataset({"classes": len(CLASS_NAMES), "clips_per_class": 5, "seconds": 1.25}).load(
        "test", sample_rate
    )
    assert cs.sample_rate == sample_rate
    assert cs.waveforms.shape == (len(CLASS_NAMES), round(1.25 * sample_rate))
    assert bool(torch.isfinite(cs.waveforms).all()) and cs.drop_silent() is cs
    # nearly all energy lies below 0.9 x Nyquist
    power = torch.fft.rfft(cs.waveforms.double()).abs() ** 2
    freqs = torch.fft.rfftfreq(cs.waveforms.shape[1], 1 / sample_rate)
    high = power[:, freqs > 0.45 * sample_rate].sum(1) / power.sum(1)
    assert float(high.max()) < 0.02


def test_unknown_split_and_bad_sample_rate() -> None:
    ds = SynthDataset(SMALL)
    with pytest.raises(AudiobenchError, match="unknown split 'validation'"):
        ds.load("validation", SR)
    with pytest.raises(AudiobenchError, match="sample_rate"):
        ds.load("train", 100)


@pytest.mark.parametrize(
    "params",
    [
        {"classes": 1},
        {"classes": len(GENERATORS) + 1},
        {"clips_per_class": 4},
        {"seconds": 0.25},
        {"seconds": 11.0},
        {"seed": -1},
        {"splits": (0.6, 0.2, 0.3)},
        {"splits": (0.8, 0.3, -0.1)},
        {"splits": (1.0, 0.0, 0.0)},
        {"clips_per_class": 5, "splits": (0.9, 0.05, 0.05)},  # leaves valid empty
        {"background_db": 0.0},
        {"bogus": 1},
    ],
)
def test_invalid_params(params: dict) -> None:
    with pytest.raises(ValidationError):
        SynthDataset(params)


def test_splits_within_tolerance_accepted() -> None:
    p = SynthDataset.Params(splits=(0.7, 0.2, 0.1 + 5e-7))
    assert p.splits[0] == 0.7
