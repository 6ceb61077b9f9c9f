"""Every contaminated clip is at the SNR its condition states: silent noise excerpts are redrawn or
skipped, loud and quiet float inputs mix exactly, and the manifest records each clip's effective SNR."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiobench.data.base import ClipSet
from audiobench.data.contaminations import Mixture, WhiteNoise, effective_snr_db, mix_at_snr
from audiobench.data.noise_folder import NoiseFolder
from audiobench.harness.runner import run_suite
from audiobench.kernel.errors import AudiobenchError

SR = 8000


def _clips(n: int = 12, scale: float = 1.0, length: int = 8000) -> ClipSet:
    t = torch.arange(length, dtype=torch.float64) / SR
    waves = torch.stack([torch.sin(2 * math.pi * (300 + 70 * i) * t) * (0.3 + 0.05 * i) for i in range(n)])
    waves = (waves * scale).float()
    return ClipSet(waves, torch.arange(n) % 3, [f"clip{i:02d}" for i in range(n)], ["a", "b", "c"], SR,
                   targets=waves.clone())


def make_gappy_noise(folder: Path) -> Path:
    """The generator of /work/shared/cases/noise-with-silence (make.py): 1 s of noise, then 4 s of zeros, stereo."""
    rng = np.random.default_rng(0)
    x = np.zeros((5 * SR, 2))
    x[:SR] = 0.3 * rng.standard_normal((SR, 2))
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "noise_then_silence.wav", x, SR, subtype="PCM_16")
    return folder


def test_silent_excerpts_are_redrawn_so_every_clip_is_at_the_snr(tmp_path: Path) -> None:
    folder = make_gappy_noise(tmp_path / "noise_gappy")
    clips = _clips(40)
    out = NoiseFolder({"root": str(folder), "snr_db": 0}).apply(clips, clips, seed=0)
    assert len(out) == 40 and not [s for s in out.skips if s.where]  # a usable excerpt found for each clip
    measured = effective_snr_db(out.waveforms, out.clean)
    assert measured.tolist() == pytest.approx([0.0] * 40, abs=1e-3)
    torch.testing.assert_close(out.snr_db, measured)
    assert not (out.waveforms == out.clean).all(dim=1).any()  # no clip left clean


def test_a_clip_without_an_energetic_excerpt_is_a_recorded_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import audiobench.data.noise_folder as nf

    folder = make_gappy_noise(tmp_path / "noise_gappy")
    monkeypatch.setattr(nf, "MAX_DRAWS", 1)  # one draw per clip: an excerpt in the silent 4 s is not replaced
    clips = _clips(40)
    out = NoiseFolder({"root": str(folder), "snr_db": 0}).apply(clips, clips, seed=0)
    skipped = [s for s in out.skips if s.where == "noise_noise_gappy_0db"]
    assert skipped and len(out) + len(skipped) == 40 and not set(out.sample_ids) & {s.sample_id for s in skipped}
    assert all("no noise excerpt above -80 dBFS RMS in 1 draws" in s.reason for s in skipped)
    assert effective_snr_db(out.waveforms, out.clean).tolist() == pytest.approx([0.0] * len(out), abs=1e-3)
    # a folder whose only file is silent but for a DC offset: no usable file at all is an error
    sf.write(folder / "noise_then_silence.wav", np.full(SR, 1e-3), SR, subtype="FLOAT")
    with pytest.raises(AudiobenchError, match=r"no usable file .*constant signal"):
        NoiseFolder({"root": str(folder), "snr_db": 0}).apply(clips, clips, seed=0)


@pytest.mark.parametrize("scale", [1e-30, 1e-3, 1.0, 1e30])
def test_mixing_is_exact_for_loud_and_quiet_float_inputs(scale: float) -> None:
    clips = _clips(6, scale)
    noise = torch.from_numpy(np.random.default_rng(1).standard_normal((6, 8000))).float() * scale
    for snr in (-10.0, 0.0, 20.0):
        mixed = mix_at_snr(clips.waveforms, noise, snr)
        assert torch.isfinite(mixed).all()
        assert effective_snr_db(mixed, clips.waveforms).tolist() == pytest.approx([snr] * 6, abs=1e-3)
    for contamination in (WhiteNoise({"snr_db": 3}), Mixture({"snr_db": -5})):
        out = contamination.apply(clips, clips, seed=0)
        assert len(out) == 6 and torch.isfinite(out.waveforms).all()
        assert out.waveforms.abs().amax(dim=1).tolist() == pytest.approx([1.0] * 6, rel=1e-6)  # peak-normalised
        snr = contamination.params.snr_db
        assert out.snr_db.tolist() == pytest.approx([snr] * 6, abs=1e-3)
    fixed = Mixture({"mix": "fixed_gain"}).apply(clips, clips, seed=0)
    assert fixed.snr_db.tolist() == pytest.approx([20 * math.log10(4)] * 6, abs=1e-3)  # 0.8 / 0.2 of unit norms


def test_a_contaminant_without_energy_is_a_recorded_skip() -> None:
    clips = _clips(4)
    other = torch.randn(4, 8000, generator=torch.Generator().manual_seed(0))
    other[1] = 0.0
    other[2, 100] = float("nan")
    out = WhiteNoise({"snr_db": 0}).mixed(clips, other)
    assert out.sample_ids == ["clip00", "clip03"]
    assert [s.sample_id for s in out.skips] == ["clip01", "clip02"]
    assert all(s.where == "white_noise_0db" and "contaminant without energy" in s.reason for s in out.skips)


def test_manifest_records_the_effective_snr_of_every_clip(write_suite, tmp_path: Path) -> None:
    folder = make_gappy_noise(tmp_path / "noise_gappy")
    suite = write_suite({
        "dataset": {"name": "synth", "classes": 3, "clips_per_class": 10, "seconds": 1.0},
        "domains": ["stft2mel"], "methods": ["random"], "metrics": ["ai", "ad"], "audio": {"n": 8},
        "contaminations": ["none", {"name": "noise_folder", "root": str(folder), "snr_db": 0}],
    })
    result = run_suite(suite, tmp_path / "run", progress=False)
    record = result.manifest["contaminations"]["noise_noise_gappy_0db"]
    per_clip = record["effective_snr_db"]["per_clip"]
    assert record["requested_snr_db"] == 0 and record["skips"] == []
    assert len(per_clip) == record["n"] == 6
    assert list(per_clip.values()) == pytest.approx([0.0] * 6, abs=1e-3)
    assert "effective_snr_db" not in result.manifest["contaminations"]["none"]
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["contaminations"] == result.manifest["contaminations"]
    # the written inputs, as the case's effective_snr.py measures them (16-bit files: within 0.1 dB)
    for clean_path in sorted((tmp_path / "run" / "audio" / "none" / "input").glob("*.wav")):
        c, _ = sf.read(clean_path)
        x, _ = sf.read(tmp_path / "run" / "audio" / "noise_noise_gappy_0db" / "input" / clean_path.name)
        a = np.dot(x, c) / np.dot(c, c)
        assert 10 * np.log10(np.sum((a * c) ** 2) / np.sum((x - a * c) ** 2)) == pytest.approx(0.0, abs=0.1)


def test_training_mixtures_reach_their_snr_and_are_peak_normalised() -> None:
    """mix_rows (classifier and zero-shot-model training) on rows whose signal and noise do not
    overlap in time: the mixture's two halves give its SNR exactly."""
    from audiobench.models.augment import mix_rows

    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(4, 1000)
    other = torch.zeros(4, 1000)
    x[:, :500] = torch.randn(4, 500, generator=gen)
    other[:, 500:] = 3 * torch.randn(4, 500, generator=gen)
    snr = torch.tensor([0.0, 3.0, -6.0, 10.0])
    chosen = torch.tensor([True, True, True, False])
    out = mix_rows(x, other, snr, chosen)
    got = 10 * torch.log10(out[:3, :500].pow(2).mean(1) / out[:3, 500:].pow(2).mean(1))
    assert torch.allclose(got, snr[:3], atol=1e-4)
    assert torch.allclose(out.abs().amax(dim=1), torch.ones(4))
    assert torch.allclose(out[3], x[3] / x[3].abs().max()) and out[3, 500:].abs().max() == 0  # not chosen: x alone
