"""Profile one batch of a cell (explain + score every metric) with pyinstrument.

    python benchmarks/profiles/profile_cell.py METHOD N_CLIPS [cpu|cuda]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from pyinstrument import Profiler

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from audiobench.contracts.registry import METRICS  # noqa: E402
from audiobench.harness.engine import evaluate_batch  # noqa: E402
from benchmarks.__main__ import Bench  # noqa: E402


def main() -> None:
    name, n = sys.argv[1], int(sys.argv[2])
    b = Bench(sys.argv[3] if len(sys.argv) > 3 else "cpu", n)
    method = b.method(name)
    metrics = [METRICS.get(k) for k in ["ai", "ad", "ag", "ff", "fid_in", "sps", "comp", "mm"]]
    rep = b.model.domain.represent(b.frontend, b.waves.to(b.dev))
    from audiobench.contracts.targets import TargetParams

    profiler = Profiler(interval=0.005)
    profiler.start()
    evaluate_batch(method, b.model, rep, [f"c{i}" for i in range(n)], torch.arange(n) % 10, metrics, TargetParams(), 0,
                   b.max_rows)
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False))


if __name__ == "__main__":
    main()
