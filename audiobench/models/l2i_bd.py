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
from audiobench.data.levels import level_record
from audiobench.kernel.cache import stable_hash
from audiobench.methods.blocks import blocks_problem
from audiobench.models.base import ModelSpec
from audiobench.models.cnn14 import Cnn14, conv_block_names
from audiobench.models.l2i_bd_net import (  # noqa: F401  (the network's names, imported from here too)
    PREDICTIONS,
    ROW_NAMES,
    L2IByDesign,
    block_indices,
    by_design_loss,
    reconstruction_grid,
)
from audiobench.models.l2i_bd_train import train_by_design

L2I_BD_CODE_VERSION = 1  # bump when training changes the weights


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
                            "augment": aug, "code": L2I_BD_CODE_VERSION, **level_record(self.peak_normalise)})

    def train_model(self, train_params: Any, splits: dict[str, ClipSet], frontend: Frontend, data_fingerprint: dict,
                    seed: int, device: torch.device, progress: bool = True, evaluated: str = "test",
                    augment: Any = ()) -> Any:
        """Train (or load from the cache) g: :func:`audiobench.models.l2i_bd_train.train_by_design`."""
        key = self.model_key(train_params, splits, frontend, data_fingerprint, seed, augment)
        return train_by_design(self, key, train_params, splits, frontend, seed, device, progress, evaluated, augment)
