"""LMAC-TD's network (Mancini, Paissan, Ravanelli & Subakan, ICASSP 2025, arXiv 2409.08655): a learned 1-D
convolutional encoder of the waveform, a SepFormer mask network on its latents into which a decoding of the
classifier's latents is mixed, and a transposed-convolution decoder back to a waveform.

Read from the public code (``fpaissan/lmac-td-code``, ``interpret/hparams/sepformerlmac_cnn14_classierreps.yaml``;
SpeechBrain PR #2838, ``train_lmactd.py``), whose modules are SpeechBrain's ``lobes/models/dual_path.py``:

* ``Encoder``: Conv1d(1, N, L, stride L/2, no bias) + ReLU (N ``N_encoder_out`` 256, L ``kernel_size`` 16);
  ``Decoder``: ConvTranspose1d(N, 1, L, stride L/2, no bias). Here the waveform is padded by L/2 on each side
  (and to a whole number of strides) and the decoder's output cropped back, so every sample is covered by two
  frames (ours: SpeechBrain's encoder does not pad; without it the first and last L/2 samples are covered once);
* ``Dual_Path_Model`` (``MaskNet``): GroupNorm(1, N) ("ln"), a 1x1 conv to ``out_channels``, chunks of K 250
  with 50 % overlap, ``num_layers`` 2 dual blocks (an intra-chunk ``SBTransformerBlock`` of 8 layers and an
  inter-chunk one of 2, d_model 256, 8 heads, d_ffn 256, dropout 0, sinusoidal positions, pre-norm, each
  followed by GroupNorm(1, N) and a residual, ``skip_around_intra``), PReLU, a 1x1 conv, overlap-add,
  tanh(conv) x sigmoid(conv) gating, a 1x1 conv back to N, sigmoid (``activation_type: sigmoid``); one source;
* ``convt_decoder`` (``CNN14PSI_encoderdecoder``, not in the public files): transposed convolutions from the
  classifier's block outputs to a one-channel map [B, 1, T', N] read as N latent channels and cut to the
  encoder's frame count. Here :class:`LatentDecoder`: L-MAC's U-Net decoder (:class:`LmacDecoder`) to a one-channel
  map, bilinearly resized to (frames, N);
* the mix (``interpret_computation_steps``): mask = MaskNet((1 - alpha) * enc(x) + alpha * convt(h)); the
  explanation is Decoder(enc(x) * mask), the masked-out signal Decoder(enc(x) * (1 - mask)).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from audiobench.methods.lmac import LmacDecoder


class WaveCodec(nn.Module):
    """SpeechBrain's dual-path ``Encoder`` (Conv1d + ReLU) and ``Decoder`` (ConvTranspose1d), stride L/2, no bias."""

    def __init__(self, n_filters: int, kernel_size: int):
        super().__init__()
        if kernel_size < 2 or kernel_size % 2:
            raise ValueError(f"kernel_size must be even and >= 2, not {kernel_size}")
        self.stride = kernel_size // 2
        self.enc = nn.Conv1d(1, n_filters, kernel_size, stride=self.stride, bias=False)
        self.dec = nn.ConvTranspose1d(n_filters, 1, kernel_size, stride=self.stride, bias=False)

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, L] -> latents [B, N, T] >= 0, T = ceil(L / stride) + 1 (padded by L/2 each side, see module)."""
        s = self.stride
        return F.relu(self.enc(F.pad(wave[:, None], (s, s + (-wave.shape[-1]) % s))))

    def decode(self, z: torch.Tensor, length: int) -> torch.Tensor:
        """Latents [B, N, T] -> waveform [B, length] (the padding cropped)."""
        return self.dec(z)[:, 0, self.stride : self.stride + length]

    @torch.no_grad()
    def identity_(self) -> WaveCodec:
        """Weights under which decode(encode(x)) = x (needs N >= 2L): filter k passes sample k, filter L+k its
        negative (ReLU keeps each sign in its own filter), the decoder adds them back at 1/2 (two frames cover
        each sample). Returns self. Raises ``ValueError`` for N < 2L."""
        n, _, k = self.enc.weight.shape
        if n < 2 * k:
            raise ValueError(f"identity needs n_filters >= 2 x kernel_size ({n} < {2 * k})")
        eye = torch.eye(k)
        self.enc.weight.zero_()
        self.dec.weight.zero_()
        self.enc.weight[:k, 0], self.enc.weight[k : 2 * k, 0] = eye, -eye
        self.dec.weight[:k, 0], self.dec.weight[k : 2 * k, 0] = eye / 2, -eye / 2
        return self


def sinusoids(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal positions [length, dim] (Vaswani et al. 2017; SpeechBrain's ``PositionalEncoding``)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe


class TransformerStack(nn.Module):
    """SpeechBrain's ``SBTransformerBlock``: positions added, pre-norm encoder layers (dropout 0, ReLU), a final norm."""

    def __init__(self, dim: int, layers: int, heads: int, ffn: int):
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim, eps=1e-6), enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B, T, D]."""
        return self.layers(x + sinusoids(x.shape[1], x.shape[2], x.device).to(x.dtype))


class DualBlock(nn.Module):
    """One ``Dual_Computation_Block``: intra-chunk then inter-chunk transformer, each normed, with residuals."""

    def __init__(self, dim: int, intra: int, inter: int, heads: int, ffn: int):
        super().__init__()
        self.intra, self.inter = TransformerStack(dim, intra, heads, ffn), TransformerStack(dim, inter, heads, ffn)
        self.intra_norm, self.inter_norm = nn.GroupNorm(1, dim, eps=1e-8), nn.GroupNorm(1, dim, eps=1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, K, S] (chunk length K, S chunks) -> the same."""
        b, d, k, s = x.shape
        intra = self.intra(x.permute(0, 3, 2, 1).reshape(b * s, k, d)).view(b, s, k, d).permute(0, 3, 2, 1)
        intra = self.intra_norm(intra) + x
        inter = self.inter(intra.permute(0, 2, 3, 1).reshape(b * k, s, d)).view(b, k, s, d).permute(0, 3, 1, 2)
        return self.inter_norm(inter) + intra


def segment(x: torch.Tensor, k: int) -> torch.Tensor:
    """[B, D, T] -> chunks [B, D, K, S] of length K at hop K/2, the signal padded by K/2 each side and to a whole
    number of hops (SpeechBrain's ``_Segmentation``, same coverage: each frame in two chunks)."""
    hop = k // 2
    t = x.shape[-1]
    right = hop + (-(t + 2 * hop - k)) % hop
    return F.pad(x, (hop, right)).unfold(-1, k, hop).transpose(2, 3)


def overlap_add(chunks: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`segment` by summing the overlaps (``_over_add``): [B, D, K, S] -> [B, D, length]."""
    b, d, k, s = chunks.shape
    hop = k // 2
    total = (s - 1) * hop + k
    out = F.fold(chunks.reshape(b, d * k, s), output_size=(1, total), kernel_size=(1, k), stride=(1, hop))
    return out[:, :, 0, hop : hop + length]


class DualPathMaskNet(nn.Module):
    """SpeechBrain's ``Dual_Path_Model`` for one source: latents [B, N, T] -> a mask [B, N, T] in (0, 1)."""

    def __init__(self, n_filters: int, channels: int, chunk: int, layers: int, intra: int, inter: int, heads: int,
                 ffn: int):
        super().__init__()
        if chunk < 2 or chunk % 2:
            raise ValueError(f"chunk must be even and >= 2, not {chunk}")
        self.chunk = chunk
        self.norm = nn.GroupNorm(1, n_filters, eps=1e-8)
        self.conv_in = nn.Conv1d(n_filters, channels, 1, bias=False)
        self.blocks = nn.ModuleList(DualBlock(channels, intra, inter, heads, ffn) for _ in range(layers))
        self.prelu = nn.PReLU()
        self.conv2d = nn.Conv2d(channels, channels, 1)
        self.out, self.gate = nn.Conv1d(channels, channels, 1), nn.Conv1d(channels, channels, 1)
        self.conv_out = nn.Conv1d(channels, n_filters, 1, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = z.shape[-1]
        h = segment(self.conv_in(self.norm(z)), self.chunk)
        for block in self.blocks:
            h = block(h)
        h = overlap_add(self.conv2d(self.prelu(h)), t)
        h = torch.tanh(self.out(h)) * torch.sigmoid(self.gate(h))
        return torch.sigmoid(self.conv_out(h))


class LatentDecoder(LmacDecoder):
    """The classifier's block outputs (deepest first) -> [B, N, T] on the encoder's latent grid (module docstring)."""

    def __init__(self, channels: list[int], hidden: int):
        super().__init__(channels, hidden)

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int], to_domain=None) -> torch.Tensor:  # type: ignore[override]
        """``size`` = (frames T, latent channels N); no sigmoid (the recipe's ``apply_sigmoid: False``)."""
        h = self.proj[0](feats[0])
        for i, skip in enumerate(feats[1:], start=1):
            h = self._upsample(self.up[i - 1], h, tuple(skip.shape[-2:]))
            h = self.refine[i - 1](h + self.proj[i](skip))
        return F.interpolate(self.head(h), size=size, mode="bilinear", align_corners=False)[:, 0].transpose(1, 2)


class LmacTdNet(nn.Module):
    """Waveform [B, L] and classifier block outputs -> (explanation [B, L], masked-out signal [B, L], mask [B, N, T])."""

    def __init__(self, block_channels: list[int], n_filters: int = 256, kernel_size: int = 16, channels: int = 256,
                 chunk: int = 250, layers: int = 2, intra_layers: int = 8, inter_layers: int = 2, heads: int = 8,
                 ffn: int = 256, hidden: int = 32, alpha: float = 0.75):
        super().__init__()
        self.alpha = alpha
        self.codec = WaveCodec(n_filters, kernel_size)
        self.masknet = DualPathMaskNet(n_filters, channels, chunk, layers, intra_layers, inter_layers, heads, ffn)
        self.latent = LatentDecoder(block_channels, hidden)

    def forward(self, wave: torch.Tensor, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.codec.encode(wave)
        c = self.latent(feats, (z.shape[-1], z.shape[1]))
        mask = self.masknet((1 - self.alpha) * z + self.alpha * c)
        n = wave.shape[-1]
        return self.codec.decode(z * mask, n), self.codec.decode(z * (1 - mask), n), mask
