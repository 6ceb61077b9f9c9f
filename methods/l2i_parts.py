"""L2I's interpreter networks and training loss (Parekh et al., journal sec. III-B and III-D): Psi (block
outputs -> time activations H), Theta (H pooled over time -> class logits) and :func:`l2i_loss`. The
method itself, its dictionary and its interpretation are in :mod:`audiobench.methods.l2i`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

POOLINGS = ("attention", "max")
OUTPUT_KINDS = ("softmax", "sigmoid")


class Psi(nn.Module):
    """Block outputs [B, C_i, T_i, F_i] -> activations H [B, K, T] >= 0 (``psi: conv1d``, the default).

    Frequency is folded into channels (each block becomes a [C_i * F_i, T_i] sequence) and projected
    to ``channels`` by a learnt linear map per block (the paper's "decrease resolution on the
    frequency axis", in one step); the blocks are resampled to the finest of their frame rates,
    mixed by a 1-D convolution over time, interpolated to the T frames of the domain and refined by
    two more 1-D convolutions to K non-negative activations (ReLU). Working in 1-D over time keeps
    the interpreter cheap next to the classifier. This is a departure from the journal (sec. III-D),
    whose Psi is 2-D: :class:`Psi2d` (``psi: conv2d``).
    """

    def __init__(self, in_dims: list[tuple[int, int]], k: int, channels: int):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv1d(c * f, channels, 1) for c, f in in_dims)
        self.mix = nn.Sequential(
            nn.Conv1d(channels * len(in_dims), channels, 3, padding=1), nn.BatchNorm1d(channels), nn.ReLU()
        )
        self.out = nn.Sequential(nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv1d(channels, k, 1))

    def forward(self, feats: list[torch.Tensor], n_frames: int) -> torch.Tensor:
        steps = max(f.shape[2] for f in feats)
        xs = []
        for proj, f in zip(self.proj, feats, strict=True):
            h = proj(f.permute(0, 1, 3, 2).flatten(1, 2))  # [B, C*F, T_i] -> [B, channels, T_i]
            xs.append(h if h.shape[2] == steps else F.interpolate(h, size=steps, mode="linear", align_corners=False))
        h = self.mix(torch.cat(xs, dim=1))
        h = F.interpolate(h, size=n_frames, mode="linear", align_corners=False)
        return F.relu(self.out(h))


class Psi2d(nn.Module):
    """Block outputs [B, C_i, T_i, F_i] -> activations H [B, K, T] >= 0 by 2-D convolutions (``psi: conv2d``).

    The L2I journal, sec. III-D: the block maps are "first appropriately transformed to ensure same width
    and height dimensions", then processed by "convolutional (with ReLU activation) and resampling
    layers" that "continuously decrease resolution on the frequency axis and increase resolution [on] the
    time axis to T frames"; the output's feature-map axis is the K components. Here: each block is
    projected to ``channels`` by a 1x1 convolution and resampled (bilinear) to the finest time steps
    T_s and frequency bins F_s of the blocks; a 3x3 convolution mixes them; then ``stages`` stages each
    resample time up (a geometric schedule from T_s to T, the last stage landing on T exactly) and apply
    a 3x3 convolution of frequency stride 2 (stride 1 once frequency is 1) + batch norm + ReLU; a 1x1
    convolution maps the channels to K, the frequency left (1 bin when ``stages`` >= log2 F_s) is
    averaged, and a ReLU makes H >= 0.

    The recipe's ``CNN14PSI_stft_2d`` (SpeechBrain ``lobes/models/Cnn14.py``) is 2-D too, with transposed
    convolutions whose kernels and strides are fixed for CNN14's four last blocks on its 16 kHz / 80-mel
    input (and it averages frequency at the end rather than reducing it); this module is the paper's
    description for any block choice and grid, not a copy of those layers.

    ``in_dims``: (C_i, F_i) of each block; ``stages``: the number of resampling stages (at least 1).
    """

    def __init__(self, in_dims: list[tuple[int, int]], k: int, channels: int, stages: int):
        super().__init__()
        if stages < 1:
            raise ValueError(f"Psi2d needs at least one stage, not {stages}")
        self.proj = nn.ModuleList(nn.Conv2d(c, channels, 1) for c, _ in in_dims)
        self.mix = nn.Sequential(
            nn.Conv2d(channels * len(in_dims), channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()
        )
        f = max(f for _, f in in_dims)
        layers = []
        for _ in range(stages):
            layers.append(nn.Sequential(nn.Conv2d(channels, channels, 3, stride=(1, 2 if f > 1 else 1), padding=1),
                                        nn.BatchNorm2d(channels), nn.ReLU()))
            f = (f + 1) // 2
        self.stages = nn.ModuleList(layers)
        self.out = nn.Conv2d(channels, k, 1)

    @staticmethod
    def schedule(steps: int, n_frames: int, stages: int) -> list[int]:
        """Time steps after each stage: geometric from ``steps`` to ``n_frames`` (the last is ``n_frames``)."""
        ratio = n_frames / steps
        return [max(1, round(steps * ratio ** ((j + 1) / stages))) for j in range(stages - 1)] + [n_frames]

    def forward(self, feats: list[torch.Tensor], n_frames: int) -> torch.Tensor:
        steps = max(f.shape[2] for f in feats)
        bins = max(f.shape[3] for f in feats)
        xs = []
        for proj, f in zip(self.proj, feats, strict=True):
            h = proj(f)  # [B, channels, T_i, F_i]
            xs.append(h if h.shape[2:] == (steps, bins) else
                      F.interpolate(h, size=(steps, bins), mode="bilinear", align_corners=False))
        h = self.mix(torch.cat(xs, dim=1))  # [B, channels, T_s, F_s]
        for stage, t in zip(self.stages, self.schedule(steps, n_frames, len(self.stages)), strict=True):
            h = stage(F.interpolate(h, size=(t, h.shape[3]), mode="bilinear", align_corners=False))
        return F.relu(self.out(h).mean(dim=3))  # [B, K, T]


def psi2d_stages(steps: int, bins: int, n_frames: int) -> int:
    """Stages of :class:`Psi2d` for blocks of ``steps`` time steps and ``bins`` frequency bins (the finest)
    under ``n_frames`` frames: enough to bring frequency to 1 bin (ceil log2 F_s halvings) and to double
    time about as often as the classifier halved it (round log2 (T / T_s)), at least 1."""
    halvings = math.ceil(math.log2(bins)) if bins > 1 else 0
    doublings = round(math.log2(n_frames / steps)) if n_frames > steps else 0
    return max(1, halvings, doublings)


class Theta(nn.Module):
    """H [B, K, T] -> class logits: pooling over time to z [B, K], then a linear layer without bias, so
    logit_c = sum_k z_k theta[c, k] exactly (the journal's "Design of Theta").

    ``pooling``: ``attention`` (the journal's L2I w/ ATT, the default), z = H a with a = softmax over
    frames of a learnt score; ``max`` (the journal's L2I w/ MAX, sec. IV: "attention is replaced with 1D
    max-pooling"), z_k = max_t H[k, t], with no score layer. Raises ``ValueError`` for another pooling.
    """

    def __init__(self, k: int, n_classes: int, pooling: str = "attention"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be {' or '.join(POOLINGS)}, not {pooling!r}")
        self.pooling = pooling
        if pooling == "attention":  # created first, as before max pooling existed: the same seeded weights
            self.score = nn.Linear(k, 1)
        self.fc = nn.Linear(k, n_classes, bias=False)

    def pool(self, H: torch.Tensor) -> torch.Tensor:
        """attention: z = H a, a = softmax_t(score(H[:, :, t])); max: z_k = max_t H[k, t]. [B, K]."""
        if self.pooling == "max":
            return H.amax(dim=2)
        a = self.score(H.transpose(1, 2)).squeeze(2).softmax(dim=1)  # [B, T]
        return (H * a.unsqueeze(1)).sum(dim=2)

    def forward(self, H: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(H))


def reconstruct(W: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """W [F, K], H [B, K, T] -> W H laid out as the domain's grid [B, T, F]."""
    return torch.einsum("fk,bkt->btf", W, H)


def l2i_loss(
    W: torch.Tensor,
    H: torch.Tensor,
    x: torch.Tensor,
    logits: torch.Tensor,
    probs: torch.Tensor,
    alpha: float,
    beta: float,
    reduction: str = "ours",
    output_kind: str = "softmax",
) -> dict[str, torch.Tensor]:
    """The interpreter's loss and its terms (the total is ``loss``; ``recon``, ``l1``, ``fid_ce`` unweighted).

    ``W`` [F, K] dictionary, ``H`` [B, K, T] activations, ``x`` [B, T, F] the factorised representation
    (log-magnitude), ``logits`` [B, C] Theta's output, ``probs`` [B, C] the classifier's probabilities
    (``output_kind``: softmax over the classes, or one sigmoid per label). With e = W H - X, the per-clip
    fidelity CE_b (``fid_ce``) is, for a ``softmax`` classifier, the journal's eq. 1 with soft labels,
    CE_b = -sum_c probs[b, c] log softmax(logits)[b, c]; for a ``sigmoid`` one, eq. 2, the binary
    cross-entropy per class against the classifier's sigmoid outputs (soft targets), summed over classes,
    CE_b = -sum_c [probs[b, c] log sigmoid(logits)[b, c] + (1 - probs[b, c]) log(1 - sigmoid(logits)[b, c])].
    Every class enters (the classifier's output is known for every label, masked or not in the data).

    * ``ours``: recon = mean e^2 (over B x T x F), l1 = mean |H| (over B x K x T), fid = mean_b CE_b;
    * ``recipe``: recon and l1 as ours, fid = mean over B x C of the per-class terms = mean_b CE_b / C
      (SpeechBrain ``recipes/ESC50/interpret/train_l2i.py``, ``compute_objectives``; for ``sigmoid`` the
      mean BCE, :func:`audiobench.metrics.multilabel.masked_bce`, as the authors' ``loss_cce_v3``);
    * ``paper``: recon = mean_b sum_{t,f} e^2, l1 = mean_b sum_{k,t} |H|, fid = mean_b CE_b: the L2I journal's
      eq. 4, L_FID + alpha ||X - WH||_2^2 + beta ||H||_1 (eqs. 1 or 2, and 3), per clip, averaged over the batch.

    loss = alpha * recon + beta * l1 + fid. Raises ``ValueError`` for another ``reduction`` or ``output_kind``.
    """
    if reduction not in ("ours", "recipe", "paper"):
        raise ValueError(f"loss_reduction must be ours, recipe or paper, not {reduction!r}")
    if output_kind not in OUTPUT_KINDS:
        raise ValueError(f"L2I's fidelity term needs a softmax or sigmoid classifier, not {output_kind!r}")
    if output_kind == "sigmoid":  # eq. 2, per class, summed over classes: [B]
        ce = F.binary_cross_entropy_with_logits(logits, probs, reduction="none").sum(dim=1)
    else:  # eq. 1 (the operations of the softmax path are those before sigmoid existed: bit for bit)
        ce = -(probs * logits.log_softmax(dim=1)).sum(dim=1)  # [B]
    if reduction == "paper":
        recon = (reconstruct(W, H) - x).square().sum(dim=(1, 2)).mean()
        l1, fid = H.abs().sum(dim=(1, 2)).mean(), ce.mean()
    else:  # the same operations as before the parameter existed (ours: bit for bit)
        recon, l1 = F.mse_loss(reconstruct(W, H), x), H.abs().mean()
        fid = ce.mean() / probs.shape[1] if reduction == "recipe" else ce.mean()
    return {"loss": alpha * recon + beta * l1 + fid, "recon": recon, "l1": l1, "fid_ce": fid}
