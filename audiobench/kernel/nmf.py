"""Sparse NMF with multiplicative updates (Euclidean cost), batched, on any torch device.

Solves, for a batch of non-negative matrices V [G, F, N] at once,

    min_{W, H >= 0}  0.5 * ||V - W~ H||_F^2 + sparsity * |H|_1,     W~ = W with unit-norm columns,

with the multiplicative updates of Le Roux, Weninger & Hershey, "Sparse NMF -- half-baked or well
done?" (MERL TR2015-023, the "well done" variant for beta = 2): the normalisation of W is part of
the cost, so the W update carries the correction terms

    W <- W~ * (V H^T + W~ diag(1^T (W~ * (W~ H H^T)))) / (W~ H H^T + W~ diag(1^T (W~ * (V H^T))))

and H <- H * (W~^T V) / (W~^T W~ H + sparsity). With ``normalize=False`` and ``sparsity=0`` the
updates are Lee & Seung's plain Euclidean NMF (nimfa's ``Nmf(update="euclidean")``: H first, then W,
then both floored at ``floor``). Products are formed in the small K x K / F x K spaces (W^T W,
H H^T), never as an F x N reconstruction, so one iteration costs about 2 F K N + 2 K^2 N.

``fixed`` leading columns of W are held (e.g. shared noise components) while the rest are learnt.
Zero-padded columns of V (``valid`` mask) do not influence the result, so matrices of different
widths are factorised together. :func:`cap_per_class` draws the training clips of X_train when a class
has more than a cap (the L2I journal's App. A.1: 700 random positive clips per class).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class NMFResult:
    W: torch.Tensor  # [G, F, K] (unit-norm columns when normalised)
    H: torch.Tensor  # [G, K, N]
    objective: list[list[float]] = field(default_factory=list)  # per iteration, per matrix of the batch
    reconstruction: list[list[float]] = field(default_factory=list)  # ||V - WH||_F^2 per iteration


def _normalise(W: torch.Tensor, floor: float) -> torch.Tensor:
    return W / W.norm(dim=1, keepdim=True).clamp_min(floor)


def random_init(
    V: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform random factors scaled so that W H has the mean of V (as scikit-learn's random init)."""
    g, f, n = V.shape
    scale = (V.mean(dim=(1, 2), keepdim=True) / k).clamp_min(1e-12).sqrt()
    W = torch.rand(g, f, k, generator=generator, dtype=V.dtype, device="cpu").to(V.device) * scale
    H = torch.rand(g, k, n, generator=generator, dtype=V.dtype, device="cpu").to(V.device) * scale
    return W, H


def sparse_nmf(
    V: torch.Tensor,
    k: int,
    *,
    n_iter: int = 200,
    sparsity: float = 0.0,
    normalize: bool = True,
    W: torch.Tensor | None = None,
    H: torch.Tensor | None = None,
    fixed: int = 0,
    valid: torch.Tensor | None = None,
    floor: float | None = None,
    generator: torch.Generator | None = None,
    track: bool = True,
) -> NMFResult:
    """Factorise V [F, N] or [G, F, N] (non-negative) as W [.., F, K] @ H [.., K, N].

    ``W`` / ``H`` give the initial factors (random otherwise, from ``generator``); the first
    ``fixed`` columns of ``W`` are kept as given (normalised when ``normalize``). ``valid`` [G, N]
    marks real columns of zero-padded batches (their H stays 0). ``floor`` (default: the dtype's
    machine epsilon) bounds the factors away from 0 so no entry locks at zero. ``objective`` holds
    0.5 ||V - WH||^2 + sparsity |H|_1 after each iteration (``track``).
    """
    squeeze = V.dim() == 2
    if squeeze:
        V = V.unsqueeze(0)
        W = None if W is None else W.unsqueeze(0)
        H = None if H is None else H.unsqueeze(0)
        valid = None if valid is None else valid.unsqueeze(0)
    if bool((V < 0).any()):
        raise ValueError("NMF needs a non-negative matrix")
    if not 0 <= fixed <= k:
        raise ValueError(f"fixed={fixed} must lie in [0, k={k}]")
    floor = torch.finfo(V.dtype).eps if floor is None else floor
    W0, H0 = random_init(V, k, generator)
    W = W0 if W is None else W.to(V)
    H = H0 if H is None else H.to(V)
    if W.shape != (V.shape[0], V.shape[1], k) or H.shape != (V.shape[0], k, V.shape[2]):
        raise ValueError(f"initial factors {tuple(W.shape)}, {tuple(H.shape)} do not fit V {tuple(V.shape)} and k={k}")
    col = None if valid is None else valid.to(V).unsqueeze(1)  # [G, 1, N]
    if col is not None:
        V, H = V * col, H * col
    if normalize:
        W = _normalise(W, floor)
    W_fixed = W[..., :fixed].clone()
    vv = (V * V).sum(dim=(1, 2))
    result = NMFResult(W, H)
    for _ in range(n_iter):
        # H update (W has unit-norm columns, so the L1 weight acts on comparable scales)
        H = H * (W.transpose(1, 2) @ V) / ((W.transpose(1, 2) @ W) @ H + sparsity).clamp_min(floor)
        H = H.clamp_min(floor)
        if col is not None:
            H = H * col
        # W update
        VHt = V @ H.transpose(1, 2)  # [G, F, K]
        HHt = H @ H.transpose(1, 2)  # [G, K, K]
        WHHt = W @ HHt  # [G, F, K]
        if normalize:
            num = VHt + W * (W * WHHt).sum(dim=1, keepdim=True)
            den = WHHt + W * (W * VHt).sum(dim=1, keepdim=True)
        else:
            num, den = VHt, WHHt
        W_new = (W * num / den.clamp_min(floor)).clamp_min(floor)
        if normalize:
            W_new = _normalise(W_new, floor)
        W = torch.cat([W_fixed, W_new[..., fixed:]], dim=2) if fixed else W_new
        if track:  # ||V - WH||^2 = ||V||^2 - 2 <W, V H^T> + <W^T W, H H^T>, from the products above
            cross = (W * VHt).sum(dim=(1, 2))
            quad = ((W.transpose(1, 2) @ W) * HHt).sum(dim=(1, 2))
            rec = (vv - 2 * cross + quad).clamp_min(0)
            result.reconstruction.append(rec.tolist())
            result.objective.append((0.5 * rec + sparsity * H.sum(dim=(1, 2))).tolist())
    result.W, result.H = W, H
    if squeeze:
        result.W, result.H = W[0], H[0]
        result.objective = [o[0] for o in result.objective]
        result.reconstruction = [r[0] for r in result.reconstruction]
    return result


def pool_frames(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Frames [N, T, F] -> [N, T // chunk, F]: each run of ``chunk`` frames averaged.

    The L2I paper (after Bisot et al.) averages spectrogram frames in chunks of 5 to shrink the
    training matrix; the frames left over at the end of a clip are dropped.
    """
    n, t, f = x.shape
    chunk = max(1, min(chunk, t))
    usable = (t // chunk) * chunk
    return x[:, :usable].reshape(n, usable // chunk, chunk, f).mean(dim=2)


def as_columns(frames: torch.Tensor) -> torch.Tensor:
    """[N, T, F] frames -> the NMF's [F, N * T] matrix of columns."""
    return frames.reshape(-1, frames.shape[-1]).T.contiguous()


def chunk_frames(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Frames [N, T, F] -> columns [F, N * (T // chunk)], runs of ``chunk`` frames averaged."""
    return as_columns(pool_frames(x, chunk))


def cap_per_class(labels: torch.Tensor, max_per_class: int | None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices (ascending) of at most ``max_per_class`` clips of each class, drawn uniformly without
    replacement from ``generator``; a class with fewer clips keeps all of them. ``None`` keeps every clip
    (and draws nothing from ``generator``).

    ``labels`` [N] (integer class indices) -> LongTensor [M] of positions in 0..N-1. The L2I journal
    (App. A.1, SONYC-UST) builds X_train from "700 positively-labeled samples" drawn per class; the
    draw is batched: one uniform key per clip, sorted within class, the first ``max_per_class`` kept.
    Raises ``ValueError`` for a cap below 1 or labels that are not one-dimensional.
    """
    if labels.dim() != 1:
        raise ValueError(f"labels must be one-dimensional [N], not of shape {tuple(labels.shape)}")
    n = labels.shape[0]
    if max_per_class is None:
        return torch.arange(n, device=labels.device)
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be at least 1, not {max_per_class}")
    u = torch.rand(n, generator=generator, dtype=torch.float64, device="cpu").to(labels.device)
    lab = labels.long()
    order = (lab.to(torch.float64) * 2 + u).argsort()  # class first, then a random key in [0, 1) within it
    sorted_lab = lab[order]
    first = torch.searchsorted(sorted_lab, sorted_lab, right=False)  # where each clip's class starts
    rank = torch.arange(n, device=labels.device) - first
    return order[rank < max_per_class].sort().values


def cap_per_label(
    labels: torch.Tensor, max_per_class: int | None, generator: torch.Generator | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-hot labels: per class, its positive clips, at most ``max_per_class`` of them drawn uniformly
    without replacement from ``generator`` (``None``: all of them, nothing drawn). [N, C] bool.

    ``labels`` [N, C] multi-hot (1 = present); ``mask`` optional [N, C] bool, True where a label is known
    (an unknown pair is never positive). Each (clip, class) pair gets its own uniform key, so the draw of
    one class does not depend on another's; a clip positive for several classes may be drawn for several.
    The L2I journal's App. A.1 (SONYC-UST): "for each class, we randomly select 700 positively-labeled
    samples". Raises ``ValueError`` for a cap below 1, labels that are not [N, C], or a mask of another shape.
    """
    if labels.dim() != 2:
        raise ValueError(f"multi-hot labels must be [N, C], not of shape {tuple(labels.shape)}")
    if mask is not None and mask.shape != labels.shape:
        raise ValueError(f"label mask of shape {tuple(mask.shape)} for labels of shape {tuple(labels.shape)}")
    positive = labels > 0.5 if mask is None else (labels > 0.5) & mask.to(labels.device)
    if max_per_class is None:
        return positive
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be at least 1, not {max_per_class}")
    u = torch.rand(labels.shape, generator=generator, dtype=torch.float64, device="cpu").to(labels.device)
    rank = u.masked_fill(~positive, 2.0).argsort(dim=0).argsort(dim=0)  # positives first, in random order
    return positive & (rank < max_per_class)


def learn_dictionary(
    columns: torch.Tensor,
    k: int,
    *,
    n_iter: int = 200,
    sparsity: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict]:
    """One sparse-NMF dictionary W [F, K] (unit-norm columns) from training columns [F, N]."""
    res = sparse_nmf(columns, k, n_iter=n_iter, sparsity=sparsity, generator=generator)
    return res.W, {"objective": res.objective[-1] if res.objective else None, "columns": columns.shape[1]}


def learn_class_dictionaries(
    per_class: list[torch.Tensor],
    noise: torch.Tensor,
    k_per_class: int,
    k_noise: int,
    *,
    n_iter: int = 200,
    sparsity: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict]:
    """The L2I paper's SONYC-UST recipe: ``k_noise`` components learnt on noise, then, for every class
    at once (one batched factorisation), ``k_per_class`` components learnt with the noise components
    held fixed. The dictionary stacks the class components only (K = classes x k_per_class); the
    noise components only absorb the background while the class components are learnt.
    """
    W_noise, _ = learn_dictionary(noise, k_noise, n_iter=n_iter, sparsity=sparsity, generator=generator)
    widths = [c.shape[1] for c in per_class]
    n = max(widths)
    V = torch.zeros(len(per_class), noise.shape[0], n, dtype=noise.dtype, device=noise.device)
    valid = torch.zeros(len(per_class), n, dtype=torch.bool, device=noise.device)
    for i, c in enumerate(per_class):  # a copy per class (not a computation loop)
        V[i, :, : c.shape[1]] = c
        valid[i, : c.shape[1]] = True
    W0, H0 = random_init(V, k_noise + k_per_class, generator)
    W0[..., :k_noise] = W_noise
    res = sparse_nmf(V, k_noise + k_per_class, n_iter=n_iter, sparsity=sparsity, W=W0, H=H0,
                     fixed=k_noise, valid=valid, generator=generator, track=True)
    W = res.W[..., k_noise:].permute(1, 0, 2).reshape(noise.shape[0], -1)  # [F, classes * k_per_class]
    return W, {"objective": res.objective[-1] if res.objective else None, "columns": widths,
               "noise_columns": noise.shape[1]}
