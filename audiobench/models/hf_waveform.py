"""Waveform classifiers from ``transformers`` (wav2vec 2.0, HuBERT, WavLM) on the model contract, for ``hf_audio``.

A ``*ForSequenceClassification`` folder (``save_pretrained``: ``config.json``, weights,
``preprocessor_config.json``) reads raw samples: its input kind is ``waveform``, so in ``stft2mel`` the
harness hands it ISTFT(M⊙|X| e^{j∠X}) with each clip's own phase (the ``mel`` domain is refused at
``validate``). The feature extractor's ``do_normalize`` (zero mean, unit variance per clip, variance + 1e-7:
``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``) is applied to what the network reads.

Layers. :meth:`HfWaveformClassifier.blocks` are the transformer encoder layers; each block's output is its
frame tokens as a [B, D, T', 1] grid (time on the third axis, no frequency axis: CAM maps and L-MAC masks on
them vary over time only, which the run records). The forward pass is the model's own, step by step (the
convolutional feature encoder, the feature projection, the positional convolution and layer norm, the
layers, then the projector, the mean over frames and the classifier: ``Wav2Vec2ForSequenceClassification``
without an attention mask), so scores equal the folder's logits on the normalised waveform (tested).
Refused: ``use_weighted_layer_sum`` (the head reads every layer, not the blocks' last).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from audiobench.kernel.errors import AudiobenchError
from audiobench.models.base import AudioClassifier

WAVEFORM_TYPES = ("wav2vec2", "hubert", "wavlm")  # config.model_type of the waveform classifiers hf_audio loads


class FrameGridBlock(nn.Module):
    """One encoder layer as a block: tokens [B, T', D] in, their grid [B, D, T', 1] out (what CAM hooks)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.layer(tokens)
        out = out[0] if isinstance(out, tuple) else out
        return out.transpose(1, 2).unsqueeze(-1)


def unit_variance(wave: torch.Tensor) -> torch.Tensor:
    """Waveforms [B, L] -> (x - mean) / sqrt(var + 1e-7) per row (``zero_mean_unit_var_norm``, population variance)."""
    mean = wave.mean(dim=1, keepdim=True)
    var = wave.var(dim=1, keepdim=True, unbiased=False)
    return (wave - mean) / torch.sqrt(var + 1e-7)


class EncoderLayers(AudioClassifier):
    """A ``transformers`` classifier whose blocks are its encoder layers (``_blocks``, one wrapper per layer,
    each ``config.hidden_size`` wide), named ``layer1``, ``layer2``, ... (AST's and the waveform models')."""

    hf: nn.Module
    _blocks: list[nn.Module]

    def blocks(self) -> list[nn.Module]:
        return list(self._blocks)

    def block_names(self) -> list[str]:
        return [f"layer{i + 1}" for i in range(len(self._blocks))]

    def block_channels(self) -> list[int]:
        return [int(self.hf.config.hidden_size)] * len(self._blocks)


class HfWaveformClassifier(EncoderLayers):
    """A ``transformers`` waveform classifier (kept as :attr:`hf`) on the model contract.

    Network input: the waveform [B, L] (input kind ``waveform``); scores [B, C] (softmax). Blocks: the
    encoder layers, each returning [B, D, T', 1] (module docstring).
    """

    input_kind = "waveform"

    def __init__(self, hf: nn.Module, normalize: bool) -> None:
        super().__init__()
        if getattr(hf.config, "use_weighted_layer_sum", False):
            raise AudiobenchError("hf_audio: a classifier with use_weighted_layer_sum reads every layer at once; "
                                  "its blocks cannot be explained one by one (not supported)")
        self.hf, self.normalize = hf, normalize
        self.base = hf.base_model
        self.stable = bool(getattr(hf.config, "do_stable_layer_norm", False))
        # not registered as submodules: their layers are hf's (one state dict, one set of parameters)
        self._blocks = [FrameGridBlock(layer) for layer in self.base.encoder.layers]

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        """Waveforms [B, L] -> every encoder layer's frame grid [B, D, T', 1], shallowest first."""
        wave = unit_variance(inp) if self.normalize else inp
        extracted = self.base.feature_extractor(wave).transpose(1, 2)  # [B, T', C]
        projected = self.base.feature_projection(extracted)
        hidden = projected[0] if isinstance(projected, tuple) else projected  # wav2vec2: (hidden, normed)
        encoder = self.base.encoder
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not self.stable:  # the post-norm layout normalises before the layers, the stable one after them
            hidden = encoder.layer_norm(hidden)
        hidden = encoder.dropout(hidden)
        grids = []
        for block in self._blocks:
            grids.append(block(hidden))
            hidden = grids[-1][..., 0].transpose(1, 2)
        return grids

    def head(self, last: torch.Tensor) -> torch.Tensor:
        """The last layer's grid [B, D, T', 1] -> logits [B, C]: (stable layout: the encoder's layer norm),
        the projector, the mean over frames, the classifier (``*ForSequenceClassification``)."""
        hidden = last[..., 0].transpose(1, 2)
        if self.stable:
            hidden = self.base.encoder.layer_norm(hidden)
        return self.hf.classifier(self.hf.projector(hidden).mean(dim=1))


def build_waveform(tf: Any, path: str, extractor: Any) -> HfWaveformClassifier:
    """The folder's waveform classifier (eager attention, evaluation mode) on the model contract."""
    hf = tf.AutoModelForAudioClassification.from_pretrained(path, local_files_only=True, attn_implementation="eager")
    return HfWaveformClassifier(hf, bool(getattr(extractor, "do_normalize", True)))
