"""L2I's own evaluation (Parekh et al., journal version sec. IV-C, Tables IV-V), for any method whose
:class:`~audiobench.contracts.explanation.Explanation` carries components.

The metrics declare what they need; the engine writes no rows for a method that cannot provide it
(a method without components) and lists the metric under the cell's ``not_applicable``. t is, as
everywhere, each row's target (by default the model's decision).

* ``fidelity_top1`` / ``fidelity_top5``: 100 [t is among the top-1 / top-5 classes of the
  interpreter's own scores Theta(H)] (``Explanation.interpreter_scores``); the mean is top-k fidelity.
* ``ff_l2i``: FF_x = p_t(X) - p_t(X2), X2 = X - sum_{l in L} X_l, X_l = (w_l h_l / W H) * X: the
  classifier's probability lost when the relevant components L = {k : r_k > RT} are removed from the
  input (eq. 7). The removal is done on the domain's representation, X2 = (1 - M_L) * X (the paper
  goes through ISTFT and back; we skip that round trip); the engine runs that pass from the
  explanation's ``relevant`` removal mask.
* ``ff_l2i_random``: the same drop when as many components as |L| (all of them if fewer remain),
  drawn at random among the non-relevant ones, are removed: the paper's random baseline (the
  ``random`` removal mask).
* ``n_components``: |L| (``Explanation.n_parts``).

Both FF metrics aggregate by the median over samples (FF_median), as in the paper.
"""

from __future__ import annotations

import torch

from audiobench.metrics.base import MetricInputs, register_metric


def _in_top(scores: torch.Tensor, t: torch.Tensor, k: int) -> torch.Tensor:
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return 100.0 * (top == t.view(-1, 1)).any(dim=1).to(torch.float64)


# top-k agreement is the journal's multi-class fidelity; on multi-label (sigmoid) runs its measure is the
# AUPRC / max-F1 of the interpreter against the classifier's decisions (tables/fidelity.md), so these two
# record "not defined for sigmoid models" there instead of a number that means little
_TOP_K_KINDS = ("softmax", "similarity")


@register_metric("fidelity_top1", "Fid top-1", higher_is_better=True, needs=("interpreter",), output_kinds=_TOP_K_KINDS)
def fidelity_top1(m: MetricInputs) -> torch.Tensor:
    """Top-1 fidelity (%): the interpreter's top class is the target."""
    return _in_top(m.interpreter_scores, m.target, 1)


@register_metric("fidelity_top5", "Fid top-5", higher_is_better=True, needs=("interpreter",), output_kinds=_TOP_K_KINDS)
def fidelity_top5(m: MetricInputs) -> torch.Tensor:
    """Top-5 fidelity (%): the target is among the interpreter's 5 top classes."""
    return _in_top(m.interpreter_scores, m.target, 5)


@register_metric("ff_l2i", "FF median", higher_is_better=True, aggregation="median", needs=("removals",))
def ff_l2i(m: MetricInputs) -> torch.Tensor:
    """Faithfulness of the components: p_t(X) - p_t(X with the relevant components removed)."""
    return m.p_orig - m.removal_p["relevant"].to(m.p_orig.dtype)


@register_metric("ff_l2i_random", "FF median, random", higher_is_better=None, aggregation="median", needs=("removals",))
def ff_l2i_random(m: MetricInputs) -> torch.Tensor:
    """Random baseline: p_t(X) - p_t(X with as many random non-relevant components removed)."""
    return m.p_orig - m.removal_p["random"].to(m.p_orig.dtype)


@register_metric("n_components", "#comp", higher_is_better=None, needs=("parts",))
def n_components(m: MetricInputs) -> torch.Tensor:
    """Number of components in the interpretation (relevance above the threshold)."""
    return m.n_parts.to(torch.float64)
