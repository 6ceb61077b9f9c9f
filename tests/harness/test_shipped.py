"""Shipped artefacts (audiobench/kernel/shipped.py): content-pinned trained weights served on a cache miss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from audiobench.harness.runner import run_suite
from audiobench.kernel import shipped
from audiobench.kernel.cache import cache_dir
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import FitContext
from tests.paths import ROOT


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp_path / "cache"))
    return cache_dir()


def make_store(folder: Path, rel: str, state: dict, info: dict) -> Path:
    """A store holding one cache entry ``rel`` (.pt and .json) and its index."""
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / f"{rel}.pt")
    (folder / f"{rel}.json").write_text(json.dumps(info))
    files = {f"{rel}{s}": shipped.sha256(folder / f"{rel}{s}") for s in (".pt", ".json")}
    (folder / shipped.INDEX).write_text(json.dumps({"files": files}))
    return folder


def test_a_miss_is_served_from_the_store_and_recorded(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path / "store", "methods/toy/abc", {"w": torch.arange(3.0)}, {"history": [], "epochs": 2})
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", str(store))
    weights, meta = cache / "methods/toy/abc.pt", cache / "methods/toy/abc.json"
    assert shipped.restore(weights, meta) is True
    assert torch.equal(torch.load(weights)["w"], torch.arange(3.0))
    info = json.loads(meta.read_text())
    assert info["epochs"] == 2 and info["shipped"] == {"store": "store", "sha256": shipped.sha256(store / "methods/toy/abc.pt")}
    assert shipped.restore(weights, meta) is False  # present: left alone
    other = cache / "methods/toy/zzz.pt", cache / "methods/toy/zzz.json"
    assert shipped.restore(*other) is False and not other[0].exists()  # not shipped: the caller trains


def test_cached_fit_loads_a_shipped_fit_without_training(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path / "store", "methods/toy/k1", {"w": torch.ones(2)}, {"key": "k1", "history": [{"epoch": 1}]})
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", str(store))
    ctx = FitContext(None, None, None, [], 0, torch.device("cpu"), {}, tmp_path / "logs")  # type: ignore[arg-type]
    loaded = {}

    def train(log_path: Path):
        raise AssertionError("a shipped fit must not be retrained")

    info = ctx.cached_fit("toy", "k1", train, loaded.update)
    assert info["cached"] is True and info["shipped"]["store"] == "store" and torch.equal(loaded["w"], torch.ones(2))
    assert (tmp_path / "logs" / "train.jsonl").read_text() == '{"epoch": 1}\n'


def test_a_tampered_file_is_an_error_not_a_retrain(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path / "store", "classifiers/c1", {"w": torch.ones(2)}, {"hash": "c1"})
    torch.save({"w": torch.zeros(2)}, store / "classifiers/c1.pt")
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", str(store))
    with pytest.raises(AudiobenchError, match="does not match the sha256"):
        shipped.restore(cache / "classifiers/c1.pt", cache / "classifiers/c1.json")
    assert shipped.verify(store) and "sha256" in shipped.verify(store)[0]


def test_off_trains_from_scratch_and_drops_shipped_copies(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path / "store", "classifiers/c1", {"w": torch.ones(2)}, {"hash": "c1"})
    weights, meta = cache / "classifiers/c1.pt", cache / "classifiers/c1.json"
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", str(store))
    assert shipped.restore(weights, meta)
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", "off")
    assert shipped.stores() == [] and shipped.restore(weights, meta) is False
    assert not weights.exists() and not meta.exists()  # the copy is gone: the caller retrains
    weights.write_bytes(b"trained here"), meta.write_text("{}")
    assert shipped.restore(weights, meta) is False and weights.exists()  # trained here: kept


def test_update_writes_a_run_s_artefacts_with_their_hashes(cache: Path, tmp_path: Path) -> None:
    for rel in ("classifiers/c1", "methods/lmac/base1", "methods/lmac/ft1", "methods/l2i/f1"):
        (cache / rel).parent.mkdir(parents=True, exist_ok=True)
        (cache / f"{rel}.pt").write_bytes(rel.encode())
        (cache / f"{rel}.json").write_text(json.dumps({"key": rel, "shipped": {"store": "x"}}))
    cells = [{"method": "lmac", "fit": {"key": "ft1", "base": {"key": "base1"}}}, {"method": "l2i", "fit": {"key": "f1"}},
             {"method": "l2i", "fit": {"key": "f1"}}, {"method": "saliency", "fit": {}}]
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"classifier": {"hash": "c1"}, "cells": cells, "suite": {"name": "t"}}))
    store = tmp_path / "artifacts" / "t"
    index = shipped.update(run, store)
    assert sorted(index) == sorted(f"{r}{s}" for r in ("classifiers/c1", "methods/lmac/base1", "methods/lmac/ft1",
                                                        "methods/l2i/f1") for s in (".pt", ".json"))
    assert shipped.verify(store) == []
    assert "shipped" not in json.loads((store / "methods/l2i/f1.json").read_text())  # what training wrote
    (cache / "methods/l2i/f1.pt").unlink()
    with pytest.raises(AudiobenchError, match="not in the cache"):
        shipped.update(run, store)


def test_the_repository_store_is_intact() -> None:
    stores = sorted(p.parent.name for p in shipped.REPO_ARTIFACTS.glob(f"*/{shipped.INDEX}"))
    assert stores == ["esc10", "planted", "planted_control", "quickstart", "quickstart_ast", "quickstart_td", "synth_multilabel",
                      "synth_multilabel_bd", "synth_multilabel_bd_nopred", "synth_multilabel_bd_posthoc",
                      "synth_multilabel_bd_recipe", "synth_zs"]
    assert all(shipped.verify(shipped.REPO_ARTIFACTS / name) == [] for name in stores)


def _run_synth_zs_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, methods: tuple[str, ...], metrics: list[str],
                        limit: int):
    """``suites/synth_zs.yaml`` reduced to ``methods``, the clean condition and ``metrics``, run on
    ``limit`` clips from an empty cache and the repository's shipped store."""
    import yaml

    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUDIOBENCH_SHIPPED", raising=False)
    suite = yaml.safe_load((ROOT / "suites" / "synth_zs.yaml").read_text())
    suite["methods"] = [m for m in suite["methods"] if isinstance(m, dict) and m["name"] in methods]
    suite["contaminations"], suite["metrics"], suite["tables"] = ["none"], metrics, ["main"]
    path = tmp_path / "synth_zs.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return run_suite(path, tmp_path / "run", limit=limit, progress=False)


def test_synth_zs_on_an_empty_cache_trains_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make demo-zs` on a fresh machine: the zero-shot model and both LMAC-ZS decoders come from the
    shipped store (their cache keys still match it), so the committed tables are regenerated."""
    manifest = _run_synth_zs_clean(tmp_path, monkeypatch, ("lmac_zs",), ["ai", "mm"], limit=2).manifest
    committed = json.loads((ROOT / "results" / "synth_zs" / "manifest.json").read_text())
    assert manifest["classifier"]["shipped"]["store"] == "synth_zs"
    assert manifest["classifier"]["hash"] == committed["classifier"]["hash"]
    fits = [c["fit"] for c in manifest["cells"]]
    assert len(fits) == 4 and all(f["cached"] is True and f["shipped"]["store"] == "synth_zs" for f in fits)  # 2 rows x 2 domains
    assert {f["key"] for f in fits} == {c["fit"]["key"] for c in committed["cells"] if c["method"] == "lmac_zs"}


def test_shipped_lmac_zs_shuts_masks_off_for_unrelated_prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LMAC-ZS paper Fig. 3-4 on the shipped embedded model and decoders (nothing trains): explained for
    every prompt of 30 clean clips, the mask mean grows with the prompt-audio similarity and is smaller
    for unrelated prompts than for the predicted one, on average and for most clips; GradCAM++'s does not
    follow the similarity."""
    import pandas as pd

    from audiobench.tables.prompts import prompt_rows, prompt_summary

    result = _run_synth_zs_clean(tmp_path, monkeypatch, ("lmac_zs", "gradcam_pp"), ["ai", "mm", "similarity"], limit=30)
    assert all(c["fit"]["cached"] for c in result.manifest["cells"] if c["method"] == "lmac_zs")
    summary = prompt_summary(prompt_rows(pd.read_parquet(tmp_path / "run" / "per_sample.parquet")))
    lmac = summary[summary["row"] == "LMAC-ZS (FiLM + gate)"]
    assert len(lmac) == 2  # both domains
    # the variant row, measured on all 100 clips: r 0.58 (stft2mel), 0.67 (mel); mask mean 0.05-0.18
    # unrelated vs 0.35-0.49 predicted, smaller on 90 % of the clips; GradCAM++ r 0.04. Before the
    # silence anchor and the similarity gate: r -0.08 to 0.32, unrelated masks smaller on about half the clips.
    assert (lmac["pearson_r"] > 0.4).all(), lmac
    assert (lmac["mm_unrelated"] < 0.5 * lmac["mm_predicted"]).all(), lmac
    assert (lmac["share_unrelated_smaller"] > 0.75).all(), lmac
    # the paper's decoder (cross-attention to the one prompt embedding) hardly follows the prompt here:
    # r 0.05 / 0.09, unrelated masks as large as the predicted one's (0.35 vs 0.35; 0.33 vs 0.33)
    paper = summary[summary["row"] == "LMAC-ZS"]
    assert len(paper) == 2 and (paper["pearson_r"].abs() < 0.3).all(), paper
    assert (paper["mm_unrelated"] > 0.8 * paper["mm_predicted"]).all(), paper
    gradcam = summary[summary["method"] == "gradcam_pp"]
    assert (gradcam["pearson_r"].abs() < 0.2).all(), gradcam


def test_quickstart_on_an_empty_cache_trains_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make demo` on a fresh machine: classifier, L-MAC, L2I and PIQ fits all come from the shipped store
    (so their cache keys still match it), and the manifest says so."""
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUDIOBENCH_SHIPPED", raising=False)
    result = run_suite(ROOT / "suites" / "quickstart.yaml", tmp_path / "run", limit=2, progress=False)
    manifest = result.manifest
    assert manifest["classifier"]["cached"] is True and manifest["classifier"]["shipped"]["store"] == "quickstart"
    fits = [c["fit"] for c in manifest["cells"] if c["method"] in ("lmac", "l2i", "piq")]
    assert len(fits) == 3 * 2 * (4 + 4 + 1)  # per domain and condition: L-MAC, three FT rows, L2I at four thresholds, PIQ
    assert all(f["cached"] is True and f["shipped"]["store"] == "quickstart" for f in fits)
    assert all(f["base"]["shipped"]["store"] == "quickstart" for f in fits if "base" in f)
    committed = json.loads((ROOT / "results" / "quickstart" / "manifest.json").read_text())
    assert manifest["classifier"]["hash"] == committed["classifier"]["hash"]
    assert committed["classifier"]["shipped"] == manifest["classifier"]["shipped"]  # the committed tables' classifier


def test_an_outdated_shipped_copy_is_refreshed_and_a_local_entry_is_kept_with_a_warning(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, meta = cache / "classifiers/c1.pt", cache / "classifiers/c1.json"
    store = make_store(tmp_path / "store", "classifiers/c1", {"w": torch.ones(2)}, {"hash": "c1"})
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", str(store))
    assert shipped.restore(weights, meta) is True
    make_store(store, "classifiers/c1", {"w": torch.full((2,), 7.0)}, {"hash": "c1"})  # re-shipped, same key
    assert shipped.restore(weights, meta) is True  # the old copy is replaced, not silently used
    assert torch.equal(torch.load(weights)["w"], torch.full((2,), 7.0))
    assert json.loads(meta.read_text())["shipped"]["sha256"] == shipped.sha256(store / "classifiers/c1.pt")
    assert shipped.restore(weights, meta) is False and capsys.readouterr().err == ""  # current copy: no noise
    torch.save({"w": torch.zeros(2)}, weights)
    meta.write_text(json.dumps({"hash": "c1"}))  # trained on this machine
    assert shipped.restore(weights, meta) is False
    assert torch.equal(torch.load(weights)["w"], torch.zeros(2))  # kept
    assert "trained on this machine" in capsys.readouterr().err


@pytest.mark.parametrize("index, words", [("<<<<<<< HEAD\n{}", "is not valid JSON"), ('{"file": {}}', "has no 'files'"),
                                          ("[1, 2]", "has no 'files'"), ('{"files": [1]}', "has no 'files' mapping")])
def test_a_damaged_index_is_one_line_naming_it(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 index: str, words: str) -> None:
    """../shared/cases/shipped-store-errors: a merge-conflicted or foreign index.json names itself."""
    store = make_store(tmp_path / "store", "methods/toy/abc", {"w": torch.ones(1)}, {"history": []})
    (store / shipped.INDEX).write_text(index)
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", str(store))
    with pytest.raises(AudiobenchError, match=words) as err:
        shipped.restore(cache / "methods/toy/abc.pt", cache / "methods/toy/abc.json")
    assert str(store / shipped.INDEX) in str(err.value) and "\n" not in str(err.value)


def test_a_shipped_setting_that_names_nothing_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in AUDIOBENCH_SHIPPED (or an unmounted share) would retrain everything without a word."""
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", str(tmp_path / "goood"))
    with pytest.raises(AudiobenchError, match="no such folder; unset it"):
        shipped.stores()
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", str(tmp_path / "empty"))
    with pytest.raises(AudiobenchError, match="no index.json in it"):
        shipped.stores()
    monkeypatch.setenv("AUDIOBENCH_SHIPPED", "off")
    assert shipped.stores() == []
