"""``noise_folder``: noise or speech from a local folder (WHAM! noise, LJ-Speech, ...) added to each clip.

Every audio file under ``root`` (recursive, sorted) is a candidate. For each clip, a generator
seeded by (suite seed, folder tag, clip id) picks a file and a random excerpt of the clip's length;
a file shorter than the clip is looped from a random offset. A file that cannot be used (empty,
truncated, unreadable, silent) and an excerpt without energy (RMS below ``SILENCE_DBFS``, e.g. in
a stretch of digital silence) are passed over for the next draw, so every clip is at the stated
SNR and is contaminated the same way whatever the batch, order or ``--limit``. A clip for which
no draw gives an excerpt with energy is left out of the condition, a recorded skip. Files are decoded, downmixed and resampled to
the clips' rate like dataset clips.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from audiobench.contracts.registry import CONTAMINATIONS
from audiobench.data.audio import AUDIO_EXTENSIONS, UnusableAudio, list_audio, read_audio, resample
from audiobench.data.base import SILENCE_DBFS, ClipSet
from audiobench.data.contaminations import Contamination, MixParams, _Mixing, sample_rng
from audiobench.kernel.errors import AudiobenchError

MAX_DRAWS = 32  # files tried per clip before giving up (all unusable)
SOURCES = "WHAM! noise is at http://wham.whisper.ai/, LJ-Speech at https://keithito.com/LJ-Speech-Dataset/"


@CONTAMINATIONS.register("noise_folder")
class NoiseFolder(_Mixing, Contamination):
    """Excerpts of the audio files of a local folder (WHAM! noise, LJ-Speech, ...), at the given SNR."""


    class Params(MixParams):
        root: Path = Field(..., description="folder searched recursively for audio files")
        extensions: tuple[str, ...] = Field(AUDIO_EXTENSIONS, min_length=1, description="file extensions used")
        tag: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="short name in keys and titles")

    params: Params

    def tag(self) -> str:
        return self.params.tag or re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(self.params.root).name).strip("-") or "noise"

    def key(self) -> str:
        return f"noise_{self.tag()}_{self.level_key()}"

    def title(self) -> str:
        return f"{self.tag()} {self.level_title()}"

    def identity(self) -> tuple[str, ...]:
        # the folder: WHAM!'s training noise (tr) and its test noise (tt) are different conditions
        return (self.name, str(Path(self.params.root).expanduser().resolve()))

    def overlaps(self, other: Any) -> bool:
        # recursive search: WHAM!'s wham_noise/ holds tr/ and tt/, so training on the parent has seen tt
        if other.name != self.name:
            return False
        a, b = Path(self.identity()[1]), Path(other.identity()[1])
        return a == b or a.is_relative_to(b) or b.is_relative_to(a)

    def files(self) -> list[Path]:
        return list_audio(Path(self.params.root), self.params.extensions)

    def check(self, dataset: Any = None) -> list[str]:
        root = Path(self.params.root)
        if not root.is_dir():
            return [f"noise_folder.root: {root} not found; {SOURCES}"]
        if not self.files():
            return [f"noise_folder.root: no audio files ({', '.join(self.params.extensions)}) under {root}"]
        return []

    def apply(self, clips: ClipSet, pool: ClipSet, seed: int) -> ClipSet:
        if len(clips) == 0:
            return clips
        problems = self.check()
        if problems:
            raise AudiobenchError(problems[0])
        files = self.files()
        length, sr = clips.waveforms.shape[1], clips.sample_rate
        decoded: dict[int, np.ndarray | UnusableAudio] = {}

        def get(k: int) -> np.ndarray | UnusableAudio:
            if k not in decoded:
                try:
                    wave, rate = read_audio(files[k])
                    decoded[k] = resample(torch.from_numpy(wave), rate, sr).numpy()
                except UnusableAudio as exc:
                    decoded[k] = exc
            return decoded[k]

        floor = 10 ** (SILENCE_DBFS / 20)
        rows = np.zeros((len(clips), length))  # a row left at zero is skipped by ``mixed``
        any_file = False
        last: UnusableAudio | None = None
        for r, sid in enumerate(clips.sample_ids):
            rng = sample_rng(seed, f"{self.name}:{self.tag()}", sid)
            for _ in range(MAX_DRAWS):
                got = get(int(rng.integers(len(files))))
                if isinstance(got, UnusableAudio):
                    last = got
                    continue
                any_file = True
                cut = excerpt(got, length, rng)
                if np.sqrt(np.mean(np.square(cut, dtype=np.float64))) >= floor:  # silent excerpt: draw again
                    rows[r] = cut
                    break
        if not any_file:
            raise AudiobenchError(f"noise_folder: no usable file in {MAX_DRAWS} draws under {self.params.root} ({last})")
        why = f"no noise excerpt above {SILENCE_DBFS:g} dBFS RMS in {MAX_DRAWS} draws under {self.params.root}"
        return self.mixed(clips, torch.from_numpy(rows), why, seed)


def excerpt(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-sample excerpt of ``x``; a shorter ``x`` is looped from a random offset."""
    n = x.shape[0]
    if n >= length:
        start = int(rng.integers(n - length + 1))
        return x[start : start + length]
    start = int(rng.integers(n))
    reps = -(-(start + length) // n)
    return np.tile(x, reps)[start : start + length]
