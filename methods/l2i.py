"""L2I: Listen to Interpret (Parekh et al., NeurIPS 2022; journal version sec. III-IV).

An interpreter reads the classifier's hidden blocks and expresses its decision through a frozen,
pre-learnt non-negative dictionary W [F, K] (sparse NMF on the training split's representation; every
training clip, or with ``max_per_class`` at most that many per class drawn with the suite's seed, as the
journal's App. A.1 draws 700 positive clips per class for SONYC-UST):

* Psi: the last ``blocks`` block outputs -> time activations H [K, T] >= 0 (T: the domain's frames),
  by 1-D convolutions over time (``psi: conv1d``, the default, :class:`Psi`) or by 2-D convolutions
  that reduce frequency and raise the time resolution stage by stage (``psi: conv2d``, the journal's
  sec. III-D, :class:`Psi2d`);
* Theta: pooling over time, then a linear layer without bias to class logits, so logit_c = sum_k z_k
  theta[c, k] exactly; ``pooling: attention`` (the default, the journal's L2I w/ ATT): z = H a (a = softmax
  over frames of a learnt score); ``pooling: max`` (its L2I w/ MAX, sec. IV: "attention is replaced with 1D
  max-pooling"): z_k = max_t H[k, t];
* loss (classifier frozen), by ``loss_reduction`` (:func:`l2i_loss`; B clips, C classes, F x T grid, K
  components; CE = -sum_c softmax(f(X))_c log softmax(Theta(H))_c, against the classifier's
  probabilities, soft labels: the journal's eq. 1; for a multi-label classifier, see below):

  - ``ours`` (the default): alpha * mean (X - W H)^2 + beta * mean |H| + mean_B CE: the squared error
    and the L1 averaged over elements as the recipe does, but the cross-entropy summed over classes;
    this balance is neither source's (fidelity weighs C times more than in the recipe, and far more
    than in the paper, whose reconstruction and L1 terms are sums);
  - ``recipe``: the same, with the recipe's fidelity mean_{B x C} of softmax(f)_c (-log Theta_c) = CE / C
    (SpeechBrain ``recipes/ESC50/interpret/train_l2i.py``, ``compute_objectives``);
  - ``paper``: the journal's eq. 4 per clip, L_FID + alpha ||X - W H||_2^2 + beta ||H||_1 with the norms
    summed over the F x T (resp. K x T) entries and CE summed over classes (eqs. 1, 3), averaged over the
    batch (the eq. 4 sum over the training set, up to the factor B that Adam does not see).

  The epoch with the lowest logged ``valid_loss`` (the same loss on the clean valid split) is kept.
  As in the paper, W is learnt on clean clips; the interpreter too unless ``augment_prob`` > 0 (a
  share of its training clips then come from the suite's contaminations). The fit is cached without
  ``rt`` (rows differing only in RT share it).

Multi-label (a ``sigmoid`` classifier, trained with binary cross-entropy): Theta's outputs are read
through a sigmoid per label (the journal's "Design of Theta": "softmax for multi-class classification and
sigmoid for multi-label classification") and CE becomes eq. 2, the binary cross-entropy per class between
sigmoid(Theta(H)) and the classifier's sigmoid outputs f(X) as soft targets, summed over classes
(-sum_c [f_c log sigmoid(Theta_c) + (1 - f_c) log(1 - sigmoid(Theta_c))]), then reduced as above: ``ours``
and ``paper`` average that per-clip sum over the batch, ``recipe`` averages over B x C (the mean BCE). The
training log's ``fidelity_top1`` becomes ``fidelity_labels``: the share of (clip, label) pairs whose
decisions at p > 0.5 the interpreter and the classifier share. Each explained label (every label the
classifier detects, one (clip, label) row each) is interpreted as a class c below; the random baseline's
``random_count: mean`` averages over the valid split's detected (clip, label) pairs. The NMF's clips for
multi-hot labels: per class its positive clips (a known label of 1); ``max_per_class`` draws at most that
many per class, seeded, the journal's App. A.1 ("for each class, we randomly select 700 positively-labeled
samples"); ``dictionary: joint`` learns on the union of the classes' draws (each clip once: a clip drawn for
two classes enters once, and a class may so count more than ``max_per_class`` positive clips), ``per_class``
on each class's own draw (classes with no positive clip are left out); ``per_class`` learns its noise
components on the clips with no positive label (every label known: the journal's W_noise) when the
dataset does not know its contaminants.

Interpretation of the predicted (or explained) class c, for either output kind and pooling: relevance
r_k = z_k theta[c,k] / max_l |z_l theta[c,l]| (the journal's, with z the pooled activations),
the relevant set L = {k : r_k > rt}, and the soft mask M = (W_L H_L) / (W H + eps) in [0, 1] on the
domain's grid (W_L H_L keeps only the rows of H in L). In ``stft2mel`` the dictionary lives on the
linear-frequency bins, so the mask is listenable through the domain (ISTFT(M |X| e^{j phase})).

What is factorised (the NMF's and the reconstruction term's X) is the log-magnitude view of the
domain's grid (:meth:`Domain.log_magnitude`), whatever the masking operator:

* ``stft2mel``, either operator: the log-magnitude spectrogram log1p|X|, the L2I paper's representation
  (journal sec. III-A: x -> log(1 + x) on the magnitude spectrogram). The operator decides only what
  the soft mask M multiplies: |X| with ``operator: linear`` (the default; the scored input is then the
  written audio ISTFT(M |X| e^{j phase})), log1p|X| with ``operator: log1p`` (the paper's Algorithm 1,
  which soft-masks the log-magnitude spectrogram). Factorising |X| itself under ``linear`` was tried:
  |X| spans ~0-100 on a peak-normalised clip against ~0-5 for log1p|X|, so the reconstruction term
  alpha * mean (X - W H)^2 swamped the cross-entropy at the paper's alpha, and the relevant components
  lost their faithfulness (FF barely above the random baseline on the test suite);
* ``mel``: the log-mel spectrogram log1p(mel|X|), the grid itself (not listenable).

For L2I's own evaluation (``audiobench.metrics.l2i``) the :class:`Explanation` carries Theta's
scores, |L|, and two removals the metric engine scores: the relevant components (X - X_L =
(1 - M_L) X) and randomly chosen non-relevant components (the paper's random baseline). How many
and which are non-relevant: by default each clip's own |L| at the row's ``rt`` (``random_count:
per_sample``, ``random_rt`` unset), a better-matched control than the paper's; the journal's (sec. IV-C,
Table V) is ``random_count: mean, random_rt: 0.1``: every clip loses mean |L| (rounded) components drawn
outside its own L, both at the threshold 0.1, the mean taken over the clean valid split (the test clips
are seen one batch at a time) for the classifier's predicted classes (:meth:`L2I.mean_relevant_count`).
Everything is batched over the clips. The fitting (dictionary learning, the interpreter's training) is in
:mod:`audiobench.methods.l2i_fit`, a mixin of :class:`L2I`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch.nn import functional as F

from audiobench.contracts.explanation import Explanation, MaskParts
from audiobench.contracts.registry import METHODS
from audiobench.methods.base import (
    DomainModel,
    ExplainContext,
    Explainer,
    ExplainerParams,
    FitContext,
    classifier_blocks,
    to_mask,
)
from audiobench.methods.blocks import blocks_problem
from audiobench.methods.l2i_fit import NMF_CODE_VERSION as NMF_CODE_VERSION  # re-export: imported from here
from audiobench.methods.l2i_fit import L2IFitting
from audiobench.methods.l2i_fit import _cpu_threads as _cpu_threads  # re-export: imported from here
from audiobench.methods.l2i_fit import _Encoded as _Encoded  # re-export: imported from here
from audiobench.methods.l2i_parts import Psi, Psi2d, Theta, psi2d_stages, reconstruct
from audiobench.methods.l2i_parts import l2i_loss as l2i_loss  # re-export: imported from here
from audiobench.models.base import AudioClassifier

L2I_CODE_VERSION = 1  # bump when training changes the interpreter
INTERPRETATION_ONLY = ("rt", "nonneg", "normalize", "random_count", "random_rt")  # parameters that do not shape the fit
MASK_EPS = 1e-8


class L2IParams(ExplainerParams):
    # added after committed results: at their default left out of every dump (cell hashes, fit keys unchanged)
    added_fields: ClassVar[frozenset[str]] = frozenset(
        {"loss_reduction", "psi", "random_count", "random_rt", "max_per_class", "pooling"})

    nonneg: Literal["abs", "relu", "none"] = "none"  # the soft mask is already in [0, 1]
    normalize: Literal["max", "none"] = "none"
    rt: float = Field(0.2, ge=0, lt=1, description="relevance threshold: components with r_k > rt are the interpretation")
    # dictionary (sparse NMF)
    k: int = Field(100, ge=1, description="dictionary size K (joint dictionary)")
    dictionary: Literal["joint", "per_class"] = Field(
        "joint", description="one dictionary on all training clips, or per-class components learnt beside shared noise ones"
    )
    k_per_class: int = Field(10, ge=1, description="per_class: components per class (K = classes x k_per_class)")
    k_noise: int = Field(10, ge=1, description="per_class: noise components, learnt first and held fixed")
    sparsity: float = Field(1.0, ge=0, description="L1 weight on H in the sparse NMF")
    nmf_iter: int = Field(200, ge=1, description="multiplicative-update iterations")
    frame_chunk: int = Field(5, ge=1, description="training frames averaged in chunks of this many")
    max_per_class: int | None = Field(
        None, ge=1, description="at most this many training clips per class, drawn with the suite's seed, enter the "
        "NMF's X_train (None: every clip); the L2I journal's App. A.1 draws 700 positive clips per class (SONYC-UST)")
    # interpreter
    blocks: int | list[int] = Field(3, description="the N deepest classifier blocks, or a list of 1-based indices")
    channels: int | None = Field(None, ge=1, description="Psi's width; None: the smallest channel count of the blocks (as the reference)")
    psi: Literal["conv1d", "conv2d"] = Field(
        "conv1d", description="Psi's convolutions: conv1d (ours: frequency folded into channels, 1-D over time) or "
        "conv2d (the L2I journal's sec. III-D: 2-D convolutions that decrease frequency and increase time resolution; "
        "the recipe's CNN14PSI_stft_2d)")
    pooling: Literal["attention", "max"] = Field(
        "attention", description="Theta's pooling over time: attention (the L2I journal's L2I w/ ATT) or max, "
        "z_k = max_t H[k, t] (its L2I w/ MAX, sec. IV: 'attention is replaced with 1D max-pooling')")
    alpha: float = Field(10.0, ge=0, description="weight of the reconstruction term")
    beta: float = Field(0.8, ge=0, description="weight of the L1 term on H")
    loss_reduction: Literal["ours", "recipe", "paper"] = Field(
        "ours", description="how the loss terms are reduced: ours (means for reconstruction and L1, CE summed over "
        "classes), recipe (train_l2i.py: the same with CE averaged over classes, CE / C), paper (the L2I journal's eq. 4: "
        "squared error summed over F x T, L1 summed over K x T, CE summed over classes, per clip)")
    epochs: int = Field(35, ge=1)
    lr: float = Field(2e-4, gt=0, description="Adam learning rate")
    batch_size: int = Field(16, ge=1)
    augment_prob: float = Field(
        0.0, ge=0, le=1, description="share of training clips taken from the suite's contaminations (the paper: 0, clean only)"
    )
    # the random baseline (interpretation only)
    random_count: Literal["per_sample", "mean"] = Field(
        "per_sample", description="how many non-relevant components the random baseline removes: each clip's own |L| "
        "(ours), or round(mean |L|) over the clean valid split for every clip (the L2I journal's sec. IV-C: 'the same "
        "number of components that are present in L on average')")
    random_rt: float | None = Field(
        None, ge=0, lt=1, description="the threshold at which the random baseline's L (its count and the components it "
        "excludes) is taken; None: the row's rt; the L2I journal's Table V: 0.1")


# ----------------------------------------------------------------------------------------------
# the interpretation formulas (pure functions, batched)


def relevance(z: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """r_k = z_k theta[c,k] / max_l |z_l theta[c,l]| for each sample's class c: [B, K] (0 where all are 0)."""
    contrib = z * weight[target]
    peak = contrib.abs().amax(dim=1, keepdim=True)
    return torch.where(peak > 0, contrib / peak.clamp_min(torch.finfo(contrib.dtype).tiny), torch.zeros_like(contrib))


def component_mask(W: torch.Tensor, H: torch.Tensor, selected: torch.Tensor, eps: float = MASK_EPS) -> torch.Tensor:
    """Soft mask (W_L H_L) / (W H + eps), clipped to [0, 1], for the components ``selected`` [B, K]: [B, 1, T, F]."""
    part = reconstruct(W, H * selected.to(H.dtype).unsqueeze(2))
    return (part / (reconstruct(W, H) + eps)).clamp(0, 1).unsqueeze(1)


def random_nonrelevant(
    selected: torch.Tensor, generator: torch.Generator | None = None, count: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Per sample, ``count`` components drawn uniformly among those not ``selected`` [B, K] (all of them
    when there are fewer): the paper's random baseline. [B, K] bool.

    ``count``: None (default) = as many as the sample's own ``selected`` holds; an int = that many for
    every sample (the journal's "the same number of components that are present in L on average",
    sec. IV-C); a [B] tensor = per sample. Raises ``ValueError`` for a negative count.
    """
    if count is None:
        n = selected.sum(dim=1, keepdim=True)
    else:
        n = torch.as_tensor(count, device=selected.device).reshape(-1, 1).expand(selected.shape[0], 1)
        if bool((n < 0).any()):
            raise ValueError(f"the random baseline cannot remove a negative number of components ({count})")
    u = torch.rand(selected.shape, generator=generator, device="cpu" if generator is None else generator.device)
    u = u.to(selected.device).masked_fill(selected, 2.0)  # relevant ones rank last
    rank = u.argsort(dim=1).argsort(dim=1)
    return (rank < n) & ~selected


@dataclass
class Interpretation:
    """What L2I computes for a batch; every tensor has the batch first."""

    H: torch.Tensor  # [B, K, T] activations
    z: torch.Tensor  # [B, K] time-pooled activations
    logits: torch.Tensor  # [B, C] Theta's output
    relevance: torch.Tensor  # [B, K] for the explained class
    selected: torch.Tensor  # [B, K] bool, r_k > rt
    mask: torch.Tensor  # [B, 1, T, F] soft mask of the selected components


# ----------------------------------------------------------------------------------------------
# the method


def _block_shapes(clf: AudioClassifier, model: DomainModel, block_idx: list[int]) -> tuple[list[tuple[int, int, int]], int]:
    """(channels, time steps, frequency bins) of the chosen block outputs and the probe's frames, from a
    silent probe through the model."""
    frames = max(16, 2 ** (max(block_idx) + 1))
    wave = torch.zeros(1, frames * model.frontend.params.hop_length, device=next(clf.parameters()).device)
    was_training = clf.training
    clf.eval()
    with torch.no_grad():
        rep = model.domain.represent(model.frontend, wave)
        with model.reading(rep):
            feats = model.features(x := rep.x)
    clf.train(was_training)
    return [(feats[i - 1].shape[1], feats[i - 1].shape[2], feats[i - 1].shape[3]) for i in block_idx], x.shape[2]


@METHODS.register("l2i")
class L2I(L2IFitting, Explainer):
    """L2I: time activations of a sparse-NMF dictionary predicted from the classifier's blocks; relevant components form a soft mask (Parekh et al., 2022)."""

    display_name = "L2I"
    Params = L2IParams
    trainable = True
    output_kinds = ("softmax", "sigmoid")  # its fidelity term: eq. 1 or eq. 2 (a zero-shot model: refused at validate)
    needs_gradients = False
    signed_maps = False
    stochastic = True  # its random-removal control draws from the seed; the mask does not

    def __init__(self, params: Any = None):
        super().__init__(params)
        self.W: torch.Tensor | None = None
        self.psi: Psi | Psi2d | None = None
        self.theta: Theta | None = None
        self.block_idx: list[int] = []
        self.model_kind = "softmax"  # the classifier's output kind (set by _build): the fidelity term's form
        # random_count: mean: the mean |L| the random baseline removes (set by fit, or by the caller)
        self.mean_relevant: float | None = None

    def check_classifier(self, depth: int, model: str = "classifier",
                         names: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """(parameter, problem) pairs for a classifier of ``depth`` blocks: ``blocks`` must fit it; an ``l2i_bd``
        model (whose scores come from its own interpreter, not a head L2I could read) is refused."""
        if model == "l2i_bd":
            return [("name", "l2i reads a classifier's head; l2i_bd's scores come from its own interpreter: explain it "
                             "with the l2i_bd method (its by-design interpretation)")]
        problem = blocks_problem(self.params.blocks, depth, model)
        return [("blocks", problem)] if problem else []

    def row_label(self) -> str:
        return f"L2I{' w/ MAX' if self.params.pooling == 'max' else ''}, RT={self.params.rt:g}"

    def fit_params(self) -> dict[str, Any]:
        """The parameters that shape the fit (the cache key): all but the interpretation-only ones."""
        return self.params.model_dump(mode="json", exclude=set(INTERPRETATION_ONLY))

    def fit_key(self, ctx: FitContext) -> str:
        """The fit's cache key: classifier, data, domain, front end, seed, fit parameters, and the
        contaminations used as augmentation (when ``augment_prob`` > 0)."""
        augment = [{"name": c.name, **c.params.model_dump(mode="json")} for c in ctx.augment]
        extra = {"code": L2I_CODE_VERSION, "augment": augment if self.params.augment_prob > 0 else []}
        return ctx.cache_key(self.name, self.fit_params(), extra)

    # -- pieces -----------------------------------------------------------------------------
    def _classifier(self, model: DomainModel) -> AudioClassifier:
        return model.classifier

    def _build(self, model: DomainModel, k: int, n_classes: int) -> tuple[Psi | Psi2d, Theta]:
        clf = self._classifier(model)
        self.model_kind = clf.output_kind
        self.block_idx = classifier_blocks(self.params.blocks, clf.depth, self.name)
        shapes, frames = _block_shapes(clf, model, self.block_idx)
        dims = [(c, f) for c, _, f in shapes]
        channels = self.params.channels or min(c for c, _ in dims)
        if self.params.psi == "conv2d":
            stages = psi2d_stages(max(t for _, t, _ in shapes), max(f for _, f in dims), frames)
            return Psi2d(dims, k, channels, stages), Theta(k, n_classes, self.params.pooling)
        return Psi(dims, k, channels), Theta(k, n_classes, self.params.pooling)

    @torch.no_grad()
    def _encode(self, model: DomainModel, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Chosen block outputs and the classifier's logits for representations x."""
        clf = self._classifier(model)
        feats = model.features(x)
        return [feats[i - 1] for i in self.block_idx], clf.head(feats[-1])

    # -- the random baseline's count ------------------------------------------------------
    def random_removed(self) -> int:
        """``random_count: mean``: the number of components the random baseline removes from every clip,
        :attr:`mean_relevant` rounded half up. Raises ``RuntimeError`` when it is not set (before :meth:`fit`)."""
        if self.mean_relevant is None:
            raise RuntimeError("L2I random_count: mean needs the mean |L| over the valid clips, which fit computes")
        return math.floor(self.mean_relevant + 0.5)

    def _random_rt(self) -> float:
        """The threshold of the random baseline's L: ``random_rt``, or the row's ``rt``."""
        return self.params.rt if self.params.random_rt is None else self.params.random_rt

    @torch.no_grad()
    def mean_relevant_count(self, model: DomainModel, waves: torch.Tensor, max_rows: int = 64) -> float:
        """Mean |L| at the random baseline's threshold over clips ``waves`` [N, S], each explained for the
        classifier's predicted class (a sigmoid classifier: for each label with p > 0.5, the mean then over
        those (clip, label) pairs; 0 when there is none): the count ``random_count: mean`` removes (journal
        sec. IV-C). Batched by ``max_rows``; raises ``RuntimeError`` before :meth:`fit` and ``ValueError`` for no clips."""
        if len(waves) == 0:
            raise ValueError("the mean number of relevant components needs at least one clip")
        clf = self._classifier(model)
        device = next(clf.parameters()).device
        total, pairs = 0.0, 0
        for i in range(0, len(waves), max_rows):
            rep = model.domain.represent(model.frontend, waves[i : i + max_rows].to(device))
            x = rep.x
            with model.reading(rep):
                scores = model(x)
            if clf.output_kind == "sigmoid":  # every detected label, one (clip, label) pair each
                rows, target = (clf.probabilities(scores) > 0.5).nonzero(as_tuple=True)
                if len(rows) == 0:
                    continue
                x, rep = x[rows], rep.subset(rows)
            else:
                target = scores.argmax(dim=1)
            with model.reading(rep):
                it = self.interpret(x, target, model)
            total, pairs = total + float((it.relevance > self._random_rt()).sum()), pairs + len(target)
        return total / max(pairs, 1)

    # -- explaining -------------------------------------------------------------------------
    @torch.no_grad()
    def interpret(self, x: torch.Tensor, target: torch.Tensor, model: DomainModel) -> Interpretation:
        """Activations, relevances, selected components and their soft mask for classes ``target``."""
        if self.psi is None or self.theta is None or self.W is None:
            raise RuntimeError("L2I must be fitted before it explains (the runner calls fit)")
        self.psi.to(x.device).eval(), self.theta.to(x.device).eval()
        W = self.W = self.W.to(x.device)
        feats, _ = self._encode(model, x)
        H = self.psi(feats, x.shape[2])
        z = self.theta.pool(H)
        r = relevance(z, self.theta.fc.weight, target)
        selected = r > self.params.rt
        return Interpretation(H, z, self.theta.fc(z), r, selected, component_mask(W, H, selected))

    def random_baseline(self, it: Interpretation, generator: torch.Generator | None = None) -> torch.Tensor:
        """The components the random baseline removes [B, K] bool: drawn outside each clip's L at the
        baseline's threshold (``random_rt``, else ``rt``), as many as that L holds (``random_count:
        per_sample``) or :meth:`random_removed` for every clip (``mean``: the mean |L| that :meth:`fit` sets,
        rounded; a ``RuntimeError`` before)."""
        excluded = it.selected if self.params.random_rt is None else it.relevance > self.params.random_rt
        if self.params.random_count == "per_sample":
            return random_nonrelevant(excluded, generator)
        return random_nonrelevant(excluded, generator, self.random_removed())

    def explain(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> Explanation:
        """The soft mask of the relevant components, each relevant component as a named part
        (``component<k>``: the soft mask (w_k h_k) / (W H + eps), written as audio in ``stft2mel``),
        and for L2I's own metrics: Theta's scores, the number of relevant components, and two removals
        the engine scores, the ``relevant`` components and the ``random`` baseline of non-relevant
        ones (the paper's FF and its control; how many and which: :meth:`random_baseline`)."""
        it = self.interpret(x, target, ctx.model)
        with torch.no_grad():
            rand = component_mask(self.W, it.H, self.random_baseline(it, ctx.generator("cpu")))
            rows, comps = it.selected.nonzero(as_tuple=True)  # every (row, relevant component) pair at once
            onehot = F.one_hot(comps, it.selected.shape[1]).bool()
            digits = len(str(it.selected.shape[1] - 1))
            parts = MaskParts(rows.cpu(), [f"component{k:0{digits}d}" for k in comps.tolist()],
                              component_mask(self.W, it.H[rows], onehot))
        return Explanation(
            mask=to_mask(it.mask, self.params.nonneg, self.params.normalize),
            parts=parts,
            removals={"relevant": it.mask, "random": rand},
            interpreter_scores=it.logits,
            n_parts=it.selected.sum(dim=1).to(x.dtype),
            relevance=it.relevance,
        )
