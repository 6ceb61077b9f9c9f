"""The sanity stage end to end on the tiny suite: randomisation, ROAR, plots, localisation and
intervals in one run; results in the run directory and manifest; a second run resumes."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from audiobench.harness.runner import run_suite
from audiobench.testing import TINY_SUITE

SANITY = {
    "metrics": ["ai", "ff", "gt_mass", "gt_auc", "sisdr_target", "sisdr_contaminant"],
    "methods": ["saliency", "gradcam", "random"],
    "tables": [{"name": "main", "ci": "bootstrap95"}],
    "sanity": {
        "randomisation": {"domain": "stft2mel", "clips": 4},
        "roar": {"domain": "mel", "methods": ["Saliency", "GradCAM"], "fractions": [0.5], "seeds": 2, "epochs": 1,
                 "model": {"width": 2}},
        "plots": {"clips": 1},
    },
}


@pytest.fixture(scope="module")
def sanity_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sanity")
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY_SUITE, **SANITY}, sort_keys=False))
    first = run_suite(path, root / "run", progress=False)
    return path, root / "run", first


def test_stages_write_tables_plots_and_manifest(sanity_run):
    _, run, result = sanity_run
    sanity = result.manifest["sanity"]
    assert set(sanity) >= {"randomisation", "roar", "plots"}
    # randomisation: head, the two blocks, the stem; the random control draws the same noise at every
    # depth (it ignores the model), so its SSIM is 1 throughout
    summary = pd.DataFrame(sanity["randomisation"]["summary"])
    assert sanity["randomisation"]["steps"] == ["none", "head", "conv_block2", "conv_block1", "stem"]
    rnd = summary[(summary.row == "Random") & (summary.metric == "ssim")]
    assert rnd["mean"].tolist() == pytest.approx([1.0] * 5)
    sal = summary[(summary.row == "Saliency") & (summary.metric == "ssim")].sort_values("step")
    assert sal["mean"].iloc[0] == pytest.approx(1.0) and sal["mean"].iloc[-1] < 0.95
    assert (sal["low"] <= sal["mean"] + 1e-12).all() and (sal["mean"] <= sal["high"] + 1e-12).all()
    # ROAR: the random baseline at 0 % (shared start) and 50 %, each method at 50 %, two seeds each
    roar = pd.DataFrame(sanity["roar"]["summary"])
    assert set(roar.row) == {"Random removal", "Saliency", "GradCAM"}
    assert (roar["n"] == 2).all() and roar["mean"].between(0, 1).all()
    assert sorted(roar[roar.row == "Saliency"].fraction) == [0.0, 0.5]
    for name in ("sanity_randomisation.md", "sanity_randomisation.csv", "sanity_roar.md", "sanity_roar.csv"):
        assert (run / "tables" / name).stat().st_size > 100
    for stem in ("plots/randomisation", "plots/roar"):
        assert (run / f"{stem}.png").exists() and (run / f"{stem}.pdf").exists()
    assert len(list((run / "plots" / "clips").glob("*.png"))) == 4  # 1 clip x 2 domains x 2 conditions
    on_disk = json.loads((run / "manifest.json").read_text())
    assert on_disk["sanity"]["plots"] == sanity["plots"]
    assert on_disk["suite"]["sanity"]["roar"]["seeds"] == 2


def test_localisation_rows_and_intervals(sanity_run):
    _, run, result = sanity_run
    frame = pd.read_parquet(run / "per_sample.parquet")
    gt = frame[frame.metric == "gt_auc"]
    assert gt["value"].between(0, 1).all() and set(gt.domain) == {"stft2mel", "mel"}
    assert set(frame[frame.metric == "sisdr_target"].domain) == {"stft2mel"}  # not listenable: no rows
    mel_cell = next(c for c in result.manifest["cells"] if c["domain"] == "mel")
    assert "listenable" in mel_cell["not_applicable"]["sisdr_target"]
    md = (run / "tables" / "main__synth__none.md").read_text()
    assert "±" in md


def test_second_run_resumes_everything(sanity_run):
    path, run, first = sanity_run
    again = run_suite(path, run, progress=False)
    assert again.manifest["sanity"]["randomisation"]["seconds"] == {}  # nothing recomputed
    assert again.manifest["sanity"]["roar"]["seconds"] == {}
    assert again.manifest["sanity"]["roar"]["summary"] == first.manifest["sanity"]["roar"]["summary"]


def test_score_recomputes_localisation_from_kept_masks_and_keeps_the_sanity_record(sanity_run):
    from audiobench.harness.scoring import score_run

    _, run, first = sanity_run
    before = pd.read_parquet(run / "per_sample.parquet")
    result = score_run(run, ["gt_mass", "gt_auc"], progress=False, replace=True)
    assert set(result.changes) >= {"gt_mass", "gt_auc"} and result.changes["gt_auc"]["rows"] > 0
    after = pd.read_parquet(run / "per_sample.parquet")
    key = ["domain", "contamination", "row", "sample_id", "target", "metric"]
    both = before.merge(after, on=key, suffixes=("_run", "_score"))
    both = both[both.metric.isin(["gt_mass", "gt_auc"])]
    assert len(both) == len(before[before.metric.isin(["gt_mass", "gt_auc"])]) > 0
    # the run scored float32 masks, score reads them back at log8 (relative error <= 2.8 %)
    assert (both.value_run - both.value_score).abs().max() < 0.03
    assert result.manifest["sanity"]["roar"]["summary"] == first.manifest["sanity"]["roar"]["summary"]
    assert result.manifest["suite"]["sanity"]["roar"]["seeds"] == 2
