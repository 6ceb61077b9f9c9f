"""End to end: a tiny suite runs, stores, resumes, re-renders and records bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from audiobench.harness.engine import AUX_METRICS
from audiobench.harness.runner import run_suite
from audiobench.kernel.errors import AudiobenchError
from audiobench.store.run_dir import COLUMNS, load_run
from audiobench.suite import load_suite
from audiobench.tables import render_run

METRICS = ["ai", "ad", "ag", "ff", "fid_in", "sps", "comp", "mm"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    from audiobench.testing import TINY_SUITE  # the module-scoped run shares the session cache

    root = tmp_path_factory.mktemp("tiny")
    suite = root / "tiny.yaml"
    suite.write_text(yaml.safe_dump(TINY_SUITE, sort_keys=False))
    run_suite(suite, root / "run", progress=False)
    return root


def test_run_writes_store_manifest_tables_and_audio(tiny_run: Path) -> None:
    run = tiny_run / "run"
    frame = load_run(run)
    assert list(frame.columns) == COLUMNS
    assert set(frame.metric) == set(METRICS) | set(AUX_METRICS)
    assert set(frame.method) == {"saliency", "integrated_gradients", "gradcam", "random"}
    assert set(frame.row) == {"Saliency", "IG", "GradCAM", "Random"}
    assert set(frame.domain) == {"stft2mel", "mel"}
    assert set(frame.contamination) == {"none", "mixture_3db"}
    manifest = json.loads((run / "manifest.json").read_text())
    # 3 classes x 10 clips, 20% test -> 6 clips: each metric of each cell has a row or a recorded skip per clip
    counts = frame.groupby(["domain", "contamination", "method", "metric"]).size()
    skipped = pd.Series(
        [(c["domain"], c["contamination"], c["method"], s["reason"].split(":")[0]) for c in manifest["cells"] for s in c["skips"]],
        dtype=object,
    ).value_counts()
    for key, n in counts.items():
        assert n + skipped.get(key, 0) == 6, key
    assert frame.value.notna().all()

    for key in ("suite", "seed", "versions", "git", "classifier", "accuracy", "cells", "skips", "seconds"):
        assert key in manifest
    assert manifest["suite"]["methods"][1]["params"]["n_steps"] == 8  # hyper-parameters recorded
    assert 0.0 <= manifest["accuracy"]["clean_test"] <= 1.0
    assert manifest["classifier"]["selected_by"] in manifest["classifier"]["history"][0]  # a logged key
    assert len(manifest["cells"]) == 16

    tables = sorted(p.name for p in (run / "tables").iterdir())
    conditions = ("mixture_3db", "none")
    assert tables == sorted([f"main__synth__{c}.{ext}" for c in conditions for ext in ("csv", "md", "tex")]
                            + [f"meta__synth__{c}.{ext}" for c in conditions for ext in ("csv", "md")])  # + which metric to trust
    md = (run / "tables" / "main__synth__none.md").read_text()
    assert "STFT→Mel" in md and "AI↑" in md and "COMP↓" in md and "accuracy" in md
    assert "nan" not in md.lower()

    # listenable interpretations for the stft2mel cells only, 2 per cell, input clips alongside
    wavs = sorted((run / "audio").rglob("*.wav"))
    assert len(wavs) == 2 * (4 + 1) * 2  # (4 methods + input) x 2 contaminations x 2 clips
    audio, sr = sf.read(wavs[0])
    assert sr == 16000 and audio.shape == (8000,)


def test_metrics_recomputable_from_store(tiny_run: Path) -> None:
    frame = load_run(tiny_run / "run")
    wide = frame.pivot_table(index=["domain", "contamination", "method", "sample_id"], columns="metric", values="value")
    ad = 100 * np.maximum(wide.p_orig - wide.p_in, 0) / wide.p_orig
    np.testing.assert_allclose(wide.ad, ad, rtol=1e-5, atol=1e-4)
    ai = 100 * (wide.p_in > wide.p_orig + 1e-6)  # rises within float noise (1e-6) are not increases
    np.testing.assert_allclose(wide.ai, ai)
    np.testing.assert_allclose(wide.fid_in, (wide.pred_in == wide.pred_orig).astype(float))
    np.testing.assert_allclose(wide.ff, wide.p_orig - wide.p_out, atol=1e-6)


def test_rerun_resumes_and_tables_are_identical(tiny_run: Path) -> None:
    run = tiny_run / "run"
    before = {p.name: p.read_text() for p in (run / "tables").iterdir()}
    frame_before = load_run(run)
    # drop one completed cell: only it is recomputed, with the same numbers
    victim = sorted((run / "cells").glob("*.json"))[3]
    victim.unlink()
    result = run_suite(tiny_run / "tiny.yaml", run, progress=False)
    resumed = [c["resumed"] for c in result.manifest["cells"]]
    assert resumed.count(False) == 1 and resumed.count(True) == 15
    after = {p.name: p.read_text() for p in (run / "tables").iterdir()}
    assert after == before
    pd.testing.assert_frame_equal(load_run(run), frame_before)


def test_same_suite_and_seed_give_the_same_numbers(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's promise on one machine and thread count: retrained from scratch (empty cache),
    the classifier and every number are bit-identical."""
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp_path / "cache"))
    again = run_suite(tiny_run / "tiny.yaml", tmp_path / "again", progress=False)
    first = json.loads((tiny_run / "run" / "manifest.json").read_text())
    assert again.manifest["classifier"]["cached"] is False  # trained again, not loaded
    assert again.manifest["classifier"]["history"] == first["classifier"]["history"]
    pd.testing.assert_frame_equal(load_run(tmp_path / "again"), load_run(tiny_run / "run"))


def test_table_rerenders_from_store_only(tiny_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run / "run", copy)
    shutil.rmtree(copy / "cells")  # nothing to recompute from
    stored = (copy / "tables" / "main__synth__none.md").read_text()
    shutil.rmtree(copy / "tables")
    out = render_run(copy)
    assert out["main__synth__none"] == stored
    latex = render_run(copy, "latex", write=False)["main__synth__none"]
    assert "\\toprule" in latex and "\\bottomrule" in latex


def test_limit_evaluates_first_clips(write_suite, tmp_path: Path) -> None:
    suite = write_suite({"methods": ["random"], "domains": ["mel"]})
    run_suite(suite, tmp_path / "lim", limit=3, progress=False)
    frame = load_run(tmp_path / "lim")
    assert frame.groupby(["contamination", "metric"]).size().eq(3).all()


PLUGIN = '''
import torch
from audiobench.methods import Explainer
from audiobench.contracts.registry import METHODS


@METHODS.register("broken_map")
class BrokenMap(Explainer):
    """A map that is NaN for the first clip of a batch and all zeros for the second."""


    def attribute(self, x, target, ctx):
        out = torch.rand(x.shape, generator=ctx.generator(x.device))
        out[0] = float("nan")
        out[1] = 0.0
        return out
'''


def test_nan_and_zero_maps_are_recorded_skips(write_suite, tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(PLUGIN)
    suite = write_suite({"plugins": ["broken.py"], "methods": ["broken_map"], "domains": ["mel"],
                         "contaminations": ["none"], "batch_size": 6})
    result = run_suite(suite, tmp_path / "skips", progress=False)
    reasons = {(s["sample_id"], s["reason"]) for s in result.manifest["skips"]}
    frame = load_run(tmp_path / "skips")
    ids = sorted(frame.sample_id.unique())
    nan_id = next(sid for sid, r in reasons if "non-finite map" in r)
    zero_skips = {r for sid, r in reasons if sid != nan_id}
    assert zero_skips == {"sps: all-zero map: sparseness undefined", "comp: all-zero map: complexity undefined"}
    assert nan_id not in ids  # skipped entirely
    zero_id = next(sid for sid, r in reasons if sid != nan_id)
    assert set(frame[frame.sample_id == zero_id].metric) == set(METRICS + list(AUX_METRICS)) - {"sps", "comp"}
    assert frame.value.notna().all()
    assert "nan" not in result.tables["main__synth__none"].lower()


SILENT_DATASET = '''
import torch
from audiobench.data.base import ClipSet, Dataset
from audiobench.contracts.registry import DATASETS


@DATASETS.register("silent_some")
class SilentSome(Dataset):
    """Two classes of sines; the first test clip is silent."""


    def load(self, split, sample_rate):
        n = 8
        t = torch.arange(sample_rate // 2) / sample_rate
        labels = torch.arange(n) % 2
        wave = torch.stack([torch.sin(2 * torch.pi * (300 + 900 * int(c)) * t) for c in labels]) * 0.5
        if split == "test":
            wave[0] = 0.0
        ids = [f"{split}-{i}" for i in range(n)]
        return ClipSet(wave, labels, ids, ["low", "high"], sample_rate, targets=wave.clone())
'''


def test_silent_clip_is_a_recorded_skip(write_suite, tmp_path: Path) -> None:
    (tmp_path / "silent.py").write_text(SILENT_DATASET)
    suite = write_suite({"plugins": ["silent.py"], "dataset": "silent_some", "methods": ["random"],
                         "domains": ["mel"], "contaminations": ["none"]})
    result = run_suite(suite, tmp_path / "silent", progress=False)
    assert {"where": "silent_some:test", "sample_id": "test-0", "reason": "silent clip"} in result.manifest["skips"]
    assert "test-0" not in set(load_run(tmp_path / "silent").sample_id)


EMPTY_DATASET = '''
import torch
from audiobench.data.base import ClipSet, Dataset
from audiobench.contracts.registry import DATASETS


@DATASETS.register("empty_set")
class EmptySet(Dataset):
    """No clips at all."""


    def load(self, split, sample_rate):
        return ClipSet(torch.zeros(0, 100), torch.zeros(0, dtype=torch.long), [], ["a"], sample_rate)
'''


def test_empty_dataset_is_a_clear_error(write_suite, tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text(EMPTY_DATASET)
    suite = write_suite({"plugins": ["empty.py"], "dataset": "empty_set", "methods": ["random"]})
    with pytest.raises(AudiobenchError, match="no usable clips in split 'train'"):
        run_suite(suite, tmp_path / "empty", progress=False)


def test_cuda_without_gpu_is_a_clear_error(write_suite, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():  # on a GPU machine the device is valid; check the CPU path instead
        pytest.skip("a CUDA device is present")
    with pytest.raises(AudiobenchError, match="no CUDA device"):
        run_suite(write_suite(), tmp_path / "cuda", device="cuda", progress=False)


TRAINABLE = '''
import json
import torch
from audiobench.methods import Explainer
from audiobench.contracts.registry import METHODS

CALLS = []


@METHODS.register("mean_map")
class MeanMap(Explainer):
    """A trainable toy: learns the mean training representation and uses it as the map."""

    trainable = True

    def fit(self, ctx):
        key = ctx.cache_key(self.name, self.params.model_dump())
        path = ctx.cache_path(self.name, key)
        CALLS.append((ctx.model.domain.name, path.exists()))
        if not path.exists():
            with torch.no_grad():
                x = ctx.model.domain.represent(ctx.model.frontend, ctx.train.waveforms.to(ctx.device)).x
            torch.save(x.mean(0), path)
            ctx.log_dir.mkdir(parents=True, exist_ok=True)
            (ctx.log_dir / "fit.json").write_text(json.dumps({"n": len(ctx.train)}))
        self.mean = torch.load(path, weights_only=True)
        return {"key": key, "n_train": len(ctx.train), "augment": [c.key() for c in ctx.augment]}

    def attribute(self, x, target, ctx):
        return self.mean.expand_as(x).clone()
'''


def test_trainable_methods_fit_once_per_domain_and_cache(write_suite, tmp_path: Path) -> None:
    import sys

    (tmp_path / "trainable.py").write_text(TRAINABLE)
    # a plugin fit gets the suite's train.augment, never the evaluated conditions; training on an
    # evaluated one is refused like L-MAC's (train/evaluate separation)
    bad = write_suite({"plugins": ["trainable.py"], "methods": ["mean_map"],
                       "train": {"augment": [{"name": "mixture", "snr_db": [0, 10]}]}}, name="bad.yaml")
    with pytest.raises(AudiobenchError, match="method 'mean_map' trains on mixture 0 to 10 dB"):
        load_suite(bad)
    suite = write_suite({"plugins": ["trainable.py"], "methods": ["mean_map"],
                         "train": {"augment": [{"name": "white_noise", "snr_db": [0, 20]}]}})
    result = run_suite(suite, tmp_path / "fit", progress=False)
    module = next(m for name, m in sys.modules.items() if name.startswith("audiobench_plugin_") and hasattr(m, "CALLS"))
    # one fit per (domain, contamination) cell, trained once per domain and loaded from the cache after
    assert sorted(module.CALLS) == [("mel", False), ("mel", True), ("stft2mel", False), ("stft2mel", True)]
    fits = [c["fit"] for c in result.manifest["cells"]]
    assert all(f["n_train"] == 18 and f["augment"] == ["white_noise_0to20db"] for f in fits)
    assert all(f["trained_on"]["augment"] == ["white_noise_0to20db"] for f in fits)
    assert len({f["key"] for f in fits}) == 2  # the key depends on the domain
    assert (tmp_path / "fit" / "logs" / "mean-map" / "mel" / "fit.json").exists()


def test_method_folders_are_unique_within_a_suite() -> None:
    from audiobench.store.audio import method_folders
    from audiobench.suite import ComponentSpec

    rows = [("gradcam", None), ("gradcam_pp", "GradCAM++"), ("gradcam", "GradCAM"), ("random", "Input"), ("lmac", "L-MAC, FT, λg=4")]
    specs = [ComponentSpec("methods", name, {}, label) for name, label in rows]
    # GradCAM++ must not write its audio and logs into GradCAM's folder, nor a method into the inputs' one
    assert method_folders(specs) == ["gradcam", "gradcam-2", "gradcam-3", "input-2", "l-mac-ft-g-4"]


def test_gradcam_and_gradcam_pp_cells_have_their_own_id_stems() -> None:
    """Issue 27: GradCAM and GradCAM++ cells shared the id stem ``gradcam``."""
    from audiobench.harness.cells import method_stem

    assert [method_stem(x) for x in ("GradCAM", "GradCAM++", "L-MAC, FT, λg=4")] == ["gradcam", "gradcampp", "l-mac-ft-g-4"]
