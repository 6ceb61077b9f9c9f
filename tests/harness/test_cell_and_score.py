"""Cells run on their own (``--cell``) and kept masks re-scored (``audiobench score``), each checked
against the full run's own rows."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from audiobench.cli import main
from audiobench.contracts.registry import load_plugin_file
from audiobench.store.masks import read_masks
from audiobench.store.run_dir import RunStore, load_manifest, load_run
from audiobench.testing import tiny_classifier

SUITE = {
    "name": "cells",
    **tiny_classifier(),  # the tiny suite's data, front end and classifier: trained once per session
    "batch_size": 4,
    "domains": ["stft2mel", "mel"],
    "contaminations": ["none", {"name": "white_noise", "snr_db": 5}],
    "methods": ["saliency", "random", {"name": "l2i", "k": 6, "epochs": 2, "nmf_iter": 10, "blocks": 2, "rt": 0.1}],
    "metrics": ["ai", "ad", "ff", "fid_in", "sps", "ff_l2i", "ff_l2i_random", "n_components", "fidelity_top1"],
    "audio": {"n": 1},
    "masks": {"precision": "float32"},  # exact: score must reproduce the run to float rounding
}
KEY = ["domain", "contamination", "row", "sample_id", "target", "metric"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cells")
    suite = root / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    assert main(["run", str(suite), "-o", str(root / "full"), "-q"]) == 0
    return suite, root / "full"


def test_a_cell_in_a_fresh_process_writes_the_rows_of_the_full_run(full_run, tmp_path: Path) -> None:
    suite, full = full_run
    manifest = load_manifest(full)
    cell = next(c for c in manifest["cells"] if c["method"] == "l2i" and c["contamination"] != "none")
    env = {**os.environ, "PYTHONHASHSEED": "123"}  # another hash seed: nothing may depend on it
    out = subprocess.run([sys.executable, "-m", "audiobench", "run", str(suite), "--cell", cell["id"], "-o",
                          str(tmp_path / "one"), "-q"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "other cells remain" in out.stderr
    alone, _ = RunStore(tmp_path / "one").read_cell(cell["id"])
    ours, _ = RunStore(full).read_cell(cell["id"])
    assert sorted(p.name for p in (tmp_path / "one" / "cells").glob("*.parquet")) == [f"{cell['id']}.parquet"]
    merged = ours.merge(alone, on=KEY, how="outer", suffixes=("_full", "_cell"), indicator=True)
    assert (merged["_merge"] == "both").all() and len(merged) == len(ours) > 0
    np.testing.assert_allclose(merged.value_cell, merged.value_full, rtol=0, atol=1e-6)
    # its kept masks are the full run's too
    a, b = read_masks(full / "masks" / f"{cell['id']}.npz"), read_masks(tmp_path / "one" / "masks" / f"{cell['id']}.npz")
    assert a.sample_ids == b.sample_ids and np.array_equal(a.targets, b.targets)
    np.testing.assert_allclose(a.explanation.mask.float().numpy(), b.explanation.mask.float().numpy(), atol=1e-3)


def test_unknown_cell_is_a_one_line_error(full_run, capsys: pytest.CaptureFixture) -> None:
    suite, full = full_run
    assert main(["run", str(suite), "--cell", "nosuchcell", "-o", str(full), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a cell of this suite" in err[0]


def test_score_reproduces_the_runs_metrics_and_adds_new_ones(full_run, tmp_path: Path, capsys) -> None:
    _, full = full_run
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(full), str(copy)], check=True)
    before = load_run(copy)
    stamp = {p.name: p.stat().st_mtime_ns for p in (copy / "cells").iterdir()}
    assert main(["score", str(copy), "-q"]) == 0  # every metric is stored: nothing is recomputed or rewritten
    assert "nothing recomputed" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (copy / "cells").iterdir()} == stamp
    assert main(["score", str(copy), "--replace", "-q"]) == 0
    moved = capsys.readouterr().err
    assert "ai: " in moved and "stored values moved" in moved
    again = load_run(copy)
    # the stored probabilities were recomputed with the metrics: the rows agree with each other
    wide = again.pivot_table(index=["domain", "contamination", "row", "sample_id", "target"], columns="metric", values="value")
    np.testing.assert_array_equal(wide.ai.to_numpy(), 100.0 * (wide.p_in > wide.p_orig + 1e-6).to_numpy())
    merged = before.merge(again, on=KEY, how="outer", suffixes=("_run", "_score"), indicator=True)
    assert (merged["_merge"] == "both").all()
    np.testing.assert_allclose(merged.value_score, merged.value_run, rtol=0, atol=1e-6)
    # a metric the run did not have, from the kept masks alone, equals its formula on the stored rows
    assert main(["score", str(copy), "--metrics", "ag", "mm", "-q"]) == 0
    added = load_run(copy)
    assert {"ag", "mm"} <= set(added.metric) and "ag" in load_manifest(copy)["metrics"]
    wide = added.pivot_table(index=["domain", "contamination", "row", "sample_id", "target"], columns="metric",
                             values="value")
    room = 1 - wide.p_orig
    ag = 100 * np.where(room > 0, (wide.p_in - wide.p_orig).clip(lower=0) / room.where(room > 0, 1), 0)
    np.testing.assert_allclose(wide.ag, ag, atol=1e-6)
    assert set(added[added.metric == "mm"].row) == set(before.row)  # every method, from its stored masks


def test_kept_masks_cover_every_scored_row_within_budget(full_run) -> None:
    _, full = full_run
    frame = load_run(full)
    for cell in load_manifest(full)["cells"]:
        stored = read_masks(full / "masks" / f"{cell['id']}.npz")
        rows = frame[(frame.domain == cell["domain"]) & (frame.contamination == cell["contamination"])
                     & (frame.row == cell["row"]) & (frame.metric == "p_orig")]
        assert sorted(zip(stored.sample_ids, stored.targets.tolist(), strict=True)) == sorted(
            zip(rows.sample_id, rows.target, strict=True))
        assert stored.precision == "float32" and str(stored.explanation.mask.dtype) == "torch.float32"
        if cell["method"] == "l2i":
            assert set(stored.explanation.removals) == {"relevant", "random"}
            assert stored.explanation.parts is not None  # kept for the clips written as audio


def test_plugin_files_load_under_a_name_every_process_agrees_on(tmp_path: Path) -> None:
    plugin = tmp_path / "my-plugin.py"
    plugin.write_text("VALUE = 1\n")
    load_plugin_file(plugin)
    digest = hashlib.sha256(str(plugin.resolve()).encode()).hexdigest()[:16]
    assert f"audiobench_plugin_my_plugin_{digest}" in sys.modules


def test_log8_keeps_zeros_and_ones_exact_and_values_within_its_stated_error() -> None:
    import torch

    from audiobench.store.masks import LOG8_FLOOR, decode, encode

    m = torch.cat([torch.tensor([0.0, 1.0, LOG8_FLOOR, 5e-7]), torch.logspace(-6, 0, 1000), torch.rand(1000)])
    code = encode(m, "log8")
    assert code.dtype == np.uint8
    back = decode(code, "log8")
    assert back[0] == 0 and back[1] == 1 and back[3] == 0  # below the floor: 0
    inside = m >= LOG8_FLOOR
    rel = ((back[inside] - m[inside]).abs() / m[inside]).max()
    assert rel <= 0.028
    assert np.array_equal(decode(encode(m, "float32"), "float32").numpy(), m.numpy())
    assert (decode(encode(m, "float16"), "float16") - m).abs().max() <= 4.9e-4


def test_an_ambiguous_cell_prefix_names_its_matches(full_run, capsys: pytest.CaptureFixture) -> None:
    suite, full = full_run
    assert main(["run", str(suite), "--cell", "mel__", "-o", str(full), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cell mel__ matches" in err[0] and "mel__none__" in err[0] and "give more of the id" in err[0]
