"""Tiny fake copies of real datasets in their official layouts (generated audio, official CSV columns)."""

from __future__ import annotations

import csv
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
