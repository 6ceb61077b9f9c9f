"""The CNN14 family (PANNs layout) with configurable width and depth.

Parameter names follow PANNs (``bn0``, ``conv_block{i}.conv1``, ``fc1``, ``fc_audioset``) so
PANNs-format checkpoints map onto it. Every ReLU is its own ``nn.ReLU`` module (guided
backpropagation overrides them), and block outputs are exposed for decoders (L-MAC, L2I).

Four settings select the reference networks' form where the default differs (the defaults keep
the harness's own network, on which the committed results and shipped classifiers were trained):

* ``block_dropout`` p: dropout with probability p after every conv block, in training only, as
  PANNs' ``Cnn14.forward`` (Kong et al. 2020, ``pytorch/models.py``) and SpeechBrain's
  ``speechbrain/lobes/models/Cnn14.py`` do with p = 0.2. Default 0 (none).
* ``head``: ``fc1`` (default, PANNs): pooled -> dropout -> fc1 + ReLU -> dropout -> ``fc_audioset``;
  ``linear``: pooled -> dropout -> ``fc_audioset`` alone, the L-MAC recipe's classifier
  (``recipes/ESC50/interpret/hparams/lmac_cnn14.yaml``: ``torch.nn.Linear(2048, 50)`` on the
  pooled embedding; the recipe has no dropout there: add ``dropout: 0``). The single layer keeps
  the PANNs name ``fc_audioset``, so a checkpoint of a linear-headed model is the PANNs layout
  without ``fc1.*``; with ``model.checkpoint`` the head is read off the file (``fc1.*`` present or not).
* ``init``: ``default`` (PyTorch's: Kaiming-uniform with a = sqrt(5) for conv and linear weights,
  uniform biases) or ``xavier``, PANNs' ``init_layer`` / ``init_bn``: ``xavier_uniform_`` for every
  conv and linear weight (U(-a, a), a = sqrt(6 / (fan_in + fan_out))), biases 0, batch-norm weight
  1 and bias 0. SpeechBrain's Cnn14 initialises its conv blocks the same way (its recipe's Linear
  keeps PyTorch's default). Affects from-scratch training only.
* ``input_scale``: what the first layer (``bn0``) reads. The harness hands every CNN14 the log1p-mel
  L = log1p(mel) of the (masked) representation (:meth:`Domain.to_logmel`), masks applied before.
  ``log1p`` (default, the recipe's feature) reads L; ``db`` reads 10 log10(max(expm1(L), 1e-10)),
  i.e. PANNs' ``LogmelFilterBank`` (torchlibrosa ``power_to_db``: ref 1, amin 1e-10, no top_db) on the
  power mel, so a PANNs checkpoint's ``bn0`` statistics see the scale they were computed on. It needs
  the power mel (``frontend.mel_power: 2``, which the model requires of the suite); PANNs' other
  front-end settings (slaney filters, 64 bands, 32 kHz, 50-14000 Hz, Hann 1024/320) are the suite's
  ``frontend`` keys. The conversion is inside the network, so training, evaluation and every
  explainer see the same input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from audiobench.contracts.component import Params
from audiobench.contracts.registry import MODELS
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.base import AudioClassifier, ModelSpec

Head = Literal["fc1", "linear"]
Init = Literal["default", "xavier"]
InputScale = Literal["log1p", "db"]
HEADS: tuple[Head, ...] = ("fc1", "linear")
INITS: tuple[Init, ...] = ("default", "xavier")
INPUT_SCALES: tuple[InputScale, ...] = ("log1p", "db")
DB_AMIN = 1e-10  # PANNs' LogmelFilterBank (torchlibrosa power_to_db): amin 1e-10, ref 1.0, top_db None


def log1p_mel_to_db(logmel: torch.Tensor) -> torch.Tensor:
    """log1p-mel L (any shape) -> 10 log10(max(expm1(L), 1e-10)): the dB scale PANNs' CNN14 reads.

    With ``frontend.mel_power: 2``, expm1(L) is the power mel, so this is torchlibrosa's
    ``power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)`` (PANNs ``pytorch/models.py``, ``Cnn14``).
    Silence (L = 0) maps to -100 dB.
    """
    return 10.0 * torch.log10(torch.expm1(logmel).clamp_min(DB_AMIN))


def xavier_init(module: nn.Module) -> None:
    """PANNs' ``init_layer`` / ``init_bn`` on every submodule, in place: ``xavier_uniform_`` for each
    conv and linear weight, biases 0; batch-norm weight 1, bias 0 (Kong et al. 2020, ``pytorch/models.py``)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


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
    """Log1p-mel [B, 1, T, n_mels] -> class logits [B, n_classes] (softmax output kind).

    ``dropout``: before each head layer; ``block_dropout``: after every conv block (training only);
    ``head``, ``init``, ``input_scale``: see the module docstring. Raises ``ValueError`` (one line) for
    a value outside its range or choices.
    """

    def __init__(self, n_classes: int, n_mels: int = 80, width: int = 64, depth: int = 6, dropout: float = 0.2,
                 block_dropout: float = 0.0, head: Head = "fc1", init: Init = "default",
                 input_scale: InputScale = "log1p"):
        super().__init__()
        for name, value in (("dropout", dropout), ("block_dropout", block_dropout)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
        for name, value, choices in (("head", head, HEADS), ("init", init, INITS),
                                     ("input_scale", input_scale, INPUT_SCALES)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        self.n_classes, self.n_mels, self.width = n_classes, n_mels, width
        self.n_blocks = depth
        self.head_kind, self.input_scale = head, input_scale
        self.bn0 = nn.BatchNorm2d(n_mels)
        channels = [1] + [width * 2**i for i in range(depth)]
        for i in range(depth):
            pool = (2, 2) if i < depth - 1 else (1, 1)
            self.add_module(f"conv_block{i + 1}", ConvBlock(channels[i], channels[i + 1], pool))
        # no module at 0: F.dropout(p=0) still draws from the global generator in training
        self.block_dropout = nn.Dropout(block_dropout) if block_dropout > 0 else None
        self.dropout = nn.Dropout(dropout)
        if head == "fc1":
            self.fc1 = nn.Linear(channels[-1], channels[-1])
            self.relu_fc = nn.ReLU()
        self.fc_audioset = nn.Linear(channels[-1], n_classes)
        if init == "xavier":
            xavier_init(self)

    def blocks(self) -> list[nn.Module]:
        """The conv blocks ``conv_block1`` ... ``conv_block<depth>``, shallowest first."""
        return [getattr(self, f"conv_block{i + 1}") for i in range(self.n_blocks)]

    def block_names(self) -> list[str]:
        """``conv_block1`` ... ``conv_block<depth>`` (the PANNs module names)."""
        return conv_block_names(self.n_blocks)

    def block_channels(self) -> list[int]:
        return [self.width * 2**i for i in range(self.n_blocks)]

    def scaled_input(self, logmel: torch.Tensor) -> torch.Tensor:
        """The log1p-mel [B, 1, T, n_mels] on the scale ``bn0`` reads: itself (``log1p``) or
        :func:`log1p_mel_to_db` of it (``db``)."""
        return logmel if self.input_scale == "log1p" else log1p_mel_to_db(logmel)

    def features(self, logmel: torch.Tensor) -> list[torch.Tensor]:
        """The output of every conv block, shallowest first (after ``block_dropout`` where set, as PANNs)."""
        x = self.bn0(self.scaled_input(logmel).transpose(1, 3)).transpose(1, 3)
        outs = []
        for blk in self.blocks():
            x = blk(x)
            if self.block_dropout is not None:
                x = self.block_dropout(x)
            outs.append(x)
        return outs

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Last block output [B, C, T', F'] -> [B, C] (PANNs pooling: mean over frequency, max+mean over time)."""
        x = x.mean(dim=3)
        return x.amax(dim=2) + x.mean(dim=2)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Last block output [B, C, T', F'] -> logits [B, n_classes]: :meth:`pooled`, then the head
        (``fc1``: dropout, fc1 + ReLU, dropout, fc_audioset; ``linear``: dropout, fc_audioset)."""
        x = self.pooled(x)
        if self.head_kind == "fc1":
            x = self.relu_fc(self.fc1(self.dropout(x)))
        return self.fc_audioset(self.dropout(x))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(logmel)[-1])


def conv_block_names(depth: int) -> list[str]:
    """The names of a CNN14 of ``depth`` blocks' blocks, shallowest first: ``conv_block1`` ... (PANNs)."""
    return [f"conv_block{i + 1}" for i in range(depth)]


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
        block_dropout: float = Field(
            0.0, ge=0, lt=1, description="dropout after every conv block, in training only (PANNs Cnn14.forward and "
            "SpeechBrain lobes/models/Cnn14.py: 0.2; default 0, none)")
        head: Head = Field(
            "fc1", description="fc1: dropout, fc1 + ReLU, dropout, fc_audioset (PANNs); linear: dropout, one "
            "Linear(channels, classes) on the pooled embedding (recipes/ESC50/interpret/hparams/lmac_cnn14.yaml, "
            "with dropout: 0); with a checkpoint, the checkpoint's")
        init: Init = Field(
            "default", description="default: PyTorch's initialisation; xavier: PANNs init_layer / init_bn "
            "(xavier_uniform conv and linear weights, biases 0, batch-norm weight 1, bias 0)")
        input_scale: InputScale = Field(
            "log1p", description="log1p: the network reads log1p(mel) (the recipe's); db: 10 log10(max(power mel, "
            "1e-10)), what PANNs checkpoints read (torchlibrosa power_to_db); needs frontend.mel_power 2")
        output_kind: Literal["softmax", "sigmoid"] = Field(
            "softmax", description="softmax: one class per clip, trained with cross-entropy; sigmoid: multi-label, "
            "one independent probability per class, trained with binary cross-entropy (PANNs on AudioSet, "
            "Kong et al. 2020; the L2I journal's classifiers on SONYC-UST and OpenMIC)")
        added_fields: ClassVar[frozenset[str]] = frozenset({"block_dropout", "head", "init", "input_scale", "output_kind"})

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.output_kind = self.params.output_kind  # per instance: validate and the harness read it from the spec

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

    def block_names(self) -> list[str]:
        """``conv_block1`` ... ``conv_block<depth>`` for the depth of :meth:`architecture`."""
        return conv_block_names(self.architecture()[1])

    def head_kind(self) -> Head:
        """The head: ``params.head``, or with a checkpoint the checkpoint's (``fc1`` when it holds
        ``fc1.weight``, else ``linear``); an explicit ``head`` must agree with it. Raises
        :class:`AudiobenchError` (one line) when it does not, or the checkpoint cannot be read."""
        p = self.params
        if p.checkpoint is None:
            return p.head
        from audiobench.models.checkpoint import read_checkpoint

        found: Head = "fc1" if "fc1.weight" in read_checkpoint(p.checkpoint) else "linear"
        if "head" in p.model_fields_set and p.head != found:
            has = "an fc1 layer" if found == "fc1" else "no fc1 layer"
            raise AudiobenchError(
                f"model.head is {p.head} but the checkpoint {p.checkpoint} has {has} (head {found}); leave head out "
                "to take the checkpoint's (loading or fine-tuning keeps every layer of the file)"
            )
        return found

    def required_frontend(self) -> dict[str, Any]:
        """``input_scale: db`` reads the power mel (``mel_power: 2``); otherwise any front end."""
        return {"mel_power": 2} if self.params.input_scale == "db" else {}

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
        model of the checkpoint's width, depth and head built on the meta device (no memory). An
        ``input_scale`` other than the one ``audiobench train`` recorded next to the checkpoint (its
        JSON sidecar) is a problem too.
        """
        p = self.params
        if p.checkpoint is None:
            return []
        from audiobench.models.checkpoint import (
            checkpoint_shape,
            head_problem,
            read_checkpoint,
            read_sidecar,
            sidecar,
            state_problem,
        )

        try:
            self.architecture()
            self.head_kind()
            state = read_checkpoint(p.checkpoint)
            shape = checkpoint_shape(state, p.checkpoint)
        except AudiobenchError as exc:
            return [str(exc)]
        problems = [head_problem(p.checkpoint, shape.n_classes, n_classes)] if n_classes is not None else []
        with torch.device("meta"):
            model = self.build([str(i) for i in range(shape.n_classes)], shape.n_mels if n_mels is None else n_mels)
        own = {k: v.shape for k, v in model.state_dict().items()}
        problems.append(state_problem(own, state, p.checkpoint, skip_head=n_classes is None))
        recorded = read_sidecar(p.checkpoint).get("model")
        if isinstance(recorded, dict) and recorded.get("name") == self.name:
            trained = recorded.get("input_scale", "log1p")
            if trained != p.input_scale:
                problems.append(
                    f"model.input_scale is {p.input_scale} but the checkpoint {p.checkpoint} was trained on "
                    f"input_scale {trained} ({sidecar(p.checkpoint).name}); set input_scale: {trained}")
        return [x for x in problems if x]

    def build(self, class_names: list[str], n_mels: int, sample_rate: int = 16000) -> Cnn14:
        """An untrained CNN14 for ``class_names`` (the harness trains it or loads the checkpoint)."""
        p = self.params
        width, depth = self.architecture()
        model = Cnn14(len(class_names), n_mels=n_mels, width=width, depth=depth, dropout=p.dropout,
                      block_dropout=p.block_dropout, head=self.head_kind(), init=p.init, input_scale=p.input_scale)
        model.class_names, model.sample_rate = list(class_names), sample_rate
        model.output_kind = p.output_kind
        return model
