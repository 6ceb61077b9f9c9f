"""Dataset-level multi-label scores (L2I journal, Parekh et al.: sec. IV-B.1, IV-C, V-A.1, Table IV).

Fidelity of an interpreter to a multi-label classifier (sec. IV-C, *Metrics and baselines (Post-hoc)*):
"we utilize the same metric used to evaluate the classifier performance but instead treat classifiers
output as ground truth and evaluate the interpreter's approximation Theta(H_I(x)) w.r.t to it". So
``scores`` = the interpreter's sigmoid outputs and ``labels`` = the classifier's thresholded decisions
(:func:`threshold_decisions`). The paper's text does not give the threshold; the authors' code (L2I-code,
``audint_posthoc.py``: ``pred = sigmoid(output) > class_thresh``) uses a strict ``>`` and per-class
thresholds of 0.5-0.6 on SONYC-UST.

* SONYC-UST (sec. V-A.1): "we report the macro-AUPRC, micro-AUPRC and max-F1 for the interpreter output
  w.r.t classifier" (:func:`macro_auprc`, :func:`micro_auprc`, :func:`max_f1`); "we ignore the class
  'non-machinery impact' from all class-wise evaluations involved in fidelity (i.e. macro-AUPRC)": the
  caller drops that column.
* OpenMIC-2018 (sec. IV-B.1): "The metric computes for each class a weighted average of F1-scores over
  the positive and negative samples. The final score is the average over 20 classes."
  (:func:`average_weighted_f1`; Table IV: "weighted F1-score averaged over all classes").

Every score takes an optional ``mask`` [N, C] (True = label known; OpenMIC-2018 annotates only some
pairs): unknown pairs are left out of every count and may hold anything, NaN included. Scores are float64,
without gradient; :func:`masked_bce` (eq. 2) keeps the graph. An undefined score raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["average_precision_per_class", "macro_auprc", "micro_auprc", "max_f1", "weighted_f1",
           "average_weighted_f1", "threshold_decisions", "masked_bce"]


def _known(ref: torch.Tensor, other: torch.Tensor, mask: torch.Tensor | None, names: str) -> torch.Tensor:
    """Check shapes and the mask; the bool [N, C] mask of known pairs."""
    if ref.dim() != 2:
        raise ValueError(f"{names.split()[0]} must be 2-D [N, C], got shape {tuple(ref.shape)}")
    if other.shape != ref.shape:
        raise ValueError(f"{names} differ in shape: {tuple(ref.shape)} vs {tuple(other.shape)}")
    if mask is not None and (mask.shape != ref.shape or mask.dtype != torch.bool):
        raise ValueError(f"mask must be a bool tensor of shape {tuple(ref.shape)}, got {mask.dtype} {tuple(mask.shape)}")
    known = torch.ones(ref.shape, dtype=torch.bool, device=ref.device) if mask is None else mask.to(ref.device)
    if not bool(known.any()):
        raise ValueError("mask has no known (clip, class) pair: every score would be undefined")
    return known


def _binary(x: torch.Tensor, known: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` as bool, after checking that it is 0/1 at every known pair."""
    if x.dtype == torch.bool:
        return x
    v = x[known]
    if not bool(((v == 0) | (v == 1)).all()):
        raise ValueError(f"{name} must be binary (0/1 or bool) at every known pair")
    return x == 1


def _prepare(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None):
    known = _known(scores, labels, mask, "scores and labels")
    s = scores.detach().to(torch.float64)
    if bool(s[known].isnan().any()):
        raise ValueError("scores hold NaN at a known pair")
    return s, _binary(labels.detach(), known, "labels"), known


def _ranked_counts(s: torch.Tensor, y: torch.Tensor, known: torch.Tensor):
    """Per class (column), the known pairs ranked by decreasing score, unknown pairs moved last.

    Returns cumulative true / false positives tp, fp [N, C] (float64) when the threshold is at each
    ranked pair, and ``end`` [N, C]: True on the last pair of a group of identical scores (the only
    valid cut: sklearn's ``_binary_clf_curve`` keeps one threshold per distinct score). Stable sorts
    make the order of the known pairs independent of whatever lies at unknown pairs.
    """
    s = torch.where(known, s, torch.full_like(s, -torch.inf))
    s_sorted, order = torch.sort(s, dim=0, descending=True, stable=True)
    k_sorted = known.gather(0, order)
    _, order2 = torch.sort(k_sorted.to(torch.int8), dim=0, descending=True, stable=True)
    order, s_sorted, k_sorted = order.gather(0, order2), s_sorted.gather(0, order2), k_sorted.gather(0, order2)
    y_sorted = y.gather(0, order) & k_sorted
    tp = torch.cumsum(y_sorted.to(torch.float64), dim=0)
    fp = torch.cumsum((~y.gather(0, order) & k_sorted).to(torch.float64), dim=0)
    end = torch.ones_like(k_sorted)
    end[:-1] = (s_sorted[1:] != s_sorted[:-1]) | ~k_sorted[1:]
    return tp, fp, end & k_sorted, y_sorted


def _ap(s: torch.Tensor, y: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    tp, fp, end, y_sorted = _ranked_counts(s, y, known)
    n, n_pos = tp.shape[0], tp[-1]
    precision = tp / (tp + fp).clamp_min(1.0)  # tp + fp = 0 only before the first known pair
    # Each positive adds 1/n_pos of recall at the end of its tie group: AP = sum_k (R_k - R_{k-1}) P_k.
    idx = torch.arange(n, device=s.device).unsqueeze(1).expand_as(tp)
    end_idx = torch.where(end, idx, torch.full_like(idx, n - 1))
    end_idx = torch.flip(torch.cummin(torch.flip(end_idx, [0]), dim=0).values, [0])
    ap = (y_sorted.to(torch.float64) * precision.gather(0, end_idx)).sum(dim=0) / n_pos.clamp_min(1.0)
    return torch.where(n_pos > 0, ap, torch.full_like(ap, torch.nan))


def average_precision_per_class(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average precision of each class over its known pairs: the step-wise area under the PR curve.

    AP = sum_k (R_k - R_{k-1}) P_k over the thresholds k = the distinct known scores of the class in
    decreasing order (identical scores form one threshold), as ``sklearn.metrics.average_precision_score``
    on ``(labels[mask[:, c], c], scores[mask[:, c], c])``.

    Args: scores [N, C] float, higher = more likely (e.g. the interpreter's sigmoid outputs, unitless);
        labels [N, C] 0/1 (bool, int or float), e.g. the classifier's decisions; mask optional [N, C]
        bool, True where the label is known (None = all known).
    Returns: [C] float64 in [0, 1]; NaN for a class with no positive among its known pairs (sklearn
        returns 0.0 with a warning there).
    Raises: ValueError when shapes differ or are not 2-D, the mask is not bool or has no known pair,
        labels are not 0/1 or scores are NaN at a known pair.
    """
    return _ap(*_prepare(scores, labels, mask))


def macro_auprc(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Macro-AUPRC: the mean of :func:`average_precision_per_class` over the classes with a positive.

    Source: L2I journal sec. V-A.1 (SONYC-UST fidelity, Table IV), the official DCASE 2020 task 5 metric
    (sec. IV-B.1); computed as ``average_precision_score(..., average="macro")`` on the known pairs of
    each class. Classes without a positive known pair are left out of the mean (sklearn would count them
    as 0.0). The paper also drops 'non-machinery impact' (a single positive, AUPRC "vary widely"): the
    caller removes that column.

    Args: as :func:`average_precision_per_class`.
    Returns: 0-d float64 tensor in [0, 1].
    Raises: ValueError as :func:`average_precision_per_class`, and when no class has a positive.
    """
    ap = average_precision_per_class(scores, labels, mask)
    ok = ~ap.isnan()
    if not bool(ok.any()):
        raise ValueError("macro-AUPRC is undefined: no class has a positive label among its known pairs")
    return ap[ok].mean()


def _pooled(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None):
    """The known pairs of all classes pooled into one column [M, 1]."""
    s, y, known = _prepare(scores, labels, mask)
    s, y = s[known].unsqueeze(1), y[known].unsqueeze(1)
    if not bool(y.any()):
        raise ValueError("the score is undefined: no positive label among the known pairs")
    return s, y, torch.ones_like(y)


def micro_auprc(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Micro-AUPRC: the average precision of all known (clip, class) pairs pooled as one binary problem.

    Source: L2I journal sec. V-A.1 / Table IV (SONYC-UST); ``average_precision_score(..., average="micro")``
    on the known pairs, i.e. ``average_precision_score(labels[mask], scores[mask])``.

    Args: as :func:`average_precision_per_class`.
    Returns: 0-d float64 tensor in [0, 1].
    Raises: ValueError as :func:`average_precision_per_class`, and when no known pair is positive.
    """
    return _ap(*_pooled(scores, labels, mask))[0]


def max_f1(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None,
    average: str = "micro", thresholds: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Max-F1: the highest F1 = 2PR/(P+R) = 2TP/(2TP+FP+FN) over the decision thresholds.

    The paper names "max-F1" (sec. V-A.1, SONYC-UST) without defining it and Table IV does not report it.
    The authors' code (L2I-code ``audint_posthoc.py``, ``calc_PRC_metrics``) sums TP, FP, FN over the
    classes at each threshold and returns the maximum of that micro F1: ``average="micro"`` (default)
    does so over all known pairs pooled, = max of 2PR/(P+R) along ``sklearn.metrics.precision_recall_curve``
    of the pooled pairs. ``average="macro"``: each class's max-F1 over its own thresholds, averaged over
    the classes with a positive.

    Args: scores, labels, mask as :func:`average_precision_per_class`; average "micro" or "macro";
        thresholds None = every distinct known score (sklearn's curve), else a grid t with decisions
        ``scores > t`` (strict, as the authors' code, whose grid is 0.05, 0.1, 0.2, ..., 0.9, 0.95).
    Returns: 0-d float64 tensor in [0, 1].
    Raises: ValueError as :func:`average_precision_per_class`, for an unknown ``average``, and when no
        known pair (micro) or no class (macro) has a positive.
    """
    if average not in ("micro", "macro"):
        raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")
    s, y, known = (_pooled if average == "micro" else _prepare)(scores, labels, mask)
    if thresholds is None:
        tp, fp, end, _ = _ranked_counts(s, y, known)
        n_pos = tp[-1]
        f1 = torch.where(end, 2 * tp / (tp + fp + n_pos).clamp_min(1.0), torch.zeros_like(tp))
    else:
        t = torch.as_tensor(thresholds, dtype=torch.float64, device=s.device).reshape(-1, 1, 1)
        if t.numel() == 0 or bool(t.isnan().any()):
            raise ValueError("thresholds must be a non-empty sequence of numbers")
        d = (s.unsqueeze(0) > t) & known  # [T, N, C]
        tp = (d & y).sum(dim=1).to(torch.float64)
        n_pos = (y & known).sum(dim=0).to(torch.float64)
        f1 = 2 * tp / (d.sum(dim=1) + n_pos).clamp_min(1.0)
    best = f1.max(dim=0).values
    if average == "micro":
        return best[0]
    ok = n_pos > 0
    if not bool(ok.any()):
        raise ValueError("macro max-F1 is undefined: no class has a positive label among its known pairs")
    return best[ok].mean()


def _confusion(decisions: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None):
    known = _known(decisions, labels, mask, "decisions and labels")
    d, y = _binary(decisions.detach(), known, "decisions"), _binary(labels.detach(), known, "labels")
    return tuple((a & known).sum(dim=0).to(torch.float64) for a in (d & y, d & ~y, ~d & y, ~d & ~y))


def _f1(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """F1 = 2TP/(2TP+FP+FN), 0 where undefined (sklearn's ``zero_division=0``)."""
    den = 2 * tp + fp + fn
    return torch.where(den > 0, 2 * tp / den.clamp_min(1.0), torch.zeros_like(den))


def weighted_f1(decisions: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Support-weighted mean over classes of the positive-class F1: ``f1_score(average="weighted")``.

    sklearn's multilabel ``f1_score(labels, decisions, average="weighted")`` with TP, FP, FN of each
    class counted on its known pairs and weights = its known positives. This is not the paper's OpenMIC
    score (that is :func:`average_weighted_f1`).

    Args: decisions [N, C] 0/1 (e.g. interpreter probabilities > 0.5, :func:`threshold_decisions`);
        labels [N, C] 0/1 reference (the classifier's decisions); mask optional [N, C] bool.
    Returns: 0-d float64 tensor in [0, 1].
    Raises: ValueError on shapes, a mask without a known pair, non-binary values at a known pair, or no
        positive label at all (sklearn returns 0.0 with a warning there).
    """
    tp, fp, fn, _ = _confusion(decisions, labels, mask)
    support = tp + fn
    if not bool((support > 0).any()):
        raise ValueError("weighted F1 is undefined: no positive label among the known pairs")
    return (support * _f1(tp, fp, fn)).sum() / support.sum()


def average_weighted_f1(decisions: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The OpenMIC-2018 score of the L2I paper: per class, F1 of the positives and of the negatives
    weighted by their support, then the mean over classes.

    Source: L2I journal sec. IV-B.1: "we use the weighted average F1-score metric, proposed in the
    original paper. The metric computes for each class a weighted average of F1-scores over the positive
    and negative samples. The final score is the average over 20 classes."; Table IV "avg-weighted-F1".
    Per class c it equals ``sklearn.metrics.f1_score(labels[m, c], decisions[m, c], average="weighted")``
    on its known pairs m (the OpenMIC baseline's ``classification_report`` "avg / total" F1); the
    result is the plain mean of these over the classes with at least one known pair.

    Args: as :func:`weighted_f1` (decisions are thresholded at 0.5 in the OpenMIC baseline).
    Returns: 0-d float64 tensor in [0, 1].
    Raises: ValueError on shapes, a mask without a known pair, non-binary values at a known pair.
    """
    tp, fp, fn, tn = _confusion(decisions, labels, mask)
    n_pos, n_neg, n = tp + fn, tn + fp, tp + fn + tn + fp
    return ((n_pos * _f1(tp, fp, fn) + n_neg * _f1(tn, fn, fp)) / n.clamp_min(1.0))[n > 0].mean()


def threshold_decisions(probs: torch.Tensor, threshold: float | torch.Tensor = 0.5) -> torch.Tensor:
    """Binary decisions ``probs > threshold`` (strict, as the L2I authors' code and the OpenMIC baseline).

    Args: probs [N, C] probabilities (sigmoid outputs); threshold a number or a [C] tensor (per class).
    Returns: [N, C] bool.
    Raises: ValueError when ``probs`` is not 2-D or a threshold tensor is not of shape [C].
    """
    if probs.dim() != 2:
        raise ValueError(f"probs must be 2-D [N, C], got shape {tuple(probs.shape)}")
    t = torch.as_tensor(threshold, dtype=probs.dtype, device=probs.device)
    if t.dim() not in (0, 1) or (t.dim() == 1 and t.shape[0] != probs.shape[1]):
        raise ValueError(f"threshold must be a number or a tensor of shape [{probs.shape[1]}], got {tuple(t.shape)}")
    return probs > t


def masked_bce(
    probs_or_logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, from_logits: bool = True
) -> torch.Tensor:
    """Binary cross-entropy averaged over the known pairs only (nats per known pair); differentiable.

    mean over known (n, c) of -[t log p + (1 - t) log(1 - p)], p = sigmoid(input) when ``from_logits``
    (``F.binary_cross_entropy_with_logits``, stable) else p = input (``F.binary_cross_entropy``, which
    clamps log at -100). L2I's multi-label fidelity loss (journal sec. III-B, eq. 2) is this with
    p = the interpreter's output Theta(H_I(x)) and t = the classifier's sigmoid outputs f(x), a soft
    target: L_FID = -sum_c [f(x) log Theta + (1 - f(x)) log(1 - Theta)]; eq. 2 sums over classes, so it is
    C times this mean (the authors' code, ``loss_cce_v3``, takes the mean). Unknown pairs may hold
    anything (NaN included) and get no gradient.

    Args: probs_or_logits [N, C] logits (``from_logits=True``) or probabilities in [0, 1]; targets [N, C]
        soft targets in [0, 1] (bool accepted); mask optional [N, C] bool, True where the target is known.
    Returns: 0-d tensor (dtype of the input), differentiable with respect to ``probs_or_logits``.
    Raises: ValueError on shapes, a mask without a known pair, targets (or probabilities) outside [0, 1].
    """
    known = _known(probs_or_logits, targets, mask, "probs_or_logits and targets")
    x = torch.where(known, probs_or_logits, torch.full_like(probs_or_logits, 0.5))
    t = torch.where(known, targets.to(x.dtype), torch.zeros_like(x))
    if bool(((t < 0) | (t > 1) | t.isnan()).any()):
        raise ValueError("targets must lie in [0, 1] at every known pair")
    if not from_logits and bool(((x < 0) | (x > 1) | x.isnan()).any()):
        raise ValueError("probabilities must lie in [0, 1] at every known pair (from_logits=False)")
    loss = (F.binary_cross_entropy_with_logits if from_logits else F.binary_cross_entropy)(x, t, reduction="none")
    return (loss * known).sum() / known.sum()
