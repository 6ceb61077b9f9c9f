"""The metric engine's contract: shared forward passes and registered per-sample metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from audiobench.registry import METRICS

Needs = Literal["mask", "outputs", "model", "ground_truth"]


@dataclass
class MetricInputs:
    """Everything the metrics of one batch share, each forward pass computed once.

    ``probs_*`` are softmax probabilities of p(X), p(M*X) and p((1-M)*X); ``pred`` is the class
    c = argmax p(X) every metric refers to (the decision being explained). ``extras`` holds the
    per-sample tensors an explainer left in ``ExplainContext.extras`` (batch first, only the kept
    rows); a metric that needs an absent extra returns ``None`` and the engine writes no rows for it.
    """

    x: torch.Tensor  # [B, 1, T, F] representation on the domain's grid
    mask: torch.Tensor  # [B, 1, T, F] in [0, 1]
    logits_orig: torch.Tensor  # [B, C]
    logits_in: torch.Tensor
    logits_out: torch.Tensor
    labels: torch.Tensor | None = None  # [B] ground-truth classes where known
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.probs_orig = self.logits_orig.softmax(dim=-1)
        self.probs_in = self.logits_in.softmax(dim=-1)
        self.probs_out = self.logits_out.softmax(dim=-1)
        self.pred = self.probs_orig.argmax(dim=-1)
        self.pred_in = self.probs_in.argmax(dim=-1)
        c = self.pred.view(-1, 1)
        self.p_orig = self.probs_orig.gather(1, c).squeeze(1)  # p_c(X)
        self.p_in = self.probs_in.gather(1, c).squeeze(1)  # p_c(M*X)
        self.p_out = self.probs_out.gather(1, c).squeeze(1)  # p_c((1-M)*X)


@torch.no_grad()
def compute_inputs(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    mask: torch.Tensor,
    logits_orig: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    extras: dict[str, Any] | None = None,
) -> MetricInputs:
    """Run the masked-in and masked-out forward passes in one batch (and p(X) unless given)."""
    b = x.shape[0]
    parts = [mask * x, (1 - mask) * x] + ([x] if logits_orig is None else [])
    logits = forward(torch.cat(parts))
    if logits_orig is None:
        logits_orig = logits[2 * b :]
    return MetricInputs(x, mask, logits_orig, logits[:b], logits[b : 2 * b], labels, extras or {})


@dataclass(frozen=True)
class Metric:
    """A registered metric: per-sample values plus how tables treat them."""

    name: str
    fn: Callable[[MetricInputs], torch.Tensor | None]  # None: not applicable to this batch (no rows)
    display: str
    higher_is_better: bool | None
    aggregation: Literal["mean", "median"] = "mean"
    needs: tuple[Needs, ...] = ("outputs",)
    undefined: str = ""  # when the value is NaN, and why (the recorded skip reason)
    description: str = ""

    @property
    def defined_in(self) -> str:
        return self.fn.__module__

    @property
    def qualname(self) -> str:
        """The function's qualified name: two functions under one metric name are told apart by it."""
        return self.fn.__qualname__

    def __call__(self, inputs: MetricInputs) -> torch.Tensor | None:
        return self.fn(inputs)

    def info(self) -> dict:
        return {"display": self.display, "higher_is_better": self.higher_is_better, "aggregation": self.aggregation}


def register_metric(
    name: str,
    display: str,
    higher_is_better: bool | None,
    aggregation: Literal["mean", "median"] = "mean",
    needs: tuple[Needs, ...] = ("outputs",),
    undefined: str = "",
) -> Callable[[Callable[[MetricInputs], torch.Tensor | None]], Metric]:
    """Decorator registering a per-sample metric function under ``name`` with its direction."""

    def deco(fn: Callable[[MetricInputs], torch.Tensor | None]) -> Metric:
        doc = (fn.__doc__ or "").strip().splitlines()
        metric = Metric(name, fn, display, higher_is_better, aggregation, needs, undefined, doc[0] if doc else "")
        METRICS.add(name, metric)
        return metric

    return deco
