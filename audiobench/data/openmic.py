"""OpenMIC-2018 (Humphrey, Durand, McFee, ISMIR 2018) in its official layout: instruments in 10 s music excerpts.

20000 excerpts of Free Music Archive recordings, each annotated by crowd workers for the presence
or absence of *some* of 20 instruments (https://doi.org/10.5281/zenodo.1432913)::

    ROOT/openmic-2018.npz                 X (VGGish features, not read), Y_true [N, 20] float in [0, 1]
                                          (the aggregated confidence that the instrument is present),
                                          Y_mask [N, 20] bool (True where the instrument was annotated),
                                          sample_key [N] str (e.g. 000046_3840)
    ROOT/class-map.json                   {instrument: column of Y_true}
    ROOT/partitions/split01_train.csv     the official train partition: one sample_key a line, no header
    ROOT/partitions/split01_test.csv      the official test partition
    ROOT/audio/<key[:3]>/<key>.ogg        10 s Ogg Vorbis excerpts (000/000046_3840.ogg)

Labels: an instrument is present where ``Y_true >= 0.5`` and annotated (``Y_mask``), the threshold
of the dataset's baseline (cosmir/openmic-2018, ``examples/modeling-baseline.ipynb``);
``label_mask`` is ``Y_mask``, so a label that was never annotated is unknown, never "absent".
Classes are ordered by their column in ``class-map.json``; clip ids are the sample keys.

Splits: ``test`` is ``split01_test.csv``; ``valid`` is a seeded carve-out of ``split01_train.csv``
(``valid_fraction`` of its keys, default 0.1, chosen by a hash of each key with ``seed``: the same
keys whatever the order of the file, and a key keeps its split when others are added), ``train``
the rest of it. Keys in no partition are not indexed. Clips are fitted to ``seconds`` (10 s, their
length) and resampled to the front end's rate like every file dataset; unusable files (the ten
corrupted FMA sources of the dataset's errata among them, if present) are skips with their reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import Field

from audiobench.contracts.registry import DATASETS
from audiobench.data.audio import Item
from audiobench.data.files import FileParams, Index
from audiobench.data.multilabel import MultiLabelDataset, MultiLabels, carve_out
from audiobench.kernel.errors import AudiobenchError

NPZ, CLASS_MAP = "openmic-2018.npz", "class-map.json"
PARTITIONS = {"train": "partitions/split01_train.csv", "test": "partitions/split01_test.csv"}
THRESHOLD = 0.5  # Y_true at or above it (where annotated): present


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(Y_true [N, C] float32, Y_mask [N, C] bool, sample_key [N]) of ``openmic-2018.npz``; ``X`` is not read.

    ``sample_key`` may be stored as an array of Python objects (users of the release load it with
    ``allow_pickle=True``): it is then unpickled, from the dataset's own file, and must hold strings
    only. Raises :class:`AudiobenchError` (one line) for an unreadable file, a missing array or shapes
    that disagree.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            lacking = [k for k in ("Y_true", "Y_mask", "sample_key") if k not in npz.files]
            if lacking:
                raise AudiobenchError(f"dataset.root: {path} lacks array(s) {', '.join(lacking)} "
                                      f"(it has: {', '.join(npz.files) or 'none'})")
            y_true, y_mask = np.asarray(npz["Y_true"], dtype=np.float32), np.asarray(npz["Y_mask"]).astype(bool)
            try:
                raw = npz["sample_key"]
            except ValueError:  # an object array
                with np.load(path, allow_pickle=True) as objects:
                    raw = objects["sample_key"]
    except AudiobenchError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise AudiobenchError(f"dataset.root: cannot read {path}: {exc}") from None
    keys = raw.tolist() if raw.ndim == 1 else None
    if keys is None or not all(isinstance(k, str) for k in keys):
        raise AudiobenchError(f"dataset.root: {path}: sample_key is not a 1-D array of strings")
    if y_true.ndim != 2 or y_mask.shape != y_true.shape or len(keys) != y_true.shape[0]:
        raise AudiobenchError(f"dataset.root: {path}: Y_true {y_true.shape}, Y_mask {y_mask.shape} and sample_key "
                              f"({len(keys)}) disagree (expected [N, C], [N, C] and N)")
    return y_true, y_mask, keys


@DATASETS.register("openmic")
class OpenMIC(MultiLabelDataset):
    """OpenMIC-2018: 20000 music excerpts of 10 s, 20 instruments, partially annotated (label masks; official layout)."""

    display_name, title = "OpenMIC-2018", "OpenMIC-2018"
    url = "https://doi.org/10.5281/zenodo.1432913"
    citation = ("E. J. Humphrey, S. Durand, B. McFee, \"OpenMIC-2018: An Open Data-set for Multiple Instrument "
                "Recognition\", Proc. ISMIR 2018")
    licence = "CC BY 4.0 (audio from the Free Music Archive under Creative Commons licences; see the record)"

    class Params(FileParams):
        seconds: float = Field(10.0, gt=0, le=600, description="clip length: zero-padded at the end / centre-cropped")
        valid_fraction: float = Field(0.1, gt=0, lt=1, description="share of split01_train carved out as the valid split")
        seed: int = Field(0, description="seed of the valid carve-out (independent of the suite seed)")

    params: Params

    def obtain(self) -> str:
        return f"{super().obtain()} (Zenodo)"

    def problems(self) -> list[str]:
        root = Path(self.params.root)
        if not root.is_dir():
            return [self.missing("root", root, f" (it should hold {NPZ}, {CLASS_MAP}, partitions/ and audio/)")]
        lacking = [rel for rel in (NPZ, CLASS_MAP, *PARTITIONS.values(), "audio/") if not (root / rel).exists()]
        if lacking:
            return [f"dataset.root: {root} lacks {', '.join(lacking)}; {self.obtain()}"]
        return []

    def listing(self) -> str:
        return f"dataset.root: {Path(self.params.root) / 'partitions'}"

    def instrument_names(self, n_classes: int) -> list[str]:
        """Instrument names ordered by their column; :class:`AudiobenchError` unless they are columns 0..n-1 once each."""
        path = Path(self.params.root) / CLASS_MAP
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
            by_column = sorted((int(v), str(k)) for k, v in mapping.items())
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise AudiobenchError(f"dataset.root: cannot read {path} as {{instrument: column}}: {exc}") from None
        if [c for c, _ in by_column] != list(range(n_classes)):
            raise AudiobenchError(f"dataset.root: {path} maps {len(by_column)} instruments to columns "
                                  f"{[c for c, _ in by_column]}, not to the {n_classes} columns 0..{n_classes - 1} of {NPZ}")
        return [name for _, name in by_column]

    def build_index(self) -> Index:
        root = Path(self.params.root)
        y_true, y_mask, keys = read_npz(root / NPZ)
        names = self.instrument_names(y_true.shape[1])
        row = {k: i for i, k in enumerate(keys)}
        listed: dict[str, list[tuple[str, int]]] = {}
        for split, rel in PARTITIONS.items():
            try:
                lines = (root / rel).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise AudiobenchError(f"dataset.root: cannot read {root / rel}: {exc}") from None
            for n, line in enumerate(lines, 1):
                key = line.strip()
                if not key:
                    continue
                if key not in row:
                    raise AudiobenchError(f"dataset.root: {root / rel} line {n}: sample key {key} is not in {NPZ}")
                listed.setdefault(split, []).append((key, n))
        held = carve_out([k for k, _ in listed.get("train", [])], self.params.valid_fraction, self.params.seed)
        items = [
            Item(root / "audio" / key[:3] / f"{key}.ogg", 0, key, "valid" if split == "train" and key in held else split,
                 origin=f"{Path(PARTITIONS[split]).name} line {n}")
            for split, entries in listed.items() for key, n in entries
        ]
        if not items:
            raise AudiobenchError(f"dataset.root: the partitions under {root / 'partitions'} list no sample key; {self.obtain()}")
        present = ((y_true >= THRESHOLD) & y_mask).astype(np.float32)
        self._multi = MultiLabels(row, present, y_mask)
        return Index(items, names)
