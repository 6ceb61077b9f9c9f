"""Tiny fake copies of real datasets in their official layouts (generated audio, official CSV columns)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf

# class -> (ESC-50 target, category, esc10); sparse targets on purpose (renumbered to 0..K-1)
ESC50_CLASSES = [(0, "dog", True), (5, "cat", False), (41, "chainsaw", True)]
US8K_CLASSES = [(1, "car_horn"), (3, "dog_bark"), (8, "siren")]


def tone(cls: int, seconds: float, sr: int, rng: np.random.Generator, channels: int = 1) -> np.ndarray:
    """A class-specific sound: a sine (class 0), a chirp-like pair (class 1) or band noise bursts (class 2)."""
    t = np.arange(int(round(seconds * sr))) / sr
    if cls == 0:
        x = np.sin(2 * np.pi * (500 + 40 * rng.uniform()) * t)
    elif cls == 1:
        x = np.sin(2 * np.pi * (1500 + 300 * t) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    else:
        x = rng.standard_normal(t.size) * (np.sin(2 * np.pi * 4 * t) > 0)
    x = 0.5 * x / np.abs(x).max() + 0.01 * rng.standard_normal(t.size)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def make_esc50(root: Path, per_fold: int = 1, folds: int = 5, sr: int = 8000, seconds: float = 1.0) -> Path:
    """ROOT/meta/esc50.csv + ROOT/audio/*.wav, ``per_fold`` clips per class and fold."""
    rng = np.random.default_rng(0)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    rows = []
    for fold in range(1, folds + 1):
        for ci, (target, category, esc10) in enumerate(ESC50_CLASSES):
            for k in range(per_fold):
                src = 100000 + 1000 * fold + 10 * ci + k
                name = f"{fold}-{src}-{'ABC'[k % 3]}-{target}.wav"
                sf.write(root / "audio" / name, tone(ci, seconds, sr, rng), sr, subtype="PCM_16")
                rows.append([name, fold, target, category, esc10, src, "ABC"[k % 3]])
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


def make_us8k(root: Path, per_fold: int = 1, folds: int = 10, sr: int = 11025) -> Path:
    """ROOT/metadata/UrbanSound8K.csv + ROOT/audio/fold<k>/*.wav, clips of varied length, rate and width."""
    rng = np.random.default_rng(1)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    rows = []
    for fold in range(1, folds + 1):
        (root / "audio" / f"fold{fold}").mkdir(parents=True, exist_ok=True)
        for ci, (class_id, name) in enumerate(US8K_CLASSES):
            for k in range(per_fold):
                fs_id = 5000 + 100 * fold + 10 * ci + k
                fname = f"{fs_id}-{class_id}-0-{k}.wav"
                seconds = [0.5, 1.3, 0.9][(fold + ci) % 3]
                rate = [sr, 8000][(fold + k) % 2]
                subtype = ["PCM_16", "PCM_24"][ci % 2]
                sf.write(root / "audio" / f"fold{fold}" / fname, tone(ci, seconds, rate, rng, channels=1 + ci % 2),
                         rate, subtype=subtype)
                rows.append([fname, fs_id, 0.0, seconds, 1, fold, class_id, name])
    with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        w.writerows(rows)
    return root


def make_speech_folder(root: Path, words=("yes", "no", "up"), speakers: int = 6, takes: int = 2, sr: int = 8000) -> Path:
    """Flat folder of ``<word>_<speaker>_<take>.wav`` at 8 kHz (labels from the name, speakers for splits)."""
    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    for wi, word in enumerate(words):
        for s in range(speakers):
            for k in range(takes):
                sf.write(root / f"{word}_spk{s:02d}_{k}.wav", tone(wi, 0.7, sr, rng), sr, subtype="PCM_16")
    return root


def make_clotho(root: Path, clips: int = 4, sr: int = 16000, seconds: float = 0.5) -> Path:
    """Clotho v2's official layout: development and validation folders of tones, five captions each."""
    rng = np.random.default_rng(3)
    for folder in ("development", "validation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        with open(root / f"clotho_captions_{folder}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["file_name", *[f"caption_{i}" for i in range(1, 6)]])
            for k in range(clips):
                sf.write(root / folder / f"clip{k}.wav", tone(k, seconds, sr, rng), sr, subtype="PCM_16")
                w.writerow([f"clip{k}.wav", *[f"a recording {k} described {i} ways" for i in range(5)]])
    return root


ESC10_CLASSES = ["Dog bark", "Rain", "Sea waves", "Baby cry", "Clock tick", "Person sneeze", "Helicopter", "Chainsaw",
                 "Rooster", "Fire crackling"]


def make_esc10(root: Path, per_fold: int = 1, classes: int = 4, folds: int = 5, sr: int = 8000, seconds: float = 0.5,
               broken: bool = False) -> Path:
    """ESC-10's official layout: ROOT/``NNN - Class name``/``fold-freesoundID-take``.ogg (Ogg Vorbis), a README,
    ``per_fold`` clips per class and fold (takes A, B of one source share its fold). ``broken``: the first class
    folder also holds ``5-900000-A.ogg`` cut inside its headers (unreadable) and ``notes.ogg`` (not an ESC-10 name)."""
    rng = np.random.default_rng(4)
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text("# ESC-10 (generated)\n")
    for ci, name in enumerate(ESC10_CLASSES[:classes]):
        folder = root / f"{ci + 1:03d} - {name}"
        folder.mkdir(exist_ok=True)
        for fold in range(1, folds + 1):
            for k in range(per_fold):
                src = 100000 + 1000 * fold + 10 * ci + k // 2
                sf.write(folder / f"{fold}-{src}-{'AB'[k % 2]}.ogg", tone(ci, seconds, sr, rng), sr, format="OGG",
                         subtype="VORBIS")
    if broken:
        folder = root / f"001 - {ESC10_CLASSES[0]}"
        sf.write(folder / "notes.ogg", tone(0, seconds, sr, rng), sr, format="OGG", subtype="VORBIS")
        whole = folder / "5-900000-A.ogg"
        sf.write(whole, tone(0, seconds, sr, rng), sr, format="OGG", subtype="VORBIS")
        whole.write_bytes(whole.read_bytes()[:200])
    return root


# SONYC-UST's taxonomy (dcase-ust-taxonomy.yaml): coarse id -> (coarse name, fine tags; "X" marks the uncertain one)
SONYC_TAXONOMY = {
    1: ("engine", ["1:small-sounding-engine", "2:medium-sounding-engine", "3:large-sounding-engine",
                   "X:engine-of-uncertain-size"]),
    2: ("machinery-impact", ["1:rock-drill", "2:jackhammer", "3:hoe-ram", "4:pile-driver", "X:other-unknown-impact-machinery"]),
    3: ("non-machinery-impact", ["1:non-machinery-impact"]),
    4: ("powered-saw", ["1:chainsaw", "2:small-medium-rotating-saw", "3:large-rotating-saw", "X:other-unknown-powered-saw"]),
    5: ("alert-signal", ["1:car-horn", "2:car-alarm", "3:siren", "4:reverse-beeper", "X:other-unknown-alert-signal"]),
    6: ("music", ["1:stationary-music", "2:mobile-music", "3:ice-cream-truck", "X:music-from-uncertain-source"]),
    7: ("human-voice", ["1:person-or-small-group-talking", "2:person-or-small-group-shouting", "3:large-crowd",
                        "4:amplified-speech", "X:other-unknown-human-voice"]),
    8: ("dog", ["1:dog-barking-whining"]),
}

# (split, sensor_id, clip, annotator_id, fine tags marked present, the one coarse group the row annotates or None):
# volunteers > 0, SONYC team < 0 (one group a row, the others -1), verified 0. Expected labels: tests/data/test_multilabel_data.py
SONYC_ROWS = [
    ("train", 1, "t0", 101, ["1-1"], None), ("train", 1, "t0", 102, ["1-2", "7-1"], None), ("train", 1, "t0", 103, [], None),
    ("train", 1, "t1", 101, ["8-1"], None), ("train", 1, "t1", 104, ["8-1"], None), ("train", 1, "t1", 105, ["5-3"], None),
    ("train", 1, "t1", -1, ["2-2"], 2), ("train", 1, "t1", 0, ["6-1"], None),  # not volunteers: ignored for train
    ("train", 2, "t2", 102, [], None), ("train", 2, "t2", 103, [], None), ("train", 2, "t2", 106, [], None),
    ("train", 3, "t3", 101, ["4-X"], None), ("train", 3, "t3", 102, ["3-1"], None), ("train", 3, "t3", 103, ["1-X", "4-1"], None),
    ("validate", 4, "v0", 107, ["1-1", "2-1"], None), ("validate", 4, "v0", -1, ["1-1"], 1), ("validate", 4, "v0", -2, [], 1),
    ("validate", 4, "v0", 0, ["5-1"], None),
    ("validate", 5, "v1", 108, ["7-2"], None), ("validate", 5, "v1", 0, ["7-2", "6-X"], None),
    ("validate", 5, "v2", 109, ["8-1"], None),  # no verified row: not in the valid split
    ("test", 1, "s0", 110, [], None), ("test", 1, "s0", 0, ["2-X"], None),
    ("test", 1, "s1", 0, [], 3),  # a verified row that annotates group 3 only: the other labels are unknown
]


def make_sonyc_ust(root: Path, rows: list[tuple] = SONYC_ROWS, sr: int = 8000, seconds: float = 0.5,
                   test: bool = True) -> Path:
    """SONYC-UST v2's official layout: ROOT/annotations.csv (the release's columns: metadata, fine and coarse
    ``_presence``, fine ``_proximity``) and ROOT/audio/<clip>.wav for every clip of ``rows`` (see
    :data:`SONYC_ROWS`). ``test=False``: the rows of split ``test`` are left out (a release before v2.3)."""
    rng = np.random.default_rng(5)
    rows = [r for r in rows if test or r[0] != "test"]
    (root / "audio").mkdir(parents=True, exist_ok=True)
    fine = [(c, tag.split(":")[0], tag.split(":")[1]) for c, (_, tags) in SONYC_TAXONOMY.items() for tag in tags]
    fine_cols = [f"{c}-{f}_{name}" for c, f, name in fine]
    coarse_cols = [f"{c}_{name}" for c, (name, _) in SONYC_TAXONOMY.items()]
    header = ["split", "sensor_id", "audio_filename", "annotator_id", "borough", "block", "latitude", "longitude",
              "year", "week", "day", "hour", *[f"{c}_presence" for c in fine_cols + coarse_cols],
              *[f"{c}_proximity" for c in fine_cols]]
    with open(root / "annotations.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for split, sensor, clip, annotator, tags, only in rows:
            def vote(group: int, present: bool, only: int | None = only) -> int:
                return -1 if only is not None and group != only else int(present)
            fine_votes = [vote(c, f"{c}-{f}" in tags) for c, f, _ in fine]
            coarse_votes = [vote(c, any(t.split("-")[0] == str(c) for t in tags)) for c in SONYC_TAXONOMY]
            proximity = ["near" if annotator > 0 and f"{c}-{f}" in tags else "-1" for c, f, _ in fine]
            w.writerow([split, sensor, f"{clip}.wav", annotator, 1, 100 + sensor, 40.7, -73.9, 2019, 10, 2, 14,
                        *fine_votes, *coarse_votes, *proximity])
    for k, clip in enumerate(dict.fromkeys(r[2] for r in rows)):
        sf.write(root / "audio" / f"{clip}.wav", tone(k % 3, seconds, sr, rng), sr, subtype="PCM_16")
    return root


OPENMIC_CLASSES = ["accordion", "banjo", "bass", "cello"]  # the first 4 of the release's 20
OPENMIC_KEYS = ["000046_3840", "000135_483840", "000139_119040", "001141_153600", "001144_30720", "002385_249600",
                "002386_0", "003000_960", "003001_1920"]
# Y_true [9, 4] and Y_mask [9, 4] of those keys; expected labels and masks: tests/data/test_multilabel_data.py
OPENMIC_Y_TRUE = [[0.9, 0.5, 0.1, 0.5], [0.5, 0.5, 0.5, 0.7], [0.2, 0.5, 0.49, 0.5], [0.5, 1.0, 0.5, 0.5],
                  [0.5, 0.5, 0.5, 0.0], [0.6, 0.4, 0.5, 0.5], [0.5, 0.5, 0.8, 0.5], [0.5, 0.5, 0.5, 0.5],
                  [0.0, 0.5, 0.5, 0.5]]
OPENMIC_Y_MASK = [[1, 0, 1, 0], [0, 0, 0, 1], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 0],
                  [0, 0, 1, 0], [1, 0, 0, 0]]
OPENMIC_PARTITIONS = {"train": OPENMIC_KEYS[:6], "test": OPENMIC_KEYS[6:8]}  # the last key is in no partition


def make_openmic(root: Path, sr: int = 8000, seconds: float = 0.5, object_keys: bool = True) -> Path:
    """OpenMIC-2018's official layout: ROOT/openmic-2018.npz (X, Y_true, Y_mask, sample_key), ROOT/class-map.json,
    ROOT/partitions/split01_{train,test}.csv (one key a line, no header), ROOT/audio/<key[:3]>/<key>.ogg (Ogg Vorbis).
    ``object_keys``: sample_key saved as an array of Python objects, as users of the release load it
    (``allow_pickle=True``); else as a string array."""
    rng = np.random.default_rng(6)
    (root / "partitions").mkdir(parents=True, exist_ok=True)
    keys = np.array(OPENMIC_KEYS, dtype=object if object_keys else str)
    np.savez(root / "openmic-2018.npz", X=np.zeros((len(keys), 10, 128), dtype=np.uint8),
             Y_true=np.array(OPENMIC_Y_TRUE, dtype=np.float32), Y_mask=np.array(OPENMIC_Y_MASK, dtype=bool), sample_key=keys)
    (root / "class-map.json").write_text(json.dumps({name: i for i, name in enumerate(OPENMIC_CLASSES)}))
    for split, members in OPENMIC_PARTITIONS.items():
        (root / "partitions" / f"split01_{split}.csv").write_text("".join(f"{k}\n" for k in members))
    for k, key in enumerate(OPENMIC_KEYS):
        (root / "audio" / key[:3]).mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / key[:3] / f"{key}.ogg", tone(k % 3, seconds, sr, rng), sr, format="OGG", subtype="VORBIS")
    return root
