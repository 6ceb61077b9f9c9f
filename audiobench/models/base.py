"""The model contract: what the harness needs from any audio classifier, whatever its output kind.

An :class:`AudioClassifier` reads the representation a masking domain produces (through
:meth:`AudioClassifier.network_input`), returns one score per class, and says how scores become
probabilities (:attr:`AudioClassifier.output_kind`):

* ``softmax``: single-label; p = softmax(scores) over the classes.
* ``sigmoid``: multi-label; p_c = sigmoid(score_c), one independent probability per label.
* ``similarity``: zero-shot; score_c = temperature x cos(audio embedding, text embedding of
  prompt c) (CLAP, Elizalde et al. 2023), p = softmax over the prompts.

Decoders and CAM methods (L-MAC, L2I, GradCAM, GradCAM++) reach the network only through the
layer API: :meth:`blocks`, :meth:`block`, :meth:`block_channels`, :meth:`features`, :meth:`head`.
A model plugin subclasses :class:`AudioClassifier` and registers a :class:`ModelSpec` under
``audiobench.models`` (entry point) or with ``MODELS.register`` in a suite's plugin file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from audiobench.contracts.component import Component
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.modules import is_module_path, submodule

if TYPE_CHECKING:
    from audiobench.contracts.domains import ClipPhase, Domain
    from audiobench.contracts.frontend import Frontend

OutputKind = Literal["softmax", "sigmoid", "similarity"]
OUTPUT_KINDS: tuple[OutputKind, ...] = ("softmax", "sigmoid", "similarity")
# what the network reads of a (masked) representation by default (:meth:`AudioClassifier.network_input`)
InputKind = Literal["logmel", "linear", "waveform"]
FramePooling = Literal["mean", "max", "logmeanexp"]


def pool_frames(scores: torch.Tensor, pooling: FramePooling) -> torch.Tensor:
    """Per-frame scores [B, T', C] -> clip scores [B, C]: their ``mean``, ``max`` or ``logmeanexp``
    (log of the mean of exp over frames: a smooth maximum, between the mean and the max)."""
    if pooling == "mean":
        return scores.mean(dim=1)
    if pooling == "max":
        return scores.amax(dim=1)
    if pooling == "logmeanexp":
        return torch.logsumexp(scores, dim=1) - torch.log(torch.tensor(float(scores.shape[1]), dtype=scores.dtype))
    raise ValueError(f"unknown frame pooling {pooling!r}; expected mean, max or logmeanexp")


def detector_scores(logit: torch.Tensor) -> torch.Tensor:
    """A detector's one logit s [B] or [B, 1] -> two-class scores [B, 2] = [-s/2, s/2] (absent, present).

    Under softmax they give p(present) = sigmoid(s) and p(absent) = 1 - sigmoid(s) exactly, and each class's
    score has the gradient of +-s/2: explaining the absence explains -s. The natural wrapper [0, s] gives
    the absent class a constant score, so every gradient method returns an all-zero map for it (the
    zero-score trap ``check_model`` reports)."""
    s = logit.reshape(logit.shape[0], -1)
    if s.shape[1] != 1:
        raise AudiobenchError(f"a detector returns one logit per clip (or per frame), not {s.shape[1]}")
    return torch.cat([-s / 2, s / 2], dim=1)


def probabilities(scores: torch.Tensor, output_kind: OutputKind) -> torch.Tensor:
    """Scores [B, C] -> probabilities [B, C] for an output kind (see the module docstring).

    Raises ``ValueError`` for an unknown kind.
    """
    if output_kind in ("softmax", "similarity"):
        return scores.softmax(dim=-1)
    if output_kind == "sigmoid":
        return scores.sigmoid()
    raise ValueError(f"unknown output kind {output_kind!r}; expected one of {', '.join(OUTPUT_KINDS)}")


def training_loss(scores: torch.Tensor, labels: torch.Tensor, output_kind: OutputKind,
                  label_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The loss a classifier of ``output_kind`` trains with, mean over the batch: scores [B, C], labels
    [B] (class indices) or [B, C] (multi-hot). ``softmax`` and ``similarity``: cross-entropy over the
    classes (for ``similarity``, the CLIP-style loss over the prompts' scaled similarities);
    ``sigmoid``: binary cross-entropy per label (class indices become one-hot), as PANNs train on
    AudioSet (Kong et al. 2020), averaged over the known (clip, label) pairs only when ``label_mask``
    [B, C] bool is given (OpenMIC-2018's unannotated pairs enter no loss, as its authors require;
    :func:`audiobench.metrics.multilabel.masked_bce` is the same mean)."""
    if output_kind == "sigmoid":
        target = labels.float() if labels.dim() == 2 else F.one_hot(labels, scores.shape[-1]).float()
        if label_mask is None:
            return F.binary_cross_entropy_with_logits(scores, target)
        known = label_mask.to(scores.dtype)
        loss = F.binary_cross_entropy_with_logits(scores, torch.where(label_mask, target, 0.0), reduction="none")
        return (loss * known).sum() / known.sum().clamp_min(1.0)
    if labels.dim() == 2:
        raise AudiobenchError(f"multi-hot labels need a sigmoid model; this one is {output_kind}")
    return F.cross_entropy(scores, labels)


def is_decision(p_target: torch.Tensor, top: torch.Tensor, target: torch.Tensor, output_kind: OutputKind,
                threshold: float) -> torch.Tensor:
    """[B] bool: the target is the model's decision: ``sigmoid``, its probability ``p_target`` is above
    ``threshold`` (the label is detected); otherwise it is the top class ``top`` (argmax)."""
    if output_kind == "sigmoid":
        return p_target > threshold
    return top == target


class AudioClassifier(nn.Module):
    """A classifier of audio the harness can explain and score.

    Subclasses set :attr:`output_kind`, implement :meth:`features`, :meth:`head`, :meth:`blocks`
    and :meth:`block_channels`; ``class_names`` (and, for ``similarity``, ``prompts``) are set by
    their :class:`ModelSpec`. Shapes: the network input is whatever :meth:`network_input` returns
    (CNN14: log1p-mel [B, 1, T, n_mels]); scores are [B, C].
    """

    output_kind: ClassVar[OutputKind] = "softmax"
    # what the default network_input hands the network: the log1p-mel the representation stands for
    # (``logmel``, CNN14) or the linear magnitude |X| of its STFT bins (``linear``: exact in stft2mel with the
    # linear operator; ``validate`` refuses the mel domain, whose filterbank cannot be inverted), or the
    # waveform ISTFT(M⊙|X| e^{j∠X}) with the clip's own phase (``waveform``: stft2mel only; network_input gets the phase)
    input_kind: ClassVar[InputKind] = "logmel"
    # scores per frame: head returns [B, T', C] (or [B, T', 1] for a detector), pooled to [B, C] by forward
    frame_pooling: ClassVar[FramePooling | None] = None
    # one logit per clip (a detector): head returns [B, 1]; forward gives the two classes (absent, present)
    # the scores [-s/2, s/2] (:func:`detector_scores`), so softmax reads p(present) = sigmoid(s)
    detector: ClassVar[bool] = False
    # exposes attention probabilities (:meth:`attention_maps`, :meth:`token_grid`, :meth:`patch_map`): a
    # transformer; the attention methods (attention rollout, relevancy) explain only these
    has_attention: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.class_names: list[str] = []
        self.prompts: list[str] | None = None  # similarity models: one text prompt per class
        self.sample_rate: int = 16000

    # -- input ------------------------------------------------------------------------------
    def network_input(self, domain: Domain, frontend: Frontend, x: torch.Tensor,
                      phase: ClipPhase | None = None) -> torch.Tensor:
        """A (masked) representation on ``domain``'s grid [B, 1, T, F] -> what the network reads.

        The default follows :attr:`input_kind`: the log1p-mel spectrogram the representation corresponds
        to (``domain.to_logmel``), the input of the CNN14 family; for ``linear``, the magnitudes |X| of
        the STFT bins (``domain.linear_magnitude``; the mel domain refuses); for ``waveform``, the waveform
        [B, L] = ISTFT(M⊙|X| e^{j∠X}) with the clips' own phase (``domain.waveform``), which the harness passes
        as ``phase`` (:class:`~audiobench.contracts.domains.ClipPhase`, rows tiled over the clips) to models
        of that kind only: an override for another kind keeps the three-argument form. A model that reads another scale of it
        may convert it here or inside the network: CNN14 with ``input_scale: db`` does so in its first
        step (:meth:`~audiobench.models.cnn14.Cnn14.scaled_input`), so the harness's training, which
        feeds the log1p-mel directly, reads the same; either way the mask acts on ``x`` before.
        """
        if self.input_kind == "waveform":
            if phase is None:
                raise AudiobenchError(f"{type(self).__name__} reads the waveform and needs the clips' phase: call it "
                                      "through DomainModel.reading(rep) (the harness does)")
            return domain.waveform(frontend, x, phase)
        if self.input_kind == "linear":
            return domain.linear_magnitude(frontend, x)
        return domain.to_logmel(frontend, x)

    # -- layers -----------------------------------------------------------------------------
    def blocks(self) -> list[nn.Module]:
        """The network's blocks, shallowest first: what decoders read and CAM methods hook."""
        raise NotImplementedError

    def block_names(self) -> list[str]:
        """Names a suite may give for a block (``layer:`` of CAM methods), in :meth:`blocks` order."""
        return [f"block{i + 1}" for i in range(len(self.blocks()))]

    @property
    def depth(self) -> int:
        """Number of blocks."""
        return len(self.blocks())

    def block(self, layer: str | int) -> nn.Module:
        """A block by 1-based index (negative: from the deepest), by name, or ``"last"``; or any submodule by
        its dotted module path (``conv_block3.conv2``: :mod:`audiobench.models.modules`).

        Raises :class:`AudiobenchError` (one line, listing the valid names) when there is no such block.
        """
        if is_module_path(layer):
            return submodule(self, str(layer))
        blocks, names = self.blocks(), self.block_names()
        if isinstance(layer, str) and layer.lstrip("-").isdigit():
            layer = int(layer)
        if layer == "last":
            return blocks[-1]
        if isinstance(layer, str) and layer in names:
            return blocks[names.index(layer)]
        if isinstance(layer, int) and not isinstance(layer, bool) and 1 <= abs(layer) <= len(blocks):
            return blocks[layer - 1 if layer > 0 else layer]
        raise AudiobenchError(
            f"layer {layer!r} names no block of this {len(blocks)}-block model; use 'last', 1..{len(blocks)} "
            f"(negative from the deepest) or one of {', '.join(names)}"
        )

    def block_channels(self) -> list[int]:
        """Output channels of each block, shallowest first. The default reads the ``out_channels`` of the
        last convolution inside each block; a block that ends otherwise (an LSTM, a linear layer) needs an
        override (``check_model`` compares these with the blocks' outputs). :class:`AudiobenchError` for a
        block without a convolution."""
        out = []
        for i, block in enumerate(self.blocks()):
            convs = [m for m in block.modules() if isinstance(getattr(m, "out_channels", None), int)]
            if not convs:
                raise AudiobenchError(f"{type(self).__name__}: block {i + 1} holds no convolution to read its channels "
                                      "from; override block_channels()")
            out.append(convs[-1].out_channels)
        return out

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output [B, C_i, T_i, F_i], shallowest first, for a network input."""
        raise NotImplementedError

    def head(self, last: torch.Tensor) -> torch.Tensor:
        """The deepest block's output -> scores [B, C]."""
        raise NotImplementedError

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        """Network input -> scores [B, C] (logits, or scaled cosine similarities). Per-frame scores
        [B, T', C] are pooled by :attr:`frame_pooling`; a :attr:`detector`'s logit becomes (absent, present)."""
        scores = self.head(self.features(inp)[-1])
        if scores.dim() == 3:
            if self.frame_pooling is None:
                raise AudiobenchError(f"{type(self).__name__}.head returned per-frame scores {tuple(scores.shape)}; "
                                      "set frame_pooling (mean, max or logmeanexp) to pool them")
            scores = pool_frames(scores, self.frame_pooling)
        return detector_scores(scores) if self.detector else scores

    def exact_attribution(self, domain: Domain, frontend: Frontend, x: torch.Tensor,
                          target: torch.Tensor) -> torch.Tensor | None:
        """The exact attribution [B, 1, T, F] of each row's ``target`` score to the bins of representations
        ``x`` [B, 1, T, F], where the model knows it in closed form (hand-built models,
        :mod:`audiobench.models.handbuilt`); None, the default, for every learned model."""
        return None

    # -- attention (transformers only: has_attention) --------------------------------------
    def attention_maps(self, inp: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(scores [B, C], each layer's attention probabilities [B, H, N, N], shallowest first, in the scores'
        autograd graph) for a network input. :class:`AudiobenchError` for a model without attention."""
        raise AudiobenchError(f"{type(self).__name__} has no attention layers (has_attention is False)")

    def token_grid(self, frames: int) -> tuple[int, int, int]:
        """(special tokens before the patches, time patches, frequency patches) of an input of ``frames`` frames."""
        raise AudiobenchError(f"{type(self).__name__} has no attention layers (has_attention is False)")

    def patch_map(self, values: torch.Tensor, frames: int) -> torch.Tensor:
        """Per-patch values [B, N - special] in token order -> [B, 1, T', F'] on the patch grid (time first)."""
        raise AudiobenchError(f"{type(self).__name__} has no attention layers (has_attention is False)")

    # -- output -----------------------------------------------------------------------------
    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores [B, C] -> probabilities [B, C] by :attr:`output_kind`."""
        return probabilities(scores, self.output_kind)


class ModelSpec(Component):
    """A registered model: builds an :class:`AudioClassifier` for a dataset's classes.

    ``trainable`` models are trained (or fine-tuned) by the harness with the suite's
    ``model.train`` and cached; the others are used as built (weights loaded or constructed).

    A spec implements :meth:`build`; every other hook is declared here with a default that a spec
    overrides only to change it: training its own way (:meth:`train_model`, :meth:`model_key`,
    :meth:`trained_conditions`), what ``validate`` reads without building the network
    (:meth:`required_frontend`, :meth:`check`, :meth:`checkpoint`, :meth:`architecture`,
    :meth:`block_names`, :meth:`min_input`) and what ``audiobench list`` prints (:meth:`details`).
    """

    trainable: ClassVar[bool] = True
    output_kind: ClassVar[OutputKind] = "softmax"
    input_kind: ClassVar[InputKind] = "logmel"  # as the classifier it builds (validate reads it from here)
    detector: ClassVar[bool] = False  # as the classifier it builds: validate then asks for two classes
    frame_pooling: ClassVar[FramePooling | None] = None  # as the classifier it builds (list models shows it)
    # the classifier it builds returns its exact attribution (AudioClassifier.exact_attribution): hand-built
    # models whose attribution is known in closed form; validate allows the ``exact`` row only with these
    knows_exact_attribution: ClassVar[bool] = False
    has_attention: ClassVar[bool] = False  # as the classifier it builds: validate allows the attention methods
    # clips reach the model peak-normalised (True: the reference recipe's, for training, fits and every evaluated
    # condition) or at their recorded level (False: a model whose output depends on level, e.g. a detector, which
    # peak normalisation would show room tone at full scale); the manifest records it (``input_level``)
    peak_normalise: ClassVar[bool] = True
    # a spec training its own way (train_model) that honours model.train.augment_prob with the suite's
    # train.augment conditions (passed as ``augment``); validate refuses augment_prob > 0 for the others
    takes_augment: ClassVar[bool] = False

    def build(self, class_names: list[str], n_mels: int, sample_rate: int) -> AudioClassifier:
        """The network for ``class_names``, reading ``n_mels`` mel bands at ``sample_rate`` Hz."""
        raise NotImplementedError

    def train_model(
        self, train_params: Any, splits: dict[str, Any], frontend: Frontend, data_fingerprint: dict, seed: int,
        device: torch.device, progress: bool = True, evaluated: str = "test", augment: Any = (),
    ) -> Any | None:
        """A model trained its own way (a zero-shot dual encoder trained contrastively): return a
        :class:`~audiobench.models.training.TrainedClassifier` (cached by the spec); ``augment``: the suite's
        ``train.augment`` conditions (contaminations), for a spec that honours ``model.train.augment_prob``. ``None``, the
        default, means the harness's classifier training (or, for ``trainable = False``, the model as built)."""
        return None

    def trains_own_way(self) -> bool:
        """Whether the spec overrides :meth:`train_model` (trains its model itself, e.g. ``clap_synth``)."""
        return type(self).train_model is not ModelSpec.train_model

    def trained_conditions(self, train_params: Any) -> list[tuple[tuple[str, ...], str]]:
        """(identity, title) of the conditions the model trains on besides clean clips and the
        suite's ``train.augment`` (those are the harness's): by default the mixtures of
        ``model.train.mixture_prob``; a spec that trains its own way adds what it mixes in
        (:mod:`audiobench.suite.separation` refuses an evaluated condition among them)."""
        if getattr(train_params, "mixture_prob", 0) > 0:
            return [(("mixture", "dataset"), "mixtures with training clips of other classes (model.train.mixture_prob)")]
        return []

    def model_key(
        self, train_params: Any, splits: dict[str, Any], frontend: Frontend, data_fingerprint: dict, seed: int,
        augment: Any = (),
    ) -> str | None:
        """The cache key :meth:`train_model` gives its model (its ``info['hash']``), computed without
        training or loading anything; ``None`` for specs that do not override :meth:`train_model`."""
        return None

    @classmethod
    def details(cls) -> list[str]:
        """What ``audiobench list models --verbose`` prints above the parameters, read from a spec of default
        parameters (a declaration set per instance shows its default): the input and output kinds, whether and
        how it is trained, the front end it requires and whether it knows its exact attribution."""
        try:
            spec: Any = cls()
            frontend = spec.required_frontend()
        except Exception:  # noqa: BLE001  a spec that needs parameters to say it
            spec, frontend = cls, None
        fe = ("any (the suite's)" if frontend == {} else "not known without its parameters" if frontend is None
              else ", ".join(f"{k} {v}" for k, v in frontend.items()))
        trained = ("no (used as built)" if not spec.trainable else "yes, its own way" if cls.train_model is not
                   ModelSpec.train_model else "yes (model.train)")
        return [f"input: {spec.input_kind}; output kind: {spec.output_kind}; trained: {trained}"
                + ("; a detector (classes absent, present)" if spec.detector else "")
                + (f"; per-frame scores pooled by {spec.frame_pooling}" if spec.frame_pooling else "")
                + ("; knows its exact attribution" if spec.knows_exact_attribution else "")
                + ("" if spec.peak_normalise else "; reads clips at their recorded level (no peak normalisation)"),
                f"front end: {fe}"]

    def required_frontend(self) -> dict[str, Any]:
        """The front-end settings the model reads (``FrontendParams`` keys -> values): ``validate`` refuses a
        suite that sets one of them otherwise, at its ``frontend`` line, and fills in those it leaves out;
        ``check_model`` builds the model on them. ``{}`` (the default): any front end."""
        return {}

    def check(self, n_mels: int | None = None, n_classes: int | None = None) -> list[str]:
        """Problems found without building (missing files, bad settings, a checkpoint that does not fit
        ``n_mels`` mel bands or ``n_classes`` classes, where known), one line each; ``validate`` prints them
        at the model's line. ``[]`` (the default): none."""
        return []

    # -- what validate reads without building the network (each None: the spec does not say) ----------
    def checkpoint(self) -> Path | None:
        """The weights file the model is evaluated from (``trainable`` specs: used as it is, or fine-tuned
        from with ``audiobench train``), None for none. The default reads the spec's ``checkpoint``
        parameter where it has one (``cnn14``); the harness then loads the file instead of training."""
        return getattr(self.params, "checkpoint", None)

    def architecture(self) -> tuple[int, int] | None:
        """(width, depth) of the classifier it builds, known without building it: the channels of its first
        block and its number of blocks (:attr:`AudioClassifier.depth`). ``validate`` checks the methods'
        block parameters against the depth (``Explainer.check_classifier``). None (the default): the spec
        does not say, those checks wait for the run. Raises :class:`AudiobenchError` when it cannot be read
        (an unreadable checkpoint): ``validate`` then skips the checks and :meth:`check` reports the file."""
        return None

    def block_names(self) -> list[str] | None:
        """The names of the built classifier's blocks (its :meth:`AudioClassifier.block_names`, shallowest
        first), known without building it: what a method's ``layer`` may name at ``validate``. None (the
        default): not known; ``validate`` then checks indices and ``last`` only and the run checks names.
        Raises :class:`AudiobenchError` as :meth:`architecture` does."""
        return None

    def silent_blocks(self) -> dict[int, str]:
        """1-based block -> why the score's gradient never reaches it (AST's last layer: its head reads the CLS
        token only), so a CAM there is zero: ``validate`` refuses such a ``layer``. ``{}`` (the default): none."""
        return {}

    def min_input(self) -> tuple[int, int, str] | None:
        """(frames, mel bands, description) of the smallest input the classifier can take (its poolings):
        ``validate`` reports a front end or a clip length below them at their lines. None (the default):
        any size. Raises :class:`AudiobenchError` as :meth:`architecture` does (``validate`` then skips it)."""
        return None
