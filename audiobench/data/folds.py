"""Predefined folds shared by the fold datasets (``esc50``, ``urbansound8k``, ``esc10``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from audiobench.kernel.errors import AudiobenchError


def require_folds(split_of: Mapping[int, str], present: Iterable[int], listing: str) -> None:
    """Raise :class:`AudiobenchError` when a fold named in ``split_of`` (fold -> split) has no clip.

    ``present`` is every fold that holds a clip; ``listing`` names where the clips are listed (the
    metadata CSV, or the dataset's folder).
    """
    present = set(present)
    missing = sorted(set(split_of) - present)
    if missing:
        raise AudiobenchError(
            f"dataset: fold(s) {', '.join(map(str, missing))} have no clips in {listing} "
            f"(folds present: {', '.join(map(str, sorted(present))) or 'none'})"
        )
