"""ESC-50, UrbanSound8K and audio_folder on tiny generated trees in the official layouts."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pydantic import ValidationError

from audiobench.data.audio_folder import AudioFolder
from audiobench.data.esc50 import ESC50, UrbanSound8K
from audiobench.kernel.errors import AudiobenchError
from tests.fakedata import make_esc50, make_speech_folder, make_us8k


@pytest.fixture(scope="module")
def esc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_esc50(tmp_path_factory.mktemp("data") / "ESC-50", per_fold=1, seconds=1.0)


@pytest.fixture(scope="module")
def us8k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_us8k(tmp_path_factory.mktemp("data") / "UrbanSound8K")


def test_esc50_folds_labels_and_subsets(esc: Path) -> None:
    ds = ESC50({"root": str(esc), "seconds": 1.0})
    assert ds.check() == []
    train, valid, test = (ds.load(s, 16000) for s in ("train", "valid", "test"))
    assert [len(train), len(valid), len(test)] == [9, 3, 3]  # 3 classes, folds 1-3 / 4 / 5
    assert {sid[0] for sid in train.sample_ids} == {"1", "2", "3"}
    assert all(sid.startswith("5-") for sid in test.sample_ids)
    assert test.class_names == ["dog", "cat", "chainsaw"]  # targets 0, 5, 41 renumbered 0, 1, 2
    assert test.labels.tolist() == [0, 1, 2] and test.waveforms.shape == (3, 16000)
    assert ds.load_folds([4, 5], 16000).sample_ids == valid.sample_ids + test.sample_ids
    ten = ESC50({"root": str(esc), "esc10": True, "seconds": 1.0}).load("test", 16000)
    assert ten.class_names == ["dog", "chainsaw"] and ten.labels.tolist() == [0, 1]
    moved = ESC50({"root": str(esc), "seconds": 1.0, "test_folds": [4, 5], "valid_folds": [3], "train_folds": [1, 2]})
    assert len(moved.load("test", 16000)) == 6
    # the fingerprint identifies the files, not where they are
    assert "root" not in ds.fingerprint() and ds.fingerprint() == ESC50({"root": str(esc), "seconds": 1.0}).fingerprint()


def test_esc50_problems_name_the_path_and_the_source(esc: Path, tmp_path: Path) -> None:
    missing = ESC50({"root": str(tmp_path / "nowhere")}).check()
    assert missing == [
        f"dataset.root: {tmp_path / 'nowhere'} not found (it should hold meta/esc50.csv and audio/); "
        "ESC-50 is at https://github.com/karolpiczak/ESC-50"
    ]
    (tmp_path / "half" / "audio").mkdir(parents=True)
    assert ESC50({"root": str(tmp_path / "half")}).check() == [
        f"dataset.root: {tmp_path / 'half' / 'meta' / 'esc50.csv'} not found; ESC-50 is at https://github.com/karolpiczak/ESC-50"
    ]
    (tmp_path / "half" / "meta").mkdir()
    with open(tmp_path / "half" / "meta" / "esc50.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["filename", "fold", "target"], ["a.wav", "1", "0"]])
    [problem] = ESC50({"root": str(tmp_path / "half")}).check()
    assert "lacks column(s) category, esc10, src_file, take" in problem
    [problem] = ESC50({"root": str(esc), "test_folds": [7]}).check()
    assert "fold(s) 7 have no clips" in problem and "folds present: 1, 2, 3, 4, 5" in problem
    with pytest.raises(ValidationError, match="fold 4 is in both"):
        ESC50({"root": str(esc), "test_folds": [4]})
    with pytest.raises(AudiobenchError, match="not found"):
        ESC50({"root": str(tmp_path / "nowhere")}).load("test", 16000)


def test_urbansound8k_variable_length_rate_and_width(us8k: Path, tmp_path: Path) -> None:
    ds = UrbanSound8K({"root": str(us8k)})
    assert ds.check() == []
    test = ds.load("test", 16000)  # fold 10
    assert test.waveforms.shape == (3, 64000) and test.skips == []
    assert test.class_names == ["car_horn", "dog_bark", "siren"]
    # every clip is at most 1.3 s: zero-padded at the end to 4 s
    assert not test.waveforms[:, int(1.35 * 16000):].any()
    assert (test.waveforms[:, :8000].abs().amax(dim=1) > 0.1).all()
    assert len(ds.load("train", 16000)) == 24
    csv_missing, audio_missing = UrbanSound8K({"root": str(tmp_path)}).check()
    assert csv_missing.startswith(f"dataset.root: {tmp_path / 'metadata' / 'UrbanSound8K.csv'} not found; UrbanSound8K is at https://")
    assert audio_missing.startswith(f"dataset.root: {tmp_path / 'audio'} not found")


def test_audio_folder_pattern_labels_and_speaker_split(tmp_path: Path) -> None:
    root = make_speech_folder(tmp_path / "words", speakers=6)
    params = {
        "root": str(root), "labels": "pattern", "pattern": r"^(?P<label>[a-z]+)_(?P<speaker>spk\d+)_",
        "split_by": "group", "group": "speaker", "seconds": 0.7,
    }
    ds = AudioFolder(params)
    assert ds.check() == []
    speakers = {}
    for split in ("train", "valid", "test"):
        c = ds.load(split, 8000)
        assert c.class_names == ["no", "up", "yes"] and c.waveforms.shape[1] == 5600
        speakers[split] = {sid.split("_")[1] for sid in c.sample_ids}
        assert len(c) == 6 * len(speakers[split])  # 3 words x 2 takes per speaker
    assert sum(len(v) for v in speakers.values()) == 6  # each speaker in exactly one split
    assert all(speakers.values())
    assert speakers == {s: {x.split("_")[1] for x in AudioFolder(params).load(s, 8000).sample_ids} for s in speakers}
    other = {s: {x.split("_")[1] for x in AudioFolder({**params, "seed": 3}).load(s, 8000).sample_ids} for s in speakers}
    assert other != speakers  # the seed moves speakers between splits
    with pytest.raises(ValidationError, match="named group"):
        AudioFolder({**params, "pattern": r"(?P<label>[a-z]+)_"})


def test_audio_folder_csv_labels_and_split_column(tmp_path: Path) -> None:
    root = make_speech_folder(tmp_path / "w", words=("yes", "no"), speakers=3, takes=1)
    rows = [["file", "word", "part"]]
    for i, p in enumerate(sorted(root.glob("*.wav"))):
        rows.append([p.name, p.name.split("_")[0].upper(), ["train", "validation", "eval"][i % 3]])
    with open(tmp_path / "list.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    ds = AudioFolder({"root": str(root), "labels": "csv", "csv": str(tmp_path / "list.csv"), "file_column": "file",
                      "label_column": "word", "split_by": "column", "split_column": "part", "seconds": 0.7})
    assert ds.check() == []
    assert [len(ds.load(s, 8000)) for s in ("train", "valid", "test")] == [2, 2, 2]
    assert ds.load("test", 8000).class_names == ["NO", "YES"]
    [problem] = AudioFolder({"root": str(root), "labels": "csv", "csv": str(tmp_path / "none.csv")}).check()
    assert problem == f"dataset.csv: {tmp_path / 'none.csv'} not found"
