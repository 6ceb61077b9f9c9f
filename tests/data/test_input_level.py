"""The level clips reach the model at (issue 23): peak-normalised by default, as recorded for a model that
declares ``peak_normalise = False``: in the clean condition, in mixtures at an SNR and at fixed gains, in
training mixtures, in the run's input WAVs, cell ids and manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from audiobench.contracts.registry import MODELS, load_plugin_file
from audiobench.data.base import ClipSet
from audiobench.data.contaminations import Mixture, NoContamination, WhiteNoise, effective_snr_db
from audiobench.data.levels import at_input_level, input_level, peak_normalising
from audiobench.harness.runner import run_suite
from audiobench.harness.session import list_cells
from audiobench.models.augment import mix_rows
from audiobench.store.run_dir import load_manifest
from tests.paths import TESTS

PLUGIN = TESTS / "plugins" / "recorded_level.py"


def _clips(n: int = 4, length: int = 800) -> ClipSet:
    gen = torch.Generator().manual_seed(0)
    wave = torch.randn(n, length, generator=gen) * torch.tensor([0.01, 0.1, 0.3, 0.05])[:n, None]  # four levels
    return ClipSet(wave, torch.arange(n) % 2, [f"c{i}" for i in range(n)], ["a", "b"], 16000)


def test_the_clean_condition_is_peak_normalised_by_default_and_as_recorded_when_declared() -> None:
    clips = _clips()
    assert peak_normalising()
    normalised = NoContamination().apply(clips, clips, 0)
    assert torch.allclose(normalised.waveforms.abs().amax(dim=1), torch.ones(4))
    with input_level(False):
        assert not peak_normalising()
        recorded = NoContamination().apply(clips, clips, 0)
        assert torch.equal(at_input_level(clips).waveforms, clips.waveforms)
    assert peak_normalising()  # the context is left as found
    assert torch.equal(recorded.waveforms, clips.waveforms)  # bit for bit: nothing rescaled
    assert recorded is not clips  # a copy, never the caller's set


def test_a_mixture_keeps_the_clip_at_its_recorded_level_and_adds_the_other_at_the_snr() -> None:
    clips, pool = _clips(), _clips()
    pool.waveforms = pool.waveforms.flip(1) * 3  # partners of other levels
    mix = Mixture({"snr_db": 3.0})
    with input_level(False):
        out = mix.apply(clips, pool, seed=0)
    kept = {sid: i for i, sid in enumerate(clips.sample_ids)}
    rows = [kept[s] for s in out.sample_ids]
    assert torch.allclose(out.clean, clips.waveforms[rows], atol=1e-7)  # the clip as recorded inside the mixture
    assert torch.allclose(effective_snr_db(out.waveforms, out.clean), torch.full((len(rows),), 3.0, dtype=torch.float64), atol=1e-4)
    assert out.waveforms.abs().amax() < 1.0  # nothing brought to full scale
    default = mix.apply(clips, pool, seed=0)
    assert torch.allclose(default.waveforms.abs().amax(dim=1), torch.ones(len(default)))
    # the same mixture up to each row's scale: the two levels differ only by the normalisation
    ratio = default.waveforms / out.waveforms
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-4)


def test_fixed_gains_scale_only_what_is_added_when_the_level_is_kept() -> None:
    clips = _clips()
    noise = WhiteNoise({"mix": "fixed_gain"})
    with input_level(False):
        out = noise.apply(clips, clips, seed=0)
    added = out.waveforms - clips.waveforms
    assert torch.allclose(out.clean, clips.waveforms)
    # the reference mix: peak-normalised clip + 0.5 noise, divided by the clip's scale 1/peak: noise 0.5 * peak
    peak = clips.waveforms.abs().amax(dim=1)
    assert torch.allclose(added.std(dim=1), 0.5 * peak, rtol=0.15)


def test_training_mixtures_follow_the_level() -> None:
    x, other = _clips().waveforms, _clips().waveforms.flip(0)
    chosen = torch.tensor([True, False, True, False])
    snr = torch.full((4,), 6.0)
    assert torch.allclose(mix_rows(x, other, snr, chosen).abs().amax(dim=1), torch.ones(4))
    with input_level(False):
        kept = mix_rows(x, other, snr, chosen)
    assert torch.equal(kept[~chosen], x[~chosen])
    assert torch.allclose(10 * torch.log10(x[chosen].pow(2).mean(1) / (kept - x)[chosen].pow(2).mean(1)), snr[chosen], atol=1e-3)


def _suite(tmp_path: Path, model: str) -> Path:
    suite = {
        "name": f"level_{model}", "seed": 0, "plugins": [str(PLUGIN)],
        "dataset": {"name": "planted", "classes": 6, "clips_per_class": 8, "splits": [0.5, 0.1, 0.4], "seconds": 1.0,
                    "cue_class": 0, "twin_class": 1, "cue_hz": 3000, "cue_db": -6, "test_classes": [0]},
        "model": {"name": model, "band_class": 0, "twin_class": 1, "band_hz": [2900, 3100], "threshold": 8.0},
        "split": "test", "batch_size": 4, "domains": ["stft2mel"],
        "contaminations": ["none", {"name": "white_noise", "snr_db": 10}],
        "methods": ["energy"], "metrics": ["ai", "ad"], "audio": {"n": 2},
    }
    path = tmp_path / f"{model}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_a_run_reads_recorded_levels_records_them_and_keys_its_cells_apart(tmp_path: Path) -> None:
    load_plugin_file(PLUGIN)
    assert MODELS.get("band_energy_recorded").peak_normalise is False
    assert any("recorded level" in line for line in MODELS.get("band_energy_recorded").details())
    out = tmp_path / "run"
    run_suite(_suite(tmp_path, "band_energy_recorded"), output=out, progress=False)
    manifest = load_manifest(out)
    assert manifest["input_level"] == "recorded"
    wav, _ = sf.read(next((out / "audio" / "none" / "input").glob("*.wav")))
    assert 0.5 < np.abs(wav).max() < 0.95  # the planted clips peak at 0.9 as generated, never brought to 1.0
    # the same suite under the default level: another id for every cell, nothing shared by accident
    path = _suite(tmp_path, "band_energy_recorded")
    recorded = [c.id for c, _ in list_cells(path, output=tmp_path / "ids")]
    spec = MODELS.get("band_energy_recorded")
    try:
        spec.peak_normalise = True
        normalised = [c.id for c, _ in list_cells(path, output=tmp_path / "ids")]
    finally:
        spec.peak_normalise = False
    assert not set(recorded) & set(normalised)
    default = tmp_path / "default"
    run_suite(_suite(tmp_path, "band_energy"), output=default, progress=False)
    assert "input_level" not in load_manifest(default)  # earlier manifests stay as they were
    wav, _ = sf.read(next((default / "audio" / "none" / "input").glob("*.wav")))
    assert np.abs(wav).max() > 0.99
