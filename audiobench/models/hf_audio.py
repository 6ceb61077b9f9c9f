"""``hf_audio``: a ``transformers`` audio classifier on the model contract (AST today), nothing downloaded.

Two ways to get the network:

* ``path``: a local folder written by ``save_pretrained`` (``config.json``, the weights and the feature
  extractor's ``preprocessor_config.json``), read with ``AutoConfig`` / ``AutoModelForAudioClassification``
  / ``AutoFeatureExtractor`` and ``local_files_only=True``. Used as built (no training). Its labels
  (``config.id2label``) must be the dataset's classes, in any order: the classifier's rows are put in the
  dataset's order; a folder with other labels is refused (re-initialising the head for training is not
  offered: the harness would then train a transformer that was not the one named).
* no ``path`` (``arch: ast``): an embedded AST built from an ``ASTConfig`` of the size parameters
  (``hidden``, ``layers``, ``heads``, ...), randomly initialised and trained by the harness like ``cnn14``.

The kind of network is read from ``config.model_type``: the Audio Spectrogram Transformer (AST, Gong,
Chung & Glass, Interspeech 2021; ``audio-spectrogram-transformer``) reads a spectrogram (below); wav2vec2,
HuBERT and WavLM classifiers read samples (input kind ``waveform``, per spec instance:
:mod:`audiobench.models.hf_waveform`); any other type is refused with a one-line error.

Input. AST reads Kaldi fbank features: the natural log of the power mel (``log(max(mel, 1.19e-7))``,
25 ms Hann-like window, 10 ms hop, 512-point FFT, HTK mel scale from 20 Hz) padded with 0 or cut to
``max_length`` frames and normalised as ``(x - mean) / (2 std)`` (``ASTFeatureExtractor``). The harness's
grids stand for the log1p-mel log(1 + mel); :meth:`AstClassifier.network_input` reads the *log* mel they
stand for (``Domain.to_db_mel`` rescaled to natural log, floored at Kaldi's 1.19e-7), so the network sees
AST's scale, not log1p. Remaining differences from Kaldi's ``fbank``: no pre-emphasis (0.97), no DC
removal, a centred STFT with a Hann window (Kaldi: Povey window, frames not centred), and the harness's
peak-normalised clips. :func:`ast_frontend` is the front end the model requires of a suite.

Layers. :meth:`AstClassifier.blocks` are the encoder layers; a block's output is its *patch* tokens
reshaped to the patch grid [B, D, T', F'] (time first; the CLS and distillation tokens, and the patches
that cover only padding, are kept aside and put back before the next layer), so GradCAM hooks and L-MAC's
decoder read transformer layers as they read conv blocks. The head reads the last layer's CLS and
distillation tokens (their mean after the final layer norm, AST's pooling) through the model's
classifier; the last layer's patch tokens do not reach it, so GradCAM on ``layer: last`` is zero: use the
layer before (``layer: -2``). :meth:`AstClassifier.attention_maps` returns each layer's attention
probabilities [B, H, N, N] with their gradients kept (attention rollout, attention relevancy).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from audiobench.contracts.component import Params
from audiobench.contracts.registry import MODELS
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.base import AudioClassifier, ModelSpec
from audiobench.models.hf_waveform import WAVEFORM_TYPES, EncoderLayers, build_waveform

if TYPE_CHECKING:
    from audiobench.contracts.domains import Domain
    from audiobench.contracts.frontend import Frontend

AST_TYPE = "audio-spectrogram-transformer"
KALDI_FLOOR = 1.192092955078125e-07  # Kaldi's log floor (float32 epsilon), ASTFeatureExtractor's mel_floor
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974  # ASTFeatureExtractor's defaults (AudioSet statistics)
N_SPECIAL = 2  # AST's CLS and distillation tokens, before the patches


def ast_frontend(sample_rate: int, n_mels: int | None) -> dict[str, Any]:
    """The harness front end (``FrontendParams`` keys) nearest to AST's Kaldi fbank at ``sample_rate`` Hz:
    25 ms window, 10 ms hop, FFT of the next power of two, Hann, HTK mel scale from 20 Hz on the power
    spectrum, ``n_mels`` bands (left to the suite when None)."""
    win, hop = round(0.025 * sample_rate), round(0.010 * sample_rate)
    out: dict[str, Any] = {"sample_rate": sample_rate, "win_length": win, "hop_length": hop,
                           "n_fft": 1 << (win - 1).bit_length(), "window": "hann", "mel_scale": "htk",
                           "mel_power": 2, "f_min": 20.0}
    return out | ({"n_mels": n_mels} if n_mels is not None else {})


class PatchGridBlock(nn.Module):
    """One encoder layer seen as a block: tokens [B, N, D] in, patch grid [B, D, T', F'] out.

    The tokens it keeps aside (the special tokens, and the time patches past ``valid``) are in
    :attr:`aside` until :meth:`tokens` puts them back around a grid. AST orders patches frequency-major
    (``ASTPatchEmbeddings``: token 2 + f T' + t), which :meth:`grid` and :meth:`tokens` undo and redo.
    """

    def __init__(self, layer: nn.Module, t_patches: int, f_patches: int):
        super().__init__()
        self.layer, self.t_patches, self.f_patches = layer, t_patches, f_patches
        self.valid = t_patches
        self.aside: tuple[torch.Tensor, torch.Tensor] | None = None

    def grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, D] -> the valid patch grid [B, D, valid, F'], keeping the rest in :attr:`aside`."""
        b, _, d = tokens.shape
        full = tokens[:, N_SPECIAL:].reshape(b, self.f_patches, self.t_patches, d).permute(0, 3, 2, 1)
        self.aside = (tokens[:, :N_SPECIAL], full[:, :, self.valid:])
        return full[:, :, : self.valid]

    def tokens(self, grid: torch.Tensor) -> torch.Tensor:
        """A valid grid [B, D, valid, F'] and :attr:`aside` -> the token sequence [B, N, D]."""
        if self.aside is None or self.aside[0].shape[0] != grid.shape[0]:
            raise AudiobenchError("AST head: no token sequence for this grid; call features() on the same input first")
        special, rest = self.aside
        full = torch.cat([grid, rest], dim=2)  # [B, D, T', F']
        return torch.cat([special, full.permute(0, 3, 2, 1).flatten(1, 2)], dim=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.grid(self.layer(tokens))


class AstClassifier(EncoderLayers):
    """An ``ASTForAudioClassification`` (kept as :attr:`hf`) on the model contract.

    Network input: the log mel [B, 1, T, n_mels] (:meth:`network_input`); scores [B, C] (softmax).
    Blocks: the encoder layers, each returning its valid patch grid [B, D, T', F'] (module docstring).
    """

    has_attention: ClassVar[bool] = True

    def __init__(self, hf: nn.Module, mean: float, std: float):
        super().__init__()
        self.hf = hf
        cfg = hf.config
        self.max_length, self.n_mels = int(cfg.max_length), int(cfg.num_mel_bins)
        self.patch, self.t_stride = int(cfg.patch_size), int(cfg.time_stride)
        self.f_patches = (cfg.num_mel_bins - cfg.patch_size) // cfg.frequency_stride + 1
        self.t_patches = (cfg.max_length - cfg.patch_size) // cfg.time_stride + 1
        self.mean, self.std = float(mean), float(std)
        # not registered as submodules: their layers are hf's (one state dict, one set of parameters)
        self._blocks = [PatchGridBlock(layer, self.t_patches, self.f_patches)
                        for layer in hf.audio_spectrogram_transformer.layers]

    # -- input ------------------------------------------------------------------------------
    def network_input(self, domain: Domain, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        """A representation [B, 1, T, F] -> the natural-log mel it stands for, floored at Kaldi's 1.19e-7
        [B, 1, T, n_mels] (AST's fbank scale, not the harness's log1p)."""
        return (domain.to_db_mel(frontend, x) * (math.log(10.0) / 10.0)).clamp_min(math.log(KALDI_FLOOR))

    def input_values(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log mel [B, 1, T, n_mels] -> AST's ``input_values`` [B, max_length, n_mels]: padded with 0 or cut
        to ``max_length`` frames, then (x - mean) / (2 std) (``ASTFeatureExtractor``)."""
        if logmel.shape[-1] != self.n_mels:
            raise AudiobenchError(f"AST reads {self.n_mels} mel bands, the input has {logmel.shape[-1]}; "
                                  f"set frontend.n_mels: {self.n_mels}")
        x = logmel[:, 0, : self.max_length]
        x = nn.functional.pad(x, (0, 0, 0, self.max_length - x.shape[1]))
        return (x - self.mean) / (2 * self.std)

    def valid_patches(self, frames: int) -> int:
        """Time patches that start inside the first ``frames`` input frames (the others cover padding only)."""
        return max(1, min(self.t_patches, math.ceil(min(frames, self.max_length) / self.t_stride)))

    # -- layers (blocks, their names and widths: EncoderLayers) ------------------------------
    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's valid patch grid [B, D, T', F'] (time first), shallowest first."""
        valid = self.valid_patches(inp.shape[2])
        tokens = self.hf.audio_spectrogram_transformer.embeddings(self.input_values(inp))
        grids = []
        for i, block in enumerate(self._blocks):
            block.valid = valid
            grids.append(block(tokens))
            if i + 1 < len(self._blocks):
                tokens = block.tokens(grids[-1])
        return grids

    def head(self, last: torch.Tensor) -> torch.Tensor:
        """The last layer's grid (and the tokens it kept aside on the same input) -> logits [B, C]: final
        layer norm, the mean of the CLS and distillation tokens, the model's classifier (AST's pooling)."""
        seq = self.hf.audio_spectrogram_transformer.layernorm(self._blocks[-1].tokens(last))
        return self.hf.classifier((seq[:, 0] + seq[:, 1]) / 2)

    # -- attention --------------------------------------------------------------------------
    def token_grid(self, frames: int) -> tuple[int, int, int]:
        """(special tokens, valid time patches, frequency patches) for an input of ``frames`` frames."""
        return N_SPECIAL, self.valid_patches(frames), self.f_patches

    def patch_map(self, values: torch.Tensor, frames: int) -> torch.Tensor:
        """Per-patch values [B, N - special] (token order) -> [B, 1, T', F'] on the valid patch grid."""
        grid = values.reshape(values.shape[0], self.f_patches, self.t_patches).transpose(1, 2)
        return grid[:, None, : self.valid_patches(frames)]

    def attention_maps(self, inp: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(scores [B, C], every layer's attention probabilities [B, H, N, N], shallowest first), in the
        autograd graph of the scores (eager attention), so their gradients can be taken."""
        store: list[torch.Tensor] = []
        layers = [b.layer.attention for b in self._blocks]
        hooks = [m.register_forward_hook(lambda _m, _i, out: store.append(out[1])) for m in layers]
        try:
            scores = self(inp)
        finally:
            for h in hooks:
                h.remove()
        if len(store) != len(layers) or any(a is None for a in store):
            raise AudiobenchError("AST attention probabilities were not returned; build the model with attn_implementation='eager'")
        return scores, store


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise AudiobenchError("model hf_audio needs transformers: pip install -c constraints.txt 'audiobench[clap]'") from exc
    return transformers


def load_folder(path: Path) -> tuple[Any, Any]:
    """(config, feature extractor) of a local ``save_pretrained`` folder; :class:`AudiobenchError` (one line)
    for a missing or unreadable folder or a model type the harness cannot feed (waveform models)."""
    tf = _transformers()
    if not (Path(path) / "config.json").is_file():
        raise AudiobenchError(f"model.path: {path} has no config.json (a folder written by save_pretrained)")
    try:
        config = tf.AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise AudiobenchError(f"model.path: {path}: {str(exc).strip().splitlines()[0]}") from exc
    if config.model_type not in (AST_TYPE, *WAVEFORM_TYPES):
        raise AudiobenchError(
            f"model.path: {path} holds a '{config.model_type}' model; hf_audio loads {AST_TYPE} (AST) and the "
            f"waveform classifiers {', '.join(WAVEFORM_TYPES)}")
    try:
        extractor = tf.AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise AudiobenchError(f"model.path: {path} has no usable preprocessor_config.json "
                              f"({str(exc).strip().splitlines()[0]})") from exc
    return config, extractor


@MODELS.register("hf_audio")
class HfAudioSpec(ModelSpec):
    """A transformers audio classifier (AST) from a local folder, or an embedded AST trained here."""

    display_name = "AST"
    has_attention: ClassVar[bool] = True

    class Params(Params):
        path: Path | None = Field(None, description="a local save_pretrained folder (config.json, weights, "
                                  "preprocessor_config.json) of an AST classifier, used as built; none: the embedded AST")
        arch: Literal["ast"] = Field("ast", description="the embedded network's kind (without path): ast")
        hidden: int = Field(64, ge=8, description="embedded AST: hidden size (AST base: 768)")
        layers: int = Field(4, ge=1, le=24, description="embedded AST: encoder layers (AST base: 12)")
        heads: int = Field(4, ge=1, description="embedded AST: attention heads (AST base: 12); must divide hidden")
        patch_size: int = Field(16, ge=2, description="embedded AST: square patch side in frames and bands (AST: 16)")
        frequency_stride: int = Field(10, ge=1, description="embedded AST: patch stride over mel bands (AST: 10)")
        time_stride: int = Field(10, ge=1, description="embedded AST: patch stride over frames (AST: 10)")
        max_length: int = Field(200, ge=16, description="embedded AST: frames it reads, padded or cut (AST: 1024)")
        mean: float = Field(AUDIOSET_MEAN, description="embedded AST: input normalisation mean (AudioSet's, ASTFeatureExtractor)")
        std: float = Field(AUDIOSET_STD, gt=0, description="embedded AST: input normalisation std (AudioSet's)")

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.trainable = self.params.path is None  # per instance: a folder is used as built, the embedded AST trained
        if self.params.path is not None:  # a waveform folder: what validate and the harness read, per instance
            try:
                config, _ = load_folder(self.params.path)
            except AudiobenchError:  # reported by check() at the model's line
                config = None
            if config is not None and config.model_type in WAVEFORM_TYPES:
                self.input_kind, self.has_attention = "waveform", False

    @classmethod
    def details(cls) -> list[str]:
        """The embedded AST's (the default), and what a folder's model changes: its input kind and training."""
        return [*super().details(), "with path: a folder's AST reads logmel, its wav2vec2 / HuBERT / WavLM the "
                "waveform (stft2mel only); used as built (not trained)"]

    def silent_blocks(self) -> dict[int, str]:
        """An AST's last layer: its patch tokens never reach the head (which reads the CLS and distillation tokens)."""
        try:
            depth = None if self.input_kind == "waveform" else self.architecture()[1]
        except AudiobenchError:  # an unreadable folder: check() reports it
            depth = None
        return {} if depth is None else {depth: "an AST's last layer: its patch tokens never reach the head (it reads the "
                                                "CLS and distillation tokens), so a CAM there is zero; use -2"}

    def architecture(self) -> tuple[int, int]:
        """(hidden size, layers): the folder's config when there is one (validate reads the depth for ``layer``)."""
        if self.params.path is None:
            return self.params.hidden, self.params.layers
        config, _ = load_folder(self.params.path)
        return int(config.hidden_size), int(config.num_hidden_layers)

    def required_frontend(self) -> dict[str, Any]:
        """AST's fbank settings (:func:`ast_frontend`): the folder's sample rate and mel bands, or 16 kHz."""
        if self.params.path is None:
            return ast_frontend(16000, None)
        config, extractor = load_folder(self.params.path)
        if config.model_type in WAVEFORM_TYPES:  # it reads samples: the STFT settings are the suite's
            return {"sample_rate": int(extractor.sampling_rate)}
        return ast_frontend(int(extractor.sampling_rate), int(extractor.num_mel_bins))

    def check(self, n_mels: int | None = None, n_classes: int | None = None) -> list[str]:
        """A missing or unusable folder, labels not as many as the dataset's classes, heads not dividing hidden."""
        p = self.params
        if p.path is None:
            return [] if p.hidden % p.heads == 0 else [f"model.heads: {p.heads} does not divide hidden {p.hidden}"]
        try:
            config, _ = load_folder(p.path)
        except AudiobenchError as exc:
            return [str(exc)]
        if n_classes is not None and config.num_labels != n_classes:
            return [f"model.path: {p.path} classifies {config.num_labels} labels, the dataset has {n_classes} classes"]
        return []

    def build(self, class_names: list[str], n_mels: int, sample_rate: int = 16000) -> AudioClassifier:
        """The AST for ``class_names`` reading ``n_mels`` bands: the folder's (rows in the dataset's class order)
        or an untrained embedded one. :class:`AudiobenchError` (one line) for a folder whose labels are not the
        dataset's classes or whose bands differ from ``n_mels``."""
        tf, p = _transformers(), self.params
        if p.path is None:
            if p.hidden % p.heads:
                raise AudiobenchError(f"model.heads: {p.heads} does not divide hidden {p.hidden}")
            config = tf.ASTConfig(
                hidden_size=p.hidden, num_hidden_layers=p.layers, num_attention_heads=p.heads,
                intermediate_size=4 * p.hidden, patch_size=p.patch_size, frequency_stride=p.frequency_stride,
                time_stride=p.time_stride, max_length=p.max_length, num_mel_bins=n_mels,
                num_labels=len(class_names), id2label=dict(enumerate(class_names)), attn_implementation="eager")
            model = AstClassifier(tf.ASTForAudioClassification(config), p.mean, p.std)
        else:
            config, extractor = load_folder(p.path)
            if config.model_type in WAVEFORM_TYPES:
                model = build_waveform(tf, str(p.path), extractor)
                _class_order(model.hf.classifier, _labels(config, class_names, p.path), class_names)
                model.class_names, model.sample_rate = list(class_names), sample_rate
                return model.eval()
            if int(config.num_mel_bins) != n_mels:
                raise AudiobenchError(f"model.path: {p.path} reads {config.num_mel_bins} mel bands, frontend.n_mels is {n_mels}")
            labels = _labels(config, class_names, p.path)
            hf = tf.AutoModelForAudioClassification.from_pretrained(str(p.path), local_files_only=True,
                                                                   attn_implementation="eager")
            _class_order(hf.classifier.dense, labels, class_names)
            mean = extractor.mean if getattr(extractor, "do_normalize", True) else 0.0
            std = extractor.std if getattr(extractor, "do_normalize", True) else 0.5
            model = AstClassifier(hf, mean, std)
        model.class_names, model.sample_rate = list(class_names), sample_rate
        return model.eval()


def _labels(config: Any, class_names: list[str], path: Path) -> list[str]:
    """The folder's labels in its own order; :class:`AudiobenchError` when they are not the dataset's classes."""
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if sorted(labels) != sorted(class_names):
        raise AudiobenchError(f"model.path: {path} has labels {labels[:5]}..., not the dataset's classes "
                              f"{list(class_names)[:5]}... (a folder is used as built; its head is not re-trained)")
    return labels


def _class_order(linear: nn.Linear, labels: list[str], class_names: list[str]) -> None:
    """Put the rows of the output layer ``linear`` in the dataset's class order (in place)."""
    order = torch.tensor([labels.index(c) for c in class_names])
    with torch.no_grad():
        linear.weight.copy_(linear.weight[order].clone())
        linear.bias.copy_(linear.bias[order].clone())
