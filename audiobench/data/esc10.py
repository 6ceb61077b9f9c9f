"""ESC-10 in its official layout (https://github.com/karoldvl/ESC-10), split by its predefined folds.

400 environmental recordings of 5 s, 10 classes, 5 folds (clips of one source file share a fold)::

    ROOT/001 - Dog bark/1-100032-A.ogg      NNN - Class name / fold-freesoundID-take.ogg
    ROOT/002 - Rain/...                     44.1 kHz mono Ogg Vorbis
    ...
    ROOT/010 - Fire crackling/...

Classes are the folders ``NNN - Class name`` in the order of their number, named without the
prefix (``Dog bark``); a folder of another name is not a class. The fold is the first field of the
file name. A file whose name is not ``fold-freesoundID-take`` is skipped (recorded with the train
split); one that cannot be decoded is skipped when its split is loaded. Clip ids are the file
names without extension (``1-100032-A``). Any format :mod:`audiobench.data.audio` reads is
accepted, so a converted copy (WAV, FLAC) loads the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

from audiobench.contracts.registry import DATASETS
from audiobench.data.audio import Item, list_audio
from audiobench.data.base import Skip
from audiobench.data.esc50 import ESC50
from audiobench.data.files import FileDataset, FileParams, Index, fold_params
from audiobench.data.folds import require_folds
from audiobench.kernel.errors import AudiobenchError

CLASS_FOLDER = re.compile(r"(\d+) - (.+)")
CLIP_NAME = re.compile(r"(\d+)-(\d+)-([A-Za-z]+)")


@DATASETS.register("esc10")
class ESC10(FileDataset):
    """ESC-10: 400 environmental recordings of 5 s, 10 classes, 5 folds (official layout: one folder per class)."""

    display_name, title = "ESC-10", "ESC-10"
    url = "https://github.com/karoldvl/ESC-10"
    citation = ESC50.citation
    licence = "CC BY 3.0 (clips from freesound.org; per-clip attributions in the dataset's README)"

    class Params(FileParams, fold_params(train=(1, 2, 3), valid=(4,), test=(5,))):  # the L-MAC paper's folds
        pass

    params: Params

    def obtain(self) -> str:
        return f"{super().obtain()} (CC BY 3.0)"

    def class_folders(self) -> list[tuple[int, str, Path]]:
        """(number, class name, folder) of every ``NNN - Class name`` folder under root, by number."""
        out = []
        for folder in Path(self.params.root).iterdir():
            m = CLASS_FOLDER.fullmatch(folder.name)
            if m and folder.is_dir():
                out.append((int(m.group(1)), m.group(2).strip(), folder))
        return sorted(out)

    def problems(self) -> list[str]:
        root = Path(self.params.root)
        if not root.is_dir():
            return [self.missing("root", root, " (it should hold the class folders '001 - Dog bark' ... '010 - Fire crackling')")]
        folders = self.class_folders()
        if not folders:
            return [f"dataset.root: {root} holds no class folder named 'NNN - Class name' (e.g. '001 - Dog bark'); {self.obtain()}"]
        seen: dict[int, str] = {}
        for number, _, folder in folders:
            if number in seen:
                return [f"dataset.root: class folders '{seen[number]}' and '{folder.name}' under {root} share the number {number}"]
            seen[number] = folder.name
        return []

    def build_index(self) -> Index:
        root = Path(self.params.root)
        split_of = self.params.split_of()
        folders = self.class_folders()
        items: list[Item] = []
        skips: list[Skip] = []
        for label, (_, _, folder) in enumerate(folders):
            for path in list_audio(folder):
                m = CLIP_NAME.fullmatch(path.stem)
                if m is None:
                    rel = path.relative_to(root)
                    skips.append(Skip(path.stem, f"file name is not fold-freesoundID-take (e.g. 1-100032-A.ogg) [{rel}]", self.where("index")))
                    continue
                fold = int(m.group(1))
                items.append(Item(path, label, path.stem, split_of.get(fold, ""), fold, m.group(2)))
        if not items:
            raise AudiobenchError(f"dataset.root: no audio file named fold-freesoundID-take in the class folders under {root}; {self.obtain()}")
        require_folds(split_of, {it.fold for it in items if it.fold is not None}, str(root))
        return Index(items, [name for _, name, _ in folders], skips)
