"""Transformer-specific explanations from attention: attention rollout and gradient-weighted attention relevancy.

Both read a model's attention probabilities (:meth:`AudioClassifier.attention_maps`: per layer [B, H, N, N],
N tokens, the first ``special`` of them CLS-like, then the patches), follow the classification token's row
over the patches, and put the patch values on the patch grid (:meth:`AudioClassifier.patch_map`, time first)
before bringing them to the domain's grid as GradCAM does (bilinear to the classifier's (T, n_mels) input
grid, then, in ``stft2mel``, spread onto the linear bins by the mel filterbank). Only models with attention
(``has_attention``: ``hf_audio``'s AST) have them; ``validate`` refuses these rows for others.

* ``attention_rollout`` (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020, sec. 3):
  per layer the heads are fused (mean, the paper's; or max / min), the residual connection is added as the
  identity and rows re-normalised, Â_l = (A_l + I) / rowsum, and the layers multiplied, R = Â_L ... Â_1;
  the map is R's row of the CLS token over the patch tokens. It does not depend on the class explained.
* ``attention_relevancy`` (Chefer, Gur & Wolf, "Transformer Interpretability Beyond Attention Visualization"
  CVPR 2021 and "Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
  Transformers", ICCV 2021, eq. 5-6, self-attention rules): R = I; for each layer, shallowest first,
  Ā = E_h[(∇A ⊙ A)^+] with ∇A = ∂s_t/∂A the gradient of the target's score, and R ← R + Ā R; the map is R's
  CLS row over the patches. Its use on AST (GATR, "Gradient-weighted attention relevancy" for audio
  transformers, ICASSP 2025) is this rule on the spectrogram patches.

``token`` chooses the row read: ``cls`` (the first token, the papers'), or ``special``: the mean of the rows
of every special token (AST pools its CLS and distillation tokens, so ``special`` follows what its head reads).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch.nn import functional as F

from audiobench.contracts.registry import METHODS
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import ExplainContext, Explainer, ExplainerParams


def fuse_heads(attention: torch.Tensor, fusion: str = "mean") -> torch.Tensor:
    """Attention [B, H, N, N] -> one matrix per row [B, N, N]: the heads' ``mean`` (Abnar & Zuidema's), ``max`` or ``min``."""
    if fusion == "mean":
        return attention.mean(dim=1)
    if fusion == "max":
        return attention.amax(dim=1)
    if fusion == "min":
        return attention.amin(dim=1)
    raise ValueError(f"unknown head fusion {fusion!r}; expected mean, max or min")


def rollout(attentions: list[torch.Tensor], fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020, sec. 3): per layer Â = (fuse(A) + I) / rowsum, then
    R = Â_L ... Â_1 (shallowest layer applied first). ``attentions``: per layer [B, H, N, N]; returns R [B, N, N],
    whose rows sum to 1."""
    out: torch.Tensor | None = None
    for a in attentions:
        fused = fuse_heads(a, fusion)
        eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        aug = fused + eye
        aug = aug / aug.sum(dim=-1, keepdim=True)
        out = aug if out is None else aug @ out
    if out is None:
        raise AudiobenchError("attention rollout needs at least one attention layer")
    return out


def relevancy(attentions: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """Gradient-weighted attention relevancy (Chefer, Gur & Wolf 2021, self-attention rules): R = I; per layer,
    shallowest first, Ā = mean_h((∇A ⊙ A)^+), R ← R + Ā R. ``attentions`` and ``grads`` (∂s_t/∂A): per layer
    [B, H, N, N]; returns R [B, N, N]."""
    if not attentions:
        raise AudiobenchError("attention relevancy needs at least one attention layer")
    n = attentions[0].shape[-1]
    r = torch.eye(n, dtype=attentions[0].dtype, device=attentions[0].device).expand(attentions[0].shape[0], n, n)
    for a, g in zip(attentions, grads, strict=True):
        cam = (g * a).clamp_min(0).mean(dim=1)
        r = r + cam @ r
    return r


def token_row(r: torch.Tensor, special: int, token: str = "cls") -> torch.Tensor:
    """R [B, N, N] -> the row of the CLS token (``cls``) or the mean row of the ``special`` first tokens
    (``special``), over the patch tokens: [B, N - special]."""
    rows = r[:, :1] if token == "cls" else r[:, :special]
    return rows.mean(dim=1)[:, special:]


class AttentionParams(ExplainerParams):
    nonneg: Literal["abs", "relu", "none"] = "relu"
    token: Literal["cls", "special"] = Field(
        "cls", description="the row read: cls (the first token, the papers'), or special: the mean row of the special "
        "tokens (AST's CLS and distillation tokens, which its head pools)")


class _AttentionMap(Explainer):
    """What both attention methods share: the model's attention, a token row, the map on the domain's grid."""

    Params = AttentionParams
    signed_maps = False
    needs_attention: ClassVar[bool] = True  # validate refuses the row for a model without has_attention

    def token_values(self, inp: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """Network input [B, ...] -> a value per patch token [B, N - special] (token order)."""
        raise NotImplementedError

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """Patch values on the patch grid [B, 1, T', F'], bilinear to (T, n_mels), then onto the domain's grid."""
        clf = ctx.classifier
        if not clf.has_attention:
            raise AudiobenchError(f"{self.name} explains transformers (models with attention); "
                                  f"{type(clf).__name__} has none")
        inp = ctx.model.network_input(x)
        grid = clf.patch_map(self.token_values(inp, target, ctx), inp.shape[2])
        up = F.interpolate(grid, size=(x.shape[2], ctx.frontend.params.n_mels), mode="bilinear", align_corners=False)
        return ctx.domain.from_mel_grid(ctx.frontend, up)


@METHODS.register("attention_rollout")
class AttentionRollout(_AttentionMap):
    """Attention rollout (Abnar & Zuidema 2020): the product of head-averaged attention plus identity, CLS row."""

    display_name = "Attention rollout"
    needs_gradients = False

    class Params(AttentionParams):
        head_fusion: Literal["mean", "max", "min"] = Field(
            "mean", description="how a layer's heads become one matrix: mean (the paper's), max or min")

    def token_values(self, inp: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        with torch.no_grad():
            _, maps = ctx.classifier.attention_maps(inp)
        special = ctx.classifier.token_grid(inp.shape[2])[0]
        return token_row(rollout(maps, self.params.head_fusion), special, self.params.token)


@METHODS.register("attention_relevancy")
class AttentionRelevancy(_AttentionMap):
    """Gradient-weighted attention relevancy (Chefer, Gur & Wolf 2021; GATR for audio, ICASSP 2025)."""

    display_name = "Attention relevancy"

    def token_values(self, inp: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        with torch.enable_grad():
            # the input carries the graph: a frozen classifier (requires_grad False) has no other
            scores, maps = ctx.classifier.attention_maps(inp.detach().requires_grad_(True))
            score = scores.gather(1, target.view(-1, 1)).sum()  # rows are independent: each row's own gradient
            grads = torch.autograd.grad(score, maps)
        special = ctx.classifier.token_grid(inp.shape[2])[0]
        return token_row(relevancy([a.detach() for a in maps], list(grads)), special, self.params.token)
