"""Tests of the masking domains and the front end: identities, clamping, listenability, mel <-> linear maps."""

from __future__ import annotations

import pytest
import torch

from audiobench.contracts.domains import Mel, Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import DOMAINS

SR = 16000


@pytest.fixture(scope="module")
def frontend() -> Frontend:
    """The default (L-MAC recipe) front end: n_fft 1024, Hamming 372, hop 186, 80 mels."""
    fe = Frontend()
    p = fe.params
    assert (p.n_fft, p.win_length, p.hop_length, p.window, p.n_mels) == (1024, 372, 186, "hamming", 80)
    return fe


@pytest.fixture(scope="module")
def noise() -> torch.Tensor:
    return 0.3 * torch.randn(2, SR, generator=torch.Generator().manual_seed(0))  # two 1 s clips


def _sine(freq: float, seconds: float = 1.0) -> torch.Tensor:
    return torch.sin(2 * torch.pi * freq * torch.arange(int(SR * seconds)) / SR)


def test_domains_registered() -> None:
    assert DOMAINS.get("stft2mel") is Stft2Mel and DOMAINS.get("mel") is Mel
    assert Stft2Mel.listenable and not Mel.listenable


# --------------------------------------------------------------------------- stft2mel
def test_stft2mel_unmasked_input_is_the_classifier_logmel(frontend: Frontend, noise: torch.Tensor) -> None:
    domain = Stft2Mel()
    rep = domain.represent(frontend, noise)
    assert rep.x.shape == (2, 1, SR // 186 + 1, 513) and rep.length == SR
    assert rep.stft.is_complex() and rep.stft.shape == rep.x.shape
    logmel = frontend.logmel(noise)
    assert logmel.shape == (2, 1, rep.x.shape[2], 80)
    ones = torch.ones_like(rep.x)
    torch.testing.assert_close(domain.to_logmel(frontend, ones * rep.x), logmel, atol=1e-4, rtol=0)
    # masking out changes it: an all-zero mask gives log1p(0) = 0 everywhere
    assert bool((domain.to_logmel(frontend, 0 * rep.x) == 0).all())


def test_stft2mel_negative_inputs_stay_finite(frontend: Frontend, noise: torch.Tensor) -> None:
    domain = Stft2Mel()
    x = domain.represent(frontend, noise).x
    perturbed = (x - 0.5).requires_grad_(True)
    assert bool((perturbed < 0).any())
    out = domain.to_logmel(frontend, perturbed)
    assert bool(out.isfinite().all()) and float(out.min()) >= 0  # magnitudes clamped at 0, log1p(>= 0) >= 0
    (grad,) = torch.autograd.grad(out.sum(), perturbed)
    assert bool(grad.isfinite().all())
    assert bool((grad[perturbed.detach() < 0] == 0).all())  # clamped magnitudes carry no gradient
    # a bin pushed below zero contributes exactly what a zero magnitude would
    torch.testing.assert_close(out, domain.to_logmel(frontend, perturbed.detach().clamp_min(0)))


def test_stft2mel_ones_mask_reconstructs_the_waveform(frontend: Frontend, noise: torch.Tensor) -> None:
    domain = Stft2Mel()
    rep = domain.represent(frontend, noise)
    audio = domain.to_audio(frontend, torch.ones_like(rep.x), rep)
    assert audio.shape == noise.shape
    assert float((audio - noise).abs().max()) < 1e-4
    silent = domain.to_audio(frontend, torch.zeros_like(rep.x), rep)
    assert silent.shape == noise.shape and float(silent.abs().max()) < 1e-7


def test_stft2mel_low_pass_mask_keeps_the_low_tone(frontend: Frontend) -> None:
    domain = Stft2Mel()
    low, high = _sine(300), _sine(4000)
    wave = (low + high)[None]
    rep = domain.represent(frontend, wave)
    freqs = torch.arange(frontend.n_freqs) * SR / frontend.params.n_fft
    mask = (freqs < 1000).float().expand_as(rep.x)
    out = domain.to_audio(frontend, mask, rep)[0]

    def energy(sig: torch.Tensor, freq: float) -> float:  # energy in a +-50 Hz band of the spectrum
        spec = torch.fft.rfft(sig).abs().pow(2)
        f = torch.fft.rfftfreq(sig.shape[-1], 1 / SR)
        return float(spec[(f - freq).abs() <= 50].sum())

    assert energy(out, 4000) < 1e-4 * energy(wave[0], 4000)
    assert energy(out, 300) == pytest.approx(energy(wave[0], 300), rel=0.02)
    # the result is the 300 Hz sine itself, to within a small error
    assert float((out - low).pow(2).sum()) < 0.01 * float(low.pow(2).sum())


# --------------------------------------------------------------------------- mel
def test_mel_domain_is_the_classifier_input(frontend: Frontend, noise: torch.Tensor) -> None:
    domain = Mel()
    rep = domain.represent(frontend, noise)
    torch.testing.assert_close(rep.x, frontend.logmel(noise))
    x = torch.randn(3, 1, 7, 80)
    assert domain.to_logmel(frontend, x) is x or torch.equal(domain.to_logmel(frontend, x), x)
    grid = torch.rand(2, 1, 7, 80)
    assert torch.equal(domain.from_mel_grid(frontend, grid), grid)


@pytest.mark.parametrize("grid", ["log1p", "db"])
def test_mel_domain_is_not_listenable(frontend: Frontend, noise: torch.Tensor, grid: str) -> None:
    domain = Mel({"grid": grid})
    rep = domain.represent(frontend, noise)
    with pytest.raises(NotImplementedError):
        domain.to_audio(frontend, torch.ones_like(rep.x), rep)


def test_mel_db_grid_is_the_db_of_the_mel_and_keeps_mel_maps(frontend: Frontend, noise: torch.Tensor) -> None:
    """``grid: db`` (CLAP's feature, tests/contracts/test_domain_departures.py): 10 log10 of the mel, floored at -100 dB."""
    domain = Mel({"grid": "db"})
    rep = domain.represent(frontend, noise)
    mel = torch.expm1(frontend.logmel(noise))
    torch.testing.assert_close(rep.x, 10 * torch.log10(mel.clamp_min(1e-10)), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(domain.log_magnitude(rep.x), frontend.logmel(noise), rtol=1e-5, atol=1e-5)
    grid = torch.rand(2, 1, 7, 80)
    assert torch.equal(domain.from_mel_grid(frontend, grid), grid)


# --------------------------------------------------------------------------- mel <-> linear
def test_mel_to_linear_one_hot_lands_on_the_filter(frontend: Frontend) -> None:
    fb = frontend.mel_fb  # [513, 80]
    assert fb.shape == (513, 80)
    covered = fb.sum(1) > 0
    assert 0 < int((~covered).sum()) <= 4  # only the edge bins (DC, Nyquist) lie outside every filter
    for m in (0, 1, 17, 40, 79):
        one_hot = torch.zeros(1, 1, 3, 80)
        one_hot[..., m] = 1
        lin = frontend.mel_to_linear(one_hot)
        assert lin.shape == (1, 1, 3, 513)
        # covered bins: exactly the ones filter m touches, weighted by its share of the bin
        on = lin[0, 0, 0, covered] > 0
        assert torch.equal(on, fb[covered, m] > 0)
        torch.testing.assert_close(lin[0, 0, 0, covered], (fb[:, m] / fb.sum(1).clamp_min(1e-12))[covered])
        assert bool((lin <= 1 + 1e-6).all()) and bool((lin[0, 0, 0] == lin[0, 0, 2]).all())
    # uncovered edge bins take the nearest filter: DC from the first mel band, Nyquist from the last
    lowest, highest = torch.zeros(1, 1, 1, 80), torch.zeros(1, 1, 1, 80)
    lowest[..., 0], highest[..., 79] = 1, 1
    assert frontend.mel_to_linear(lowest)[..., 0].item() == 1
    assert frontend.mel_to_linear(highest)[..., 512].item() == 1


def test_mel_to_linear_is_a_partition_of_unity(frontend: Frontend) -> None:
    ones = torch.ones(2, 1, 4, 80)
    torch.testing.assert_close(frontend.mel_to_linear(ones), torch.ones(2, 1, 4, 513))


def test_frontend_rejects_inconsistent_params() -> None:
    with pytest.raises(ValueError):
        FrontendParams(n_fft=256, win_length=512)
    with pytest.raises(ValueError):
        FrontendParams(f_max=9000)
