"""ESC-10 in its official layout (class folders of Ogg Vorbis clips) on a tiny generated tree."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

from audiobench.contracts.registry import DATASETS
from audiobench.data.esc10 import ESC10
from audiobench.data.files import FileParams
from audiobench.kernel.errors import AudiobenchError
from audiobench.suite import load_suite
from audiobench.suite.lines import SuiteErrors
from tests.fakedata import make_esc10

SR = 8000
OBTAIN = "ESC-10 is at https://github.com/karoldvl/ESC-10 (CC BY 3.0)"


@pytest.fixture(scope="module")
def esc10(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_esc10(tmp_path_factory.mktemp("data") / "ESC-10", per_fold=2, classes=4, broken=True)


def _ds(root: Path, **params) -> ESC10:
    return ESC10({"root": str(root), "seconds": 0.5, **params})


def test_registered_with_a_required_root_and_the_lmac_folds() -> None:
    assert DATASETS.get("esc10") is ESC10
    params = ESC10.Params.model_fields
    assert params["root"].is_required()
    assert (params["train_folds"].default, params["valid_folds"].default, params["test_folds"].default) == ((1, 2, 3), (4,), (5,))
    assert params["seconds"].default == FileParams.model_fields["seconds"].default == 5.0
    with pytest.raises(ValidationError, match="root"):
        ESC10({})
    details = "\n".join(ESC10.details())
    assert "https://github.com/karoldvl/ESC-10" in details and "CC BY 3.0" in details and "Piczak" in details


def test_splits_by_fold_class_order_and_ids(esc10: Path) -> None:
    ds = _ds(esc10)
    assert ds.check() == [] and ds.class_count() == 4 and ds.folds() == {1, 2, 3, 4, 5}
    train, valid, test = (ds.load(s, SR) for s in ("train", "valid", "test"))
    # folder-number order, the number prefix dropped (alphabetical order would put Baby cry first)
    assert test.class_names == ["Dog bark", "Rain", "Sea waves", "Baby cry"]
    assert [len(train), len(valid), len(test)] == [24, 8, 8]  # 4 classes x 2 clips x folds 1-3 / 4 / 5
    assert {sid[0] for sid in train.sample_ids} == {"1", "2", "3"}
    assert {sid[0] for sid in valid.sample_ids} == {"4"} and {sid[0] for sid in test.sample_ids} == {"5"}
    assert "5-105020-B" in test.sample_ids  # fold-freesoundID-take
    assert test.labels.dtype == torch.int64 and sorted(test.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert test.waveforms.shape == (8, int(0.5 * SR)) and test.sample_rate == SR
    every = train.sample_ids + valid.sample_ids + test.sample_ids
    assert len(set(every)) == len(every) == 40
    # stable: the same ids and labels from a fresh instance; the fingerprint does not name the root
    again = _ds(esc10).load("test", SR)
    assert again.sample_ids == test.sample_ids and torch.equal(again.labels, test.labels)
    assert "root" not in ds.fingerprint() and ds.fingerprint() == _ds(esc10).fingerprint()
    moved = _ds(esc10, train_folds=[1, 2], valid_folds=[3], test_folds=[4, 5])
    assert len(moved.load("test", SR)) == 16
    with pytest.raises(ValidationError, match="fold 4 is in both"):
        _ds(esc10, test_folds=[4])
    [problem] = _ds(esc10, test_folds=[7]).check()
    assert "fold(s) 7 have no clips" in problem and "folds present: 1, 2, 3, 4, 5" in problem


def test_unusable_files_are_recorded_skips(esc10: Path) -> None:
    ds = _ds(esc10)
    test = ds.load("test", SR)
    [cut] = test.skips  # fold 5: decoded with the test split, left out with its reason
    assert cut.sample_id == "5-900000-A" and cut.where == "esc10:test"
    assert cut.reason.startswith("unreadable file (") and cut.reason.endswith("[001 - Dog bark/5-900000-A.ogg]")
    assert "5-900000-A" not in test.sample_ids
    [named] = ds.load("train", SR).skips  # a name that is not fold-freesoundID-take: left out at indexing
    assert named.sample_id == "notes" and named.where == "esc10:index"
    assert "not fold-freesoundID-take" in named.reason and "[001 - Dog bark/notes.ogg]" in named.reason


def test_load_folds_whatever_their_split(esc10: Path) -> None:
    ds = _ds(esc10)
    valid, test = ds.load("valid", SR), ds.load("test", SR)
    both = ds.load_folds([4, 5], SR)
    assert sorted(both.sample_ids) == sorted(valid.sample_ids + test.sample_ids)
    assert [s.sample_id for s in both.skips] == ["5-900000-A"]
    assert {sid[0] for sid in ds.load_folds([2], SR).sample_ids} == {"2"}
    with pytest.raises(AudiobenchError, match=r"folds \[9\] hold no clips"):
        ds.load_folds([9], SR)


def test_missing_empty_and_odd_roots_are_one_line_problems(tmp_path: Path, esc10: Path) -> None:
    nowhere = tmp_path / "nowhere"
    assert _ds(nowhere).check() == [
        f"dataset.root: {nowhere} not found (it should hold the class folders '001 - Dog bark' ... "
        f"'010 - Fire crackling'); {OBTAIN}"
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("x")
    (empty / "audio").mkdir()  # not a class folder
    assert _ds(empty).check() == [
        f"dataset.root: {empty} holds no class folder named 'NNN - Class name' (e.g. '001 - Dog bark'); {OBTAIN}"
    ]
    (empty / "001 - Dog bark").mkdir()
    [problem] = _ds(empty).check()
    assert problem == f"dataset.root: no audio file named fold-freesoundID-take in the class folders under {empty}; {OBTAIN}"
    (empty / "001 - Dog").mkdir()
    [problem] = _ds(empty).check()
    assert "share the number 1" in problem
    with pytest.raises(AudiobenchError, match="not found"):
        _ds(nowhere).load("test", SR)
    assert _ds(nowhere).class_count() is None


def _suite(tmp_path: Path, folds: list[int]) -> Path:
    suite = {
        "name": "esc10_mix",
        "dataset": {"name": "esc10", "root": "/data/ESC-10"},
        "frontend": {"sample_rate": SR, "n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 32},
        "model": {"name": "cnn14", "width": 4, "depth": 3},
        "contaminations": [{"name": "mixture", "mix": "fixed_gain", "gains": [0.8, 0.2], "source": {"folds": folds}}],
        "methods": ["saliency"],
        "metrics": ["ai"],
    }
    path = tmp_path / "esc10_mix.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_mixture_from_fold_4_validates_in_a_suite(tmp_path: Path, esc10: Path) -> None:
    path = _suite(tmp_path, [4])
    suite = load_suite(path, [f"dataset.root={esc10}", "dataset.seconds=0.5"])
    assert suite.dataset.name == "esc10" and suite.contaminations[0].params["source"]["folds"] == [4]
    with pytest.raises(SuiteErrors) as info:  # the suite's own root does not exist here
        load_suite(path)
    assert "dataset.root: /data/ESC-10 not found (it should hold the class folders" in str(info.value)
    assert OBTAIN in str(info.value)
    with pytest.raises(SuiteErrors, match=r"mixture: source fold\(s\) 9 not in the dataset"):
        load_suite(_suite(tmp_path, [9]), [f"dataset.root={esc10}", "dataset.seconds=0.5"])
