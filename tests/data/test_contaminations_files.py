"""Contaminations as in the papers: fixed-gain mixes, mixture partners from other folds, noise folders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from pydantic import ValidationError

from audiobench.data.base import ClipSet
from audiobench.data.contaminations import Mixture, WhiteNoise, sample_rng
from audiobench.data.esc50 import ESC50
from audiobench.data.noise_folder import NoiseFolder, excerpt
from audiobench.kernel.errors import AudiobenchError
from tests.fakedata import make_esc50

SR = 8000


def _clips(n: int = 6, prefix: str = "c") -> ClipSet:
    gen = torch.Generator().manual_seed(3)
    t = torch.arange(4000) / SR
    waves = torch.stack([(0.2 + 0.1 * i) * torch.sin(2 * math.pi * (300 + 100 * i) * t) for i in range(n)])
    waves = waves + 0.01 * torch.randn(n, 4000, generator=gen)
    return ClipSet(waves, torch.tensor([i % 3 for i in range(n)]), [f"{prefix}{i}" for i in range(n)],
                   ["a", "b", "c"], SR, targets=waves.clone())


def test_fixed_gain_mixture_is_the_reference_mix() -> None:
    clips = _clips()
    mix = Mixture({"mix": "fixed_gain", "gains": [0.8, 0.2]})
    assert mix.key() == "mixture_gain0p8-0p2" and mix.title() == "mixture gains 0.8/0.2"
    out = mix.apply(clips, clips, seed=1)
    s1 = clips.waveforms.double()
    s2 = clips.waveforms[mix.partners(clips, clips, seed=1)].double()
    ref = 0.8 * s1 / s1.norm(dim=1, keepdim=True) + 0.2 * s2 / s2.norm(dim=1, keepdim=True)
    ref = ref / ref.abs().amax(dim=1, keepdim=True)
    torch.testing.assert_close(out.waveforms.double(), ref, rtol=0, atol=1e-6)
    # the clean part is scaled alike: 0.8/0.2 of unit-norm signals is 20 log10(4) = 12.04 dB
    added = out.waveforms.double() - out.targets.double()
    snr = 10 * torch.log10(out.targets.double().pow(2).sum(1) / added.pow(2).sum(1))
    assert snr.tolist() == pytest.approx([20 * math.log10(4)] * 6, abs=1e-3)
    # defaults and validation
    assert Mixture({"mix": "fixed_gain"}).gains() == (0.8, 0.2)
    with pytest.raises(ValidationError, match="snr_db has no effect with mix: fixed_gain"):
        Mixture({"mix": "fixed_gain", "snr_db": 3})
    with pytest.raises(ValidationError, match="gains apply only with mix: fixed_gain"):
        Mixture({"snr_db": 3, "gains": [0.5, 0.5]})
    with pytest.raises(ValidationError, match="Field required"):
        Mixture({})


def test_fixed_gain_white_noise_is_s_plus_half_n() -> None:
    clips = _clips()
    noise = WhiteNoise({"mix": "fixed_gain"})
    assert noise.key() == "white_noise_gain1-0p5"
    out = noise.apply(clips, clips, seed=2)
    s = clips.waveforms.double() / clips.waveforms.double().abs().amax(dim=1, keepdim=True)
    n = torch.from_numpy(np.stack([sample_rng(2, "white_noise", sid).standard_normal(4000) for sid in clips.sample_ids]))
    ref = s + 0.5 * n
    torch.testing.assert_close(out.waveforms.double(), ref / ref.abs().amax(dim=1, keepdim=True), rtol=0, atol=1e-6)


def test_mixture_partners_from_other_folds(tmp_path: Path) -> None:
    root = make_esc50(tmp_path / "ESC-50", per_fold=2, seconds=0.5)
    ds = ESC50({"root": str(root), "seconds": 0.5})
    splits = {s: ds.load(s, SR) for s in ("train", "valid", "test")}
    mix = Mixture({"snr_db": 3, "source": {"folds": [4]}})
    assert mix.key() == "mixture_3db_folds4" and mix.title() == "mixture 3 dB from folds 4"
    pool = mix.pool(ds, splits, "test", SR)
    assert {sid[0] for sid in pool.sample_ids} == {"4"}
    partners = mix.partners(splits["test"], pool, seed=0)
    assert (pool.labels[partners] != splits["test"].labels).all()
    assert Mixture({"snr_db": 3, "source": {"split": "train"}}).pool(ds, splits, "test", SR) is splits["train"]
    assert mix.check(ds) == []
    assert "source fold(s) 9 not in the dataset" in Mixture({"snr_db": 3, "source": {"folds": [9]}}).check(ds)[0]
    with pytest.raises(ValidationError, match="exactly one of split"):
        Mixture({"snr_db": 3, "source": {}})


def test_noise_folder_excerpts_are_deterministic_and_looped(tmp_path: Path) -> None:
    folder = tmp_path / "wham_noise" / "tt"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    sf.write(folder / "long.wav", 0.3 * rng.standard_normal(3 * 16000), 16000, subtype="PCM_16")  # resampled to 8k
    sf.write(folder / "sub" / "short.flac", np.sin(np.arange(1000) / 7.0), SR, subtype="PCM_16")  # looped
    (folder / "broken.wav").write_bytes(b"RIFF....garbage")  # passed over
    (folder / "notes.txt").write_text("not audio")
    contamination = NoiseFolder({"root": str(folder), "snr_db": 5})
    assert contamination.check() == [] and len(contamination.files()) == 3
    assert contamination.key() == "noise_tt_5db"
    assert NoiseFolder({"root": str(folder), "snr_db": 5, "tag": "wham"}).key() == "noise_wham_5db"
    clips = _clips(8)
    out = contamination.apply(clips, clips, seed=0)
    added = out.waveforms.double() - out.targets.double()
    snr = 10 * torch.log10(out.targets.double().pow(2).mean(1) / added.pow(2).mean(1))
    assert snr.tolist() == pytest.approx([5.0] * 8, abs=1e-3)
    # per sample id: a subset in another order is contaminated the same way
    order = [5, 2, 7]
    again = contamination.apply(clips.subset(order), clips, seed=0)
    torch.testing.assert_close(again.waveforms, out.waveforms[order])
    assert not torch.equal(contamination.apply(clips, clips, seed=1).waveforms, out.waveforms)
    # a short file is looped from a random offset
    x = np.arange(10.0)
    got = excerpt(x, 25, np.random.default_rng(0))
    start = int(got[0])
    np.testing.assert_array_equal(got, np.tile(x, 4)[start : start + 25])
    [problem] = NoiseFolder({"root": str(tmp_path / "nope"), "snr_db": 0}).check()
    assert problem.startswith(f"noise_folder.root: {tmp_path / 'nope'} not found; WHAM! noise is at http://wham.whisper.ai/")
    with pytest.raises(AudiobenchError, match="not found"):
        NoiseFolder({"root": str(tmp_path / "nope"), "snr_db": 0}).apply(clips, clips, seed=0)
