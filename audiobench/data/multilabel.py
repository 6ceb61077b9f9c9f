"""The base of multi-label file datasets (``sonyc_ust``, ``openmic``): multi-hot labels and label masks.

A multi-label dataset indexes its audio files like every file dataset (:class:`FileDataset`: paths,
splits, integrity checks, skips for unusable files) with a placeholder ``Item.label`` of 0, and
keeps each clip's labels beside the index in a :class:`MultiLabels` table read from its metadata.
``load`` attaches them to the decoded clips: ``labels`` [N, C] float32 multi-hot (1.0: present,
0.0: absent or unknown) and ``label_mask`` [N, C] bool (True where the label is known) or None
when every label of the dataset is known. The fingerprint hashes that table (content, not path),
so a relabelled release gives other cache keys and cell ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from audiobench.data.audio import Item, cached, load_items
from audiobench.data.base import ClipSet
from audiobench.data.files import FileDataset, seeded_order


@dataclass
class MultiLabels:
    """Labels of a multi-label index: ``labels[row[sample_id]]`` is that clip's multi-hot row.

    ``labels`` [M, C] float32 in {0, 1}; ``mask`` [M, C] bool, True where known, or None (all known).
    Raises ``ValueError`` when the shapes disagree.
    """

    row: dict[str, int]
    labels: np.ndarray
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.labels.ndim != 2 or any(not 0 <= r < self.labels.shape[0] for r in self.row.values()):
            raise ValueError("labels must be [M, C] and every sample id must name one of its rows")
        if self.mask is not None and (self.mask.dtype != np.bool_ or self.mask.shape != self.labels.shape):
            raise ValueError("mask must be bool with the shape of labels")

    def digest(self) -> str:
        """SHA-256 (24 hex digits) of the ids, labels and mask: what the labels are, not where they were read."""
        h = hashlib.sha256()
        for sid in sorted(self.row, key=self.row.__getitem__):
            h.update(sid.encode() + b"\0")
        h.update(np.ascontiguousarray(self.labels, dtype=np.float32).tobytes())
        if self.mask is not None:
            h.update(np.ascontiguousarray(self.mask).tobytes())
        return h.hexdigest()[:24]


def carve_out(keys: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The keys moved to a held-out split: ``round(fraction * len(keys))`` of them (at least 1 and at
    most all but one when there are two or more keys; none of a single key), chosen by the seeded hash
    of each key (:func:`~audiobench.data.files.seeded_order`), so the choice is deterministic, does not
    depend on the order of ``keys`` and keeps a key's fate when other keys are added."""
    unique = sorted(set(keys))
    if len(unique) < 2:
        return set()
    n = min(max(int(round(fraction * len(unique))), 1), len(unique) - 1)
    return {unique[i] for i in seeded_order(unique, seed)[:n]}


class MultiLabelDataset(FileDataset):
    """A file dataset whose clips carry several labels each; subclasses set ``self._multi`` in ``build_index``."""

    _multi: MultiLabels | None = None

    def multi_labels(self) -> MultiLabels:
        """The label table (builds the index first); :class:`AudiobenchError` as :meth:`index`."""
        self.index()
        assert self._multi is not None, f"{type(self).__name__}.build_index must set self._multi"
        return self._multi

    def attach_labels(self, clips: ClipSet) -> ClipSet:
        """``clips`` with their multi-hot ``labels`` [N, C] float32 and ``label_mask`` [N, C] bool (None: all known)."""
        table = self.multi_labels()
        rows = [table.row[s] for s in clips.sample_ids]
        labels = torch.from_numpy(np.ascontiguousarray(table.labels[rows], dtype=np.float32))
        mask = None if table.mask is None else torch.from_numpy(np.ascontiguousarray(table.mask[rows]))
        return replace(clips, labels=labels, label_mask=mask)

    def _load(self, items: list[Item], sample_rate: int, key: str) -> ClipSet:
        index = self.index()
        root = Path(self.params.root)

        def make() -> ClipSet:
            clips = load_items(items, int(sample_rate), self.params.seconds, index.class_names, self.where(key), root)
            return self.attach_labels(clips)

        return cached((self.fingerprint(), key, int(sample_rate)), make)

    def fingerprint(self) -> dict:
        """The file list and sizes (as every file dataset) and the digest of the label table."""
        return {**super().fingerprint(), "labels": self.multi_labels().digest()}
