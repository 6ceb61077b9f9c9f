"""``esc10_talker``: ESC-10 scenes at 16 kHz, a synthetic talker (``audiobench.data.speech_synth``) mixed into
every other clip at ``snr_db``; classes (no speech, speech). The talker is the ground truth (``targets``), so
``gt_mass`` / ``gt_auc`` say whether a speech detector's explanation points at the speech or at the scene
(clips without a talker have no ground truth: those metrics are recorded as undefined there)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from audiobench.api import DATASETS, ClipSet, Dataset, Params
from audiobench.data.contaminations import sample_rng
from audiobench.data.esc10 import ESC10
from audiobench.data.speech_synth import talker


@DATASETS.register("esc10_talker")
class Esc10Talker(Dataset):
    """ESC-10 scenes, half of them with a synthetic talker at snr_db (speech detection; the talker is the truth)."""

    class Params(Params):
        root: Path = Field(..., description="the ESC-10 folder (class folders '001 - Dog bark' ...)")
        snr_db: float = Field(0.0, description="talker-to-scene power ratio of the clips with speech, dB")
        seed: int = Field(0, ge=0, description="the talkers' seed")

    def check(self) -> list[str]:
        return ESC10({"root": self.params.root}).check()

    def load(self, split: str, sample_rate: int) -> ClipSet:
        scenes = ESC10({"root": self.params.root}).load(split, sample_rate)
        n, length = scenes.waveforms.shape
        speech = torch.arange(n) % 2 == 1
        voices = np.stack([talker(sample_rng(self.params.seed, "talker", sid), length, sample_rate) if s else np.zeros(length)
                           for sid, s in zip(scenes.sample_ids, speech.tolist(), strict=True)])
        voice = torch.tensor(voices, dtype=torch.float32)
        p_scene = scenes.waveforms.pow(2).mean(dim=1, keepdim=True)
        p_voice = voice.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-20)
        target = voice * torch.sqrt(p_scene / (p_voice * 10 ** (self.params.snr_db / 10))) * speech[:, None]
        return ClipSet(scenes.waveforms + target, speech.long(), scenes.sample_ids, ["no speech", "speech"],
                       sample_rate, targets=target, skips=list(scenes.skips))
