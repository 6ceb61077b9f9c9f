"""Budget-matched faithfulness: insertion and deletion of each map's most relevant bins at fixed budgets.

A continuous mask is scored by AI/AD/FF/Fid-In as it is, so those metrics measure how much of the
input a mask keeps as much as where it puts it (a mask of mean 0.8 keeps most of X whatever it ranks
first). Here every map is reduced to its ranking, and every method gets the same budget:

* Rank: each row's map M [1, T, F] orders its N = T*F bins, most relevant first. Ties are broken by
  one permutation of the grid drawn from the suite's seed (the same in a run and in ``audiobench
  score``), so a constant map (``ones``, ``zeros``) ranks its bins in that seeded random order.
* Budget k (a share of the bins): B_k = the top round(k*N) bins. Insertion keeps them,
  B_k*X + (1 - B_k)*F; deletion removes them, (1 - B_k)*X + B_k*F. F, the fill (``budget.fill``): ``zero``
  (the papers' M*X), ``mean`` (every bin at the clip's mean level) or ``noise`` (Gaussian at the clip's
  mean and standard deviation, clipped to its range; one seeded pattern of the grid, scaled per clip).
* Curves: p_t along both, at 0, the suite's budgets, 10 % and 1 (insertion at 0 and deletion at 1
  are the fill alone; insertion at 1 and deletion at 0 are X). Areas by the trapezoidal rule over the
  budget axis [0, 1] (so in p units): insertion AUC (higher is better), deletion AUC (lower), their
  difference (higher). Petsiuk et al. 2018 (RISE, sec. 4.1); deletion is Samek et al. 2017's MoRF region
  perturbation with one-bin regions (Quantus's ``PixelFlipping``, the oracle in the tests).
* Fixed budgets: the L-MAC paper's AD/AI/FF/Fid-In (sec. 3.1) with B_k as the mask (insertion input
  for AD/AI/Fid-In, deletion input for FF), at 10 % and at each row's own mask mean (round(mean(M)*N)
  bins, so a method is compared with itself at the size it chose).

All budgets of a batch go through the model in as few forward passes as ``max_rows`` allows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, field_validator

from audiobench.contracts.component import Params
from audiobench.kernel.batching import chunked
from audiobench.models.base import OutputKind, is_decision, probabilities

DEFAULT_BUDGETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
FIXED_BUDGET = 0.1  # AD/AI/FF/Fid-In @10 %
FILLS = ("zero", "mean", "noise")


class BudgetParams(Params):
    """The suite's ``budget:`` section: the budgets of the insertion/deletion curves and the fill."""

    fractions: list[float] = Field(list(DEFAULT_BUDGETS),
                                   description="shares of the time-frequency bins kept / removed, increasing, in (0, 1]")
    fill: Literal["zero", "mean", "noise"] = Field(
        "zero", description="what a removed bin becomes: zero (the papers'), the clip's mean level, noise at the clip's level")

    @field_validator("fractions", mode="before")
    @classmethod
    def _no_booleans(cls, v: object) -> object:
        if isinstance(v, list) and any(isinstance(f, bool) for f in v):
            raise ValueError(f"budgets are numbers, not booleans: {v}")
        return v

    @field_validator("fractions")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("give at least one budget")
        if any(not 0 < f <= 1 for f in v):
            raise ValueError(f"budgets are shares of the bins in (0, 1], got {v}")
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"budgets must increase, got {v}")
        return v


@dataclass(frozen=True)
class Budget:
    """What the engine needs to run the budget passes: the curve's points, the fill and the tie-break seed."""

    fractions: tuple[float, ...] = DEFAULT_BUDGETS
    fill: str = "zero"
    seed: int = 0

    @classmethod
    def of(cls, params: BudgetParams, seed: int) -> Budget:
        return cls(tuple(params.fractions), params.fill, seed)

    def points(self) -> list[float]:
        """The curve's budgets: 0, the suite's, 10 % and 1, sorted."""
        return sorted({0.0, FIXED_BUDGET, 1.0, *self.fractions})


@dataclass
class BudgetCurves:
    """p_t along the insertion and deletion curves of a batch of B rows at K budgets.

    ``points`` [K] float64 (0 ... 1); ``ins``, ``dele`` [B, K] p_t; ``ins_kept`` [B, K] bool: t is still the
    decision on the insertion input. ``own_share`` [B]: each row's mask mean, and ``own_ins``,
    ``own_del``, ``own_kept`` [B] the same at that budget.
    """

    points: torch.Tensor
    ins: torch.Tensor
    dele: torch.Tensor
    ins_kept: torch.Tensor
    own_share: torch.Tensor
    own_ins: torch.Tensor
    own_del: torch.Tensor
    own_kept: torch.Tensor

    def at(self, share: float) -> int:
        """Column of budget ``share`` (KeyError when it is not a point of the curve)."""
        hits = (self.points - share).abs() < 1e-9
        if not bool(hits.any()):
            raise KeyError(share)
        return int(hits.nonzero()[0, 0])

    def areas(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[B] insertion and deletion areas over the budget axis (trapezoidal rule)."""
        return (torch.trapezoid(self.ins.double(), self.points, dim=1).to(self.ins.dtype),
                torch.trapezoid(self.dele.double(), self.points, dim=1).to(self.dele.dtype))


def ranks(mask: torch.Tensor, seed: int) -> torch.Tensor:
    """[B, N] int32 (int64 from 2^31 bins): each bin's place in its row's ranking (0 = most relevant)
    for maps [B, ...].

    Ties are broken by one permutation of the N bins drawn from ``seed`` (a stable sort of the
    permuted map), so the order depends on the map, the grid and the seed only. Ties are common, not
    rare: 88 749 float32 values of a map in [0, 1] hold a few hundred equal pairs per row.
    """
    flat = mask.reshape(mask.shape[0], -1)
    n = flat.shape[1]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(flat.device)
    keys = flat[:, perm]
    if keys.dtype == torch.float32 and bool((keys >= 0).all()):
        keys = keys.view(torch.int32)  # the same order for non-negative floats, and a faster sort
    order = perm[torch.sort(keys, dim=1, descending=True, stable=True).indices]
    dtype = torch.int32 if n < 2**31 else torch.long  # half the memory traffic of the compares that read it
    rank = torch.empty(order.shape, dtype=dtype, device=flat.device)
    rank.scatter_(1, order, torch.arange(n, device=flat.device, dtype=dtype).expand_as(order).contiguous())
    return rank


def fill_values(x: torch.Tensor, fill: str, seed: int) -> torch.Tensor:
    """The fill F [B, 1, T, F] a removed bin of x takes (see the module docstring). Raises ValueError
    for an unknown fill."""
    if fill == "zero":
        return torch.zeros_like(x)
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    if fill == "mean":
        return mean.expand_as(x)
    if fill == "noise":
        z = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(seed + 1), dtype=x.dtype).to(x.device)
        lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        return torch.minimum(torch.maximum(mean + x.std(dim=dims, keepdim=True) * z, lo), hi)
    raise ValueError(f"unknown fill {fill!r} (one of {', '.join(FILLS)})")


def share_count(share: torch.Tensor | float, n: int) -> torch.Tensor:
    """round(share * n) bins, halves up (a budget of 0.5 of 3 bins is 2)."""
    return torch.floor(torch.as_tensor(share, dtype=torch.float64) * n + 0.5).long()


@torch.no_grad()
def budget_curves(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mask: torch.Tensor, target: torch.Tensor,
    p_orig: torch.Tensor, decided: torch.Tensor, output_kind: OutputKind, threshold: float, budget: Budget,
    max_rows: int | None = None,
) -> BudgetCurves:
    """Insertion and deletion curves of maps ``mask`` [B, 1, T, F] on inputs ``x`` (same shape) for
    targets ``target`` [B]; ``p_orig``/``decided`` [B]: p_t(X) and whether t is the decision on X (the
    curves' known ends). ``forward`` maps inputs to scores [N, C], at most ``max_rows`` rows a pass."""
    b = x.shape[0]
    mask = mask.expand_as(x)
    n = mask[0].numel()
    rank = ranks(mask, budget.seed).view_as(x)
    # zero: a scalar, no fill tensor to build or read
    fill = torch.zeros((), dtype=x.dtype, device=x.device) if budget.fill == "zero" else fill_values(x, budget.fill, budget.seed)
    top = torch.empty(x.shape, dtype=torch.bool, device=x.device)
    points = budget.points()
    inner = [k for k in points if 0 < k < 1]
    own_share = mask.reshape(b, -1).mean(dim=1).double()
    # each task is B inputs: (counts [B] of bins kept (insertion) or removed (deletion), insertion?)
    tasks = [(share_count(k, n).expand(b), ins) for k in inner for ins in (True, False)]
    tasks += [(torch.zeros(b, dtype=torch.long), True)]  # the fill alone
    own = share_count(own_share, n)
    tasks += [(own, True), (own, False)]
    per_pass = max(1, (max_rows or b * len(tasks)) // b)
    p_t, kept = [], []
    buffer = torch.empty((min(per_pass, len(tasks)) * b, *x.shape[1:]), dtype=x.dtype, device=x.device)  # reused
    top_of = None  # the counts `top` holds: insertion and deletion at one budget share it
    for i in range(0, len(tasks), per_pass):
        group = tasks[i : i + per_pass]
        inputs = buffer[: len(group) * b]
        for g, (counts, ins) in enumerate(group):
            if top_of is None or not torch.equal(top_of, counts):
                torch.lt(rank, counts.to(device=x.device, dtype=rank.dtype).view(-1, 1, 1, 1), out=top)
                top_of = counts
            out = inputs[g * b : (g + 1) * b]
            torch.where(top, x, fill, out=out) if ins else torch.where(top, fill, x, out=out)
        probs = probabilities(chunked(forward, inputs, max_rows or len(inputs)), output_kind)
        t = target.repeat(len(group))
        p = probs.gather(1, t.view(-1, 1)).squeeze(1)
        is_t = is_decision(p, probs.argmax(dim=1), t, output_kind, threshold)
        p_t += list(p.view(len(group), b))
        kept += list(is_t.view(len(group), b))
    j = 2 * len(inner)
    p_fill, kept_fill = p_t[j], kept[j]
    ins = torch.stack([p_fill, *p_t[0:j:2], p_orig], dim=1)
    dele = torch.stack([p_orig, *p_t[1:j:2], p_fill], dim=1)
    ins_kept = torch.stack([kept_fill, *kept[0:j:2], decided], dim=1)
    return BudgetCurves(torch.tensor(points, dtype=torch.float64, device=p_orig.device), ins, dele, ins_kept,
                        own_share.to(p_orig.dtype), p_t[j + 1], p_t[j + 2], kept[j + 1])


def curve_rows(curves: BudgetCurves) -> dict[str, torch.Tensor]:
    """The curves as stored rows, one per point: ``p_ins@K`` and ``p_del@K`` (K the budget, %g)."""
    out = {}
    for i, k in enumerate(curves.points.tolist()):
        out[f"p_ins@{k:g}"] = curves.ins[:, i]
        out[f"p_del@{k:g}"] = curves.dele[:, i]
    return out


CURVE_PREFIXES = ("p_ins@", "p_del@")
