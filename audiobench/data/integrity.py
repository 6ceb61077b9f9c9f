"""Dataset integrity: no clip listed twice, none in two splits, no two files behind one sample id.

A metadata row that repeats a clip would train on a test clip (a clip listed in a training fold
and in the test fold) or score a clip twice (listed twice in the test fold); two different files
whose ids coincide (``x.wav`` and ``x.flac``, or ``a/b.wav`` and ``a__b.wav``) would be reported
as one clip. These are errors, named with the rows or files involved: file datasets check their
index (``check()``, so ``audiobench validate`` reports them, and again at load), and the runner
checks the loaded splits of every dataset, built-in or plugin (:func:`check_splits`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from audiobench.data.audio import Item
from audiobench.data.base import SPLITS, ClipSet
from audiobench.kernel.errors import AudiobenchError


def _where(it: Item) -> str:
    """``fold 5 (line 32)``, ``test (line 9)`` or ``test``: where an item is listed."""
    place = f"fold {it.fold}" if it.fold is not None else (it.split or "no split")
    return f"{place} ({it.origin})" if it.origin else place


def _shown(path: Path, root: Path | None) -> str:
    return str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path)


def index_problems(items: Sequence[Item], listing: str, root: Path | None = None) -> list[str]:
    """Repeated clips and colliding ids in a dataset index, one line each (empty: none).

    ``listing`` names where items come from (the metadata CSV, or the folder) and starts each
    line; ``root`` shortens the paths shown. A file listed more than once is named with every
    place it is listed (``in fold 1 (line 2) and in fold 5 (line 32)``); two different files that
    give one sample id are both named.
    """
    by_path: dict[str, list[Item]] = {}
    by_id: dict[str, dict[str, Item]] = {}
    for it in items:
        key = os.path.normpath(it.path)
        by_path.setdefault(key, []).append(it)
        by_id.setdefault(it.sample_id, {}).setdefault(key, it)
    out = []
    for group in by_path.values():
        if len(group) < 2:
            continue
        name = _shown(group[0].path, root)
        places = [_where(it) for it in group]
        splits = sorted({it.split for it in group if it.split}, key=SPLITS.index)
        same_place = len({f"fold {it.fold}" if it.fold is not None else it.split for it in group}) == 1
        times = "twice" if len(group) == 2 else f"{len(group)} times"
        if same_place:
            lines = [it.origin.removeprefix("line ") for it in group if it.origin]
            place = f"fold {group[0].fold}" if group[0].fold is not None else (group[0].split or "the listing")
            said = f"{times} in {place}" + (f" (lines {', '.join(lines[:-1])} and {lines[-1]})" if lines else "")
        else:
            said = "in " + ", ".join(places[:-1]) + f" and in {places[-1]}"
        use = {"train": "trained on", "test": "scored"}
        effect = (
            f": one clip in the {' and '.join(splits)} splits" if len(splits) > 1
            else f": it would be {use.get(splits[0], 'used')} {times}" if splits else ""
        )
        out.append(f"{listing} lists {name} {said}{effect}; keep one row")
    for sid, files in by_id.items():
        if len(files) > 1:
            names = [_shown(it.path, root) for it in files.values()]
            out.append(
                f"{listing}: files {', '.join(names[:-1])} and {names[-1]} both give sample id '{sid}'; rename one"
            )
    return out


def check_splits(splits: Mapping[str, ClipSet], dataset: str) -> None:
    """Raise :class:`AudiobenchError` when a sample id repeats within a split or appears in two splits.

    ``splits`` maps split names to loaded clips; ``dataset`` names the dataset in the message.
    Applies to every dataset (plugins included), after loading.
    """
    seen: dict[str, str] = {}
    for split, clips in splits.items():
        ids = clips.sample_ids
        if len(set(ids)) != len(ids):
            dup = sorted(s for s, n in Counter(ids).items() if n > 1)
            raise AudiobenchError(
                f"dataset '{dataset}': sample id(s) {', '.join(dup[:4])} appear more than once in split '{split}'"
            )
        for sid in ids:
            if sid in seen:
                raise AudiobenchError(
                    f"dataset '{dataset}': sample id '{sid}' is in both split '{seen[sid]}' and split '{split}' "
                    "(a clip trained on and evaluated, or evaluated twice)"
                )
            seen[sid] = split
