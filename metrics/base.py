"""The metric engine's contract: shared forward passes and registered per-(clip, target) metrics.

Every metric refers to a target class t of a clip: by default the model's decision (the predicted
class of a ``softmax`` or ``similarity`` model; each label a ``sigmoid`` model detects), or any
class a suite asks for. Probabilities follow the model's output kind (softmax over classes or
prompts, one sigmoid per label) and are computed once per forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from audiobench.contracts.groundtruth import GroundTruth
from audiobench.contracts.registry import METRICS
from audiobench.kernel.batching import chunked
from audiobench.metrics.budget import Budget, BudgetCurves, budget_curves
from audiobench.models.base import OUTPUT_KINDS, OutputKind, is_decision, probabilities

# what a metric reads: the mask; the model's outputs on X, M*X and (1-M)*X; the engine's removal
# passes (``Explanation.removals``); an interpreter's own scores; a part count; ground truth (the clean
# target and contaminant of each clip, :mod:`audiobench.contracts.groundtruth`); a listenable domain (``audio``)
# the budget passes (insertion and deletion of each map's top bins, :mod:`audiobench.metrics.budget`)
# the model's closed-form attribution of each row (``exact``: hand-built models, :mod:`audiobench.models.handbuilt`)
Needs = Literal["mask", "outputs", "removals", "interpreter", "parts", "ground_truth", "audio", "budget", "exact"]
NEEDS: tuple[str, ...] = ("mask", "outputs", "removals", "interpreter", "parts", "ground_truth", "audio", "budget",
                          "exact")


@dataclass
class MetricInputs:
    """Everything the metrics of one batch of (clip, target) rows share, each forward pass computed once.

    Shapes: ``x``, ``mask`` [B, 1, T, F]; scores [B, C]; ``target`` [B] long. ``probs_*`` are the
    probabilities of X, M*X and (1-M)*X by ``output_kind``; ``p_orig``, ``p_in``, ``p_out`` [B] are
    those of each row's target t. ``decided`` [B] bool: t is the model's decision on X (argmax, or
    p_t > ``threshold`` for ``sigmoid``); ``kept`` [B] bool: t is still the decision on M*X.
    ``removal_p``: name -> p_t((1 - R) * X) for each removal mask R of the explanation.
    ``budget``: the insertion and deletion curves of the rows' maps, when a metric needs them.
    ``exact``: the model's exact attribution of each row's target (hand-built models), when a metric needs it.
    """

    x: torch.Tensor
    mask: torch.Tensor
    scores_orig: torch.Tensor
    scores_in: torch.Tensor
    scores_out: torch.Tensor
    target: torch.Tensor | None = None  # None: the decision, argmax p(X)
    output_kind: OutputKind = "softmax"
    threshold: float = 0.5
    labels: torch.Tensor | None = None  # ground truth where known: [B] classes or [B, C] multi-hot
    removal_p: dict[str, torch.Tensor] = field(default_factory=dict)
    interpreter_scores: torch.Tensor | None = None
    n_parts: torch.Tensor | None = None
    ground_truth: GroundTruth | None = None  # the rows' ideal mask and signals, where the dataset knows them
    budget: BudgetCurves | None = None
    exact: torch.Tensor | None = None  # [B, 1, T, F]: the model's exact attribution of each row's target, if known

    def __post_init__(self) -> None:
        if self.output_kind not in OUTPUT_KINDS:
            raise ValueError(f"unknown output kind {self.output_kind!r}")
        self.probs_orig = probabilities(self.scores_orig, self.output_kind)
        self.probs_in = probabilities(self.scores_in, self.output_kind)
        self.probs_out = probabilities(self.scores_out, self.output_kind)
        self.pred = self.probs_orig.argmax(dim=-1)  # the top class of X
        self.pred_in = self.probs_in.argmax(dim=-1)
        if self.target is None:
            self.target = self.pred
        t = self.target.view(-1, 1)
        self.p_orig = self.probs_orig.gather(1, t).squeeze(1)  # p_t(X)
        self.p_in = self.probs_in.gather(1, t).squeeze(1)  # p_t(M*X)
        self.p_out = self.probs_out.gather(1, t).squeeze(1)  # p_t((1-M)*X)
        self.decided = self.is_decision(self.p_orig, self.pred)
        self.kept = self.is_decision(self.p_in, self.pred_in)

    def is_decision(self, p_target: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """[B] bool: the target is the decision (``sigmoid``: p_t > threshold; otherwise t = argmax)."""
        return is_decision(p_target, top, self.target, self.output_kind, self.threshold)

    def target_p(self, scores: torch.Tensor) -> torch.Tensor:
        """p_t of each row's target for scores [B, C] of another input."""
        return probabilities(scores, self.output_kind).gather(1, self.target.view(-1, 1)).squeeze(1)


@torch.no_grad()
def compute_inputs(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    mask: torch.Tensor,
    scores_orig: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    output_kind: OutputKind = "softmax",
    threshold: float = 0.5,
    labels: torch.Tensor | None = None,
    removals: dict[str, torch.Tensor] | None = None,
    interpreter_scores: torch.Tensor | None = None,
    n_parts: torch.Tensor | None = None,
    max_rows: int | None = None,
    ground_truth: GroundTruth | None = None,
    budget: Budget | None = None,
) -> MetricInputs:
    """Run the masked-in, masked-out and removal forward passes together (and p(X) unless given).

    ``forward`` maps representations [N, 1, T, F] to scores [N, C]; rows go through it in chunks of
    at most ``max_rows`` (all at once when None). ``removals``: name -> mask R [B, 1, T, F]; each
    adds a pass on (1 - R) * X whose p_t the metrics read as ``removal_p[name]``. ``budget``: run the
    insertion and deletion passes at its budgets (:func:`audiobench.metrics.budget.budget_curves`).
    """
    b = x.shape[0]
    removals = removals or {}
    parts = [mask * x, (1 - mask) * x] + [(1 - r) * x for r in removals.values()]
    parts += [x] if scores_orig is None else []
    batch = torch.cat(parts)
    scores = chunked(forward, batch, max_rows or len(batch))
    if scores_orig is None:
        scores_orig = scores[-b:]
    m = MetricInputs(x, mask, scores_orig, scores[:b], scores[b : 2 * b], target, output_kind, threshold, labels,
                     interpreter_scores=interpreter_scores, n_parts=n_parts, ground_truth=ground_truth)
    m.removal_p = {name: m.target_p(scores[(2 + i) * b : (3 + i) * b]) for i, name in enumerate(removals)}
    if budget is not None:
        m.budget = budget_curves(forward, x, mask, m.target, m.p_orig, m.decided, output_kind, threshold, budget, max_rows)
    return m


@dataclass(frozen=True)
class Metric:
    """A registered metric: per-row values plus how tables treat them.

    ``needs`` is read by the engine: it runs the removal passes only when a metric needs
    ``removals``, and a metric whose needs the explanation cannot meet (no removals, no interpreter
    scores, no parts) or whose ``output_kinds`` exclude the model's writes no rows; the cell's
    manifest entry says so under ``not_applicable``.
    """

    name: str
    fn: Callable[[MetricInputs], torch.Tensor]
    display: str
    higher_is_better: bool | None
    aggregation: Literal["mean", "median"] = "mean"
    needs: tuple[Needs, ...] = ("outputs",)
    undefined: str = ""  # when the value is NaN, and why (the recorded skip reason)
    description: str = ""
    output_kinds: tuple[OutputKind, ...] = OUTPUT_KINDS

    @property
    def defined_in(self) -> str:
        return self.fn.__module__

    @property
    def qualname(self) -> str:
        """The function's qualified name: two functions under one metric name are told apart by it."""
        return self.fn.__qualname__

    def __call__(self, inputs: MetricInputs) -> torch.Tensor:
        return self.fn(inputs)

    def applies(self, inputs: MetricInputs) -> str | None:
        """None when the metric applies to this batch; otherwise why not (one line)."""
        if inputs.output_kind not in self.output_kinds:
            return f"not defined for {inputs.output_kind} models"
        if "removals" in self.needs and not inputs.removal_p:
            return "the method removes no components"
        if "interpreter" in self.needs and inputs.interpreter_scores is None:
            return "the method has no interpreter scores"
        if "parts" in self.needs and inputs.n_parts is None:
            return "the method has no parts"
        if "ground_truth" in self.needs and inputs.ground_truth is None:
            return "the dataset has no ground truth (no clean target signal per clip)"
        if "audio" in self.needs and (inputs.ground_truth is None or not inputs.ground_truth.listenable):
            return "the domain is not listenable"
        if "budget" in self.needs and inputs.budget is None:
            return "the budget passes were not run (no budget given to the engine)"
        if "exact" in self.needs and inputs.exact is None:
            return "the model has no exact attribution (only hand-built models such as band_energy know theirs)"
        return None

    def info(self) -> dict:
        return {"display": self.display, "higher_is_better": self.higher_is_better, "aggregation": self.aggregation}


def register_metric(
    name: str,
    display: str,
    higher_is_better: bool | None,
    aggregation: Literal["mean", "median"] = "mean",
    needs: tuple[Needs, ...] = ("outputs",),
    undefined: str = "",
    output_kinds: tuple[OutputKind, ...] = OUTPUT_KINDS,
) -> Callable[[Callable[[MetricInputs], torch.Tensor]], Metric]:
    """Decorator registering a per-row metric function under ``name`` with its direction.

    Raises :class:`~audiobench.kernel.errors.AudiobenchError` for an unknown ``needs`` entry or a name
    already registered to another function.
    """
    from audiobench.kernel.errors import AudiobenchError

    for need in needs:
        if need not in NEEDS:
            raise AudiobenchError(f"metric '{name}': unknown need '{need}' (one of {', '.join(NEEDS)})")

    def deco(fn: Callable[[MetricInputs], torch.Tensor]) -> Metric:
        doc = (fn.__doc__ or "").strip().splitlines()
        metric = Metric(name, fn, display, higher_is_better, aggregation, needs, undefined, doc[0] if doc else "",
                        output_kinds)
        METRICS.add(name, metric)
        return metric

    return deco
