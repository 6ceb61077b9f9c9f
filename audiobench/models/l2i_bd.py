"""``l2i_bd``: L2I by design (Parekh et al., the L2I journal, sec. III-C; Table III; Table VIII).

The interpretable network g(x) = Theta(Psi(f_I(x))): a CNN14 f whose chosen blocks f_I feed L2I's
interpreter (Psi -> time activations H [K, T] of a frozen sparse-NMF dictionary W, Theta -> class
logits, :mod:`audiobench.methods.l2i_parts`). Its predictions are the interpreter's: :meth:`forward`
returns Theta's logits, so every method of a suite declaring this model explains g, and every
metric scores g (docs/l2i_by_design.md). g's own interpretation is the method ``l2i_bd``
(:mod:`audiobench.methods.l2i_bd`): relevant components of W read from g's Theta.

Training (:mod:`audiobench.models.l2i_bd_train`, the suite's ``model.train``), by ``prediction``:

* ``f`` (the journal's L2I BD w/ ATT with ``pooling: attention``): every layer of f, Psi and Theta
  trained jointly on L = gamma * L_f + L_FID + alpha * L_NMF + beta * |H|_1 with the prediction loss
  L_f = CE(y, f(x)) on f's own head (BCE per label for ``sigmoid``), L_FID = CE(Theta(H), f(x))
  (eq. 1; eq. 2 for sigmoid) with f(x) a soft target (detached: f's head learns from L_f alone),
  L_NMF = ||X - W H||^2 on the log-magnitude spectrogram X = log1p|STFT| (eq. 3);
* ``g`` (its L2I BD-NoPred, sec. IV-C: "does not include a classification loss applied to f(x) and
  instead applies it directly to g(x)"): L = gamma * CE(y, g(x)) + alpha * L_NMF + beta * |H|_1;
  L_FID is dropped with L_f, since f(x) then has no training signal (f's head would only learn to copy
  g); f's head receives no gradient at all;
* ``posthoc`` (its L2I-PostHoc): f alone trained on L_f for the epochs, then frozen, and Psi, Theta
  trained on L_FID + alpha * L_NMF + beta * |H|_1 for as many epochs (the post-hoc problem, eq. 4);
  f's head alone is then the Table VIII's BASE-f, trained by the same code on the same clips.

The reduction of the terms is L2I's ``loss_reduction`` (:func:`~audiobench.methods.l2i_parts.l2i_loss`).
Defaults: Table III for ESC-50, read as (gamma, alpha, beta) = (1.0, 3.0, 0.2) (the table's Greek
column heads are lost in our copy; see docs/l2i_by_design.md), K = 100, the last three blocks.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from audiobench.contracts.component import Params
from audiobench.contracts.frontend import Frontend
from audiobench.contracts.registry import MODELS
from audiobench.data.base import ClipSet
from audiobench.kernel.cache import stable_hash
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.blocks import blocks_problem
from audiobench.methods.l2i_parts import Psi, Theta, l2i_loss
from audiobench.models.base import AudioClassifier, ModelSpec, probabilities, training_loss
from audiobench.models.cnn14 import Cnn14, conv_block_names

L2I_BD_CODE_VERSION = 1  # bump when training changes the weights
PREDICTIONS = ("f", "g", "posthoc")
ROW_NAMES = {"f": "L2I BD w/ ATT", "g": "L2I BD-NoPred", "posthoc": "L2I-PostHoc"}  # Table VIII's names


def block_indices(blocks: int | list[int], depth: int) -> list[int]:
    """1-based indices of the blocks Psi reads: the ``blocks`` deepest, or the listed ones (sorted).
    Raises ``ValueError`` when they do not fit a network of ``depth`` blocks."""
    problem = blocks_problem(blocks, depth, "l2i_bd")
    if problem:
        raise ValueError(problem)
    return list(range(depth - blocks + 1, depth + 1)) if isinstance(blocks, int) else sorted(blocks)


class L2IByDesign(AudioClassifier):
    """g(x) = Theta(Psi(f_I(x))): log1p-mel [B, 1, T, n_mels] -> Theta's logits [B, C].

    ``f``: the CNN14 (its head gives f(x), the prediction-loss branch); ``block_idx``: the 1-based blocks
    Psi reads; ``k`` components; ``channels``: Psi's width; ``pooling``: Theta's; ``n_freq``: the STFT
    bins of the dictionary buffer ``W`` [n_freq, k] (set by training, saved with the weights). The blocks,
    features and channels are f's, so gradient and CAM methods read the same layers as on a CNN14.
    """

    def __init__(self, f: Cnn14, block_idx: list[int], k: int, channels: int | None, pooling: str, n_freq: int):
        super().__init__()
        self.f, self.block_idx = f, list(block_idx)
        self.output_kind = f.output_kind
        self.class_names, self.sample_rate = f.class_names, f.sample_rate
        frames = max(16, 2 ** (f.n_blocks + 1))
        was = f.training
        f.eval()
        with torch.no_grad():
            feats = f.features(torch.zeros(1, 1, frames, f.n_mels))
        f.train(was)
        dims = [(feats[i - 1].shape[1], feats[i - 1].shape[3]) for i in self.block_idx]
        self.psi = Psi(dims, k, channels or min(c for c, _ in dims))
        self.theta = Theta(k, f.n_classes, pooling)
        self.register_buffer("W", torch.zeros(n_freq, k))

    def blocks(self) -> list[torch.nn.Module]:
        return self.f.blocks()

    def block_names(self) -> list[str]:
        return self.f.block_names()

    def block_channels(self) -> list[int]:
        return self.f.block_channels()

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        return self.f.features(inp)

    def head(self, last: torch.Tensor) -> torch.Tensor:
        """Not defined: g's scores read several blocks (:meth:`forward`). Raises :class:`AudiobenchError`."""
        raise AudiobenchError("l2i_bd's scores come from its interpreter, which reads several blocks: call the model "
                              "(forward), not head(); post-hoc interpreters that read head (l2i) do not explain it")

    def activations(self, feats: list[torch.Tensor], n_frames: int) -> torch.Tensor:
        """H [B, K, n_frames] >= 0 from every block's output ``feats`` (Psi on the chosen ones)."""
        return self.psi([feats[i - 1] for i in self.block_idx], n_frames)

    def outputs(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass: (f's logits [B, C], H [B, K, T], g's logits [B, C]) for a network input [B, 1, T, M]."""
        feats = self.f.features(inp)
        H = self.activations(feats, inp.shape[2])
        return self.f.head(feats[-1]), H, self.theta(H)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        feats = self.f.features(inp)
        return self.theta(self.activations(feats, inp.shape[2]))


def by_design_loss(
    W: torch.Tensor, H: torch.Tensor, x: torch.Tensor, g_logits: torch.Tensor, f_logits: torch.Tensor,
    labels: torch.Tensor, prediction: str, output_kind: str, alpha: float, beta: float, gamma: float,
    reduction: str = "ours", label_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The by-design loss and its unweighted terms (``loss``, ``pred``, ``recon``, ``l1``, ``fid_ce``).

    ``W`` [F, K], ``H`` [B, K, T], ``x`` [B, T, F] the log-magnitude spectrogram, ``g_logits`` (Theta's)
    and ``f_logits`` (f's head) [B, C], ``labels`` [B] class indices or [B, C] multi-hot (``label_mask``
    [B, C] bool: the known pairs). recon, l1 and fid_ce are :func:`l2i_loss`'s under ``reduction``, fid_ce
    against f's probabilities detached (soft targets); pred is :func:`training_loss` (CE, or BCE per
    known label) of f (``prediction`` ``f``: the journal's sec. III-C) or of g (``g``: BD-NoPred), and
    loss = gamma * pred + alpha * recon + beta * l1 (+ fid_ce for ``f``). ``posthoc``'s interpreter phase:
    loss = fid_ce + alpha * recon + beta * l1 (pred logged, not added; f is frozen there).
    Raises ``ValueError`` for another ``prediction``.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, not {prediction!r}")
    target = probabilities(f_logits.detach(), output_kind)  # type: ignore[arg-type]
    terms = l2i_loss(W, H, x, g_logits, target, alpha, beta, reduction, output_kind)
    scored = g_logits if prediction == "g" else f_logits
    pred = training_loss(scored, labels, output_kind, label_mask)  # type: ignore[arg-type]
    base = alpha * terms["recon"] + beta * terms["l1"]
    loss = {"f": gamma * pred + terms["fid_ce"] + base, "g": gamma * pred + base, "posthoc": terms["fid_ce"] + base}
    return {**terms, "loss": loss[prediction], "pred": pred}


@MODELS.register("l2i_bd")
class L2IByDesignSpec(ModelSpec):
    """L2I by design: a CNN14 and L2I's interpreter trained jointly, predictions from the interpreter (journal sec. III-C)."""

    display_name = "L2I by design"
    takes_augment = True  # model.train.augment_prob draws from train.augment, as the harness's classifier training

    class Params(Params):
        width: int = Field(64, ge=1, description="channels of f's first block (PANNs: 64)")
        depth: int = Field(6, ge=2, le=6, description="f's conv blocks (PANNs: 6)")
        dropout: float = Field(0.2, ge=0, lt=1, description="f's head dropout")
        output_kind: Literal["softmax", "sigmoid"] = Field(
            "softmax", description="softmax (multi-class: eq. 1, cross-entropy) or sigmoid (multi-label: eq. 2, BCE)")
        prediction: Literal["f", "g", "posthoc"] = Field(
            "f", description="where the prediction loss acts: f (the journal's L2I BD w/ ATT: on f's head, jointly "
            "with the interpreter's losses), g (its L2I BD-NoPred: on g's output, no loss on f), posthoc (its "
            "L2I-PostHoc: f trained alone, then frozen, then the interpreter; f's head is BASE-f)")
        k: int = Field(100, ge=1, description="dictionary size K (Table III: 100 for ESC-50)")
        blocks: int | list[int] = Field(3, description="the N deepest blocks Psi reads, or 1-based indices (journal: last 3)")
        channels: int | None = Field(None, ge=1, description="Psi's width; None: the smallest channel count of the blocks")
        pooling: Literal["attention", "max"] = Field("attention", description="Theta's pooling over time (w/ ATT or w/ MAX)")
        gamma: float = Field(1.0, ge=0, description="weight of the prediction loss (Table III's first column, 1.0)")
        alpha: float = Field(3.0, ge=0, description="weight of the reconstruction term (Table III, ESC-50: 3.0)")
        beta: float = Field(0.2, ge=0, description="weight of the L1 term on H (Table III: 0.2)")
        loss_reduction: Literal["ours", "recipe", "paper"] = Field(
            "ours", description="how the terms are reduced, as the l2i method's loss_reduction")
        sparsity: float = Field(1.0, ge=0, description="L1 weight on H in the sparse NMF that learns W")
        nmf_iter: int = Field(200, ge=1, description="multiplicative-update iterations of the NMF")
        frame_chunk: int = Field(5, ge=1, description="NMF training frames averaged in chunks of this many")

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.output_kind = self.params.output_kind  # per instance, as cnn14's

    def architecture(self) -> tuple[int, int]:
        """(width, depth) of f."""
        return self.params.width, self.params.depth

    def block_names(self) -> list[str]:
        return conv_block_names(self.params.depth)

    def min_input(self) -> tuple[int, int, str]:
        d = self.params.depth
        return 2 ** (d - 1), 2 ** (d - 1), f"an l2i_bd of depth {d} ({d - 1} 2x2 poolings)"

    def check(self, n_mels: int | None = None, n_classes: int | None = None) -> list[str]:
        problem = blocks_problem(self.params.blocks, self.params.depth, "l2i_bd")
        return [f"model.blocks: {problem}"] if problem else []

    def build(self, class_names: list[str], n_mels: int, sample_rate: int = 16000, n_freq: int = 0) -> L2IByDesign:
        """An untrained g for ``class_names`` (``n_freq``: the dictionary's STFT bins, set by training)."""
        p = self.params
        f = Cnn14(len(class_names), n_mels=n_mels, width=p.width, depth=p.depth, dropout=p.dropout)
        f.class_names, f.sample_rate, f.output_kind = list(class_names), sample_rate, p.output_kind
        return L2IByDesign(f, block_indices(p.blocks, p.depth), p.k, p.channels, p.pooling, n_freq)

    def model_key(self, train_params: Any, splits: dict[str, ClipSet], frontend: Frontend, data_fingerprint: dict,
                  seed: int, augment: Any = ()) -> str:
        """Everything that shapes g's weights: parameters, training, classes, front end, data, seed, augmentation."""
        aug = [{"name": c.name, **c.params.model_dump(mode="json")} for c in augment] \
            if getattr(train_params, "augment_prob", 0) > 0 else []
        return stable_hash({"model": {"name": self.name, **self.params.model_dump(mode="json")},
                            "train": train_params.model_dump(), "classes": splits["train"].class_names,
                            "frontend": frontend.params.model_dump(), "data": data_fingerprint, "seed": seed,
                            "augment": aug, "code": L2I_BD_CODE_VERSION})

    def train_model(self, train_params: Any, splits: dict[str, ClipSet], frontend: Frontend, data_fingerprint: dict,
                    seed: int, device: torch.device, progress: bool = True, evaluated: str = "test",
                    augment: Any = ()) -> Any:
        """Train (or load from the cache) g: :func:`audiobench.models.l2i_bd_train.train_by_design`."""
        from audiobench.models.l2i_bd_train import train_by_design

        key = self.model_key(train_params, splits, frontend, data_fingerprint, seed, augment)
        return train_by_design(self, key, train_params, splits, frontend, seed, device, progress, evaluated, augment)


def reconstruction_grid(frontend: Frontend, wave: torch.Tensor) -> torch.Tensor:
    """The NMF's and L_NMF's X: log1p|STFT| of waveforms [B, L] -> [B, T, n_fft/2 + 1] (the journal's sec. III-A)."""
    return torch.log1p(frontend.stft(wave).abs()).squeeze(1)
