"""Training-time augmentation of the harness's classifier training (and ``clap_synth``'s): zeroed regions
(SpecAugment-style) and mixtures with other clips of the batch."""

from __future__ import annotations

import torch

from audiobench.data.levels import peak_normalising


def mask_batch(feats: torch.Tensor, max_share: float, gen: torch.Generator, hop: int = 160) -> torch.Tensor:
    """Zero random frames and mel bands of each clip (log-mel [B, 1, T, M]); per clip a share up to ``max_share``.
    Waveforms [B, L] (input kind ``waveform``): zero random segments of ``hop`` samples, the time half of it.

    A classifier trained so sees zeroed regions in training, so masked inputs (what every
    masking metric feeds it) are not out of its domain.
    """
    if feats.dim() == 2:
        b, n = feats.shape
        share = torch.rand(b, 1, generator=gen) * max_share
        keep = torch.rand(b, -(-n // hop), generator=gen) >= share
        return feats * keep.repeat_interleave(hop, dim=1)[:, :n].to(feats.device, feats.dtype)
    b, _, t, m = feats.shape
    share = torch.rand(b, 1, 1, 1, generator=gen) * max_share
    keep = (torch.rand(b, 1, t, 1, generator=gen) >= share) & (torch.rand(b, 1, 1, m, generator=gen) >= share)
    return feats * keep.to(feats.device, feats.dtype)


def mix_batch(
    wave: torch.Tensor, labels: torch.Tensor, prob: float, snr_db: tuple[float, float], gen: torch.Generator
) -> torch.Tensor:
    """Mix a random share ``prob`` of the clips with another clip of the batch of a different class.

    The SNR of each mixture is uniform in ``snr_db``; labels stay those of the first clip. Rows are
    peak-normalised afterwards, like every input the classifier sees.
    """
    n = wave.shape[0]
    partner = torch.randperm(n, generator=gen)
    chosen = (torch.rand(n, generator=gen) < prob) & (labels.cpu()[partner] != labels.cpu())
    snr = snr_db[0] + (snr_db[1] - snr_db[0]) * torch.rand(n, generator=gen)
    return mix_rows(wave, wave[partner.to(wave.device)], snr.to(wave.device), chosen.to(wave.device))


def mix_rows(x: torch.Tensor, other: torch.Tensor, snr_db: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Training-time mixing: ``x + g * other`` [B, L] where ``chosen`` [B] (bool), g per row so that
    10 log10(P_x / P_(g other)) = ``snr_db`` [B]; every row is then peak-normalised (kept at its level inside
    :func:`~audiobench.data.levels.input_level` ``(False)``, for a model that reads recorded levels). In the batch's
    dtype, for speed (evaluation contaminations use the float64 :func:`~audiobench.data.contaminations.mix_at_snr`).
    """
    p_s = x.pow(2).mean(dim=1)
    p_n = other.pow(2).mean(dim=1).clamp_min(1e-20)
    gain = torch.sqrt(p_s / (p_n * 10 ** (snr_db / 10))) * chosen
    mixed = x + gain[:, None] * other
    if not peak_normalising():
        return mixed
    return mixed / mixed.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
