"""How many rows go through a network at once: one number for the whole library.

About 64 rows per forward pass is fastest on a CPU (the activations stay cache-sized; measured in
``benchmarks`` 4b); a GPU wants far more. Every loop that feeds a model in chunks reads it here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

CPU_ROWS = 64
GPU_ROWS = 1024


def rows_per_pass(device: torch.device | str) -> int:
    """Rows per forward pass on ``device``: :data:`CPU_ROWS` on a CPU, :data:`GPU_ROWS` elsewhere."""
    return CPU_ROWS if torch.device(device).type == "cpu" else GPU_ROWS


def chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rows: int = CPU_ROWS) -> torch.Tensor:
    """``fn`` applied to ``x`` [N, ...] in chunks of at most ``rows`` rows, the outputs concatenated."""
    return torch.cat([fn(x[i : i + rows]) for i in range(0, len(x), rows)])
