from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from audiobench.api import MODELS, AudioClassifier, ModelSpec, Params


class TinyCnn(AudioClassifier):  # reads the log1p-mel [B, 1, T, n_mels] (input_kind "logmel", the default)
    def __init__(self, n_classes: int):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(32, n_classes)

    def blocks(self) -> list[nn.Module]:  # what CAM methods hook and L-MAC's decoder reads, shallowest first
        return [self.block1, self.block2]

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:  # every block's output [B, C, T', F']
        return [h := self.block1(inp), self.block2(h)]

    def head(self, last: torch.Tensor) -> torch.Tensor:  # -> scores [B, classes] (logits: softmax)
        return self.fc(last.mean(dim=(2, 3)))


@MODELS.register("tiny_cnn")
class TinyCnnSpec(ModelSpec):
    """A small log-mel CNN with pretrained weights from `checkpoint` (a state dict), used as built."""
    trainable = False

    class Params(Params):
        checkpoint: Path = Field(..., description="the weights: torch.save(model.state_dict(), path)")

    def check(self, n_mels: int | None = None, n_classes: int | None = None) -> list[str]:  # validate prints these
        return [] if self.params.checkpoint.is_file() else [f"model.checkpoint: {self.params.checkpoint} not found"]

    def build(self, class_names: list[str], n_mels: int, sample_rate: int) -> AudioClassifier:
        model = TinyCnn(len(class_names))
        model.load_state_dict(torch.load(self.params.checkpoint, map_location="cpu", weights_only=True))
        model.class_names = list(class_names)
        return model.eval()
