"""Clotho v2 (Drossos et al., ICASSP 2020): captioned audio, the training data of LMAC-ZS (CT).

LMAC-ZS is trained on captioned audio CLAP was trained on, never on the evaluation prompts (the
paper's "(CT)" rows: Clotho only). Clotho v2 (https://zenodo.org/record/4783391) in its official
layout::

    ROOT/clotho_captions_development.csv   file_name, caption_1, ..., caption_5
    ROOT/clotho_captions_validation.csv
    ROOT/clotho_captions_evaluation.csv
    ROOT/development/<file_name>           15-30 s, 44.1 kHz WAV (clotho_audio_development.7z)
    ROOT/validation/<file_name>
    ROOT/evaluation/<file_name>

Splits: ``development`` is the harness's ``train``, ``validation`` its ``valid``, ``evaluation``
its ``test``. Clips are fitted to ``seconds`` like every file dataset (centre-cropped, zero-padded)
and unusable files are skips with their reason. There are no classes: every clip has label 0 of
the single class ``clotho``; the captions are what a captioned loader returns beside the clips.

This loader is not registered as a suite ``dataset`` (a one-class dataset explains nothing); it is
what ``lmac_zs`` reads its training pairs from with ``clotho: ROOT`` (the top-level README,
*Zero-shot track with real CLAP weights*).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field

from audiobench.data.audio import Item
from audiobench.data.base import ClipSet
from audiobench.data.files import LINE, FileDataset, FileParams, Index, read_csv
from audiobench.kernel.errors import AudiobenchError
from audiobench.kernel.shipped import sha256

CAPTION_COLUMNS = tuple(f"caption_{i}" for i in range(1, 6))
SPLIT_FOLDERS = {"train": "development", "valid": "validation", "test": "evaluation"}


@dataclass
class CaptionedClips:
    """Clips and their captions: ``captions[i]`` (five strings for Clotho) describe ``clips.waveforms[i]``."""

    clips: ClipSet
    captions: list[tuple[str, ...]]

    def __post_init__(self) -> None:
        if len(self.captions) != len(self.clips):
            raise ValueError("one tuple of captions per clip")

    def __len__(self) -> int:
        return len(self.clips)

    def pick(self, idx: torch.Tensor, gen: torch.Generator) -> list[str]:
        """One caption per clip of ``idx`` [B], drawn uniformly among that clip's captions with ``gen``."""
        out = []
        for i in idx.tolist():
            options = self.captions[i]
            out.append(options[int(torch.randint(len(options), (1,), generator=gen))])
        return out


class Clotho(FileDataset):
    """Clotho v2: about 6000 captioned recordings of 15-30 s (five captions each), official layout on disk."""

    name = "clotho"
    display_name, title = "Clotho", "Clotho v2"
    url = "https://zenodo.org/record/4783391"
    citation = ("K. Drossos, S. Lipping, T. Virtanen, \"Clotho: an Audio Captioning Dataset\", "
                "Proc. ICASSP 2020, doi:10.1109/ICASSP40776.2020.9052990")
    licence = "audio from freesound.org under CC licences, captions CC BY 4.0; see the Zenodo record"

    class Params(FileParams):
        seconds: float = Field(10.0, gt=0, le=600, description="clip length: centre-cropped / zero-padded")
        splits: tuple[str, ...] = Field(("train", "valid", "test"), min_length=1,
                                        description="splits indexed: train (development), valid (validation), test (evaluation)")

    def csv_path(self, split: str) -> Path:
        return Path(self.params.root) / f"clotho_captions_{SPLIT_FOLDERS[split]}.csv"

    def problems(self) -> list[str]:
        root = Path(self.params.root)
        unknown = [s for s in self.params.splits if s not in SPLIT_FOLDERS]
        if unknown:
            return [f"clotho.splits: unknown split(s) {', '.join(unknown)} (expected train, valid, test)"]
        if not root.is_dir():
            return [self.missing("root", root, " (it should hold clotho_captions_development.csv and development/)")]
        out = []
        for split in self.params.splits:
            for path in (self.csv_path(split), root / SPLIT_FOLDERS[split]):
                if not path.exists():
                    out.append(self.missing("root", path))
        return out

    def check(self) -> list[str]:
        problems = self.problems()
        if problems:
            return problems
        try:
            index = self.index()
        except AudiobenchError as exc:
            return [str(exc)]
        return [f"clotho: split '{s}' has no clips" for s in self.params.splits if not any(it.split == s for it in index.items)]

    def build_index(self) -> Index:
        self._captions: dict[str, tuple[str, ...]] = {}
        items = []
        root = Path(self.params.root)
        for split in self.params.splits:
            for row in read_csv(self.csv_path(split), ("file_name", *CAPTION_COLUMNS), "root"):
                name = row["file_name"]
                sample_id = f"{SPLIT_FOLDERS[split]}/{Path(name).stem}"
                caps = tuple(" ".join(row[c].split()) for c in CAPTION_COLUMNS if (row.get(c) or "").strip())
                if not caps:
                    raise AudiobenchError(f"dataset.root: {self.csv_path(split)} line {row[LINE]}: {name} has no caption")
                self._captions[sample_id] = caps
                items.append(Item(path=root / SPLIT_FOLDERS[split] / name, label=0, sample_id=sample_id, split=split,
                                  origin=f"line {row[LINE]}"))
        return Index(items, ["clotho"])

    def listing(self) -> str:
        return f"dataset.root: {self.params.root}/clotho_captions_*.csv"

    def load_captioned(self, split: str, sample_rate: int) -> CaptionedClips:
        """The clips of ``split`` at ``sample_rate`` Hz and their captions, aligned (skipped files, silent
        ones included, have neither; ``clips.skips`` says why).

        Raises :class:`AudiobenchError` (one line) for a missing file or folder, naming where
        Clotho is, or a split that is not indexed.
        """
        if split not in self.params.splits:
            raise AudiobenchError(f"clotho: split '{split}' is not among clotho.splits {list(self.params.splits)}")
        clips = self.load(split, sample_rate).drop_silent(where=f"clotho:{split}")
        return CaptionedClips(clips, [self._captions[s] for s in clips.sample_ids])

    def fingerprint(self) -> dict:
        """The file list and sizes (as every file dataset) and the caption files' content."""
        digests = {s: sha256(self.csv_path(s)) for s in self.params.splits if self.csv_path(s).is_file()}
        return {**super().fingerprint(), "captions": digests}
