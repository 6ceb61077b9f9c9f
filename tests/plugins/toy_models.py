"""Test-only models of the two non-softmax output kinds, and the data they classify.

* ``tones`` (dataset): pure tones at one of four frequencies; ``events: 2`` puts two different
  tones in every clip (multi-hot labels [N, 4]), ``events: 1`` one tone (labels [N]).
* ``band_sigmoid`` (model, ``sigmoid``): one conv block whose channel c averages the log-mel bands
  around tone c; score_c = GAIN * (mean over time of that energy - BIAS). Two events -> two labels.
* ``band_prompts`` (model, ``similarity``): the same block as an audio encoder, e = band energies
  [B, 4]; a "text encoder" maps a prompt to the one-hot vector of the class word it contains;
  score_c = TAU * cos(e, t_c), p = softmax over the prompts.

Small enough that every probability can be recomputed by hand in a test.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from audiobench.contracts.component import Params
from audiobench.contracts.registry import DATASETS, MODELS
from audiobench.data.base import ClipSet, Dataset
from audiobench.kernel.torchaudio_shim import AF
from audiobench.models.base import AudioClassifier, ModelSpec

FREQS = (440.0, 1000.0, 2200.0, 4500.0)
NAMES = ["low hum", "beep", "whistle", "hiss tone"]
GAIN, BIAS, TAU = 4.0, 1.0, 10.0
N_FFT = 1024


@DATASETS.register("tones")
class Tones(Dataset):
    """Pure tones at four frequencies; one or two events per clip."""

    class Params(Params):
        events: int = Field(2, ge=1, le=2)
        clips: int = Field(8, ge=2)
        seconds: float = 0.5

    def load(self, split: str, sample_rate: int) -> ClipSet:
        p = self.params
        gen = torch.Generator().manual_seed({"train": 0, "valid": 1, "test": 2}[split])
        n, length = p.clips, int(p.seconds * sample_rate)
        t = torch.arange(length) / sample_rate
        first = torch.arange(n) % len(FREQS)
        second = (first + 1 + torch.randint(0, len(FREQS) - 1, (n,), generator=gen)) % len(FREQS)
        tones = torch.stack([torch.sin(2 * math.pi * f * t) for f in FREQS])  # [4, L]
        wave = tones[first] + (tones[second] if p.events == 2 else 0)
        wave = 0.45 * wave / wave.abs().amax(dim=1, keepdim=True)
        if p.events == 2:
            labels = torch.zeros(n, len(FREQS))
            labels[torch.arange(n), first] = 1
            labels[torch.arange(n), second] = 1
        else:
            labels = first
        return ClipSet(wave.float(), labels, [f"{split}{i:02d}" for i in range(n)], list(NAMES), sample_rate)


def band_weights(n_mels: int, sample_rate: int) -> torch.Tensor:
    """[4, n_mels]: for tone c, 1/3 on the mel band that peaks at its frequency and its two neighbours."""
    fb = AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, None, "htk")
    w = torch.zeros(len(FREQS), n_mels)
    for c, f in enumerate(FREQS):
        m = int(fb[round(f / sample_rate * N_FFT)].argmax())
        w[c, max(0, m - 1) : m + 2] = 1.0
    return w / w.sum(dim=1, keepdim=True)


class BandEncoder(AudioClassifier):
    """log-mel [B, 1, T, M] -> block1: band energies [B, 4, T, 1] (ReLU) -> scores [B, 4]."""

    def __init__(self, n_mels: int, sample_rate: int):
        super().__init__()
        self.conv = nn.Conv2d(1, len(FREQS), kernel_size=(1, n_mels), bias=False)
        self.conv.weight.data = band_weights(n_mels, sample_rate).view(len(FREQS), 1, 1, n_mels)
        self.relu = nn.ReLU()
        self.block1 = nn.Sequential(self.conv, self.relu)

    def blocks(self) -> list[nn.Module]:
        return [self.block1]

    def block_channels(self) -> list[int]:
        return [len(FREQS)]

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        return [self.block1(inp)]

    def energies(self, last: torch.Tensor) -> torch.Tensor:
        return last.mean(dim=(2, 3))  # [B, 4]


class BandSigmoid(BandEncoder):
    output_kind = "sigmoid"

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return GAIN * (self.energies(last) - BIAS)


class BandPrompts(BandEncoder):
    output_kind = "similarity"

    def text_embedding(self, prompts: list[str]) -> torch.Tensor:
        """[P, 4]: the one-hot vector of the class word each prompt contains."""
        return torch.stack([torch.tensor([float(name in p) for name in NAMES]) for p in prompts])

    def head(self, last: torch.Tensor) -> torch.Tensor:
        text = self.text_embedding(self.prompts or []).to(last.device)
        return TAU * torch.nn.functional.cosine_similarity(self.energies(last).unsqueeze(1), text.unsqueeze(0), dim=2)


@MODELS.register("band_sigmoid")
class BandSigmoidSpec(ModelSpec):
    """Test-only multi-label model: band energies of four tones, one sigmoid per tone."""

    trainable = False
    output_kind = "sigmoid"

    def build(self, class_names: list[str], n_mels: int, sample_rate: int = 16000) -> AudioClassifier:
        model = BandSigmoid(n_mels, sample_rate)
        model.class_names, model.sample_rate = list(class_names), sample_rate
        return model


@MODELS.register("band_prompts")
class BandPromptsSpec(ModelSpec):
    """Test-only zero-shot model: band energies against one-hot 'text' embeddings of class prompts."""

    trainable = False
    output_kind = "similarity"

    class Params(Params):
        template: str = "this is the sound of {}"

    def build(self, class_names: list[str], n_mels: int, sample_rate: int = 16000) -> AudioClassifier:
        model = BandPrompts(n_mels, sample_rate)
        model.class_names, model.sample_rate = list(class_names), sample_rate
        model.prompts = [self.params.template.format(c) for c in class_names]
        return model
