"""How many rows go through a network at once: one number for the whole library.

About 64 rows per forward pass is fastest on a CPU (the activations stay cache-sized; measured in
``benchmarks`` 4b); a GPU wants far more. Every loop that feeds a model in chunks reads it here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

CPU_ROWS = 64
GPU_ROWS = 1024


def rows_per_pass(device: torch.device | str) -> int:
    """Rows per forward pass on ``device``: :data:`CPU_ROWS` on a CPU, :data:`GPU_ROWS` elsewhere."""
    return CPU_ROWS if torch.device(device).type == "cpu" else GPU_ROWS


# Which clip each row of a batch comes from, for models that need per-clip side information (a waveform
# model reads each row with its clip's phase: :meth:`audiobench.methods.base.DomainModel.reading`). By
# default a batch tiles its clips (row j from clip j mod N: ``x.repeat``); :func:`chunked` records each
# chunk's offset into the tiled batch; a batch laid out otherwise (clip-major copies) names its rows' clips
# with :func:`row_clips`.
_OFFSET: ContextVar[int | None] = ContextVar("audiobench_row_offset", default=None)
_CLIPS: ContextVar[torch.Tensor | None] = ContextVar("audiobench_row_clips", default=None)


@contextmanager
def row_clips(index: torch.Tensor) -> Iterator[None]:
    """Within the block, row r of a batch given to a model comes from clip ``index[r]`` (long [B]) of the
    clips being read (not from clip r mod N, the tiling default)."""
    offset, clips = _OFFSET.set(None), _CLIPS.set(index)
    try:
        yield
    finally:
        _CLIPS.reset(clips)
        _OFFSET.reset(offset)


def clips_of_rows(b: int, n: int) -> torch.Tensor | None:
    """The clip (0..n-1) of each of ``b`` rows given to a model now: :func:`row_clips`' index, else the
    tiling ``(offset + r) mod n`` (offset from :func:`chunked`). None when the rows cannot be mapped: no
    chunk offset and ``b`` not a multiple of ``n``."""
    index = _CLIPS.get()
    if index is not None:
        return index if len(index) == b else None
    offset = _OFFSET.get()
    if offset is None and b % n:
        return None
    return (torch.arange(b) + (offset or 0)) % n


def chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rows: int = CPU_ROWS) -> torch.Tensor:
    """``fn`` applied to ``x`` [N, ...] in chunks of at most ``rows`` rows, the outputs concatenated
    (each chunk's offset into ``x`` is recorded for :func:`clips_of_rows`)."""
    base = _OFFSET.get() or 0
    out = []
    for i in range(0, len(x), rows):
        token = _OFFSET.set(base + i)
        try:
            out.append(fn(x[i : i + rows]))
        finally:
            _OFFSET.reset(token)
    return torch.cat(out)
