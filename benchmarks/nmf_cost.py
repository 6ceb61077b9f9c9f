"""Dictionary learning cost: audiobench's batched torch NMF vs nimfa's ``Nmf``, in one run.

Both factorise the same non-negative matrix (a spectrogram-sized [F, N] with parts-based
structure) from the same initial factors for the same number of multiplicative updates (plain
Euclidean NMF, the case both implement; L2I's sparse, unit-norm variant is only ours), then
report seconds, the speed-up, and the largest difference of the factors. Also timed: the
per-class recipe's G class matrices factorised in one batched call vs one call per class.

    python benchmarks/nmf_cost.py [--bins 513] [--frames 4000] [--k 100] [--iter 100] [--classes 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from audiobench.kernel.nmf import random_init, sparse_nmf


def _time(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bins", type=int, default=513)
    ap.add_argument("--frames", type=int, default=4000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--iter", type=int, default=100)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import nimfa

    if not hasattr(np, "mat"):  # nimfa 1.4 predates NumPy 2
        np.mat = np.asmatrix
    if not hasattr(np, "Inf"):
        np.Inf = np.inf
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    parts = torch.rand(args.bins, args.k, generator=g) ** 4
    V = (parts @ (torch.rand(args.k, args.frames, generator=g) ** 8)).double()
    W0, H0 = (t[0] for t in random_init(V.unsqueeze(0), args.k, torch.Generator().manual_seed(1)))
    print(f"V {args.bins} x {args.frames}, K {args.k}, {args.iter} multiplicative updates, float64, {torch.get_num_threads()} threads")

    t_theirs, fit = _time(lambda: nimfa.Nmf(
        V.numpy(), seed="fixed", W=W0.numpy().copy(), H=H0.numpy().copy(), rank=args.k, max_iter=args.iter,
        update="euclidean", objective="fro", min_residuals=None,
    )())
    t_ours, ours = _time(lambda: sparse_nmf(V.to(dev), args.k, n_iter=args.iter, normalize=False,
                                            W=W0.to(dev), H=H0.to(dev), track=False))
    diff = max(np.abs(ours.W.cpu().numpy() - np.asarray(fit.basis())).max(),
               np.abs(ours.H.cpu().numpy() - np.asarray(fit.coef())).max())
    print(f"plain NMF: nimfa {t_theirs:.2f} s, audiobench {t_ours:.2f} s, speed-up {t_theirs / t_ours:.1f}x, "
          f"max |factor difference| {diff:.1e}")

    per = args.frames // args.classes
    Vs = V[:, : per * args.classes].reshape(args.bins, args.classes, per).permute(1, 0, 2).contiguous().float().to(dev)
    k = max(1, args.k // args.classes)
    t_loop, _ = _time(lambda: [sparse_nmf(v, k, n_iter=args.iter, sparsity=1.0, generator=torch.Generator().manual_seed(0),
                                          track=False) for v in Vs])
    t_batch, _ = _time(lambda: sparse_nmf(Vs, k, n_iter=args.iter, sparsity=1.0, generator=torch.Generator().manual_seed(0),
                                          track=False))
    print(f"per-class sparse NMF ({args.classes} classes, K {k} each, float32): one call per class {t_loop:.2f} s, "
          f"batched {t_batch:.2f} s, speed-up {t_loop / t_batch:.1f}x")


if __name__ == "__main__":
    main()
