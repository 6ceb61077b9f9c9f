"""One chunk size for the whole library (audiobench.kernel.batching)."""

from __future__ import annotations

import torch

from audiobench.kernel.batching import CPU_ROWS, chunked, rows_per_pass


def test_chunked_equals_one_pass_and_respects_its_rows() -> None:
    seen = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(len(x))
        return x * 2

    x = torch.arange(150.0).view(150, 1)
    assert torch.equal(chunked(fn, x), x * 2)
    assert seen == [CPU_ROWS, CPU_ROWS, 150 - 2 * CPU_ROWS]
    assert rows_per_pass("cpu") == CPU_ROWS and rows_per_pass(torch.device("cpu")) == 64
