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


def _patch_sizes(path: Path, riff: int | None = None, data: int | None = None) -> None:
    """Overwrite the RIFF and data chunk sizes of a canonical 44-byte-header WAV written by soundfile."""
    import struct

    raw = bytearray(path.read_bytes())
    assert raw[36:40] == b"data"
    if riff is not None:
        raw[4:8] = struct.pack("<I", riff)
    if data is not None:
        raw[40:44] = struct.pack("<I", data)
    path.write_bytes(bytes(raw))


def test_bad_samples_are_skipped_with_their_true_reason(tmp_path: Path) -> None:
    from audiobench.data.audio import UnusableAudio

    sine = _sine(8000, 0.5)
    cases = {
        "nan": (np.r_[sine[:100], np.nan, sine[101:]], "FLOAT", "non-finite samples (1 NaN or Inf)"),
        "inf": (np.r_[sine[:100], np.inf, -np.inf, sine[102:]], "FLOAT", "non-finite samples (2 NaN or Inf)"),
        "zeros": (np.zeros(4000), "FLOAT", "silent file (every sample is 0)"),
        "dc": (np.full(4000, 0.25), "FLOAT", "constant signal (a DC offset of 0.25 only, no sound)"),
        "whisper": (1e-6 * sine, "FLOAT", "near-silent file (RMS -129.0 dBFS, below -80 dBFS)"),
    }
    for name, (x, subtype, reason) in cases.items():
        sf.write(tmp_path / f"{name}.wav", x, 8000, subtype=subtype)
        with pytest.raises(UnusableAudio) as info:
            read_audio(tmp_path / f"{name}.wav")
        assert str(info.value) == reason, name
    # quiet but above the floor, and a DC offset under a real signal: used as they are
    sf.write(tmp_path / "quiet.wav", 1e-3 * sine, 8000, subtype="FLOAT")
    sf.write(tmp_path / "offset.wav", 0.3 + 0.2 * sine, 8000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(tmp_path / "quiet.wav")[0], 1e-3 * sine, rtol=1e-5)
    np.testing.assert_allclose(read_audio(tmp_path / "offset.wav")[0], 0.3 + 0.2 * sine, rtol=1e-5)


def test_clipped_one_sample_and_very_long_files(tmp_path: Path) -> None:
    sf.write(tmp_path / "clipped.wav", np.clip(3 * _sine(8000), -1, 1), 8000, subtype="PCM_16")
    clipped, _ = read_audio(tmp_path / "clipped.wav")
    assert clipped.max() == pytest.approx(1.0, abs=1e-4) and np.mean(np.abs(clipped) > 0.99) > 0.5  # kept as recorded
    (tmp_path / "ds" / "one").mkdir(parents=True)
    sf.write(tmp_path / "ds" / "one" / "click.wav", np.array([0.5]), 8000, subtype="FLOAT")
    sf.write(tmp_path / "ds" / "one" / "tone.wav", _sine(8000), 8000, subtype="FLOAT")
    ds = AudioFolder({"root": str(tmp_path / "ds"), "seconds": 0.5, "fractions": [0.4, 0.3, 0.3]})
    got = {}
    for split in ("train", "valid", "test"):
        c = ds.load(split, 8000)
        assert c.skips == []
        got.update(zip(c.sample_ids, c.waveforms.numpy(), strict=True))
    assert got["one__click"][0] == pytest.approx(0.5) and not got["one__click"][1:].any()  # zero-padded
    # a long recording: only its centred part is decoded, identical to cropping the whole
    t = np.arange(120 * 8000)
    long = 0.3 * np.sin(2 * np.pi * 440 * t / 8000) * (1 + (t // 8000) % 7) / 7  # level changes every second
    sf.write(tmp_path / "long.wav", long, 8000, subtype="FLOAT")
    part, sr = read_audio(tmp_path / "long.wav", seconds=0.5)
    whole, _ = read_audio(tmp_path / "long.wav")
    assert sr == 8000 and part.shape == (4000,)
    np.testing.assert_array_equal(part, fit_length(whole, 4000))


def test_odd_rates_and_channel_counts(tmp_path: Path) -> None:
    (tmp_path / "odd").mkdir()
    for rate, channels in ((7993, 1), (11025, 6), (44100, 3), (96000, 2)):
        x = _sine(rate)
        sf.write(tmp_path / "odd" / f"r{rate}_c{channels}.wav", np.stack([x] * channels, axis=1), rate, subtype="PCM_24")
    ds = AudioFolder({"root": str(tmp_path), "seconds": SECONDS, "fractions": [0.5, 0.25, 0.25]})
    n = 0
    for split in ("train", "valid", "test"):
        c = ds.load(split, SR)
        assert c.skips == [] and c.waveforms.shape[1] == int(SECONDS * SR)
        for wave in c.waveforms.numpy():
            inner = wave[400:-400].astype(np.float64)
            spectrum = np.abs(np.fft.rfft(inner * np.hanning(inner.size)))
            assert abs(np.argmax(spectrum) * SR / inner.size - FREQ) < SR / inner.size
            assert np.sqrt(np.mean(inner**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)
            n += 1
    assert n == 4


def test_header_sizes_that_disagree_with_the_data(tmp_path: Path) -> None:
    x = _sine(8000, 1.0)
    variants = {"streaming_ff": (0xFFFFFFFF, 0xFFFFFFFF), "streaming_zero": (0, 0), "riff_only": (0xFFFFFFFF, None)}
    for name, (riff, data) in variants.items():
        sf.write(tmp_path / f"{name}.wav", x, 8000, subtype="PCM_16")
        _patch_sizes(tmp_path / f"{name}.wav", riff, data)
        got, sr = read_audio(tmp_path / f"{name}.wav")
        assert sr == 8000 and got.shape == (8000,), name  # every sample, though the header does not say how many
        np.testing.assert_allclose(got, x, atol=1e-4)
    sf.write(tmp_path / "short_header.wav", x, 8000, subtype="PCM_16")
    _patch_sizes(tmp_path / "short_header.wav", data=8000)  # declares half the data: the declared half is read
    got, _ = read_audio(tmp_path / "short_header.wav")
    np.testing.assert_allclose(got, x[:4000], atol=1e-4)
    sf.write(tmp_path / "long_header.wav", x, 8000, subtype="PCM_16")
    _patch_sizes(tmp_path / "long_header.wav", data=64000)  # declares four times the data: truncated
    with pytest.raises(Exception, match="truncated file: the header declares 64000 data bytes, the file holds 16000"):
        read_audio(tmp_path / "long_header.wav")


def test_near_silent_clips_of_any_dataset_are_skipped() -> None:
    import torch

    from audiobench.data.base import ClipSet

    t = torch.arange(4000) / 8000
    waves = torch.stack([0.5 * torch.sin(2 * np.pi * 300 * t), 1e-6 * torch.sin(2 * np.pi * 300 * t),
                         torch.zeros(4000), torch.full((4000,), float("nan"))])
    kept = ClipSet(waves, torch.zeros(4, dtype=torch.long), list("abcd"), ["x"], 8000).drop_silent("plug:test")
    assert kept.sample_ids == ["a"]
    assert [(s.sample_id, s.reason.split(" (")[0]) for s in kept.skips] == [
        ("b", "near-silent clip"), ("c", "silent clip"), ("d", "non-finite samples")]


def test_every_class_gets_its_own_interpretation_file_whatever_its_name():
    """../shared/cases/class-slug-audio-collision: classes whose slugs coincide (``Dog`` / ``dog``) or
    vanish (``狗``, ``猫``) still name distinct files; ordinary names keep their plain slug."""
    from audiobench.store.audio import audio_name

    for classes in (["狗", "猫", "鸟"], ["Dog", "dog", "cat"], ["a b", "a-b", "A_B"]):
        names = {audio_name("clip", t, classes, one_per_clip=False) for t in range(len(classes))}
        assert len(names) == len(classes), (classes, names)
    assert [audio_name("c1", t, ["chirp_up", "tone"], False) for t in (0, 1)] == ["c1__chirp-up", "c1__tone"]
    assert audio_name("c1", 1, ["Dog", "dog", "cat"], False) == audio_name("c1", 1, ["Dog", "dog", "cat"], False)  # stable
    assert audio_name("c1", 2, ["Dog", "dog", "cat"], False) == "c1__cat"
    assert audio_name("c1", 0, ["x"], True) == "c1"


def test_an_mp3_without_audio_frames_is_skipped_with_a_true_reason(tmp_path):
    """../shared/cases/fake-mp3: libsndfile says "does not exist or is not a regular file (possibly a
    pipe?)" for an existing file it cannot decode; the skip reason says what is true."""
    from audiobench.data.audio import UnusableAudio, read_audio

    fake = tmp_path / "fake.mp3"
    fake.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\x00" * 200)
    with pytest.raises(UnusableAudio) as err:
        read_audio(fake)
    reason = str(err.value)
    assert reason.startswith("unreadable file (") and "MP3" in reason
    assert not any(w in reason for w in ("does not exist", "regular file", "pipe")), reason
