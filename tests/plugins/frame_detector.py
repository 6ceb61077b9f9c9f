"""A detector of the kind people bring (a small voice/event detector): it reads the linear STFT
magnitude, runs 1-D blocks along time (each frame's whole spectrum is one input vector), scores every
frame and pools the frames. Written against the documented model contract only.

* ``beeps`` (dataset): 0.5 s of noise, half of the clips with a 0.2 s tone burst at 1 kHz somewhere in
  them; classes (absent, present).
* ``frame_detector`` (model): input kind ``linear``; block1 Conv2d over (3 frames x every bin) ->
  [B, C, T, 1], block2 Conv2d (3 frames x 1) -> [B, C, T, 1]; one logit per frame, pooled by
  log-mean-exp; a detector (two classes [-s/2, s/2]). Its front end (n_fft 256) is declared, not repeated.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import nn

from audiobench.contracts.component import Params
from audiobench.contracts.registry import DATASETS, MODELS
from audiobench.data.base import ClipSet, Dataset
from audiobench.models.base import AudioClassifier, ModelSpec


@DATASETS.register("beeps")
class Beeps(Dataset):
    """Noise with or without a 1 kHz tone burst (classes absent, present)."""

    class Params(Params):
        clips: int = Field(32, ge=4)
        seconds: float = 0.5

    def load(self, split: str, sample_rate: int) -> ClipSet:
        p = self.params
        gen = torch.Generator().manual_seed({"train": 0, "valid": 1, "test": 2}[split])
        n, length = p.clips, int(p.seconds * sample_rate)
        labels = torch.arange(n) % 2
        wave = 0.05 * torch.randn(n, length, generator=gen)
        burst = int(0.2 * sample_rate)
        t = torch.arange(burst) / sample_rate
        tone = 0.4 * torch.sin(2 * math.pi * 1000.0 * t) * torch.hann_window(burst, periodic=False)
        starts = torch.randint(0, length - burst, (n,), generator=gen)
        for i in torch.nonzero(labels).flatten().tolist():  # data generation, not a hot path
            wave[i, starts[i] : starts[i] + burst] += tone
        return ClipSet(wave, labels, [f"{split}{i:02d}" for i in range(n)], ["absent", "present"], sample_rate)


class FrameDetector(AudioClassifier):
    input_kind = "linear"
    frame_pooling = "logmeanexp"
    detector = True

    def __init__(self, bins: int, channels: int = 8):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, channels, (3, bins), padding=(1, 0)), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(channels, channels, (3, 1), padding=(1, 0)), nn.ReLU())
        self.frame_logit = nn.Linear(channels, 1)

    def blocks(self) -> list[nn.Module]:
        return [self.block1, self.block2]

    def block_channels(self) -> list[int]:
        return [self.block1[0].out_channels, self.block2[0].out_channels]

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        h1 = self.block1(torch.log1p(inp))  # |X| [B, 1, T, bins] -> [B, C, T, 1]
        return [h1, self.block2(h1)]

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return self.frame_logit(last[..., 0].transpose(1, 2))  # [B, T, 1]: a logit per frame


@MODELS.register("frame_detector")
class FrameDetectorSpec(ModelSpec):
    """Test-only detector on the linear STFT magnitude: 1-D blocks, per-frame logits pooled by log-mean-exp."""

    input_kind, detector, frame_pooling = "linear", True, "logmeanexp"  # as the network it builds

    class Params(Params):
        n_fft: int = Field(256, description="its STFT size: the bins its first block spans")

    def required_frontend(self) -> dict[str, Any]:
        return {"n_fft": self.params.n_fft, "win_length": self.params.n_fft}

    def build(self, class_names: list[str], n_mels: int, sample_rate: int) -> AudioClassifier:
        model = FrameDetector(self.params.n_fft // 2 + 1)
        model.class_names, model.sample_rate = list(class_names), sample_rate
        return model
