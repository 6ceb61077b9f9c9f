"""The CNN14 family (PANNs layout) with configurable width and depth.

Parameter names follow PANNs (``bn0``, ``conv_block{i}.conv1``, ``fc1``, ``fc_audioset``) so
PANNs-format checkpoints map onto it. Every ReLU is its own ``nn.ReLU`` module (guided
backpropagation overrides them), and block outputs are exposed for decoders (L-MAC, L2I).
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from audiobench.contracts.component import Params
from audiobench.contracts.registry import MODELS
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.base import AudioClassifier, ModelSpec


class ConvBlock(nn.Module):
    """Two 3x3 conv + batch-norm + ReLU layers, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.pool = nn.AvgPool2d(pool) if pool != (1, 1) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.pool(x)


class Cnn14(AudioClassifier):
    """Log-mel [B, 1, T, n_mels] -> class logits [B, n_classes] (softmax output kind)."""

    def __init__(self, n_classes: int, n_mels: int = 80, width: int = 64, depth: int = 6, dropout: float = 0.2):
        super().__init__()
        self.n_classes, self.n_mels, self.width = n_classes, n_mels, width
        self.n_blocks = depth
        self.bn0 = nn.BatchNorm2d(n_mels)
        channels = [1] + [width * 2**i for i in range(depth)]
        for i in range(depth):
            pool = (2, 2) if i < depth - 1 else (1, 1)
            self.add_module(f"conv_block{i + 1}", ConvBlock(channels[i], channels[i + 1], pool))
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(channels[-1], channels[-1])
        self.relu_fc = nn.ReLU()
        self.fc_audioset = nn.Linear(channels[-1], n_classes)

    def blocks(self) -> list[nn.Module]:
        """The conv blocks ``conv_block1`` ... ``conv_block<depth>``, shallowest first."""
        return [getattr(self, f"conv_block{i + 1}") for i in range(self.n_blocks)]

    def block_names(self) -> list[str]:
        return [f"conv_block{i + 1}" for i in range(self.n_blocks)]

    def block_channels(self) -> list[int]:
        return [self.width * 2**i for i in range(self.n_blocks)]

    def features(self, logmel: torch.Tensor) -> list[torch.Tensor]:
        """The output of every conv block, shallowest first."""
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)
        outs = []
        for blk in self.blocks():
            x = blk(x)
            outs.append(x)
        return outs

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Last block output [B, C, T', F'] -> logits (PANNs pooling: mean over frequency, max+mean over time)."""
        x = x.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        x = self.relu_fc(self.fc1(self.dropout(x)))
        return self.fc_audioset(self.dropout(x))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(logmel)[-1])


@MODELS.register("cnn14")
class Cnn14Spec(ModelSpec):
    """CNN14-family classifier (PANNs layout) on log-mel input; width and depth configurable."""

    display_name = "CNN14"

    class Params(Params):
        width: int = Field(64, ge=1, description="channels of the first block (PANNs: 64)")
        depth: int = Field(6, ge=1, le=6, description="number of conv blocks (PANNs: 6)")
        dropout: float = Field(0.2, ge=0, lt=1)
        checkpoint: Path | None = Field(
            None, description="CNN14 weights in the PANNs key layout: evaluated as they are (no training)"
        )

    def architecture(self) -> tuple[int, int]:
        """(width, depth): the checkpoint's when there is one; explicit values must agree with it."""
        p = self.params
        if p.checkpoint is None:
            return p.width, p.depth
        from audiobench.models.checkpoint import checkpoint_shape, read_checkpoint

        shape = checkpoint_shape(read_checkpoint(p.checkpoint), p.checkpoint)
        for key in ("width", "depth"):
            if key in p.model_fields_set and getattr(p, key) != getattr(shape, key):
                raise AudiobenchError(
                    f"model.{key} is {getattr(p, key)} but the checkpoint {p.checkpoint} has {key} {getattr(shape, key)} "
                    f"(leave {key} out to take the checkpoint's)"
                )
        return shape.width, shape.depth

    def min_input(self) -> tuple[int, int, str]:
        """(frames, mel bands, description): the smallest input this classifier can pool.

        Every block but the last ends in a 2x2 average pooling, so both axes need at least
        ``2 ** (depth - 1)`` bins. Raises :class:`AudiobenchError` when a checkpoint cannot be read.
        """
        depth = self.architecture()[1]
        return 2 ** (depth - 1), 2 ** (depth - 1), f"a cnn14 of depth {depth} ({depth - 1} 2x2 poolings)"

    def check(self, n_mels: int | None = None, n_classes: int | None = None) -> list[str]:
        """Problems with a named checkpoint, one line each: missing, unreadable, or not fitting the suite.

        ``n_mels`` (the front end's mel bands) and ``n_classes`` (the dataset's classes), where
        known, are compared with the checkpoint's tensors; ``n_classes=None`` accepts any head (what
        ``audiobench train`` replaces when fine-tuning). Every other key and shape is compared with a
        model of the checkpoint's width and depth built on the meta device (no memory).
        """
        p = self.params
        if p.checkpoint is None:
            return []
        from audiobench.models.checkpoint import (
            checkpoint_shape,
            head_problem,
            read_checkpoint,
            state_problem,
        )

        try:
            self.architecture()
            state = read_checkpoint(p.checkpoint)
            shape = checkpoint_shape(state, p.checkpoint)
        except AudiobenchError as exc:
            return [str(exc)]
        problems = [head_problem(p.checkpoint, shape.n_classes, n_classes)] if n_classes is not None else []
        with torch.device("meta"):
            model = self.build([str(i) for i in range(shape.n_classes)], shape.n_mels if n_mels is None else n_mels)
        own = {k: v.shape for k, v in model.state_dict().items()}
        problems.append(state_problem(own, state, p.checkpoint, skip_head=n_classes is None))
        return [x for x in problems if x]

    def build(self, class_names: list[str], n_mels: int, sample_rate: int = 16000) -> Cnn14:
        """An untrained CNN14 for ``class_names`` (the harness trains it or loads the checkpoint)."""
        width, depth = self.architecture()
        model = Cnn14(len(class_names), n_mels=n_mels, width=width, depth=depth, dropout=self.params.dropout)
        model.class_names, model.sample_rate = list(class_names), sample_rate
        return model
