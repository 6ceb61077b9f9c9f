"""Test-only dataset for the report and listening tests: the ``tones`` clips (one tone per clip) under
class names and sample ids that must be escaped wherever they reach HTML or a file name."""

from __future__ import annotations

import math

import torch
from pydantic import Field

from audiobench.contracts.component import Params
from audiobench.contracts.registry import DATASETS
from audiobench.data.base import ClipSet, Dataset

FREQS = (440.0, 1000.0, 2200.0, 4500.0)
NAMES = ["<script>window.pwned = 'class'</script>", "beep & <b>bold</b>", "<img src=x onerror=\"window.pwned='img'\">",
         "hiss <u>tone</u>"]  # every name holds HTML, so whatever the classifier predicts, the test sees some


@DATASETS.register("hostile_tones")
class HostileTones(Dataset):
    """Pure tones at four frequencies (one per clip, with a little noise), named with HTML in them."""

    class Params(Params):
        clips: int = Field(8, ge=4)
        seconds: float = 0.5

    def load(self, split: str, sample_rate: int) -> ClipSet:
        p = self.params
        gen = torch.Generator().manual_seed({"train": 0, "valid": 1, "test": 2}[split])
        n, length = p.clips, int(p.seconds * sample_rate)
        t = torch.arange(length) / sample_rate
        label = torch.arange(n) % len(FREQS)
        tones = torch.stack([torch.sin(2 * math.pi * f * t) for f in FREQS])
        wave = tones[label] * (0.3 + 0.2 * torch.rand(n, 1, generator=gen)) + 0.02 * torch.randn(n, length, generator=gen)
        ids = [f"{split}<img src=x onerror=window.pwned=1>{i:02d}" for i in range(n)]
        return ClipSet(wave.float(), label, ids, list(NAMES), sample_rate)
