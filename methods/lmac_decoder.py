"""L-MAC's decoder (deepest classifier block first, each shallower one added after upsampling, a sigmoid mask)
and the stacked clip versions its training gathers from (:mod:`audiobench.methods.lmac`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from audiobench.data.base import ClipSet
from audiobench.data.contaminations import with_augmentation
from audiobench.kernel.fitting import TermMeans
from audiobench.methods.base import DomainModel, draw_versions


def grid_map(model: DomainModel) -> torch.Tensor:
    """The domain's fixed spreading of a (time, mel) map onto its grid, as a matrix [n_mels, F]: where a
    learned head (``head: linear``) starts (the filterbank spreading on ``stft2mel``, the identity on ``mel``)."""
    eye = torch.eye(model.frontend.params.n_mels, device=model.frontend.mel_fb.device)
    return model.domain.from_mel_grid(model.frontend, eye).detach().cpu().float()


class LmacDecoder(nn.Module):
    """Deepest block first; each shallower block added after upsampling; sigmoid mask at the end.

    ``grid_map`` [n_mels, F] (``head: linear``): a learned per-frame ``Linear(n_mels, F)`` initialised to
    this map (weight = its transpose, bias 0) replaces the caller's fixed ``to_domain`` spreading. ``out``: the
    mask channels (L-MAC's rank channels on a sigmoid model, ``label_masks: ranked``); only the last layer of
    the head depends on it, and ``out`` = 1 builds (and draws the initial weights of) the one-mask decoder.
    """

    def __init__(self, channels: list[int | None], hidden: int, grid_map: torch.Tensor | None = None, out: int = 1):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, hidden, 1) if c else nn.LazyConv2d(hidden, 1) for c in channels)
        self.up = nn.ModuleList(nn.ConvTranspose2d(hidden, hidden, 2, stride=2) for _ in channels[1:])
        self.refine = nn.ModuleList(
            nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU())
            for _ in channels[1:]
        )
        # wide layers stay at the shallowest block's resolution; one logit map reaches the full grid
        self.head = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, out, 1))
        self.grid: nn.Linear | None = None
        if grid_map is not None:
            self.grid = nn.Linear(*grid_map.shape)
            with torch.no_grad():
                self.grid.weight.copy_(grid_map.T)
                self.grid.bias.zero_()

    @staticmethod
    def _upsample(up: nn.Module, h: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if size[0] > h.shape[-2] or size[1] > h.shape[-1]:
            h = up(h)
        if tuple(h.shape[-2:]) != tuple(size):
            h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        return h

    def forward(self, feats: list[torch.Tensor], mel_size: tuple[int, int], to_domain) -> torch.Tensor:
        """``feats`` deepest first; ``to_domain`` maps the mel grid [..., n_mels] to the domain's grid
        (the learned ``grid`` layer does instead, when the decoder has one). Returns [B, out, T, F] in (0, 1)."""
        h = self.proj[0](feats[0])
        for i, skip in enumerate(feats[1:], start=1):
            h = self._upsample(self.up[i - 1], h, tuple(skip.shape[-2:]))
            h = self.refine[i - 1](h + self.proj[i](skip))
        logits = F.interpolate(self.head(h), size=mel_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.grid(logits) if self.grid is not None else to_domain(logits))


class _Versions:
    """Versions of one clip set (clean first, then each contamination) stacked for batched gathers."""

    def __init__(self, versions: list[ClipSet]):
        self.n = len(versions)
        self.waves = torch.stack([v.waveforms for v in versions])  # [S, N, L]
        self.clean = torch.stack([v.uncontaminated for v in versions])



def stacked_versions(clips: ClipSet, augment: list, augment_prob: float, seed: int) -> torch.Tensor:
    """[S, N, L]: the clean ``clips`` (at the input level), then each ``augment`` condition applied to them when
    ``augment_prob`` > 0 (:func:`~audiobench.data.contaminations.with_augmentation`): what PIQ's and LMAC-TD's
    training batches gather from (:func:`~audiobench.methods.base.draw_versions` picks a version per clip)."""
    return torch.stack([v.waveforms for v in with_augmentation(clips, augment if augment_prob > 0 else [], seed)])


def versioned_epoch(versions: torch.Tensor, batch_size: int, augment_prob: float, gen: torch.Generator,
                    opt: torch.optim.Optimizer, terms_of: Callable[[torch.Tensor], dict[str, torch.Tensor]]) -> dict[str, float]:
    """One training epoch over stacked clip versions [S, N, L] (:func:`stacked_versions`): the clips in an order
    drawn from ``gen``, in batches of ``batch_size``, each clip read in the version
    :func:`~audiobench.methods.base.draw_versions` draws (two draws from ``gen`` per batch, after the order), an
    optimiser step on ``terms_of(waves)["total"]``. Returns the epoch's means of the terms, prefixed ``train_``
    (a ``keys`` entry, PIQ's codebook indices, is not a term)."""
    means = TermMeans()
    n = versions.shape[1]
    order = torch.randperm(n, generator=gen)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        which = draw_versions(len(idx), versions.shape[0], augment_prob, gen)
        terms = terms_of(versions[which, idx])
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        means.add({k: v for k, v in terms.items() if k != "keys"}, len(idx))
    return means.means("train_")
