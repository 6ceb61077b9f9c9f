"""L2I's own evaluation (Parekh et al., journal version sec. IV-C, Tables IV-V), for any method that
decomposes its explanation into components and leaves the needed tensors in ``ctx.extras``.

Each metric reads ``MetricInputs.extras`` and returns ``None`` when its extra is absent (a method
without components): the engine then writes no rows for it, records no skip, and tables show "–".
c is, as everywhere, each sample's own predicted class argmax p(X).

* ``fidelity_top1`` / ``fidelity_top5``: 100 [c is among the top-1 / top-5 classes of the
  interpreter's output Theta(H)] (extra ``interpreter_logits`` [B, C]); the mean is top-k fidelity.
* ``ff_l2i``: FF_x = p_c(X) - p_c(X2), X2 = X - sum_{l in L} X_l, X_l = (w_l h_l / W H) * X: the
  classifier's probability lost when the relevant components L = {k : r_k > RT} are removed from the
  input (eq. 7). The removal is done on the domain's representation, X2 = (1 - M_L) * X (the paper
  goes through ISTFT and back; we skip that round trip). Extra ``logits_removed`` [B, C].
* ``ff_l2i_random``: the same drop when as many components as |L| (all of them if fewer remain),
  drawn at random among the non-relevant ones, are removed: the paper's random baseline
  (extra ``logits_removed_random``).
* ``n_components``: |L| (extra ``n_components`` [B]).

Both FF metrics aggregate by the median over samples (FF_median), as in the paper.
"""

from __future__ import annotations

import torch

from audiobench.metrics.base import MetricInputs, register_metric


def _in_top(logits: torch.Tensor, c: torch.Tensor, k: int) -> torch.Tensor:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return 100.0 * (top == c.view(-1, 1)).any(dim=1).to(torch.float64)


def _drop(m: MetricInputs, key: str) -> torch.Tensor | None:
    logits = m.extras.get(key)
    if logits is None:
        return None
    p = logits.softmax(dim=-1).gather(1, m.pred.view(-1, 1)).squeeze(1)
    return m.p_orig - p.to(m.p_orig.dtype)


@register_metric("fidelity_top1", "Fid top-1", higher_is_better=True)
def fidelity_top1(m: MetricInputs) -> torch.Tensor | None:
    """Top-1 fidelity (%): the interpreter's top class is the classifier's predicted class."""
    logits = m.extras.get("interpreter_logits")
    return None if logits is None else _in_top(logits, m.pred, 1)


@register_metric("fidelity_top5", "Fid top-5", higher_is_better=True)
def fidelity_top5(m: MetricInputs) -> torch.Tensor | None:
    """Top-5 fidelity (%): the classifier's predicted class is among the interpreter's 5 top classes."""
    logits = m.extras.get("interpreter_logits")
    return None if logits is None else _in_top(logits, m.pred, 5)


@register_metric("ff_l2i", "FF median", higher_is_better=True, aggregation="median")
def ff_l2i(m: MetricInputs) -> torch.Tensor | None:
    """Faithfulness of the components: p_c(X) - p_c(X with the relevant components removed)."""
    return _drop(m, "logits_removed")


@register_metric("ff_l2i_random", "FF median, random", higher_is_better=None, aggregation="median")
def ff_l2i_random(m: MetricInputs) -> torch.Tensor | None:
    """Random baseline: p_c(X) - p_c(X with as many random non-relevant components removed)."""
    return _drop(m, "logits_removed_random")


@register_metric("n_components", "#comp", higher_is_better=None)
def n_components(m: MetricInputs) -> torch.Tensor | None:
    """Number of components in the interpretation (relevance above the threshold)."""
    n = m.extras.get("n_components")
    return None if n is None else n.to(torch.float64)
