"""``audio_folder``: any folder of audio files, labels and splits described by a few keys.

Labels (``labels``):

* ``folder``: the name of the file's first sub-folder under ``root`` (``root/dog/x.wav`` -> dog);
* ``pattern``: the named group ``label`` of the regular expression ``pattern``, searched in the
  file's name (``(?P<label>[a-z]+)_(?P<speaker>spk\\d+)``); files it does not match are skipped;
* ``csv``: the CSV file ``csv`` (paths in ``file_column`` relative to ``root``, labels in
  ``label_column``).

Splits (``split_by``):

* ``fraction``: per class, files ordered by a seeded hash of their path and cut by ``fractions``;
* ``group``: every file of one value of the ``pattern`` group named ``group`` (a speaker, a
  recording session) goes to one split: the values are ordered by a seeded hash and cut by
  ``fractions`` (each split gets at least one value when there are three or more);
* ``column``: the CSV's ``split_column`` (``train``; ``valid``, ``validation``, ``val`` or
  ``dev``; ``test`` or ``eval``).

Clips are fitted to ``seconds`` (zero-padded at the end, centre-cropped). Class indices follow
the sorted label names. Clip ids are the relative paths without extension, ``/`` written ``__``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from audiobench.contracts.registry import DATASETS
from audiobench.data.audio import AUDIO_EXTENSIONS, Item, list_audio
from audiobench.data.base import SPLITS, Skip
from audiobench.data.files import (
    LINE,
    FileDataset,
    FileParams,
    Index,
    assign_by_fraction,
    check_fractions,
    read_csv,
)
from audiobench.kernel.errors import AudiobenchError

SPLIT_NAMES = {
    "train": "train", "training": "train",
    "valid": "valid", "validation": "valid", "val": "valid", "dev": "valid",
    "test": "test", "eval": "test", "evaluation": "test",
}


@DATASETS.register("audio_folder")
class AudioFolder(FileDataset):
    """Any folder of audio files: labels from sub-folders, a file-name pattern or a CSV; splits by fraction, group or column."""

    display_name = "Audio folder"

    class Params(FileParams):
        labels: Literal["folder", "pattern", "csv"] = Field("folder", description="where labels come from")
        pattern: str | None = Field(None, description="regex searched in each file name (named groups: label, ...)")
        csv: Path | None = Field(None, description="CSV listing files (relative to root) and labels")
        file_column: str = "filename"
        label_column: str = "label"
        split_column: str = "split"
        split_by: Literal["fraction", "group", "column"] = "fraction"
        group: str | None = Field(None, description="named group of `pattern` whose values are kept in one split")
        fractions: tuple[float, float, float] = Field((0.6, 0.2, 0.2), description="train / valid / test")
        seed: int = Field(0, description="seed of the split assignment")
        extensions: tuple[str, ...] = Field(AUDIO_EXTENSIONS, min_length=1, description="file extensions listed")
        seconds: float = Field(4.0, gt=0, le=600)

        @field_validator("fractions")
        @classmethod
        def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
            return check_fractions(v)  # type: ignore[return-value]

        @field_validator("pattern")
        @classmethod
        def _regex(cls, v: str | None) -> str | None:
            if v is not None:
                try:
                    re.compile(v)
                except re.error as exc:
                    raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
            return v

        @model_validator(mode="after")
        def _consistent(self) -> AudioFolder.Params:
            groups = set(re.compile(self.pattern).groupindex) if self.pattern else set()
            if self.labels == "pattern" and "label" not in groups:
                raise ValueError("labels: pattern needs a `pattern` with a named group (?P<label>...)")
            if self.labels == "csv" and self.csv is None:
                raise ValueError("labels: csv needs `csv: path/to/file.csv`")
            if self.split_by == "column" and self.csv is None:
                raise ValueError("split_by: column needs `csv` (with a split column)")
            if self.split_by == "group":
                if not self.group:
                    raise ValueError("split_by: group needs `group` (a named group of `pattern`, e.g. speaker)")
                if self.group not in groups:
                    raise ValueError(f"split_by: group needs a `pattern` with the named group (?P<{self.group}>...)")
            return self

    params: Params

    def problems(self) -> list[str]:
        p = self.params
        root = Path(p.root)
        if not root.is_dir():
            return [f"dataset.root: {root} not found (a folder of audio files)"]
        if p.csv is not None and not Path(p.csv).is_file():
            return [f"dataset.csv: {p.csv} not found"]
        return []

    def listing(self) -> str:
        return f"dataset.csv: {self.params.csv}" if self.params.csv is not None else f"dataset.root: {self.params.root}"

    def _empty_hint(self, split: str) -> str:
        return " (more files, other `fractions` or another `seed` may fill it)"

    def build_index(self) -> Index:
        p = self.params
        root = Path(p.root)
        regex = re.compile(p.pattern) if p.pattern else None
        skips: list[Skip] = []
        records: list[tuple[Path, str, str | None, str]] = []  # path, label, split, origin
        if p.csv is not None:
            needed = [p.file_column] + ([p.label_column] if p.labels == "csv" else [])
            needed += [p.split_column] if p.split_by == "column" else []
            for row in read_csv(Path(p.csv), needed, "csv"):
                path = root / row[p.file_column]
                split = None
                if p.split_by == "column":
                    split = SPLIT_NAMES.get(row[p.split_column].strip().lower())
                    if split is None:
                        raise AudiobenchError(
                            f"dataset.split_column: value '{row[p.split_column]}' of {p.csv} is not a split name "
                            f"(use {', '.join(sorted(SPLIT_NAMES))})"
                        )
                records.append((path, row.get(p.label_column, ""), split, f"line {row[LINE]}"))
        else:
            records = [(path, "", None, "") for path in list_audio(root, p.extensions)]
        out: list[tuple[Path, str, str | None, str | None]] = []
        origins: list[str] = []
        for path, label, split, origin in records:
            rel = path.relative_to(root) if path.is_relative_to(root) else path
            group = None
            if regex is not None:
                m = regex.search(path.name)
                if m is None:
                    if p.labels == "pattern" or p.split_by == "group":
                        skips.append(Skip(_sample_id(rel), f"file name does not match pattern {p.pattern!r}", self.where("index")))
                        continue
                else:
                    if p.labels == "pattern":
                        label = m.group("label")
                    if p.group:
                        group = m.group(p.group)
            if p.labels == "folder":
                if len(rel.parts) < 2:
                    skips.append(Skip(_sample_id(rel), "file is not in a class sub-folder", self.where("index")))
                    continue
                label = rel.parts[0]
            if not label:
                skips.append(Skip(_sample_id(rel), "no label", self.where("index")))
                continue
            out.append((path, label, split, group))
            origins.append(origin)
        if not out:
            raise AudiobenchError(f"dataset.root: no usable audio files under {root} (extensions: {', '.join(p.extensions)})")
        class_names = sorted({label for _, label, _, _ in out})
        label_of = {c: i for i, c in enumerate(class_names)}
        rels = [str(path.relative_to(root) if path.is_relative_to(root) else path) for path, *_ in out]
        splits: list[str] = [s or "" for _, _, s, _ in out]
        if p.split_by == "group":
            values = sorted({g for *_, g in out if g is not None})
            assigned = dict(zip(values, assign_by_fraction(values, p.fractions, p.seed), strict=True))
            splits = [assigned[g] for *_, g in out]  # type: ignore[index]
        elif p.split_by == "fraction":
            for c in class_names:
                members = [i for i, (_, label, _, _) in enumerate(out) if label == c]
                for i, s in zip(members, assign_by_fraction([rels[i] for i in members], p.fractions, p.seed), strict=True):
                    splits[i] = s
        items = [
            Item(path, label_of[label], _sample_id(Path(rel)), split, None, group, origin)
            for (path, label, _, group), rel, split, origin in zip(out, rels, splits, origins, strict=True)
        ]
        assert all(it.split in SPLITS for it in items)
        return Index(items, class_names, skips)


def _sample_id(rel: Path) -> str:
    return "__".join(rel.with_suffix("").parts)
