"""Explanation and metric cost per clip, batched (audiobench) vs one clip at a time (the reference code).

Prints seconds per clip for every built-in method in the quickstart configuration, the speed-up of
batching over the reference recipe's per-sample loop, and SPS/COMP against Quantus, all measured
in one run on the same machine so the ratios are comparable. Usage:

    python benchmarks/explain_cost.py [--clips 20] [--device cpu] [--methods saliency,integrated_gradients]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from audiobench.contracts.domains import Stft2Mel
from audiobench.contracts.frontend import Frontend
from audiobench.contracts.registry import METHODS
from audiobench.data.base import ClipSet
from audiobench.harness.cells import explain_rows
from audiobench.kernel.malloc import tune_allocator
from audiobench.methods.base import DomainModel, ExplainContext, FitContext
from audiobench.metrics.complexity import complexity, sparseness
from audiobench.models.cnn14 import Cnn14

QUICKSTART_PARAMS = {
    "smoothgrad": {"n_samples": 25, "stdev": 0.15},
    "integrated_gradients": {"n_steps": 50},
    "shap": {"n_samples": 20},
    "lmac": {"epochs": 1},  # trainable methods get a minimal fit: what is timed is explaining
    "l2i": {"epochs": 1, "k": 32, "nmf_iter": 10},
}


def _time(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default=",".join(m for m in METHODS.builtin_names()))
    args = ap.parse_args()
    tune_allocator()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    frontend = Frontend().to(dev)
    classifier = Cnn14(10, 80, width=8, depth=4).to(dev).eval().requires_grad_(False)
    model = DomainModel(classifier, Stft2Mel(), frontend).eval()
    wave = torch.randn(args.clips, 32000, device=dev) * 0.1
    x = Stft2Mel().represent(frontend, wave).x
    target = model(x).argmax(-1)

    print(f"{args.clips} clips of 2 s, stft2mel domain, CNN14 width 8 depth 4, device {dev}")
    print(f"{'method':<22}{'batched s/clip':>16}{'per-clip s/clip':>17}{'speed-up':>10}")
    for name in args.methods.split(","):
        method = METHODS.get(name)(QUICKSTART_PARAMS.get(name, {}))
        ctx = ExplainContext(model, seed=0, max_rows=explain_rows(dev))
        if method.trainable:
            clips = ClipSet(wave.cpu(), torch.arange(len(wave)) % 10, [f"b{i}" for i in range(len(wave))],
                            [str(c) for c in range(10)], 16000)
            with tempfile.TemporaryDirectory() as tmp:
                os.environ["AUDIOBENCH_CACHE"] = tmp
                method.fit(FitContext(model, clips, clips, [], 0, dev, {"benchmark": name}, Path(tmp) / "logs",
                                      progress=False))
        batched = _time(lambda: method.explain(x, target, ctx).mask) / args.clips  # noqa: B023
        n_loop = min(args.clips, 5)  # the reference loops over clips: time a few, per clip
        looped = _time(lambda: [method.explain(x[i : i + 1], target[i : i + 1], ctx) for i in range(n_loop)]) / n_loop  # noqa: B023
        print(f"{name:<22}{batched:>16.4f}{looped:>17.4f}{looped / batched:>9.1f}x")

    import quantus

    masks = torch.rand(args.clips, 1, x.shape[2], x.shape[3], device=dev) ** 4
    masks = masks / masks.flatten(1).amax(1).view(-1, 1, 1, 1)
    ours = _time(lambda: (sparseness(masks), complexity(masks)), repeat=3)
    a = masks.cpu().numpy()
    kw = {"model": None, "x_batch": a, "y_batch": np.zeros(len(a), dtype=int), "a_batch": a, "channel_first": True}
    theirs = _time(lambda: (quantus.Sparseness(disable_warnings=True)(**kw), quantus.Complexity(disable_warnings=True)(**kw)))
    print(f"SPS+COMP on {args.clips} masks: audiobench {ours:.4f} s, Quantus {theirs:.4f} s, speed-up {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
