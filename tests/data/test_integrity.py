"""Dataset integrity: repeated metadata rows, clips in two splits and colliding ids are errors naming them."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiobench.cli import main
from audiobench.data.audio_folder import AudioFolder
from audiobench.data.base import ClipSet
from audiobench.data.esc50 import ESC50, UrbanSound8K
from audiobench.data.integrity import check_splits
from audiobench.kernel.errors import AudiobenchError
from tests.fakedata import make_us8k

SR = 8000


def make_esc50_duplicates(here: Path) -> Path:
    """The generator of /work/shared/cases/esc50-duplicates (make.py), writing under ``here``."""
    root = here / "ESC-50"
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    classes = [(0, "dog", 500.0), (1, "rooster", 1200.0), (2, "pig", 2500.0)]
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for target, category, f0 in classes:
            for i in range(2):
                src = 1000 + 10 * target + i
                name = f"{fold}-{src}-A-{target}.wav"
                t = np.arange(SR) / SR
                sf.write(root / "audio" / name, 0.4 * np.sin(2 * np.pi * (f0 + 40 * i + 7 * fold) * t), SR, subtype="PCM_16")
                rows.append(f"{name},{fold},{target},{category},True,{src},A")
    rows.append("1-1000-A-0.wav,5,0,dog,True,1000,A")  # a fold-1 clip listed again in fold 5
    rows.append("5-1000-A-0.wav,5,0,dog,True,1000,A")  # a fold-5 clip listed a second time
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    (here / "suite.yaml").write_text(
        "name: esc50_duplicates\nseed: 0\ndataset: {name: esc50, root: ESC-50, seconds: 1.0}\n"
        "model: {name: cnn14, width: 8, depth: 2, train: {epochs: 2}}\ndomains: [mel]\nmethods: [saliency]\n"
        "metrics: [ai, ad]\naudio: {n: 0}\n"
    )
    return root


def test_esc50_duplicate_rows_are_refused_at_validate_and_at_load(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_esc50_duplicates(tmp_path)
    csv_path = root / "meta" / "esc50.csv"
    assert main(["validate", str(tmp_path / "suite.yaml")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{tmp_path / 'suite.yaml'}:3: dataset.root: {csv_path} lists audio/1-1000-A-0.wav in fold 1 (line 2) "
        "and in fold 5 (line 32): one clip in the train and test splits; keep one row",
        f"{tmp_path / 'suite.yaml'}:3: dataset.root: {csv_path} lists audio/5-1000-A-0.wav twice in fold 5 "
        "(lines 26 and 33): it would be scored twice; keep one row",
    ]
    assert main(["run", str(tmp_path / "suite.yaml"), "-o", str(tmp_path / "run"), "--limit", "8", "-q"]) == 1
    assert "lists audio/1-1000-A-0.wav in fold 1 (line 2)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was trained or written
    ds = ESC50({"root": str(root), "seconds": 1.0})
    with pytest.raises(AudiobenchError, match=r"in fold 1 \(line 2\) and in fold 5 \(line 32\).*\(and 1 more"):
        ds.load("test", 16000)
    # the same tree without the two extra rows is accepted: 6 distinct test clips
    csv_path.write_text("\n".join(csv_path.read_text().splitlines()[:-2]) + "\n")
    clean = ESC50({"root": str(root), "seconds": 1.0})
    assert clean.check() == []
    test = clean.load("test", 16000)
    assert len(test) == 6 and len(set(test.sample_ids)) == 6


def test_urbansound8k_file_name_in_two_folds_names_both_files(tmp_path: Path) -> None:
    root = make_us8k(tmp_path / "US8K", folds=10)
    meta = root / "metadata" / "UrbanSound8K.csv"
    rows = list(csv.reader(meta.open()))
    first = rows[1]  # fold 1; copy its file into fold 10 and list it there as well
    shutil.copy(root / "audio" / "fold1" / first[0], root / "audio" / "fold10" / first[0])
    rows.append([*first[:5], "10", *first[6:]])
    with meta.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    problems = UrbanSound8K({"root": str(root)}).check()
    assert problems == [
        f"dataset.root: {meta}: files audio/fold1/{first[0]} and audio/fold10/{first[0]} both give sample id "
        f"'{Path(first[0]).stem}'; rename one"
    ]


def test_audio_folder_colliding_ids_and_repeated_csv_rows(tmp_path: Path) -> None:
    root = tmp_path / "f"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for k in range(5):
            sf.write(root / cls / f"{k}.wav", 0.3 * np.ones(800) * np.sin(np.arange(800) * (k + 1)), SR)
    sf.write(root / "a" / "3.flac", 0.2 * np.sin(np.arange(800) / 3.0), SR)  # a/3.wav and a/3.flac: one id
    [problem] = AudioFolder({"root": str(root), "seconds": 0.1}).check()
    assert problem == f"dataset.root: {root}: files a/3.flac and a/3.wav both give sample id 'a__3'; rename one"
    with pytest.raises(AudiobenchError, match="both give sample id 'a__3'"):
        AudioFolder({"root": str(root), "seconds": 0.1}).load("train", SR)
    (root / "a" / "3.flac").unlink()
    listing = tmp_path / "list.csv"
    lines = ["filename,label,split"] + [f"{c}/{k}.wav,{c},{['train', 'valid', 'test'][k % 3]}" for c in "ab" for k in range(5)]
    lines.append("a/0.wav,a,test")  # a training file listed again as a test file
    listing.write_text("\n".join(lines) + "\n")
    ds = AudioFolder({"root": str(root), "labels": "csv", "csv": str(listing), "split_by": "column", "seconds": 0.1})
    assert ds.check() == [
        f"dataset.csv: {listing} lists a/0.wav in train (line 2) and in test (line 12): one clip in the train and "
        "test splits; keep one row"
    ]


def test_loaded_splits_of_any_dataset_are_checked() -> None:
    def clips(ids: list[str]) -> ClipSet:
        return ClipSet(torch.ones(len(ids), 10), torch.zeros(len(ids), dtype=torch.long), ids, ["x"], SR)

    check_splits({"train": clips(["a", "b"]), "test": clips(["c"])}, "plug")  # disjoint: fine
    with pytest.raises(AudiobenchError, match="sample id 'b' is in both split 'train' and split 'test'"):
        check_splits({"train": clips(["a", "b"]), "test": clips(["c", "b"])}, "plug")
    with pytest.raises(AudiobenchError, match="sample id\\(s\\) c appear more than once in split 'test'"):
        check_splits({"train": clips(["a"]), "test": clips(["c", "c"])}, "plug")
