"""SONYC-UST v2 (Cartwright et al., DCASE 2020) in its official layout: urban sound tags of 10 s recordings.

18510 recordings of New York City sensors, tagged with 8 coarse and 23 fine urban sound classes by
three Zooniverse volunteers each, and a verified subset (every test clip) tagged by the SONYC team
(https://doi.org/10.5281/zenodo.3966543)::

    ROOT/annotations.csv          one row per annotation of a recording: split (train, validate, test),
                                  sensor_id, audio_filename, annotator_id, ..., <c>-<f>_<fine name>_presence,
                                  <c>_<coarse name>_presence (e.g. 1-1_small-sounding-engine_presence,
                                  1_engine_presence), ..._proximity
    ROOT/audio/<audio_filename>   10 s WAV

``annotator_id`` (the release's README): positive, a Zooniverse volunteer; negative, a SONYC team
member (before disagreement resolution); 0, the verified tags the SONYC team agreed on. A presence
is 1 (present), 0 (absent) or -1 (not annotated in this row: a SONYC team member tagged one coarse
group at a time).

**Labels** follow the DCASE 2020 Task 5 baseline (github.com/sonyc-project/dcase2020task5-uststc-baseline,
``src/classify.py``: ``get_file_targets`` and ``get_subset_split``):

* a ``train`` clip's labels aggregate its volunteers' rows only (``annotator_id > 0``; SONYC team
  and verified rows of train clips are ignored): a class is present when **at least one**
  volunteer marked it present (the baseline sums the rows' presence and tests ``> 0``);
* a ``validate`` or ``test`` clip's labels are its verified row (``annotator_id == 0``) only; a clip
  with no verified row is not in the split (the baseline's validation keeps the files whose smallest
  ``annotator_id`` is at most 0; in the release those are the verified ones, and a clip with SONYC
  team rows but no verified row, which the baseline would keep with all-zero targets, is left out);
* a label is unknown (``label_mask`` False) when every row used marks it -1 (the README's "not
  annotated"); volunteer and verified rows carry 0 or 1, so on the release every coarse label is
  known and ``label_mask`` is None;
* ``level: fine``: the 23 fine classes (the ``X`` tags, "engine of uncertain size", are not
  classes); where a coarse group's ``X`` tag is present, the group's fine labels are unknown
  (``label_mask`` False), as the baseline's ``masked_loss`` leaves them out of its loss.

**Splits**: ``train`` is the release's ``train``, ``valid`` its ``validate`` and ``test`` its ``test``
(v2.3 holds the test tags). A release without ``test`` rows (before v2.3) tests on ``validate``; its
``valid`` split is then the train clips of a seeded ``valid_fraction`` of the train sensors (the
release's train and validate splits share no sensor; carving by sensor keeps that), never the
test clips. Classes are in the taxonomy's order (``1_engine`` ... ``8_dog``), named without their
number; clip ids are the file names without extension.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from audiobench.contracts.registry import DATASETS
from audiobench.data.audio import Item
from audiobench.data.files import LINE, FileParams, Index, read_csv
from audiobench.data.multilabel import MultiLabelDataset, MultiLabels, carve_out
from audiobench.kernel.errors import AudiobenchError

COARSE = ("1_engine", "2_machinery-impact", "3_non-machinery-impact", "4_powered-saw", "5_alert-signal", "6_music",
          "7_human-voice", "8_dog")
META = ("split", "sensor_id", "audio_filename", "annotator_id")
SPLIT_OF = {"train": "train", "validate": "valid", "test": "test"}
FINE_COLUMN = re.compile(r"(\d+)-(\d+|X)_(.+)_presence")


def fine_columns(columns: list[str]) -> list[tuple[int, str, str, str]]:
    """(coarse id, fine id, name, column) of every ``<c>-<f>_<name>_presence`` column, in taxonomy order (X last)."""
    out = []
    for col in columns:
        m = FINE_COLUMN.fullmatch(col)
        if m:
            out.append((int(m.group(1)), m.group(2), m.group(3), col))
    return sorted(out, key=lambda t: (t[0], t[1] == "X", int(t[1]) if t[1] != "X" else 0))


def aggregate(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one clip's presence votes [R, K] in {1, 0, -1} -> (present [K] float32, known [K] bool).

    Present: at least one row marks 1 (the DCASE 2020 baseline's any-vote); known: at least one row
    is not -1 (the README's "not annotated")."""
    return (votes == 1).any(axis=0).astype(np.float32), (votes >= 0).any(axis=0)


@DATASETS.register("sonyc_ust")
class SonycUST(MultiLabelDataset):
    """SONYC-UST v2: 18510 urban recordings of 10 s, 8 coarse (23 fine) multi-label tags (official layout)."""

    display_name, title = "SONYC-UST", "SONYC-UST v2"
    url = "https://doi.org/10.5281/zenodo.3966543"
    citation = ("M. Cartwright et al., \"SONYC-UST-V2: An Urban Sound Tagging Dataset with Spatiotemporal Context\", "
                "Proc. DCASE 2020 Workshop, arXiv:2009.05188")
    licence = "CC BY 4.0"

    class Params(FileParams):
        seconds: float = Field(10.0, gt=0, le=600, description="clip length: zero-padded at the end / centre-cropped")
        level: Literal["coarse", "fine"] = Field("coarse", description="coarse: 8 classes; fine: 23 classes")
        valid_fraction: float = Field(0.1, gt=0, lt=1, description="a release without test rows: the share of "
                                      "the train sensors whose clips form the valid split")
        seed: int = Field(0, description="seed of the valid carve-out (independent of the suite seed)")

    params: Params

    def obtain(self) -> str:
        return f"{super().obtain()} (Zenodo)"

    def csv_path(self) -> Path:
        return Path(self.params.root) / "annotations.csv"

    def problems(self) -> list[str]:
        root = Path(self.params.root)
        if not root.is_dir():
            return [self.missing("root", root, " (it should hold annotations.csv and audio/)")]
        lacking = [rel for rel in ("annotations.csv", "audio/") if not (root / rel).exists()]
        if lacking:
            return [f"dataset.root: {root} lacks {' and '.join(lacking)}; {self.obtain()}"]
        return []

    def listing(self) -> str:
        return f"dataset.root: {self.csv_path()}"

    def _empty_hint(self, split: str) -> str:
        return " (no clip of it has a verified annotation, annotator_id 0)" if split != "train" else ""

    def _columns(self, columns: list[str]) -> tuple[list[str], list[str], dict[int, str]]:
        """(class names, their presence columns, coarse id -> X column) for the level; errors name what lacks."""
        if self.params.level == "coarse":
            return [c.split("_", 1)[1] for c in COARSE], [f"{c}_presence" for c in COARSE], {}
        fine = fine_columns(columns)
        if not fine:
            raise AudiobenchError(f"dataset.root: {self.csv_path()} has no fine presence column "
                                  "(<c>-<f>_<name>_presence, e.g. 1-1_small-sounding-engine_presence)")
        named = [(c, f, n, col) for c, f, n, col in fine if f != "X"]
        return [n for _, _, n, _ in named], [col for *_, col in named], {c: col for c, f, _, col in fine if f == "X"}

    def build_index(self) -> Index:
        path = self.csv_path()
        required = META + (tuple(f"{c}_presence" for c in COARSE) if self.params.level == "coarse" else ())
        rows = read_csv(path, required, "root")
        names, cols, x_cols = self._columns(list(rows[0]) if rows else list(required))
        groups = np.array([int(c.split("_", 1)[0].split("-", 1)[0]) for c in cols])  # each column's coarse id
        clips: dict[str, dict] = {}  # audio_filename -> split, sensor, first line, the rows used
        for r in rows:
            line, name, split = r[LINE], r["audio_filename"].strip(), r["split"].strip()
            if split not in SPLIT_OF:
                raise AudiobenchError(f"dataset.root: {path} line {line}: split '{split}' is not train, validate or test")
            try:
                annotator = int(float(r["annotator_id"]))
                votes = [int(float(r[c])) for c in cols] + [int(float(r[c])) for c in x_cols.values()]
            except (TypeError, ValueError):
                raise AudiobenchError(f"dataset.root: {path} line {line}: annotator_id or a presence column is not "
                                      "a number") from None
            clip = clips.setdefault(name, {"split": split, "sensor": r["sensor_id"].strip(), "line": line, "rows": []})
            if clip["split"] != split:
                raise AudiobenchError(f"dataset.root: {path}: {name} is in split {clip['split']} (line {clip['line']}) "
                                      f"and in {split} (line {line})")
            if (annotator > 0) if split == "train" else (annotator == 0):  # the baseline's get_file_targets
                clip["rows"].append(votes)
        has_test = any(c["split"] == "test" for c in clips.values())
        root = Path(self.params.root)
        items, labels, known = [], [], []
        for name, clip in clips.items():
            if not clip["rows"]:  # a validate / test clip without a verified row
                continue
            present, ok = aggregate(np.array(clip["rows"]))
            for k, g in enumerate(x_cols):  # fine level: a present X tag hides its group's fine labels
                if present[len(cols) + k]:
                    ok[: len(cols)] &= groups != g
            split = SPLIT_OF[clip["split"]]
            items.append(Item(root / "audio" / name, 0, Path(name).stem, "test" if split == "valid" and not has_test
                              else split, group=clip["sensor"], origin=f"line {clip['line']}"))
            labels.append(present[: len(cols)])
            known.append(ok[: len(cols)])
        if not has_test:  # valid: the train clips of a seeded share of the train sensors
            held = carve_out([it.group for it in items if it.split == "train"], self.params.valid_fraction, self.params.seed)
            items = [replace(it, split="valid") if it.split == "train" and it.group in held else it for it in items]
        if not items:
            raise AudiobenchError(f"dataset.root: {path} lists no clip with a usable annotation; {self.obtain()}")
        mask = np.array(known, dtype=bool)
        self._multi = MultiLabels({it.sample_id: i for i, it in enumerate(items)}, np.array(labels, dtype=np.float32),
                                  None if mask.all() else mask)
        return Index(items, names)
