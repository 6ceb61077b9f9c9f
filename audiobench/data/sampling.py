"""Which clips of a split are evaluated: all of them, or a deterministic class-stratified sample.

``--limit N`` (or a suite's ``limit``) must not mean "the first N files": on a folder whose file
names start with the class label that explains only the first classes. :func:`select_clips` draws
N clips spread over the classes in proportion to their sizes (largest remainder, every class at
least one clip when N allows), the clips of each class ordered by a hash of (seed, sample id), so
the sample depends on the seed and the ids, never on the order of the files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from audiobench.data.base import ClipSet
from audiobench.data.files import allocate
from audiobench.kernel.cache import stable_hash


def select_clips(clips: ClipSet, limit: int | None, seed: int) -> tuple[ClipSet, dict[str, Any]]:
    """The clips to evaluate and the manifest's record of the choice.

    ``limit``: None (or at least ``len(clips)``) keeps every clip in its order; otherwise a
    class-stratified sample of ``limit`` clips (see the module), returned sorted by sample id.
    The record gives ``n``, ``of``, ``reason``, ``per_class`` and the chosen ``sample_ids``.
    Raises ``ValueError`` for a ``limit`` below 1.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if limit is None or limit >= len(clips):
        reason = "every clip of the split" + (f" (limit {limit} is not below the {len(clips)} clips)" if limit else "")
        return clips, {"n": len(clips), "of": len(clips), "reason": reason, "sample_ids": list(clips.sample_ids)}
    multi = clips.labels.dim() == 2  # multi-hot: stratified by each clip's first labelled class
    labels = (clips.labels > 0).to(torch.int64).argmax(dim=1).numpy() if multi else clips.labels.numpy()
    classes, counts = np.unique(labels, return_counts=True)
    shares = allocate(limit, (counts / counts.sum()).tolist())
    chosen: list[int] = []
    per_class: dict[str, int] = {}
    for cls, k in zip(classes.tolist(), shares, strict=True):
        members = np.flatnonzero(labels == cls).tolist()
        members.sort(key=lambda i: stable_hash([seed, "limit", clips.sample_ids[i]], 16))
        chosen += members[:k]
        name = clips.class_names[cls] if 0 <= cls < len(clips.class_names) else str(cls)
        per_class[name] = k
    chosen.sort(key=lambda i: clips.sample_ids[i])
    out = clips.subset(chosen)
    note = "; multi-label: by each clip's first labelled class" if multi else ""
    record = {
        "n": len(out), "of": len(clips),
        "reason": f"limit {limit}: class-stratified sample (shares in proportion to the classes, at least one each "
                  f"where possible{note}), "
                  f"clips of each class ordered by a hash of (seed {seed}, sample id)",
        "per_class": per_class, "sample_ids": list(out.sample_ids),
    }
    return out, record
