"""Multi-label datasets in their official layouts (SONYC-UST v2, OpenMIC-2018) and ClipSet label masks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from audiobench.cli import main
from audiobench.contracts.registry import DATASETS
from audiobench.data.base import ClipSet
from audiobench.data.openmic import OpenMIC
from audiobench.data.sonyc_ust import SonycUST
from audiobench.kernel.errors import AudiobenchError
from tests.fakedata import OPENMIC_KEYS, make_openmic, make_sonyc_ust
from tests.paths import ROOT

SR = 8000
SUITES = ROOT / "suites"
SONYC_SOURCE = "SONYC-UST v2 is at https://doi.org/10.5281/zenodo.3966543 (Zenodo)"
OPENMIC_SOURCE = "OpenMIC-2018 is at https://doi.org/10.5281/zenodo.1432913 (Zenodo)"
COARSE = ["engine", "machinery-impact", "non-machinery-impact", "powered-saw", "alert-signal", "music", "human-voice", "dog"]


@pytest.fixture(scope="module")
def sonyc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sonyc_ust(tmp_path_factory.mktemp("data") / "SONYC-UST")


@pytest.fixture(scope="module")
def openmic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_openmic(tmp_path_factory.mktemp("data") / "openmic-2018")


def _sonyc(root: Path, **params) -> SonycUST:
    return SonycUST({"root": str(root), "seconds": 0.5, **params})


def _openmic(root: Path, **params) -> OpenMIC:
    return OpenMIC({"root": str(root), "seconds": 0.5, **params})


# -- ClipSet ------------------------------------------------------------------------------------


def test_clipset_subset_carries_the_label_mask_and_checks_its_shape() -> None:
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, False, True], [True, True, True], [False, False, True]])
    clips = ClipSet(torch.randn(3, 8), labels, ["a", "b", "c"], ["x", "y", "z"], SR, label_mask=mask)
    for part, rows in ((clips.subset([2, 0]), [2, 0]), (clips.subset(torch.tensor([False, True, True])), [1, 2]),
                       (clips.subset(slice(1, None)), [1, 2])):
        assert torch.equal(part.label_mask, mask[rows]) and torch.equal(part.labels, labels[rows])
    assert clips.subset([0]).label_mask.shape == (1, 3)
    single = ClipSet(torch.randn(2, 8), torch.tensor([0, 1]), ["a", "b"], ["x", "y"], SR)
    assert single.subset([1]).label_mask is None and single.subset([1]).labels.tolist() == [1]
    with pytest.raises(ValueError, match="bool with the shape of labels"):
        ClipSet(torch.randn(3, 8), labels, ["a", "b", "c"], ["x", "y", "z"], SR, label_mask=mask[:, :2])
    with pytest.raises(ValueError, match="bool with the shape of labels"):
        ClipSet(torch.randn(3, 8), labels, ["a", "b", "c"], ["x", "y", "z"], SR, label_mask=mask.float())
    with pytest.raises(ValueError, match="needs multi-hot labels"):
        ClipSet(torch.randn(2, 8), torch.tensor([0, 1]), ["a", "b"], ["x", "y"], SR, label_mask=torch.ones(2, 2, dtype=torch.bool))


# -- SONYC-UST v2 -------------------------------------------------------------------------------


def test_sonyc_coarse_labels_are_the_baselines_aggregation(sonyc: Path) -> None:
    """tests/fakedata.py SONYC_ROWS, worked out by hand: train, any volunteer (annotator_id > 0); validate and
    test, the verified row (annotator_id 0) only; t1's SONYC team and verified rows are ignored (train)."""
    ds = _sonyc(sonyc)
    assert DATASETS.get("sonyc_ust") is SonycUST
    assert ds.check() == [] and ds.class_count() == 8 and ds.known_class_names() == COARSE
    train, valid, test = (ds.load(s, SR) for s in ("train", "valid", "test"))
    assert train.sample_ids == ["t0", "t1", "t2", "t3"]
    assert train.labels.dtype == torch.float32 and train.labels.tolist() == [
        # eng mach non-m saw alert music voice dog
        [1, 0, 0, 0, 0, 0, 1, 0],  # t0: 1-1 | 1-2, 7-1 | nothing
        [0, 0, 0, 0, 1, 0, 0, 1],  # t1: 8-1 | 8-1 | 5-3 (team 2-2 and verified 6-1 not counted)
        [0, 0, 0, 0, 0, 0, 0, 0],  # t2: three empty votes
        [1, 0, 1, 1, 0, 0, 0, 0],  # t3: 4-X | 3-1 | 1-X, 4-1
    ]
    assert valid.sample_ids == ["v0", "v1"]  # v2 has no verified row
    assert valid.labels.tolist() == [
        [0, 0, 0, 0, 1, 0, 0, 0],  # v0: verified 5-1 (volunteer 1-1, 2-1 and team 1-1 not counted)
        [0, 0, 0, 0, 0, 1, 1, 0],  # v1: verified 7-2, 6-X
    ]
    assert test.sample_ids == ["s0", "s1"]
    assert test.labels.tolist() == [[0, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]]
    # s1's verified row annotates group 3 only (the others -1): those labels are unknown
    assert test.label_mask.tolist() == [[True] * 8, [False, False, True, False, False, False, False, False]]
    assert bool(train.label_mask.all()) and bool(valid.label_mask.all())
    assert test.waveforms.shape == (2, int(0.5 * SR)) and test.class_names == COARSE
    # the fingerprint names the labels' content, not the root
    assert "root" not in ds.fingerprint() and ds.fingerprint() == _sonyc(sonyc).fingerprint()
    assert ds.fingerprint() != _sonyc(sonyc, level="fine").fingerprint()


def test_sonyc_fine_level_masks_the_groups_of_an_uncertain_tag(sonyc: Path) -> None:
    ds = _sonyc(sonyc, level="fine")
    names = ds.known_class_names()
    assert len(names) == 23 and names[:4] == ["small-sounding-engine", "medium-sounding-engine",
                                              "large-sounding-engine", "rock-drill"]
    assert names[-1] == "dog-barking-whining" and not any("uncertain" in n or "unknown" in n for n in names)
    # column of each fine tag: 1-1..1-3: 0-2, 2-1..2-4: 3-6, 3-1: 7, 4-1..4-3: 8-10, 5-x: 11-14, 6-x: 15-17, 7-x: 18-21, 8-1: 22
    groups = {1: range(0, 3), 2: range(3, 7), 4: range(8, 11), 6: range(15, 18)}

    def expected(present: list[int], hidden: list[int], known_only: list[int] | None = None) -> tuple[list, list]:
        labels = [1.0 if c in present else 0.0 for c in range(23)]
        masked = {c for g in hidden for c in groups[g]}
        mask = [c not in masked and (known_only is None or c in known_only) for c in range(23)]
        return labels, mask

    train, valid, test = (ds.load(s, SR) for s in ("train", "valid", "test"))
    rows = {sid: (clips.labels[i].tolist(), clips.label_mask[i].tolist())
            for clips in (train, valid, test) for i, sid in enumerate(clips.sample_ids)}
    assert rows["t0"] == expected([0, 1, 18], [])
    assert rows["t3"] == expected([7, 8], [1, 4])  # 1-X and 4-X: engine and saw fine labels unknown (4-1 too)
    assert rows["v1"] == expected([19], [6])  # verified 6-X hides the music tags
    assert rows["s0"] == expected([], [2])
    assert rows["s1"] == expected([], [], known_only=[7])


def test_sonyc_without_test_rows_tests_on_validate_and_carves_valid_by_sensor(tmp_path: Path) -> None:
    root = make_sonyc_ust(tmp_path / "v2.2", test=False)
    ds = _sonyc(root)
    assert ds.check() == []
    train, valid, test = (ds.load(s, SR) for s in ("train", "valid", "test"))
    assert test.sample_ids == ["v0", "v1"]
    sensors = {"t0": "1", "t1": "1", "t2": "2", "t3": "3"}
    held = {sensors[s] for s in valid.sample_ids}
    assert len(held) == 1 and set(valid.sample_ids) == {s for s, k in sensors.items() if k in held}  # whole sensors
    assert sorted(train.sample_ids + valid.sample_ids) == ["t0", "t1", "t2", "t3"]
    assert not set(valid.sample_ids) & set(test.sample_ids)
    assert _sonyc(root).load("valid", SR).sample_ids == valid.sample_ids  # deterministic


def test_sonyc_check_names_what_is_missing_and_where_to_get_it(tmp_path: Path, sonyc: Path) -> None:
    nowhere = tmp_path / "nowhere"
    assert _sonyc(nowhere).check() == [
        f"dataset.root: {nowhere} not found (it should hold annotations.csv and audio/); {SONYC_SOURCE}"]
    half = tmp_path / "half"
    half.mkdir()
    assert _sonyc(half).check() == [f"dataset.root: {half} lacks annotations.csv and audio/; {SONYC_SOURCE}"]
    (half / "annotations.csv").write_text("split,sensor_id,audio_filename,annotator_id\ntrain,1,a.wav,1\n")
    assert _sonyc(half).check() == [f"dataset.root: {half} lacks audio/; {SONYC_SOURCE}"]
    (half / "audio").mkdir()
    [problem] = _sonyc(half).check()
    assert "lacks column(s) 1_engine_presence, 2_machinery-impact_presence" in problem
    assert _sonyc(nowhere).class_count() is None
    with pytest.raises(AudiobenchError, match="not found"):
        _sonyc(nowhere).load("test", SR)
    (tmp_path / "gone").mkdir()
    shutil.copytree(sonyc, tmp_path / "gone", dirs_exist_ok=True)
    (tmp_path / "gone" / "audio" / "s0.wav").unlink()
    test = _sonyc(tmp_path / "gone").load("test", SR)  # a missing file is a skip with its reason
    assert test.sample_ids == ["s1"] and test.skips[0].sample_id == "s0" and "file not found" in test.skips[0].reason
    assert test.labels.tolist() == [[0.0] * 8] and test.label_mask.shape == (1, 8)


# -- OpenMIC-2018 -------------------------------------------------------------------------------

# tests/fakedata.py OPENMIC_Y_TRUE >= 0.5 where OPENMIC_Y_MASK, by hand (columns accordion, banjo, bass, cello)
OPENMIC_LABELS = {
    "000046_3840": [1, 0, 0, 0], "000135_483840": [0, 0, 0, 1], "000139_119040": [0, 0, 0, 0],  # 0.49: absent
    "001141_153600": [0, 1, 0, 0], "001144_30720": [0, 0, 0, 0], "002385_249600": [1, 0, 0, 0],
    "002386_0": [0, 0, 1, 0], "003000_960": [0, 0, 1, 0],  # 0.5 annotated: present; the 0.5 elsewhere: unknown
}
OPENMIC_MASK = {
    "000046_3840": [1, 0, 1, 0], "000135_483840": [0, 0, 0, 1], "000139_119040": [1, 0, 1, 0],
    "001141_153600": [0, 1, 0, 0], "001144_30720": [0, 0, 0, 1], "002385_249600": [1, 1, 0, 0],
    "002386_0": [0, 0, 1, 0], "003000_960": [0, 0, 1, 0],
}


@pytest.mark.parametrize("object_keys", [True, False])
def test_openmic_masks_labels_and_partitions(tmp_path: Path, object_keys: bool) -> None:
    root = make_openmic(tmp_path / "openmic-2018", object_keys=object_keys)
    ds = _openmic(root)
    assert DATASETS.get("openmic") is OpenMIC
    assert ds.check() == [] and ds.class_count() == 4 and ds.known_class_names() == ["accordion", "banjo", "bass", "cello"]
    train, valid, test = (ds.load(s, SR) for s in ("train", "valid", "test"))
    assert test.sample_ids == ["002386_0", "003000_960"]  # split01_test.csv
    assert sorted(train.sample_ids + valid.sample_ids) == sorted(OPENMIC_KEYS[:6])  # split01_train.csv
    assert len(valid) == 1 and OPENMIC_KEYS[8] not in train.sample_ids + valid.sample_ids + test.sample_ids
    for clips in (train, valid, test):
        assert clips.labels.dtype == torch.float32 and clips.label_mask.dtype == torch.bool
        assert clips.labels.tolist() == [OPENMIC_LABELS[s] for s in clips.sample_ids]
        assert clips.label_mask.tolist() == [[bool(v) for v in OPENMIC_MASK[s]] for s in clips.sample_ids]
        assert not bool((clips.labels.bool() & ~clips.label_mask).any())  # present only where annotated
    assert test.waveforms.shape == (2, int(0.5 * SR))
    assert "root" not in ds.fingerprint() and ds.fingerprint() == _openmic(root).fingerprint()


def test_openmic_valid_carve_out_is_deterministic_and_disjoint_from_test(openmic: Path) -> None:
    def split_ids(**params) -> dict[str, list[str]]:
        ds = _openmic(openmic, **params)
        return {s: [it.sample_id for it in ds.index().items if it.split == s] for s in ("train", "valid", "test")}

    first, again = split_ids(), split_ids()
    assert first == again and len(first["valid"]) == 1
    half = split_ids(valid_fraction=0.5)
    assert len(half["valid"]) == 3 and set(first["valid"]) <= set(half["valid"])  # a hash order: the 10 % stay
    assert split_ids(seed=1)["valid"] != first["valid"]  # the seed picks the keys
    for ids in (first, half):
        assert not set(ids["valid"]) & set(ids["test"]) and not set(ids["valid"]) & set(ids["train"])
        assert set(ids["test"]) == {"002386_0", "003000_960"}
    # the carve-out does not depend on the order of the partition file
    shuffled = openmic.parent / "shuffled"
    shutil.copytree(openmic, shuffled)
    part = shuffled / "partitions" / "split01_train.csv"
    part.write_text("".join(reversed(part.read_text().splitlines(keepends=True))))
    assert sorted(_openmic(shuffled).load("valid", SR).sample_ids) == sorted(first["valid"])


def test_openmic_check_names_missing_files_and_where_to_get_them(tmp_path: Path, openmic: Path) -> None:
    nowhere = tmp_path / "nowhere"
    assert _openmic(nowhere).check() == [
        f"dataset.root: {nowhere} not found (it should hold openmic-2018.npz, class-map.json, partitions/ and audio/); "
        f"{OPENMIC_SOURCE}"]
    half = tmp_path / "half"
    (half / "partitions").mkdir(parents=True)
    (half / "class-map.json").write_text("{}")
    assert _openmic(half).check() == [
        f"dataset.root: {half} lacks openmic-2018.npz, partitions/split01_train.csv, partitions/split01_test.csv, "
        f"audio/; {OPENMIC_SOURCE}"]
    bad = tmp_path / "bad"
    shutil.copytree(openmic, bad)
    with open(bad / "partitions" / "split01_test.csv", "a") as fh:
        fh.write("999999_0\n")
    [problem] = _openmic(bad).check()
    assert problem == f"dataset.root: {bad / 'partitions' / 'split01_test.csv'} line 3: sample key 999999_0 is not in openmic-2018.npz"
    both = tmp_path / "both"
    shutil.copytree(openmic, both)
    with open(both / "partitions" / "split01_test.csv", "a") as fh:
        fh.write(f"{OPENMIC_KEYS[0]}\n")  # listed in train and in test
    [problem] = _openmic(both).check()
    assert OPENMIC_KEYS[0] in problem and "split01_train.csv line 1" in problem and "split01_test.csv line 3" in problem
    np.savez(bad / "openmic-2018.npz", Y_true=np.zeros((2, 4)), sample_key=np.array(["a", "b"]))
    [problem] = _openmic(bad).check()
    assert problem.endswith("lacks array(s) Y_mask (it has: Y_true, sample_key)")


# -- the suites -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("suite", "fixture", "missing"), [
    ("sonyc_ust.yaml", "sonyc", "SONYC-UST not found (it should hold annotations.csv and audio/); " + SONYC_SOURCE),
    ("openmic.yaml", "openmic", "openmic-2018 not found (it should hold openmic-2018.npz"),
])
def test_the_suites_validate_with_a_root_and_name_a_missing_one(
    suite: str, fixture: str, missing: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = request.getfixturevalue(fixture)
    assert main(["validate", str(SUITES / suite), "--set", f"dataset.root={root}", "--set", "dataset.seconds=0.5"]) == 0
    assert f"{suite}: ok" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # a relative --set root is read from the working directory
    assert main(["validate", str(SUITES / suite), "--set", "dataset.root=data/nowhere"]) == 1
    err = capsys.readouterr().err
    assert f"dataset.root: {tmp_path / 'data' / 'nowhere'} not found" in err
    # the suite's own root (../shared/data/... beside the checkout) is absent here: named with the source
    if not (SUITES.parent.parent / "shared" / "data").is_dir():
        assert main(["validate", str(SUITES / suite)]) == 1
        assert missing in capsys.readouterr().err
