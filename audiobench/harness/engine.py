"""The metric engine: one batch of clips -> (clip, target) rows -> explanation -> every metric.

Per batch: the representation X on the domain's grid, the model's scores on X, the targets
(:mod:`audiobench.contracts.targets`), the method's :class:`~audiobench.contracts.explanation.Explanation` of each
(clip, target) row, then ONE batched pass for p(M*X), p((1-M)*X) and any removal the metrics need,
shared by every metric. The masks scored are the method's own (float32); the run keeps them at the
suite's ``masks.precision`` (:mod:`audiobench.store.masks`), from which ``audiobench score`` recomputes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from audiobench.contracts.domains import Representation
from audiobench.contracts.explanation import Explanation
from audiobench.contracts.groundtruth import GroundTruth
from audiobench.contracts.targets import TargetParams, select_targets
from audiobench.data.base import Skip
from audiobench.methods.base import DomainModel, ExplainContext, Explainer
from audiobench.metrics.base import Metric, MetricInputs, compute_inputs
from audiobench.metrics.budget import Budget, curve_rows

# rows stored besides the metrics, so any metric can be recomputed from the store
AUX_METRICS = ("p_orig", "p_in", "p_out", "pred_orig", "pred_in", "y_true", "target_true")


@dataclass
class BatchResult:
    """The scored rows of one batch: row i is (``sample_ids[i]``, ``targets[i]``)."""

    sample_ids: list[str]
    targets: np.ndarray  # [P] int64
    values: dict[str, np.ndarray]  # metric -> [P] float64 (NaN: undefined, recorded as a skip)
    explanation: Explanation | None  # the kept rows, on the CPU
    skips: list[Skip] = field(default_factory=list)
    not_applicable: dict[str, str] = field(default_factory=dict)
    clipped: int = 0  # rows whose mask left [0, 1] and was clipped to it


def score_rows(
    model: DomainModel, x: torch.Tensor, explanation: Explanation, scores_orig: torch.Tensor, target: torch.Tensor,
    metrics: list[Metric], labels: torch.Tensor | None, targets: TargetParams, max_rows: int,
    truth: GroundTruth | None = None, budget: Budget | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str], MetricInputs]:
    """Every metric on (clip, target) rows whose masks are given; returns values, the metrics that do
    not apply (with why) and the shared inputs. Removal passes run only when a metric needs them;
    ``truth``: the rows' ground truth (:mod:`audiobench.contracts.groundtruth`), where the dataset has it;
    ``budget``: the insertion/deletion budgets, run when a metric needs them (their curves are stored
    as ``p_ins@K`` / ``p_del@K`` rows); the model's exact attribution is computed when a metric needs it."""
    wants_removals = any("removals" in m.needs for m in metrics)
    wants_budget = any("budget" in m.needs for m in metrics)
    exact = None
    if any("exact" in m.needs for m in metrics):
        with torch.no_grad():
            exact = model.classifier.exact_attribution(model.domain, model.frontend, x, target)
    inputs = compute_inputs(
        model, x, explanation.mask, scores_orig, target, model.classifier.output_kind, targets.threshold, labels,
        removals=explanation.removals if wants_removals else None,
        interpreter_scores=explanation.interpreter_scores, n_parts=explanation.n_parts, max_rows=max_rows,
        ground_truth=truth, budget=(budget or Budget()) if wants_budget else None,
    )
    inputs.exact = exact
    values, not_applicable = {}, {}
    for m in metrics:
        reason = m.applies(inputs)
        if reason is None:
            values[m.name] = m(inputs)
        else:
            not_applicable[m.name] = reason
    values.update(aux_rows(inputs, labels))
    if inputs.budget is not None:
        values.update(curve_rows(inputs.budget))
    return values, not_applicable, inputs


def aux_rows(inputs: MetricInputs, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """p_t(X), p_t(MX), p_t((1-M)X), the top class of X and of MX, the true class (single-label data)
    and whether the target is a true label of the clip: what any metric can be recomputed from."""
    out = {"p_orig": inputs.p_orig, "p_in": inputs.p_in, "p_out": inputs.p_out,
           "pred_orig": inputs.pred, "pred_in": inputs.pred_in}
    if labels is not None:
        if labels.dim() == 1:
            out["y_true"] = labels
            out["target_true"] = labels == inputs.target
        else:
            out["target_true"] = labels.gather(1, inputs.target.view(-1, 1)).squeeze(1).bool()
    return out


def explain_batch(
    explainer: Explainer, model: DomainModel, x: torch.Tensor, target: torch.Tensor, seed: int, max_rows: int,
) -> Explanation:
    """The method's explanation of rows ``x`` [B, 1, T, F] for classes ``target`` [B], its random draws
    seeded by ``seed`` (the global generator and :meth:`ExplainContext.generator`); Captum's warnings
    about inputs without gradients and ReLU hooks, expected here, are silenced."""
    ctx = ExplainContext(model=model, seed=seed, max_rows=max_rows)
    torch.manual_seed(seed)
    with torch.set_grad_enabled(explainer.needs_gradients), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require gradients")
        warnings.filterwarnings("ignore", message=r"Setting backward hooks on ReLU activations")
        return explainer.explain(x, target, ctx)


def evaluate_batch(
    explainer: Explainer, model: DomainModel, rep: Representation, sample_ids: list[str], labels: torch.Tensor,
    metrics: list[Metric], targets: TargetParams, seed: int, max_rows: int, where: str = "",
    truth: GroundTruth | None = None, budget: Budget | None = None,
) -> BatchResult:
    """Explain and score one batch of clips (representation ``rep`` [B, 1, T, F]) for its targets;
    ``truth``: the clips' ground truth (one row per clip), for the metrics that need it."""
    with torch.no_grad(), model.reading(rep):
        scores_orig = model(rep.x)
    rows, target = select_targets(scores_orig, model.classifier.output_kind, targets, model.classifier.class_names)
    skips = [Skip(sid, f"no label above the threshold {targets.threshold:g}", where)
             for i, sid in enumerate(sample_ids) if not bool((rows == i).any())]
    x = rep.x[rows]
    with model.reading(rep.subset(rows)):
        explanation = explain_batch(explainer, model, x, target, seed, max_rows)
    ids = [sample_ids[i] for i in rows.tolist()]
    finite = torch.isfinite(explanation.mask).flatten(1).all(dim=1)
    by_design = explainer.unexplained_reason()  # a row all NaN on purpose: the method says why
    all_nan = torch.isnan(explanation.mask).flatten(1).all(dim=1)
    skips += [Skip(ids[i], by_design if by_design and bool(all_nan[i]) else "non-finite map (NaN or Inf)", where)
              for i in (~finite).nonzero().flatten().tolist()]
    keep = finite.nonzero().flatten()
    if len(keep) == 0:
        return BatchResult([], np.zeros(0, np.int64), {}, None, skips)
    kept = explanation.subset(keep) if len(keep) < len(rows) else explanation
    outside = ((kept.mask < 0) | (kept.mask > 1)).flatten(1).any(dim=1)  # metrics are defined for masks in [0, 1]
    if bool(outside.any()):
        kept.mask = kept.mask.clamp(0, 1)
    row_labels = labels.to(rows.device)[rows[keep]] if labels is not None else None
    with model.reading(rep.subset(rows[keep])):
        values, not_applicable, _ = score_rows(
            model, x[keep], kept, scores_orig[rows[keep]], target[keep], metrics, row_labels, targets, max_rows,
            None if truth is None else truth.subset(rows[keep]).for_labels(target[keep]), budget,
        )
    arrays = {k: v.detach().double().cpu().numpy() for k, v in values.items()}
    return BatchResult([ids[i] for i in keep.tolist()], target[keep].cpu().numpy(), arrays, to_cpu(kept), skips,
                       not_applicable, int(outside.sum()))


def to_cpu(e: Explanation) -> Explanation:
    """The explanation detached, with every tensor on the CPU in float32."""
    return Explanation(
        mask=e.mask.detach().to("cpu", torch.float32),
        parts=None if e.parts is None else type(e.parts)(e.parts.rows.cpu(), e.parts.names,
                                                         e.parts.masks.detach().to("cpu", torch.float32)),
        removals={k: v.detach().to("cpu", torch.float32) for k, v in e.removals.items()},
        interpreter_scores=None if e.interpreter_scores is None else e.interpreter_scores.detach().float().cpu(),
        n_parts=None if e.n_parts is None else e.n_parts.detach().float().cpu(),
        relevance=None if e.relevance is None else e.relevance.detach().float().cpu(),
    )
