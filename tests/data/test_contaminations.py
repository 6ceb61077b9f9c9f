"""Tests of the contaminations: exact SNR, determinism per sample id, peak normalisation with the
clean target scaled alike, mixture partners of another class, names, and errors."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from audiobench.contracts.registry import CONTAMINATIONS
from audiobench.data.base import ClipSet
from audiobench.data.contaminations import Mixture, NoContamination, WhiteNoise, mix_at_snr, peak_normalise
from audiobench.kernel.errors import AudiobenchError

SR = 8000
LENGTH = 4000


def _clips(
    n_per_class: int = 2, classes: int = 3, with_background: bool = True, prefix: str = "clip"
) -> ClipSet:
    """Sines of a class-dependent frequency (the targets) over a quiet background, loudness per clip."""
    gen = torch.Generator().manual_seed(123)
    t = torch.arange(LENGTH, dtype=torch.float64) / SR
    waves, targets, labels, ids = [], [], [], []
    for c in range(classes):
        for j in range(n_per_class):
            i = len(ids)
            envelope = torch.exp(-(((t - 0.25) / 0.08) ** 2))
            target = (0.2 + 0.3 * i) * envelope * torch.sin(2 * math.pi * (300 + 400 * c + 37 * j) * t)
            background = (
                0.02 * torch.randn(LENGTH, generator=gen, dtype=torch.float64) if with_background else 0
            )
            targets.append(target)
            waves.append(target + background)
            labels.append(c)
            ids.append(f"{prefix}{i:02d}")
    return ClipSet(
        waveforms=torch.stack(waves).float(),
        labels=torch.tensor(labels),
        sample_ids=ids,
        class_names=[f"class{c}" for c in range(classes)],
        sample_rate=SR,
        targets=torch.stack(targets).float(),
    )


def _power(x: torch.Tensor) -> torch.Tensor:
    return x.double().pow(2).mean(dim=1)


def _snr_db(signal: torch.Tensor, added: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(_power(signal) / _power(added))


def _scale(out: ClipSet, clean: ClipSet) -> torch.Tensor:
    """The per-row factor peak normalisation applied, read off the targets."""
    return (out.targets.double().norm(dim=1) / clean.targets.double().norm(dim=1)).view(-1, 1)


def _unchanged(before: ClipSet, after: ClipSet) -> bool:
    return torch.equal(before.waveforms, after.waveforms) and torch.equal(before.targets, after.targets)


# -- helpers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [-10.0, -5.0, 0.0, 3.0, 20.0])
def test_mix_at_snr_gives_the_requested_snr_per_row(snr_db: float) -> None:
    gen = torch.Generator().manual_seed(0)
    signal = torch.randn(4, 2000, generator=gen) * torch.tensor([[0.1], [1.0], [3.0], [0.01]])
    noise = torch.randn(4, 2000, generator=gen) * torch.tensor([[5.0], [0.2], [1.0], [1.0]])
    out = mix_at_snr(signal, noise, snr_db)
    added = out.double() - signal.double()
    assert _snr_db(signal, added).tolist() == pytest.approx([snr_db] * 4, abs=1e-4)
    # what is added is the noise itself, scaled (one gain per row)
    gain = added.norm(dim=1) / noise.double().norm(dim=1)
    torch.testing.assert_close(added, gain.view(-1, 1) * noise.double(), rtol=0, atol=1e-5)


def test_peak_normalise_scales_waveforms_and_targets_alike() -> None:
    clips = _clips()
    waves, targets = clips.waveforms.clone(), clips.targets.clone()
    silent = clips.subset([0])
    silent.waveforms = torch.zeros_like(silent.waveforms)
    silent.targets = torch.zeros_like(silent.targets)
    out = peak_normalise(clips)
    assert out.waveforms.abs().amax(dim=1).tolist() == pytest.approx([1.0] * 6, abs=1e-6)
    scale = 1 / waves.abs().amax(dim=1, keepdim=True)
    torch.testing.assert_close(out.waveforms, waves * scale)
    torch.testing.assert_close(out.targets, targets * scale)
    assert peak_normalise(silent, peak=0.5).waveforms.abs().max() == 0  # silent stays silent, no NaN


# -- no contamination -----------------------------------------------------------------------------


def test_no_contamination_only_normalises() -> None:
    clips = _clips()
    before = clips.subset(slice(None))
    before.waveforms, before.targets = clips.waveforms.clone(), clips.targets.clone()
    out = NoContamination().apply(clips, clips, seed=0)
    assert _unchanged(before, clips)  # the input is left alone
    assert out.sample_ids == clips.sample_ids and torch.equal(out.labels, clips.labels)
    assert out.waveforms.abs().amax(dim=1).tolist() == pytest.approx([1.0] * 6, abs=1e-6)
    s = _scale(out, clips)
    torch.testing.assert_close(out.waveforms.double(), clips.waveforms.double() * s, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        out.contaminants.double(), (clips.contaminants.double() * s), rtol=1e-5, atol=1e-6
    )


# -- mixture --------------------------------------------------------------------------------------


def test_mixture_partners_are_of_another_class_and_deterministic_per_sample() -> None:
    clips = _clips()
    mix = Mixture({"snr_db": 3})
    partners = mix.partners(clips, clips, seed=5)
    assert partners.shape == (6,)
    assert (clips.labels[partners] != clips.labels).all()
    assert torch.equal(partners, mix.partners(clips, clips, seed=5))
    # a subset, or another order, gets the same partners for the same ids
    order = [4, 1, 5, 0]
    assert torch.equal(mix.partners(clips.subset(order), clips, seed=5), partners[order])
    # another seed draws other partners (4 candidates per clip, so this is not a coincidence)
    assert not torch.equal(mix.partners(clips, clips, seed=6), partners)


@pytest.mark.parametrize("snr_db", [3.0, -5.0])
def test_mixture_snr_peak_and_targets(snr_db: float) -> None:
    clips = _clips()
    before = clips.subset(slice(None))
    before.waveforms, before.targets = clips.waveforms.clone(), clips.targets.clone()
    mix = Mixture({"snr_db": snr_db})
    out = mix.apply(clips, clips, seed=11)
    assert _unchanged(before, clips)
    assert out.sample_ids == clips.sample_ids and torch.equal(out.labels, clips.labels)
    assert out.waveforms.abs().amax(dim=1).tolist() == pytest.approx([1.0] * 6, abs=1e-6)

    # targets are the clean targets times the same per-row factor s as the waveform:
    s = _scale(out, clips)
    torch.testing.assert_close(out.targets.double(), clips.targets.double() * s, rtol=1e-5, atol=1e-7)
    # so waveforms - targets is s * (background + added partner), and undoing s recovers the mix
    added = out.waveforms.double() / s - clips.waveforms.double()
    torch.testing.assert_close(
        out.contaminants.double() / s, clips.contaminants.double() + added, rtol=1e-4, atol=1e-5
    )
    # the added signal is the partner clip, scaled so that clip-to-partner power is the SNR
    partner = clips.waveforms[mix.partners(clips, clips, seed=11)].double()
    gain = added.norm(dim=1, keepdim=True) / partner.norm(dim=1, keepdim=True)
    torch.testing.assert_close(added, gain * partner, rtol=0, atol=1e-4)
    assert _snr_db(clips.waveforms, added).tolist() == pytest.approx([snr_db] * 6, abs=1e-3)


def test_mixture_is_deterministic_per_sample_id() -> None:
    clips = _clips()
    mix = Mixture({"snr_db": 3})
    full = mix.apply(clips, clips, seed=2)
    again = mix.apply(clips, clips, seed=2)
    assert torch.equal(full.waveforms, again.waveforms)
    first = mix.apply(clips.subset(slice(0, 3)), clips, seed=2)
    torch.testing.assert_close(first.waveforms, full.waveforms[:3], rtol=1e-6, atol=1e-7)
    order = [5, 2, 0, 3]
    shuffled = mix.apply(clips.subset(order), clips, seed=2)
    assert shuffled.sample_ids == [clips.sample_ids[i] for i in order]
    torch.testing.assert_close(shuffled.waveforms, full.waveforms[order], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(shuffled.targets, full.targets[order], rtol=1e-6, atol=1e-7)

    other_seed = mix.apply(clips, clips, seed=3)
    assert (other_seed.waveforms - full.waveforms).abs().amax(dim=1).max() > 0.1


def test_mixture_needs_a_pool_with_another_class() -> None:
    clips = _clips()
    one_class = clips.subset(clips.labels == 0)
    with pytest.raises(AudiobenchError, match="two classes"):
        Mixture({"snr_db": 3}).apply(clips, one_class, seed=0)


# -- white noise ----------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [3.0, -5.0, 20.0])
def test_white_noise_snr_and_normalisation(snr_db: float) -> None:
    # without background the target is the whole clip, so target / contaminant power after the common
    # peak normalisation is the SNR before it
    clips = _clips(with_background=False)
    out = WhiteNoise({"snr_db": snr_db}).apply(clips, clips, seed=4)
    assert out.waveforms.abs().amax(dim=1).tolist() == pytest.approx([1.0] * 6, abs=1e-6)
    assert _snr_db(out.targets, out.contaminants).tolist() == pytest.approx([snr_db] * 6, abs=1e-3)
    # with a background, the SNR is that of the whole clip to the noise
    noisy = _clips()
    out = WhiteNoise({"snr_db": snr_db}).apply(noisy, noisy, seed=4)
    s = _scale(out, noisy)
    added = out.waveforms.double() / s - noisy.waveforms.double()
    assert _snr_db(noisy.waveforms, added).tolist() == pytest.approx([snr_db] * 6, abs=1e-3)
    # and it is white noise: zero mean, unit-variance once scaled, uncorrelated with the clip
    z = added / added.std(dim=1, keepdim=True)
    assert z.mean(dim=1).abs().max() < 0.1
    corr = (z * noisy.waveforms.double()).mean(dim=1) / noisy.waveforms.double().std(dim=1)
    assert corr.abs().max() < 0.1


def test_white_noise_is_deterministic_per_sample_id() -> None:
    clips = _clips()
    wn = WhiteNoise({"snr_db": 0})
    full = wn.apply(clips, clips, seed=9)
    order = [3, 0, 5]
    part = wn.apply(clips.subset(order), clips, seed=9)
    torch.testing.assert_close(part.waveforms, full.waveforms[order], rtol=1e-6, atol=1e-7)

    def noise_shape(out: ClipSet, clean: ClipSet) -> torch.Tensor:
        n = out.waveforms.double() / _scale(out, clean) - clean.waveforms.double()
        return n / n.norm(dim=1, keepdim=True)

    # the noise depends on the sample id only, not on the clip it is added to
    louder = clips.subset(slice(None))
    louder.waveforms, louder.targets = clips.waveforms.flip(0) * 2, clips.targets.flip(0) * 2
    torch.testing.assert_close(
        noise_shape(wn.apply(louder, louder, seed=9), louder), noise_shape(full, clips), rtol=0, atol=1e-4
    )
    # different ids, or another seed, draw different noise
    shapes = noise_shape(full, clips)
    assert (shapes[0] * shapes[1]).sum().abs() < 0.2
    other = noise_shape(wn.apply(clips, clips, seed=10), clips)
    assert ((other * shapes).sum(dim=1).abs() < 0.2).all()
    renamed = clips.subset(slice(None))
    renamed.sample_ids = [f"other{i}" for i in range(6)]
    assert ((noise_shape(wn.apply(renamed, renamed, seed=9), renamed) * shapes).sum(dim=1).abs() < 0.2).all()


# -- names and parameters -------------------------------------------------------------------------


def test_keys_titles_and_registration() -> None:
    assert NoContamination().key() == "none" and NoContamination().title() == "clean"
    assert Mixture({"snr_db": 3}).key() == "mixture_3db"
    assert Mixture({"snr_db": 3}).title() == "mixture 3 dB"
    assert Mixture({"snr_db": -2.5}).key() == "mixture_m2p5db"
    assert WhiteNoise({"snr_db": -5}).key() == "white_noise_m5db"
    assert WhiteNoise({"snr_db": -5}).title() == "white noise -5 dB"
    assert WhiteNoise({"snr_db": 0}).key() == "white_noise_0db"
    for name, cls in [("none", NoContamination), ("mixture", Mixture), ("white_noise", WhiteNoise)]:
        assert CONTAMINATIONS.get(name) is cls


def test_snr_parameter_is_required_and_bounded() -> None:
    with pytest.raises(ValidationError):
        Mixture()
    with pytest.raises(ValidationError):
        WhiteNoise({"snr_db": 100})
    with pytest.raises(ValidationError):
        WhiteNoise({"snr_db": 3, "colour": "pink"})


def test_an_snr_sweep_mixes_the_same_pairs_and_noise() -> None:
    clips = _clips()
    pairs = [Mixture({"snr_db": snr}).partners(clips, clips, seed=3) for snr in (-5.0, 0.0, 3.0, 12.0)]
    assert all(torch.equal(p, pairs[0]) for p in pairs)
    # white noise: the same draw at every SNR, only its gain changes
    low, high = (WhiteNoise({"snr_db": snr}).apply(clips, clips, seed=3) for snr in (0.0, 20.0))
    added_low = low.waveforms / _scale(low, clips) - clips.waveforms
    added_high = high.waveforms / _scale(high, clips) - clips.waveforms
    cosine = torch.nn.functional.cosine_similarity(added_low, added_high, dim=1)
    assert (cosine > 0.999).all()
