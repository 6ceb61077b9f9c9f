"""L-MAC's rank channels on a sigmoid (multi-label) classifier (``label_masks: ranked``, the default there): the
decoder outputs ``ranks`` mask channels per clip, channel i for the clip's label of the i-th highest logit, as the
public SpeechBrain branch's ``recipes/ESC50/interpret/train_int_ml.py`` (commit 44e9cc64, ``compute_objectives``;
``hparams/stft2mel_cnn14_ml.yaml``, ``CNN14PSI_stft`` with ``outdim: 3``). See :mod:`audiobench.methods.lmac`,
*Multi-label*, for the loss and what it follows.

Labels are ranked by the classifier's logits on X, ties broken by class index (the lower first); a clip's
*decided* labels are those the suite's targets explain (p_c(X) > ``targets.threshold``, or the ``targets.top_k``
most probable), which for a sigmoid model are always its top-ranked ones. Channel i is trained (and its terms
count) only where the clip has at least i + 1 decided labels; ``labels`` [B, R] holds the class of each trained
channel and -1 for the others.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from audiobench.contracts.targets import TargetParams
from audiobench.methods.base import DomainModel
from audiobench.methods.lmac_objective import LmacParams, decided_labels, gate_similarity, guidance_term


def decided_count(scores: torch.Tensor, targets: TargetParams) -> torch.Tensor:
    """[B] (long) how many labels of each clip the targets decide from a sigmoid model's scores [B, C]: ``top_k``
    (at most C) when set, else the number of labels with sigmoid(score) > ``threshold`` (:func:`decided_labels`)."""
    return decided_labels(scores, "sigmoid", targets).sum(dim=1).long()


def ranked_labels(scores: torch.Tensor, targets: TargetParams, ranks: int) -> torch.Tensor:
    """[B, ranks] (long): the class ranked i-th by the scores [B, C] (descending, ties by index) in column i
    where the clip has more than i decided labels (:func:`decided_count`), -1 elsewhere."""
    b, c = scores.shape
    order = scores.sort(dim=1, descending=True, stable=True).indices[:, :ranks]
    labels = torch.full((b, ranks), -1, dtype=torch.long, device=scores.device)
    labels[:, : order.shape[1]] = order
    rank = torch.arange(ranks, device=scores.device).expand(b, ranks)
    return labels.masked_fill(rank >= decided_count(scores, targets)[:, None], -1)


def target_rank(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B] (long) each row's rank of class ``target`` [B] among its scores [B, C]: the number of classes with a
    strictly greater score, plus those with an equal score and a lower index (0 = the highest logit)."""
    s_t = scores.gather(1, target.view(-1, 1))
    index = torch.arange(scores.shape[1], device=scores.device)
    ahead = (scores > s_t) | ((scores == s_t) & (index < target.view(-1, 1)))
    return ahead.sum(dim=1)


def pick_channel(mask: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, F]: channel ``rank[b]`` of ``mask`` [B, R, T, F] for each row (the last one where the rank is
    R or beyond: the caller marks those rows unexplained, :func:`unexplained`)."""
    idx = rank.clamp_max(mask.shape[1] - 1).view(-1, 1, 1, 1).expand(-1, 1, *mask.shape[-2:])
    return mask.gather(1, idx)


def unexplained(mask: torch.Tensor, rank: torch.Tensor, ranks: int) -> torch.Tensor:
    """``mask`` [B, 1, T, F] with NaN in every row whose ``rank`` is ``ranks`` or beyond (no channel explains it:
    the engine records the skip with :meth:`~audiobench.methods.lmac.LMAC.unexplained_reason`)."""
    return mask.masked_fill((rank >= ranks).view(-1, 1, 1, 1), float("nan"))


def beyond_note(rank: torch.Tensor, ranks: int) -> str | None:
    """The row's caption note when some targets' ``rank`` [B] is ``ranks`` or beyond (their rows are skipped, so
    the row averages over fewer (clip, label) rows than the others); None when every target has a channel."""
    if not bool((rank >= ranks).any()):
        return None
    return (f"labels ranked beyond its {ranks} rank channels have no mask: those (clip, label) rows are skipped, so "
            "this row averages over fewer rows than the others (the manifest's skips)")


def channel_items(mask: torch.Tensor, *grids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(clip, channel) items, clip-major: ``mask`` [B, R, T, F] -> [B*R, 1, T, F], and each grid [B, 1, T, F]
    repeated to match (item b*R + i is channel i of clip b)."""
    r = mask.shape[1]
    return (mask.reshape(-1, 1, *mask.shape[-2:]), *(g.repeat_interleave(r, dim=0) for g in grids))


def ranked_masking_loss(
    model: DomainModel, x: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, p: LmacParams, threshold: float,
) -> dict[str, torch.Tensor]:
    """The rank channels' terms (``total`` is minimised); x [B, 1, T, F], mask [B, R, T, F], labels [B, R]
    (:func:`ranked_labels`), w_bi = 1[labels_bi >= 0]. With k = labels_bi, z = f(M_i*X), z' = f((1-M_i)*X)::

        in_bi  = -log sigmoid(z_k) + (1/C) sum_{c != k} -log(1 - sigmoid(z_c))
        out_bi = -log sigmoid(z'_k)             (capped at log 2 under out_cap: log_classes)
        l1_bi  = mean |M_i|,   tv_bi = mean |d_t M_i| + mean |d_f M_i|
        term   = sum_i (1/B) sum_b w_bi term_bi  (l1 x B under l1_reduction: batch_sum)
        total  = lambda_in in - lambda_out out + lambda_l1 l1 + lambda_tv tv

    Under ``lr_schedule: plateau`` ``fid_in`` is the share of trained channels whose label is still above
    ``threshold`` on M_i*X (1 where there are none)."""
    b, r = labels.shape
    # rows grouped by channel ([R*B], row i*B + b: clip b), so row j reads clip j mod B (DomainModel.reading)
    m = mask.transpose(0, 1).reshape(r * b, 1, *mask.shape[-2:])
    xs = x.repeat(r, 1, 1, 1)
    logits = model(torch.cat([m * xs, (1 - m) * xs]))
    c = logits.shape[-1]
    z_in, z_out = logits[: r * b].view(r, b, c).transpose(0, 1), logits[r * b :].view(r, b, c).transpose(0, 1)
    w = (labels >= 0).to(x.dtype)  # [B, R]
    k = labels.clamp_min(0)
    one = F.one_hot(k, c).to(x.dtype)  # [B, R, C]
    bce = F.binary_cross_entropy_with_logits(z_in, one, reduction="none")
    l_in = ((bce * (one + (1 - one) / c)).sum(dim=-1) * w).sum() / b
    out = -F.logsigmoid(z_out.gather(-1, k[..., None]).squeeze(-1))
    if p.out_cap == "log_classes":
        out = out.clamp_max(math.log(2))
    l_out = (out * w).sum() / b
    l1 = (mask.abs().flatten(2).mean(dim=-1) * w).sum() / b * (b if p.l1_reduction == "batch_sum" else 1)
    tv = ((mask.diff(dim=-1).abs().flatten(2).mean(-1) + mask.diff(dim=-2).abs().flatten(2).mean(-1)) * w).sum() / b \
        if p.lambda_tv else mask.new_zeros(())
    total = p.lambda_in * l_in - p.lambda_out * l_out + p.lambda_l1 * l1 + p.lambda_tv * tv
    terms = {"total": total, "in": l_in, "out": l_out, "l1": l1, "tv": tv}
    if p.lr_schedule == "plateau":
        kept = ((z_in.gather(-1, k[..., None]).squeeze(-1).sigmoid() > threshold).to(x.dtype) * w).sum()
        terms["fid_in"] = torch.where(w.sum() > 0, kept / w.sum().clamp_min(1), torch.ones_like(kept)).detach()
    return terms


def ranked_finetune_loss(
    model: DomainModel, x: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, clean_x: torch.Tensor,
    gate: torch.Tensor, p: LmacParams, threshold: float,
) -> dict[str, torch.Tensor]:
    """Fine-tuning with rank channels: each trained (clip, channel) item is fine-tuned as a one-mask clip is
    (:func:`~audiobench.methods.lmac_objective.finetune_loss`), its gate ``gate`` [B, R] read on its own channel
    (cos(X, M1_i*X_in)); the masking terms are :func:`ranked_masking_loss`'s, the guidance and the L1 term sums
    over the trained items (w_bi = 1) divided by B (L1 x B under ``batch_sum``)."""
    ft = p.finetune
    assert ft is not None
    terms = ranked_masking_loss(model, x, mask, labels, p.model_copy(update={"lambda_l1": 0.0}), threshold)
    b = x.shape[0]
    m, xi, ci = channel_items(mask, x, clean_x)
    w = (labels >= 0).to(mask.dtype).reshape(-1)
    g = gate.to(mask.dtype).reshape(-1) * w
    guidance = (g * guidance_term(m, xi, ci, ft)).sum() / b
    applies = w if ft.guidance == "regulariser" else w - g
    sparsity = (applies * m.abs().flatten(1).mean(dim=1)).sum() / b * (b if p.l1_reduction == "batch_sum" else 1)
    total = terms["total"] + ft.lambda_g * guidance + p.lambda_l1 * sparsity
    gated = g.sum() / w.sum().clamp_min(1)
    return {**terms, "total": total, "guidance": guidance, "l1": sparsity, "gated": gated}


def gate_similarities(mask: torch.Tensor, x: torch.Tensor, clean: torch.Tensor,
                      labels: torch.Tensor | None = None) -> torch.Tensor:
    """The fine-tuning gate's similarity (:func:`~audiobench.methods.lmac_objective.gate_similarity`) per clip
    [B] for one mask, per (clip, channel) [B, R] for rank channels; given the rank channels' ``labels`` [B, R],
    only the trained channels' (flat)."""
    if mask.shape[1] == 1:
        return gate_similarity(mask, x, clean)
    sim = gate_similarity(*channel_items(mask, x, clean)).view(mask.shape[:2])
    return sim if labels is None else sim[labels >= 0]


def sigmoid_key(targets: TargetParams, ranks: int | None) -> dict[str, Any]:
    """What a sigmoid model's L-MAC fit key adds: the targets' ``threshold`` and ``top_k`` where not their
    defaults (the labels trained for) and, for rank channels, their number (None: one shared mask, whose key at
    the default targets is the one from before rank channels existed)."""
    fields = TargetParams.model_fields
    moved = {k: getattr(targets, k) for k in ("threshold", "top_k") if getattr(targets, k) != fields[k].default}
    return ({"targets": moved} if moved else {}) | ({"label_masks": {"ranked": ranks}} if ranks is not None else {})


def ranked_targets_problems(p: LmacParams, output_kind: str, targets: TargetParams) -> list[tuple[str, str]]:
    """(parameter, problem) pairs when rank channels (a sigmoid model, ``label_masks: ranked``) cannot explain
    what ``targets`` select: ``select: all`` or ``classes`` (labels the classifier does not decide), or
    ``top_k`` beyond ``ranks``; and ``label_masks`` / ``ranks`` set where they do nothing (a model whose output
    is not ``sigmoid``; ``ranks`` with ``label_masks: shared``)."""
    if output_kind != "sigmoid":
        return [(k, f"{k} applies to sigmoid (multi-label) models only; this model's output is {output_kind}, so it "
                    "would change the row's label and nothing else: remove it")
                for k in ("label_masks", "ranks") if k in p.model_fields_set]
    if p.label_masks != "ranked":
        return [("ranks", "ranks counts the rank channels of label_masks: ranked; with label_masks: shared it does "
                          "nothing: remove it")] if "ranks" in p.model_fields_set else []
    if targets.select != "decision":
        return [("label_masks", f"ranked masks explain the labels the targets decide, ranked 1..{p.ranks} by the "
                                f"classifier (targets select: {targets.select} asks for others): use select: "
                                "decision, or label_masks: shared")]
    if targets.top_k is not None and targets.top_k > p.ranks:
        return [("ranks", f"targets.top_k {targets.top_k} exceeds ranks {p.ranks}: the labels ranked beyond "
                          f"{p.ranks} would have no mask; set ranks: {targets.top_k} or lower top_k")]
    return []
