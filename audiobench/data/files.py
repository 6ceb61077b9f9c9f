"""The base of datasets read from disk (``esc50``, ``urbansound8k``, ``audio_folder``).

A file dataset builds an *index* (every clip's path, label, split and, where the dataset has them,
fold and group) from its metadata without decoding audio; ``check()`` reports every missing path
or inconsistent setting as one line naming the key, the path and where the data can be obtained,
and ``audiobench validate`` prints them at the dataset's line. ``load(split, rate)`` decodes the
split's files through :mod:`audiobench.data.audio`, so unusable files become recorded skips.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from audiobench.contracts.component import Params
from audiobench.data.audio import Item, cached, load_items
from audiobench.data.base import SPLITS, ClipSet, Dataset, Skip
from audiobench.data.integrity import index_problems
from audiobench.kernel.cache import stable_hash
from audiobench.kernel.errors import AudiobenchError


@dataclass
class Index:
    items: list[Item]
    class_names: list[str]
    skips: list[Skip] = field(default_factory=list)  # files left out while indexing (recorded with 'train')
    problems: list[str] = field(default_factory=list)  # repeated clips, colliding ids (errors)


def fold_params(train: tuple[int, ...], valid: tuple[int, ...], test: tuple[int, ...]) -> type[Params]:
    """A params mixin with ``train_folds``, ``valid_folds``, ``test_folds`` (defaults given), checked disjoint."""

    class FoldParams(Params):
        train_folds: tuple[int, ...] = Field(train, min_length=1, description="folds of the train split")
        valid_folds: tuple[int, ...] = Field(valid, min_length=1, description="folds of the valid split")
        test_folds: tuple[int, ...] = Field(test, min_length=1, description="folds of the test split")

        @model_validator(mode="after")
        def _disjoint(self) -> FoldParams:
            seen: dict[int, str] = {}
            for split in SPLITS:
                for f in getattr(self, f"{split}_folds"):
                    if f in seen and seen[f] != split:
                        raise ValueError(f"fold {f} is in both {seen[f]}_folds and {split}_folds")
                    seen[f] = split
            return self

        def split_of(self) -> dict[int, str]:
            return {f: s for s in SPLITS for f in getattr(self, f"{s}_folds")}

    return FoldParams


class FileParams(Params):
    root: Path = Field(..., description="the dataset's folder")
    seconds: float = Field(5.0, gt=0, le=600, description="clip length: zero-padded at the end / centre-cropped")


class FileDataset(Dataset):
    """A dataset of audio files; subclasses build the index and say where the data is obtained."""

    citation: ClassVar[str] = ""
    licence: ClassVar[str] = ""
    url: ClassVar[str] = ""
    title: ClassVar[str] = ""  # e.g. "ESC-50", used in "ESC-50 is at <url>"

    _index: Index | None = None

    # -- to implement ----------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Missing paths and bad settings, one line each (empty: the index can be built)."""
        raise NotImplementedError

    def build_index(self) -> Index:
        raise NotImplementedError

    def listing(self) -> str:
        """What lists the clips (the metadata CSV, or the folder), as integrity errors name it."""
        return f"dataset.root: {self.params.root}"

    # -- shared ----------------------------------------------------------------------------
    @classmethod
    def details(cls) -> list[str]:
        """URL, citation and licence, for ``audiobench list datasets --verbose``."""
        return [f"{k}: {v}" for k, v in (("url", cls.url), ("citation", cls.citation), ("licence", cls.licence)) if v]

    def obtain(self) -> str:
        return f"{self.title or self.name} is at {self.url}" if self.url else ""

    def missing(self, key: str, path: Path, extra: str = "") -> str:
        """``dataset.<key>: <path> not found; <Dataset> is at <url>``."""
        where = self.obtain()
        return f"dataset.{key}: {path} not found{extra}" + (f"; {where}" if where else "")

    def check(self) -> list[str]:
        problems = self.problems()
        if problems:
            return problems
        try:
            index = self.index()
        except AudiobenchError as exc:
            return list(self._index.problems) if self._index is not None and self._index.problems else [str(exc)]
        for split in SPLITS:
            if not any(it.split == split for it in index.items):
                problems.append(f"dataset: split '{split}' has no clips{self._empty_hint(split)}")
        return problems

    def _empty_hint(self, split: str) -> str:
        return ""

    def class_count(self) -> int | None:
        try:
            return len(self.index().class_names)
        except AudiobenchError:
            return None

    def known_class_names(self) -> list[str] | None:
        try:
            return list(self.index().class_names)
        except AudiobenchError:
            return None

    def index(self) -> Index:
        """The dataset's index; :class:`AudiobenchError` for missing paths, repeated clips or colliding ids."""
        if self._index is None:
            problems = self.problems()
            if problems:
                raise AudiobenchError("; ".join(problems))
            index = self.build_index()
            index.problems = index_problems(index.items, self.listing(), Path(self.params.root))
            self._index = index
        if self._index.problems:
            more = len(self._index.problems) - 1
            raise AudiobenchError(self._index.problems[0] + (f" (and {more} more; `audiobench validate` lists them)" if more else ""))
        return self._index

    def where(self, split: str) -> str:
        return f"{self.name}:{split}"

    def _load(self, items: list[Item], sample_rate: int, key: str) -> ClipSet:
        index = self.index()
        root = Path(self.params.root)
        return cached(
            (self.fingerprint(), key, int(sample_rate)),
            lambda: load_items(items, int(sample_rate), self.params.seconds, index.class_names, self.where(key), root),
        )

    def load(self, split: str, sample_rate: int) -> ClipSet:
        if split not in SPLITS:
            raise AudiobenchError(f"{self.name}: unknown split '{split}' (expected one of {', '.join(SPLITS)})")
        index = self.index()
        clips = self._load([it for it in index.items if it.split == split], sample_rate, split)
        if split == "train" and index.skips:
            clips.skips = list(index.skips) + clips.skips
        return clips

    def load_folds(self, folds: Sequence[int], sample_rate: int) -> ClipSet:
        """The clips of ``folds`` whatever their split (a contamination's ``source: {folds: [...]}``)."""
        index = self.index()
        if all(it.fold is None for it in index.items):
            raise AudiobenchError(f"dataset '{self.name}' has no folds")
        wanted = set(folds)
        items = [it for it in index.items if it.fold in wanted]
        if not items:
            raise AudiobenchError(f"{self.name}: folds {sorted(wanted)} hold no clips")
        return self._load(items, sample_rate, "folds" + "-".join(map(str, sorted(wanted))))

    def folds(self) -> set[int]:
        return {it.fold for it in self.index().items if it.fold is not None}

    def fingerprint(self) -> dict:
        """Parameters (not the root: the data may move) and every file's relative path and size."""
        root = Path(self.params.root)
        rows = []
        for it in self.index().items:
            try:
                size = it.path.stat().st_size
            except OSError:
                size = -1
            rel = it.path.relative_to(root) if it.path.is_relative_to(root) else it.path
            rows.append((str(rel), size, it.label, it.split))
        params = self.params.model_dump(mode="json", exclude={"root"})
        return {"name": self.name, **params, "files": stable_hash(rows, 24)}


# -- helpers shared by the concrete datasets -----------------------------------------------------


LINE = "__line__"  # the key read_csv adds to each row: its line in the file (the header is line 1)


def read_csv(path: Path, required: Sequence[str], key: str) -> list[dict[str, str]]:
    """Rows of a CSV with a header, each with its line number under :data:`LINE`.

    A missing column is an :class:`AudiobenchError` naming it.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            lacking = [c for c in required if c not in columns]
            if lacking:
                raise AudiobenchError(
                    f"dataset.{key}: {path} lacks column(s) {', '.join(lacking)} (it has: {', '.join(columns) or 'none'})"
                )
            rows = []
            for row in reader:
                row[LINE] = str(reader.line_num)
                rows.append(row)
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AudiobenchError(f"dataset.{key}: cannot read {path}: {exc}") from None


def seeded_order(keys: Sequence[str], seed: int) -> list[int]:
    """Positions of ``keys`` ordered by a seeded hash of each key (stable under adding other keys)."""
    return sorted(range(len(keys)), key=lambda i: stable_hash([seed, keys[i]], 16))


def allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` things by ``fractions`` (largest remainder), giving every share at least one when ``n`` allows."""
    raw = np.asarray(fractions, dtype=float) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    if n >= int(np.count_nonzero(raw)):
        for i in range(len(counts)):
            if counts[i] == 0 and raw[i] > 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] = 1
    return counts.tolist()


def assign_by_fraction(keys: Sequence[str], fractions: Sequence[float], seed: int) -> list[str]:
    """A split name for each key: keys ordered by seeded hash, cut by ``fractions`` (train, valid, test)."""
    order = seeded_order(keys, seed)
    counts = allocate(len(keys), fractions)
    out = [""] * len(keys)
    pos = 0
    for split, c in zip(SPLITS, counts, strict=True):
        for i in order[pos : pos + c]:
            out[i] = split
        pos += c
    return out


def check_fractions(v: Sequence[float]) -> tuple[float, ...]:
    """(train, valid, test) fractions: positive, summing to 1."""
    if len(v) != 3 or any(not f > 0 for f in v) or abs(sum(v) - 1.0) > 1e-6:
        raise ValueError(f"fractions are (train, valid, test), each above 0, summing to 1; got {list(v)}")
    return tuple(v)
