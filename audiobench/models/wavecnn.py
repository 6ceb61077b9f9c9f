"""A raw-waveform classifier: the M-series 1-D CNN of Dai et al. (2017), "Very deep convolutional neural
networks for raw waveforms" (ICASSP; M5: a wide first convolution with stride 4, then 3-wide convolutions,
batch norm, ReLU and max pooling by 4, global average pooling, one linear layer), narrowed for a CPU.

It reads the waveform (input kind ``waveform``): in ``stft2mel`` the harness hands it
ISTFT(M⊙|X| e^{j∠X}), the masked magnitudes with the clip's own phase, so what it scores is what a listener
hears; the ``mel`` domain is refused at ``validate`` (a mel grid has neither the STFT bins nor the phase).
Its blocks are 1-D ([B, C, T', 1]: no frequency axis), so CAM maps and decoders reading them vary over
time only (the run records it).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from audiobench.contracts.component import Params
from audiobench.contracts.registry import MODELS
from audiobench.models.base import AudioClassifier, ModelSpec


class WaveCnn(AudioClassifier):
    """M5-style 1-D CNN: waveform [B, L] -> scores [B, C]; blocks ``conv1``..``conv{depth}`` ([B, C_i, T_i, 1])."""

    input_kind = "waveform"

    def __init__(self, n_classes: int, width: int = 16, depth: int = 4, first_kernel: int = 80) -> None:
        super().__init__()
        layers, channels = [], 1
        for i in range(depth):
            out = width * 2 ** max(i - 1, 0)  # M5: w, w, 2w, 4w
            kernel, stride = (first_kernel, 4) if i == 0 else (3, 1)
            layers.append(nn.Sequential(nn.Conv1d(channels, out, kernel, stride=stride, padding=kernel // 2),
                                        nn.BatchNorm1d(out), nn.ReLU(), nn.MaxPool1d(4, ceil_mode=True)))
            channels = out
        self.convs = nn.ModuleList(layers)
        self.fc = nn.Linear(channels, n_classes)

    def blocks(self) -> list[nn.Module]:
        return list(self.convs)

    def block_names(self) -> list[str]:
        return [f"conv{i + 1}" for i in range(len(self.convs))]

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        """Waveform [B, L] -> every block's output [B, C_i, T_i, 1] (time on the third axis, as 2-D blocks')."""
        h, out = inp.unsqueeze(1), []
        for block in self.convs:
            h = block(h)
            out.append(h.unsqueeze(-1))
        return out

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return self.fc(last.mean(dim=(2, 3)))


@MODELS.register("wavecnn")
class WaveCnnSpec(ModelSpec):
    """Raw-waveform 1-D CNN (M5, Dai et al. 2017), trained by the harness; stft2mel only (it reads the phase)."""

    display_name = "M5 (waveform)"
    input_kind = "waveform"  # as the network it builds

    class Params(Params):
        width: int = Field(16, ge=1, description="channels of the first two blocks (M5: 128)")
        depth: int = Field(4, ge=1, le=6, description="number of 1-D conv blocks (M5: 4)")
        first_kernel: int = Field(80, ge=3, description="samples spanned by the first convolution (stride 4; M5: 80)")

    def build(self, class_names: list[str], n_mels: int, sample_rate: int) -> AudioClassifier:
        p = self.params
        model = WaveCnn(len(class_names), p.width, p.depth, p.first_kernel)
        model.class_names, model.sample_rate = list(class_names), sample_rate
        return model
