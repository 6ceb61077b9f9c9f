"""PIQ's parameters, vector quantiser and loss terms (Paissan, Subakan & Ravanelli, "Posthoc Interpretation via
Quantization", arXiv 2303.12659; SpeechBrain ``speechbrain/lobes/models/PIQ.py`` and
``recipes/ESC50/interpret/train_piq.py`` with ``hparams/piq.yaml``). The method and its decoder are in
:mod:`audiobench.methods.piq`, which says where this follows the recipe and where it departs.

The quantiser is the recipe's ``VQEmbedding`` with ``activate_class_partitioning: True`` and ``shared_keys: 0``: the
codebook's K keys are split into C contiguous class ranges (key k belongs to class
round(-0.5 + k (C - 0.01) / (K - 1)), the recipe's ``get_irrelevant_regions``), each latent vector takes the nearest
key (squared Euclidean distance) among its clip's class's keys, and the decoder reads it through the straight-through
estimator (the gradient passes to the encoder as if quantisation were the identity; the codebook gets none from it).
The codebook learns from the codebook term alone, VQ-VAE's (van den Oord et al. 2017), not by EMA.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from audiobench.methods.base import ExplainerParams

BCE_EPS = 1e-10  # the recipe's eps in its Bernoulli log-likelihood (train_piq.py compute_objectives)


class PiqParams(ExplainerParams):
    nonneg: Literal["abs", "relu", "none"] = "none"  # the decoder's sigmoid is already a mask in [0, 1]
    normalize: Literal["max", "none"] = "none"  # the continuous mask is used as is, as in the recipe
    codebook_size: int = Field(1024, ge=1, description="codebook keys K, split into one contiguous range per class "
                               "(the recipe's K: 1024); at least the number of classes")
    dim: int = Field(256, ge=1, description="codebook vector size D (the recipe's dim: 256, its classifier's width); a "
                     "block of another width is projected to D by a 1x1 convolution")
    block: int = Field(-1, description="the classifier block the quantiser reads, 1-based (negative: from the deepest; "
                       "-1 = the last, the recipe's embedding_model output)")
    stages: int | None = Field(None, ge=0, le=6, description="the decoder's x2 transposed-convolution stages; none: as "
                               "many as bring the block's time resolution back to the grid's (the recipe: 4, its encoder's "
                               "four stride-2 convolutions)")
    mask_th: float = Field(0.35, gt=0, lt=1, description="reconstruction target: log1p|X| > mask_th x its per-clip max "
                           "(the recipe's mask_th)")
    rec_weight: float = Field(1.0, ge=0, description="weight of the reconstruction term (the recipe's rec_loss_coef)")
    beta: float = Field(1.0, ge=0, description="commitment weight (the recipe's: 1, loss_vq + loss_commit; VQ-VAE's 0.25)")
    lambda_fid: float = Field(0.0, ge=0, description="weight of the fidelity term CE(f(M*X), y_hat); 0 is the recipe's "
                              "(loss_fid = 0 in train_piq.py compute_objectives)")
    epochs: int = Field(200, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(2e-6, ge=0)
    batch_size: int = Field(16, ge=1)
    augment_prob: float = Field(0.0, ge=0, le=1, description="share of training clips drawn from the suite's "
                                "train.augment conditions (the PIQ recipe trains on clean clips: 0)")


def key_classes(codebook_size: int, n_classes: int) -> torch.Tensor:
    """[K] long: the class each codebook key belongs to, the recipe's ``get_irrelevant_regions`` partition
    (``round(linspace(-0.5, C - 0.51, K))``, contiguous ranges of about K / C keys; no shared keys)."""
    return torch.round(torch.linspace(-0.5, n_classes - 0.51, codebook_size)).long()


def nearest_keys(z: torch.Tensor, codebook: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """[N] long: for each row of ``z`` [N, D], the index of the nearest codebook row ([K, D], squared Euclidean
    distance, the first on ties), among the keys ``allowed`` [N, K] (bool) for that row when given."""
    distances = torch.addmm((codebook * codebook).sum(1) + (z * z).sum(1, keepdim=True), z, codebook.t(),
                            alpha=-2.0, beta=1.0)
    if allowed is not None:
        distances = distances.masked_fill(~allowed, torch.inf)
    return distances.argmin(dim=1)


class _StraightThrough(torch.autograd.Function):
    """Forward: the quantised vectors; backward: the gradient goes to the encoder's vectors unchanged."""

    @staticmethod
    def forward(ctx, z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return z_q.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad, None


class ClassQuantiser(nn.Module):
    """A codebook of ``codebook_size`` keys of size ``dim``, partitioned over ``n_classes`` (:func:`key_classes`)."""

    def __init__(self, codebook_size: int, dim: int, n_classes: int):
        super().__init__()
        if codebook_size < n_classes:
            raise ValueError(f"codebook_size {codebook_size} < {n_classes} classes: a class would have no key")
        self.codebook = nn.Embedding(codebook_size, dim)
        self.codebook.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)  # the recipe's VQEmbedding
        self.register_buffer("classes", key_classes(codebook_size, n_classes), persistent=False)

    def forward(self, z_e: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z_e [B, D, t, f], labels [B] (long) -> (z_q through the straight-through estimator, for the decoder;
        z_q with the codebook's gradient, for the codebook term; the key indices [B, t, f])."""
        b, d, t, f = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
        allowed = self.classes[None, :] == labels.repeat_interleave(t * f)[:, None]
        with torch.no_grad():
            idx = nearest_keys(flat.detach(), self.codebook.weight.detach(), allowed)
        z_q = self.codebook(idx).view(b, t, f, d).permute(0, 3, 1, 2)
        return _StraightThrough.apply(z_e, z_q.detach()), z_q, idx.view(b, t, f)


def oracle_mask(log_magnitude: torch.Tensor, mask_th: float) -> torch.Tensor:
    """The recipe's reconstruction target: 1.0 where log1p|X| [B, 1, T, F] > ``mask_th`` x its per-clip max."""
    peak = log_magnitude.flatten(1).amax(dim=1).view(-1, *([1] * (log_magnitude.dim() - 1)))
    return (log_magnitude > peak * mask_th).to(log_magnitude.dtype)


def bernoulli_nll(mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The recipe's reconstruction loss: mean of -t log(M + eps) - (1 - t) log(1 - M + eps), eps = 1e-10."""
    return (-target * torch.log(mask + BCE_EPS) - (1 - target) * torch.log(1 - mask + BCE_EPS)).mean()


def vq_terms(z_e: torch.Tensor, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codebook, commitment): MSE(z_q, sg[z_e]) moves the keys, MSE(z_e, sg[z_q]) the encoder (the recipe's
    ``loss_vq`` and ``loss_commit``, each a mean over every element)."""
    return F.mse_loss(z_q, z_e.detach()), F.mse_loss(z_e, z_q.detach())


def piq_loss(mask: torch.Tensor, oracle: torch.Tensor, z_e: torch.Tensor, z_q: torch.Tensor, p: PiqParams,
             fid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The terms of one batch; ``total`` = rec_weight x rec + codebook + beta x commit (+ lambda_fid x fid, the
    cross-entropy of f(M*X) against y_hat, when given)."""
    rec = bernoulli_nll(mask, oracle)
    codebook, commit = vq_terms(z_e, z_q)
    fid = fid if fid is not None else mask.new_zeros(())
    total = p.rec_weight * rec + codebook + p.beta * commit + p.lambda_fid * fid
    return {"total": total, "rec": rec, "codebook": codebook, "commit": commit, "fid": fid}
