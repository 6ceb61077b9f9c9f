"""The run directory's file names for audio and per-method folders: one definition, read by the
harness that writes them and by the views (report, listening test) that find them again.

Layout::

    RUN_DIR/audio/<condition>/input/<clip>.wav           the evaluated inputs (first ``audio.n``)
    RUN_DIR/audio/<condition>/<method folder>/<stem>.wav  each row's interpretation (:func:`audio_name`)
    RUN_DIR/audio/<condition>/<domain key>/<method folder>/<stem>.wav
                                                          the same, for each listenable domain after the
                                                          suite's first (e.g. ``stft2mel_log1p``)
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from audiobench.kernel.cache import stable_hash
from audiobench.store.ids import safe_child


def slug(text: str) -> str:
    """A file-name-safe lower-case form of ``text``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def method_folders(methods: list[Any]) -> list[str]:
    """A file-name-safe folder per method row, unique within the suite: labels that slug alike
    (``GradCAM``, ``GradCAM++``) get ``-2``, ``-3``... in suite order; ``input`` is the inputs' folder."""
    seen: dict[str, int] = {"input": 1}
    out = []
    for m in methods:
        base = slug(m.label or m.name)
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def interpretation_dir(condition_dir: Path, domain_key: str, listenable: list[str]) -> Path:
    """The folder under ``RUN_DIR/audio/<condition>`` (``condition_dir``) holding the method folders of the
    domain instance ``domain_key``: the condition's folder itself for the first of the suite's listenable
    domain keys (``listenable``, suite order: every run with one listenable domain), ``<domain key>/`` below
    it for the others, so two listenable instances (``stft2mel``, ``stft2mel_log1p``) never share a file."""
    return condition_dir if not listenable or domain_key == listenable[0] else condition_dir / domain_key


@lru_cache(maxsize=64)
def class_parts(class_names: tuple[str, ...]) -> tuple[str, ...]:
    """A file-name part per class, unique per class: its slug, with ``-<hash>`` of the name when the
    slug is shared with another class (``Dog`` / ``dog``) or when nothing of the name survives (``狗``)."""
    slugs = [slug(n) for n in class_names]
    return tuple(s if slugs.count(s) == 1 and re.search(r"[A-Za-z0-9]", n) else f"{s}-{stable_hash(n, 8)}"
                 for s, n in zip(slugs, class_names, strict=True))


def audio_name(sample_id: str, target: int, class_names: list[str], one_per_clip: bool) -> str:
    """The file stem of a (clip, target) row's interpretation: the clip's id, with the target's class
    (:func:`class_parts`: one file per class, whatever the names) when a clip can have several targets."""
    return sample_id if one_per_clip else f"{sample_id}__{class_parts(tuple(class_names))[target]}"


def write_wavs(folder: Path, ids: list[str], audio: np.ndarray, sample_rate: int) -> None:
    """Write each row of ``audio`` [N, L] as a WAV at ``sample_rate`` Hz in ``folder``, named by its id made a safe
    file name (:func:`audiobench.store.ids.file_stem`): never outside ``folder``. A row within [-1, 1] is 16-bit;
    a row beyond it (a clip at its recorded level plus what a condition adds: ``ModelSpec.peak_normalise =
    False``) is 32-bit float, never clipped: the written audio is what was scored."""
    folder.mkdir(parents=True, exist_ok=True)
    for sid, wav in zip(ids, audio, strict=True):
        loud = bool(np.abs(wav).max(initial=0.0) > 1.0)
        sf.write(safe_child(folder, sid, ".wav"), wav if loud else np.clip(wav, -1.0, 1.0), sample_rate,
                 subtype="FLOAT" if loud else "PCM_16")
