"""Audio files on disk: odd formats load and resample correctly; unusable files become skips with reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiobench.data.audio import fit_length, read_audio
from audiobench.data.audio_folder import AudioFolder

SR = 16000
FREQ = 1000.0
SECONDS = 0.5


def _sine(sr: int, seconds: float = SECONDS, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return amp * np.sin(2 * np.pi * FREQ * t)


# (file name, rate, subtype, format, channel gains, RMS tolerance)
FORMATS = [
    ("pcm16_16k.wav", 16000, "PCM_16", "WAV", (1.0,), 0.01),
    ("pcm24_stereo_44k.wav", 44100, "PCM_24", "WAV", (0.6, 0.2), 0.01),  # mean of the channels: 0.4
    ("pcm16_8k.wav", 8000, "PCM_16", "WAV", (1.0,), 0.01),
    ("pcm32_48k.wav", 48000, "PCM_32", "WAV", (1.0,), 0.01),
    ("float_22k.wav", 22050, "FLOAT", "WAV", (1.0,), 0.01),
    ("flac_44k.flac", 44100, "PCM_24", "FLAC", (1.0,), 0.01),
    ("vorbis_32k.ogg", 32000, "VORBIS", "OGG", (1.0, 1.0), 0.05),  # lossy
]


@pytest.fixture(scope="module")
def format_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    (root / "tone").mkdir()
    for name, rate, subtype, fmt, gains, _ in FORMATS:
        x = _sine(rate)
        data = np.stack([g * x for g in gains], axis=1) if len(gains) > 1 else gains[0] * x
        sf.write(root / "tone" / name, data, rate, subtype=subtype, format=fmt)
    return root


def test_formats_rates_and_channels_load_and_resample(format_folder: Path) -> None:
    ds = AudioFolder({"root": str(format_folder), "seconds": SECONDS, "fractions": [0.4, 0.3, 0.3]})
    clips = {}
    for split in ("train", "valid", "test"):
        got = ds.load(split, SR)
        assert got.skips == [] and got.sample_rate == SR
        assert got.waveforms.shape[1] == int(SECONDS * SR)
        clips.update(zip(got.sample_ids, got.waveforms.numpy(), strict=True))
    assert len(clips) == len(FORMATS)
    for name, _rate, _sub, _fmt, gains, tol in FORMATS:
        x = clips["tone__" + Path(name).stem].astype(np.float64)
        inner = x[400:-400]  # away from the resampler's edges
        spectrum = np.abs(np.fft.rfft(inner * np.hanning(inner.size)))
        peak_hz = np.argmax(spectrum) * SR / inner.size
        assert abs(peak_hz - FREQ) < SR / inner.size, name
        expected_rms = 0.5 * np.mean(gains) / np.sqrt(2)
        assert np.sqrt(np.mean(inner**2)) == pytest.approx(expected_rms, rel=tol), name


def test_pad_at_end_and_centre_crop(tmp_path: Path) -> None:
    ramp = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(ramp, 14), np.r_[ramp, np.zeros(4)])
    np.testing.assert_array_equal(fit_length(ramp, 4), ramp[3:7])
    # through a dataset, at the file's own rate (no resampling): a 0.25 s clip padded, a 1 s clip cropped
    (tmp_path / "a").mkdir()
    short, long = _sine(8000, 0.25), np.linspace(-0.5, 0.5, 8000)
    sf.write(tmp_path / "a" / "short.wav", short, 8000, subtype="FLOAT")
    sf.write(tmp_path / "a" / "long.wav", long, 8000, subtype="FLOAT")
    ds = AudioFolder({"root": str(tmp_path), "seconds": 0.5, "split_by": "fraction", "fractions": [0.5, 0.25, 0.25]})
    got = {}
    for split in ("train", "valid", "test"):
        c = ds.load(split, 8000)
        got.update(zip(c.sample_ids, c.waveforms.numpy(), strict=True))
    np.testing.assert_allclose(got["a__short"][:2000], short, atol=1e-6)
    assert not got["a__short"][2000:].any()
    np.testing.assert_allclose(got["a__long"], long[2000:6000], atol=1e-6)


def _write_bad_files(folder: Path) -> dict[str, str]:
    """Unusable files next to good ones; returns name -> expected reason fragment."""
    good = _sine(8000, 1.0)
    sf.write(folder / "good.wav", good, 8000, subtype="PCM_16")
    full = (folder / "good.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(full[: len(full) // 2])
    (folder / "header_only.wav").write_bytes(full[:30])
    (folder / "empty.wav").write_bytes(b"")
    (folder / "garbage.flac").write_bytes(b"not audio at all" * 20)
    sf.write(folder / "silent.wav", np.zeros(8000), 8000, subtype="PCM_16")
    sf.write(folder / "no_samples.wav", np.zeros(0), 8000, subtype="PCM_16")
    return {
        "truncated": "truncated file",
        "header_only": "unreadable file",
        "empty": "empty file (0 bytes)",
        "garbage": "unreadable file",
        "silent": "silent file",
        "no_samples": "empty file (0 samples)",
    }


def test_unusable_files_are_skipped_with_their_reason(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    expected = _write_bad_files(folder)
    wave, sr = read_audio(folder / "good.wav")
    assert sr == 8000 and wave.shape == (8000,)
    for name, reason in expected.items():
        path = next(folder.glob(name + ".*"))
        with pytest.raises(Exception) as info:
            read_audio(path)
        assert reason in str(info.value), (name, str(info.value))
    # a dataset of them: one usable clip, every other file a recorded skip naming it
    ds = AudioFolder({"root": str(tmp_path), "seconds": 1.0})
    seen = {}
    for split in ("train", "valid", "test"):
        c = ds.load(split, 16000)
        seen.update({s.sample_id: s.reason for s in c.skips})
        assert all(s.where == f"audio_folder:{split}" for s in c.skips)
        if "x__good" in c.sample_ids:
            assert c.waveforms.shape == (1, 16000)
    assert set(seen) == {f"x__{n}" for n in expected}
    for name, reason in expected.items():
        assert reason in seen[f"x__{name}"] and f"x/{name}." in seen[f"x__{name}"]
