"""L-MAC's parameters and training objective: the masking loss of stage 1 and the fine-tuning gate
and guidance (Paissan, Ravanelli & Subakan, ICML 2024, eq. 2 and sec. 2.1; the SpeechBrain recipe's
forms). The method itself, its decoder and its training loop are in :mod:`audiobench.methods.lmac`.

The masking loss follows the classifier's output kind (:func:`decided_labels`, :func:`masking_loss`):
``softmax`` the paper's cross-entropies on y_hat = argmax f(X); ``sigmoid`` (multi-label) binary
cross-entropies on the labels the suite's targets decide (p_c(X) > ``targets.threshold``, or ``targets.top_k``):
one mask channel per ranked label (``label_masks: ranked``, :mod:`audiobench.methods.lmac_ranked`) or one mask
per clip (``shared``, :func:`sigmoid_terms`); see :mod:`audiobench.methods.lmac`, *Multi-label*.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch.nn import functional as F

from audiobench.contracts.component import Params
from audiobench.contracts.targets import TargetParams, chosen_targets
from audiobench.methods.base import DomainModel, ExplainerParams

GATE_QUANTILES = (0, 10, 50, 90, 100)  # % : the similarity quantiles a fine-tuning fit records


class FinetuneParams(Params):
    """The fine-tuning stage for audio quality (paper sec. 2.1; see the module docstring)."""

    lambda_g: float = Field(..., gt=0, description="weight of the guidance term on gated items")
    guidance: Literal["regulariser", "bce", "squared"] = Field(
        "regulariser", description="regulariser: the paper's |M*X_in - X|^2 / |X|^2 (sec. 2.1), L1 on every item; "
        "bce: the recipe's default BCE(M, oracle) (guidelosstype: binary), L1 on the ungated items only; "
        "squared: the recipe's non-binary guidance, the unnormalised mean (M*X_in - X)^2 (train_lmac.py "
        "compute_objectives), L1 on the ungated items only",
    )
    cct: float = Field(0.6, ge=-1, le=1, description="gate: cos(clean X, mask * input) >= cct")
    gate_mask: Literal["frozen", "current"] = Field(
        "frozen", description="the mask the gate reads: frozen = the stage-1 decoder's, the paper's 'mask after "
        "the initial stage' (sec. 2.1); current = the decoder being fine-tuned, the recipe's xhat "
        "(train_lmac.py compute_objectives)",
    )
    epochs: int = Field(4, ge=1)
    oracle_threshold: float = Field(0.35, gt=0, lt=1, description="oracle (bce) = clean X >= this x its max")

    added_fields: ClassVar[frozenset[str]] = frozenset({"gate_mask"})


class LmacParams(ExplainerParams):
    nonneg: Literal["abs", "relu", "none"] = "none"  # the decoder's sigmoid is already a mask in [0, 1]
    normalize: Literal["max", "none"] = "none"  # the continuous mask is used as is, as in the recipe
    blocks: int | list[int | str] = Field(4, description="the N deepest classifier blocks, or a list of 1-based "
                                          "indices, block names or dotted module paths (conv_block3.conv2)")
    hidden: int = Field(32, ge=2, description="decoder channels")
    lambda_in: float = Field(4.0, ge=0)
    lambda_out: float = Field(0.2, ge=0)
    lambda_l1: float = Field(0.4, ge=0)
    l1_reduction: Literal["mean", "batch_sum"] = Field(
        "mean", description="mean: lambda_l1 x the batch's mean |M|; batch_sum: the recipe's "
        "(xhat.abs().mean() * reg_w_l1 * ~gate).sum() (train_lmac.py compute_objectives), the batch mean x the "
        "number of items the L1 applies to (B in stage 1)",
    )
    lambda_tv: float = Field(0.0, ge=0)
    out_cap: Literal["log_classes"] | None = Field(
        None, description="cap CE_out at log(classes): reward an uninformative masked-out input, not a wrong one"
    )
    epochs: int = Field(10, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(2e-6, ge=0)
    batch_size: int = Field(16, ge=1)
    lr_schedule: Literal["constant", "plateau"] = Field(
        "constant", description="constant lr, or the recipe's SpeechBrain ReduceLROnPlateau (hparams/lmac_cnn14.yaml "
        "lr_annealing; interpreter_brain.py steps it after each validation)",
    )
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="plateau: lr multiplier (recipe: factor 0.5)")
    plateau_patience: int = Field(3, ge=0, description="plateau: worse epochs tolerated before a cut (recipe: patience 3)")
    plateau_start_epoch: int = Field(
        100, ge=0, description="plateau: no cut up to this epoch (recipe: dont_halve_until_epoch 100)")
    plateau_monitor: Literal["fid_in", "total"] = Field(
        "fid_in", description="plateau: the value watched, minus the validation input fidelity (the recipe's, "
        "interpreter_brain.py on_stage_end) or valid_total (the selection key)",
    )
    augment_prob: float = Field(0.5, ge=0, le=1, description="share of training clips taken from the suite's train.augment conditions")
    head: Literal["filterbank", "linear"] = Field(
        "filterbank", description="filterbank: mel-resolution logits spread onto the domain's bins by the fixed "
        "filterbank map; linear: a learned per-frame Linear(n_mels -> bins) initialised to it, a decoder output on "
        "the STFT grid as the paper's (fig. 1, sec. 2.2) and the recipe's CNN14PSI_stft (513 bins)",
    )
    binarize: float | None = Field(
        None, gt=0, lt=1, description="explain with the binary mask (M >= binarize) in {0, 1}, the paper's 'binary "
        "mask' (abstract, sec. 2, eq. 2); training keeps the continuous mask. None: the continuous mask (the recipe's)",
    )
    reanalyse: Literal["none", "waveform"] = Field(
        "none", description="waveform: score the re-analysis of the listenable ISTFT(M*X), clamp(G(ISTFT(M*X)) / G(X), "
        "0, 1) on the domain's grid, as lmac_td's time-domain explanation is scored (methods/timedomain.py); "
        "stft2mel only. none: the decoder's mask (L-MAC's rows)",
    )
    label_masks: Literal["ranked", "shared"] = Field(
        "ranked", description="sigmoid (multi-label) models: ranked = `ranks` mask channels, channel i for the "
        "clip's i-th highest logit, trained where the suite's targets decide that label (the SpeechBrain branch's "
        "train_int_ml.py); shared = one mask per clip for all its labels. Unused for softmax models",
    )
    ranks: int = Field(3, ge=1, description="label_masks: ranked: the mask channels (the recipe's outdim 3); a "
                       "label ranked beyond them is not explained (a recorded skip)")
    finetune: FinetuneParams | None = None

    added_fields: ClassVar[frozenset[str]] = frozenset({
        "l1_reduction", "lr_schedule", "plateau_factor", "plateau_patience", "plateau_start_epoch", "plateau_monitor",
        "head", "binarize", "reanalyse", "label_masks", "ranks"})
    PLATEAU_FIELDS: ClassVar[tuple[str, ...]] = (
        "plateau_factor", "plateau_patience", "plateau_start_epoch", "plateau_monitor")

    @model_validator(mode="before")
    @classmethod
    def _no_label_threshold(cls, data: object) -> object:
        if isinstance(data, dict) and "label_threshold" in data:
            raise ValueError("label_threshold was removed: L-MAC trains on the labels the suite's targets decide; "
                             "set targets.threshold (or targets.top_k) instead")
        return data

    @model_validator(mode="after")
    def _plateau_fields_need_the_plateau(self) -> LmacParams:
        if self.lr_schedule != "plateau":
            fields = type(self).model_fields
            moved = [f for f in self.PLATEAU_FIELDS if getattr(self, f) != fields[f].default]
            if moved:
                raise ValueError(f"{', '.join(moved)} {'applies' if len(moved) == 1 else 'apply'} only with "
                                 f"lr_schedule: plateau (lr_schedule is {self.lr_schedule})")
        return self


# ----------------------------------------------------------------------------------------------
# losses


def decided_labels(scores: torch.Tensor, output_kind: str, targets: TargetParams) -> torch.Tensor:
    """What one mask per clip is trained to explain, from the classifier's scores on X [B, C]: ``softmax``
    (and ``similarity``) the decision argmax [B] (long); ``sigmoid`` the labels the suite's targets decide
    [B, C] (float 0/1; a clip may have none): p_c(X) > ``targets.threshold``, or the ``targets.top_k`` most
    probable, the labels the harness explains (``select: decision``; :func:`chosen_targets`)."""
    if output_kind != "sigmoid":
        return scores.argmax(dim=-1)
    decision = targets.model_copy(update={"select": "decision", "classes": None})
    return chosen_targets(scores, output_kind, decision).to(scores.dtype)


def masking_loss(
    model: DomainModel, x: torch.Tensor, mask: torch.Tensor, y_hat: torch.Tensor, p: LmacParams, threshold: float = 0.5,
) -> dict[str, torch.Tensor]:
    """The L-MAC objective's terms per batch (``total`` is what is minimised); x, mask [B, 1, T, F], y_hat [B]
    (softmax: the decision) or [B, C] (sigmoid: the decided labels, :func:`decided_labels`).

    ``l1`` is the sparsity term as it enters ``total``: mean |M| over the batch (``l1_reduction: mean``), or
    that mean x B (``batch_sum``, the recipe's ``(xhat.abs().mean() * reg_w_l1 * ~gate).sum()`` with every
    item un-gated in stage 1). Under ``lr_schedule: plateau`` the terms also hold ``fid_in``, the share of
    items whose masked-in decision is y_hat (the recipe's input fidelity, what its schedule watches); for a
    sigmoid model the share of decided (clip, label) pairs still above ``threshold`` (:func:`sigmoid_terms`).
    """
    logits = model(torch.cat([mask * x, (1 - mask) * x]))
    b = x.shape[0]
    sigmoid = model.classifier.output_kind == "sigmoid"
    if sigmoid:
        l_in, l_out, fid_in = sigmoid_terms(logits[:b], logits[b:], y_hat, p, threshold)
    else:
        l_in = F.cross_entropy(logits[:b], y_hat)
        l_out = F.cross_entropy(logits[b:], y_hat, reduction="none")
        if p.out_cap == "log_classes":  # beyond log C the classifier is confidently wrong, not uninformed
            l_out = l_out.clamp_max(math.log(logits.shape[-1]))
        l_out = l_out.mean()
    l1 = mask.abs().mean() * (b if p.l1_reduction == "batch_sum" else 1)
    tv = (mask.diff(dim=-1).abs().mean() + mask.diff(dim=-2).abs().mean()) if p.lambda_tv else mask.new_zeros(())
    total = p.lambda_in * l_in - p.lambda_out * l_out + p.lambda_l1 * l1 + p.lambda_tv * tv
    terms = {"total": total, "in": l_in, "out": l_out, "l1": l1, "tv": tv}
    if p.lr_schedule == "plateau":
        terms["fid_in"] = fid_in if sigmoid else (logits[:b].argmax(dim=-1) == y_hat).to(x.dtype).mean().detach()
    return terms


def sigmoid_terms(
    logits_in: torch.Tensor, logits_out: torch.Tensor, y: torch.Tensor, p: LmacParams, threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A sigmoid classifier's masking terms (``in``, ``out``) and input fidelity; logits [B, C] on M*X
    and (1-M)*X, y [B, C] the decided labels of X (0/1).

    ``in`` = BCE(f(M*X), y), the mean over the B x C (clip, label) pairs: the loss the classifier trained
    with, its own decisions as labels (the decided labels stay detected, the others stay off), as CE is
    for softmax. ``out`` = the mean over the decided pairs of -log sigmoid(f((1-M)*X)_c) (0 where the batch
    has none): the total subtracts it, pushing each decided label's probability down on the masked-out
    input, as -CE_out does its class's; ``out_cap: log_classes`` caps each pair at log 2, a binary label's
    log C (p_c = 1/2, uninformed, rather than confidently absent). ``fid_in``: the share of decided pairs
    whose masked-in probability is still above ``threshold`` (1 where there are none).
    """
    l_in = F.binary_cross_entropy_with_logits(logits_in, y)
    l_out = F.binary_cross_entropy_with_logits(logits_out, torch.ones_like(logits_out), reduction="none")
    if p.out_cap == "log_classes":
        l_out = l_out.clamp_max(math.log(2))
    pairs = y.sum()
    l_out = (l_out * y).sum() / pairs.clamp_min(1)
    kept = ((logits_in.sigmoid() > threshold).to(y.dtype) * y).sum()
    fid_in = torch.where(pairs > 0, kept / pairs.clamp_min(1), torch.ones_like(pairs)).detach()
    return l_in, l_out, fid_in


def oracle_mask(clean_x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Binarised clean spectrogram: 1 where the clean representation is >= threshold x its per-sample max."""
    peak = clean_x.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return (clean_x >= threshold * peak).to(clean_x.dtype)


def gate_similarity(stage1_mask: torch.Tensor, x: torch.Tensor, clean_x: torch.Tensor) -> torch.Tensor:
    """[B] cos(X, M1 * X_in) per sample, the recipe's ``crosscor`` (``dotp``): 1 for a constant mask on a
    clean input, lower where the mask keeps what the clean clip lacks (noise) or drops what it has."""
    return F.cosine_similarity((stage1_mask * x).flatten(1), clean_x.flatten(1), dim=1)


def cct_gate(similarity: torch.Tensor, cct: float) -> torch.Tensor:
    """[B] bool: the items whose :func:`gate_similarity` reaches the threshold (the recipe's ``>=``)."""
    return similarity >= cct


def guidance_term(mask: torch.Tensor, x: torch.Tensor, clean_x: torch.Tensor, ft: FinetuneParams) -> torch.Tensor:
    """[B] each sample's guidance, a mean over its N = T x F elements (lambda_g means the same on any grid).

    ``regulariser``: mean_ij (M X_in - X)^2 / mean_ij X^2 = ||M * X_in - X||_2^2 / ||X||_2^2, the paper's
    ||M(h) * X - X|| (sec. 2.1, R after eq. 2), which names no norm; the recipe computes the mean square
    (``guidelosstype`` not ``binary``). Over the clip's mean X^2 (a constant per clip) it is also scale-free:
    one lambda_g for |STFT|, log1p|STFT| or log-mel at any level (0 for M * X_in = X, 1 for M = 0 on a
    clean input). ``squared``: mean_ij (M X_in - X)^2 unnormalised, the recipe's non-binary form
    (``train_lmac.py`` ``compute_objectives``: ``((xhat * X_in - X_clean) ** 2).mean((-1, -2))``), in the
    squared units of the domain's grid. ``bce``: mean_ij BCE(M, oracle), the recipe's default
    (``guidelosstype: binary``). mask, x, clean_x: [B, 1, T, F]; returns [B].
    """
    if ft.guidance in ("regulariser", "squared"):
        square = (mask * x - clean_x).pow(2).flatten(1).mean(dim=1)
        if ft.guidance == "squared":
            return square
        energy = clean_x.pow(2).flatten(1).mean(dim=1).clamp_min(torch.finfo(clean_x.dtype).tiny)
        return square / energy
    oracle = oracle_mask(clean_x, ft.oracle_threshold)
    return F.binary_cross_entropy(mask, oracle, reduction="none").flatten(1).mean(dim=1)


def finetune_loss(
    model: DomainModel, x: torch.Tensor, mask: torch.Tensor, y_hat: torch.Tensor, clean_x: torch.Tensor,
    gate: torch.Tensor, p: LmacParams, threshold: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Masking terms, plus lambda_g x the guidance on gated samples and the L1 term (every sample
    for ``regulariser``, the ungated ones for ``bce`` and ``squared``, as the recipe's ``~gate``);
    ``clean_x`` is the clean representation, ``gate`` [B] bool.

    With ``l1_reduction: mean`` the L1 term is sum_{i in L} mean|M_i| / B over the items L it applies to;
    with ``batch_sum`` it is the recipe's mean|M| over the whole batch x |L|.
    """
    ft = p.finetune
    assert ft is not None
    terms = masking_loss(model, x, mask, y_hat, p.model_copy(update={"lambda_l1": 0.0}), threshold)
    g = gate.to(mask.dtype)
    n = max(1, mask.shape[0])
    guidance = (g * guidance_term(mask, x, clean_x, ft)).sum() / n
    applies = torch.ones_like(g) if ft.guidance == "regulariser" else 1 - g  # the items the L1 term weighs
    if p.l1_reduction == "batch_sum":
        sparsity = mask.abs().mean() * applies.sum()
    else:
        sparsity = (applies * mask.abs().flatten(1).mean(dim=1)).sum() / n
    total = terms["total"] + ft.lambda_g * guidance + p.lambda_l1 * sparsity
    return {**terms, "total": total, "guidance": guidance, "l1": sparsity, "gated": g.mean()}


def binary_mask(mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """The paper's binary mask (abstract, sec. 2, eq. 2): 1.0 where the continuous mask [B, 1, T, F] is
    >= ``threshold``, else 0.0, in the mask's dtype and shape. Raises ``ValueError`` for a threshold outside (0, 1)."""
    if not 0 < threshold < 1:
        raise ValueError(f"binarize threshold must lie in (0, 1), not {threshold}")
    return (mask >= threshold).to(mask.dtype)


def similarity_summary(similarity: torch.Tensor, cct: float) -> dict[str, float]:
    """Quantiles ``q0`` ... ``q100`` (:data:`GATE_QUANTILES`) of gate similarities and the share passed."""
    v = similarity.detach().double().cpu()
    return {f"q{q}": round(float(v.quantile(q / 100)), 4) for q in GATE_QUANTILES} | {
        "passed": round(float(cct_gate(v, cct).double().mean()), 4)}
