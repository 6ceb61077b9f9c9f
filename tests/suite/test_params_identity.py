"""A parameter added to a component keeps every earlier identity: at its default it is left out of the
dumps that cell hashes and fit keys are computed from (``Params.added_fields``), so committed runs
and shipped fits stay valid; set to another value it enters them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from audiobench.contracts.component import Params
from audiobench.harness.scoring import in_domain_keys, suite_from_resolved
from audiobench.harness.session import list_cells
from audiobench.kernel.cache import stable_hash
from audiobench.suite import load_suite
from tests.fakedata import make_esc10
from tests.paths import ROOT


class Inner(Params):
    a: int = 1
    b: str = "x"
    added_fields: ClassVar[frozenset[str]] = frozenset({"b"})


class Outer(Params):
    c: int = 2
    inner: Inner | None = None
    d: float = 0.5
    added_fields: ClassVar[frozenset[str]] = frozenset({"d"})


def test_an_added_field_at_its_default_leaves_the_dump_and_the_hash_unchanged() -> None:
    before = {"c": 2, "inner": {"a": 1}}  # what the classes dumped before b and d existed
    assert Outer(inner=Inner()).model_dump(mode="json") == before
    assert stable_hash(Outer(inner=Inner()).model_dump(mode="json")) == stable_hash(before)
    assert json.loads(Outer(inner=Inner()).model_dump_json()) == before


def test_an_added_field_set_elsewhere_enters_the_dump_nested_or_not() -> None:
    assert Outer(inner=Inner(b="y"), d=1).model_dump() == {"c": 2, "inner": {"a": 1, "b": "y"}, "d": 1.0}
    assert Outer(c=3).model_dump() == {"c": 3, "inner": None}  # an ordinary field is always dumped
    again = Outer(**Outer(inner=Inner(b="y")).model_dump())
    assert again == Outer(inner=Inner(b="y")) and again.d == 0.5  # the dump still rebuilds the same parameters


COMMITTED = sorted(p.parent for p in (ROOT / "results").glob("*/manifest.json"))


@pytest.mark.parametrize("run", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_runs_keep_their_cell_ids(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The suites behind the committed results still give the committed cell ids: no parameter added
    since has moved a hash, so rerunning a suite into its results folder resumes instead of redoing it."""
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp_path / "cache"))
    manifest = json.loads((run / "manifest.json").read_text())
    if "root" in manifest["suite"]["dataset"].get("params", {}) and not (ROOT.parent / "shared" / "data" / "ESC-10").is_dir():
        pytest.skip("ESC-10 is not at ../shared/data/ESC-10 on this machine (its cell ids hash the file list)")
    committed = sorted(c["id"] for c in manifest["cells"])
    suite = load_suite(ROOT / manifest["suite_file"])
    ids = sorted(c.id for c, _ in list_cells(suite, output=tmp_path / "run", limit=manifest["limit"]))
    if ids != committed and stable_hash(suite.resolved()) != manifest["suite_hash"]:
        # a run of the file with --set (make demo-bd's variants): the suite the manifest resolved
        resolved = suite_from_resolved(manifest["suite"], in_domain_keys(manifest))
        ids = sorted(c.id for c, _ in list_cells(resolved, output=tmp_path / "run", limit=manifest["limit"]))
    assert ids == committed


def _located_suite(where: Path, data: Path, noise: Path) -> Path:
    suite = {
        "name": "located",
        "dataset": {"name": "esc10", "root": str(data), "seconds": 0.5},
        "frontend": {"sample_rate": 8000, "n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 32},
        "model": {"name": "cnn14", "width": 4, "depth": 3, "train": {"augment_prob": 0.5}},
        "train": {"augment": [{"name": "noise_folder", "root": str(data.parent / "train_noise"), "snr_db": [0, 20]}]},
        "contaminations": ["none", {"name": "noise_folder", "root": str(noise), "snr_db": 0}],
        "methods": ["saliency"],
        "metrics": ["ai"],
    }
    path = where / "located.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_cell_ids_do_not_depend_on_where_the_data_lies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same dataset and noise folder at two places (a checkout here, a CI machine's /check/work there)
    give the same cell ids; a changed file gives others (the ids hash what a path holds, not the path)."""
    monkeypatch.setenv("AUDIOBENCH_CACHE", str(tmp_path / "cache"))
    here = tmp_path / "here"
    make_esc10(here / "ESC-10", per_fold=1, classes=2)
    make_esc10(here / "noise", per_fold=1, classes=1)
    make_esc10(here / "train_noise", per_fold=1, classes=1)  # the classifier's augmentation: in its cache key
    there = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(here, there)

    def ids(base: Path) -> list[str]:
        cells = list_cells(_located_suite(base, base / "ESC-10", base / "noise"), output=base / "run")
        return sorted(c.id for c, _ in cells)

    first = ids(here)
    assert len(first) == 4 and first == ids(there)  # two default domains x two conditions
    clip = next((there / "noise").rglob("*.ogg"))
    clip.write_bytes(clip.read_bytes() + b"\0")  # one byte more in one noise file: another condition
    moved = ids(there)
    assert [a == b for a, b in zip(first, moved, strict=True)] == ["__none__" in c for c in first]  # noise cells move
    clip = next((there / "train_noise").rglob("*.ogg"))
    clip.write_bytes(clip.read_bytes() + b"\0")  # another training noise: another classifier, every cell moves
    assert not set(ids(there)) & set(moved)


def test_a_rows_cells_do_not_move_when_another_row_changes(tmp_path: Path) -> None:
    """Two rows of one method with the same default label are shown with their parameters appended; that
    display label depends on the other row, so the cell ids (and the seeded draws they key) hash the label
    the row has on its own: editing one row leaves the other's cells, ids and hashes alike, where they were."""
    from audiobench.harness.cells import expand_cells

    base = yaml.safe_load((ROOT / "suites" / "quickstart.yaml").read_text())
    untouched = {"name": "lime", "components": "nmf", "n_components": 8, "n_samples": 50}

    def cells(other: dict) -> tuple[list[str], list[tuple[str, str, str]]]:
        path = tmp_path / "suite.yaml"
        path.write_text(yaml.safe_dump({**base, "methods": [other, untouched]}))
        suite = load_suite(path)
        mine = [(c.id, c.hash, c.explain_hash) for c in expand_cells(suite, {}) if c.method is suite.methods[1]]
        rebuilt = suite_from_resolved(suite.resolved())  # as `audiobench score` reads a run's manifest
        assert [(c.id, c.hash, c.explain_hash) for c in expand_cells(rebuilt, {}) if c.method is rebuilt.methods[1]] == mine
        return [m.label for m in suite.methods], mine

    clash_labels, clash = cells({**untouched, "fill": "mean"})  # both rows are LIME (nmf): labels get parameters
    alone_labels, alone = cells({"name": "lime", "components": "time", "n_samples": 50})
    assert clash_labels[1] != alone_labels[1] == "LIME (nmf)"  # the display label moved with the other row
    assert clash == alone and len(clash) == 6  # its 3 domains x 2 conditions did not
