"""Cached trained artefacts: load what the cache (or a shipped store) holds, else train and write it.

Every trained artefact (the suite's classifier, a zero-shot dual encoder, a method's fit, L2I's NMF
dictionary) goes through :func:`cached_artefact`, in one of two layouts:

* a pair, ``<key>.pt`` (``torch.save`` of a state: a dict of tensors) and ``<key>.json`` (its info),
  looked up in the repository's shipped stores on a miss (:func:`audiobench.kernel.shipped.restore`);
* one file (``meta=None``): ``torch.save`` of the state with the info as a JSON string under ``info``
  (the NMF dictionary's ``<key>.nmf.pt``), never shipped.

The file names, formats and keys are the callers' (shipped artefacts are found by them); the helper
writes the info exactly as the caller's ``train`` returns it and reads it back unchanged, so each
caller keeps its own ``cached`` flag.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from audiobench.kernel.cache import atomic_write_bytes, atomic_write_json
from audiobench.kernel.shipped import restore

#: the key of the info in a one-file artefact (``meta=None``)
INFO_KEY = "info"


def cached_artefact(
    weights: Path,
    train: Callable[[], tuple[dict[str, Any], dict[str, Any]]],
    meta: Path | None = None,
    map_location: torch.device | str = "cpu",
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(state, info, cached) of the artefact at ``weights`` (and ``meta``): loaded when the cache holds it,
    else trained by ``train()`` and written.

    With ``meta``, a miss is first looked up in the shipped stores (``restore``); a hit needs both files,
    and loads the state with ``torch.load(weights, map_location, weights_only=True)`` and the info from the
    JSON. A miss calls ``train()`` -> (state: a dict of tensors, info: a JSON-able dict) and writes
    ``torch.save(state)`` to ``weights`` and the info to ``meta``, each atomically (a reader never sees a
    part). Without ``meta``, the one file holds the state's entries and the info as a JSON string under
    :data:`INFO_KEY`, in that order; the returned state leaves that entry out. ``cached`` is True on a hit.
    ``train`` runs only on a miss; what it raises propagates and nothing is written.
    """
    if meta is not None:
        restore(weights, meta)  # a miss may be served by the repository's shipped artefacts
        if weights.exists() and meta.exists():
            state = torch.load(weights, map_location=map_location, weights_only=True)
            return state, json.loads(meta.read_text()), True
    elif weights.exists():
        saved = torch.load(weights, map_location=map_location, weights_only=True)
        info = json.loads(saved.pop(INFO_KEY))
        return saved, info, True
    state, info = train()
    buf = io.BytesIO()
    torch.save(state if meta is not None else {**state, INFO_KEY: json.dumps(info)}, buf)
    atomic_write_bytes(weights, buf.getvalue())
    if meta is not None:
        atomic_write_json(meta, info)
    return state, info, False
