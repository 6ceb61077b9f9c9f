"""What the sanity stages share: the stored results' code version, a cell by its row, the suite's
decisions on a batch, the clips a batch is read with, and an atomic parquet write."""

from __future__ import annotations

import io
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from audiobench.contracts.targets import select_targets
from audiobench.harness.cells import Cell
from audiobench.kernel.batching import chunked
from audiobench.kernel.cache import atomic_write_bytes
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import DomainModel

SANITY_CODE_VERSION = 1  # bump when a stage changes what it stores


def reading_waves(model: DomainModel, waves: torch.Tensor | None) -> AbstractContextManager[object]:
    """``model.reading`` the clips ``waves`` [B, L] (their representation on the model's domain): what a waveform
    model (its clips' phase) and a method that reads the clips (LMAC-TD, a re-analysed L-MAC) need; nothing
    when ``waves`` is None."""
    if waves is None:
        return nullcontext()
    with torch.no_grad():
        return model.reading(model.domain.represent(model.frontend, waves))


def find_cell(session: Any, domain: str, contamination: str, label: str) -> Cell:
    """The session's cell of (domain, contamination key, method row label). Raises :class:`AudiobenchError`."""
    for c in session.cells:
        if c.domain.build().key() == domain and c.contamination.build().key() == contamination and c.method.label == label:
            return c
    raise AudiobenchError(f"sanity: no cell ({domain}, {contamination}, {label}) in this suite")


def decisions(session: Any, model: Any, x: torch.Tensor,
              waves: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The (clip row, target) pairs the suite explains for representations ``x`` (its ``targets:``) of the clips
    ``waves`` (needed by a waveform model: :func:`reading_waves`)."""
    with torch.no_grad(), reading_waves(model, waves):
        scores = chunked(model, x)
    clf = model.classifier
    return select_targets(scores, clf.output_kind, session.suite.targets, clf.class_names)


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())
