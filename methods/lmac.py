"""L-MAC: Listenable Maps for Audio Classifiers (Paissan, Ravanelli & Subakan, ICML 2024).

A decoder reads the classifier's deepest block outputs (U-Net style: transposed convolutions
upsample, each shallower block is added in) and outputs a sigmoid mask on the masking domain's
grid. Its logit map is computed at the classifier's (time, mel) resolution; for ``stft2mel`` it is
spread onto the linear STFT bins through the mel filterbank before the sigmoid, so the mask lives
on the STFT grid (listenable) and every linear bin is masked like the mel bands that cover it.
(A learned layer on the 513-bin grid costs more than the rest of the decoder and sees no
information the classifier's latents do not carry.) ``head: linear`` adds that layer: a learned per-frame
Linear(n_mels -> the domain's bins) in place of the fixed spreading, initialised to it (bias 0), so the
mask ends on the STFT grid as the recipe's ``CNN14PSI_stft`` (transposed convolutions to 513 bins) and the
paper's fig. 1 / sec. 2.2 decoder do, with linear bins under one mel band free to differ.

Training (classifier frozen, y_hat = argmax f(X), the classifier's own decision)::

    lambda_in * CE(f(M*X), y_hat) - lambda_out * CE(f((1-M)*X), y_hat) + lambda_l1 * mean|M| (+ lambda_tv * TV(M))

Multi-label (a ``sigmoid`` classifier, e.g. ``cnn14`` with ``output_kind: sigmoid``): the labels trained for are
those the suite's targets decide (``FitContext.targets``: p_c(X) > ``targets.threshold``, or ``top_k``), the labels
explained, from the classifier's own scores as the softmax path's y_hat. ``label_masks: ranked`` (default; the
public SpeechBrain branch ``recipes/ESC50/interpret/train_int_ml.py``, commit 44e9cc64, ``compute_objectives``,
``hparams/stft2mel_cnn14_ml.yaml``: ``CNN14PSI_stft``, ``outdim: 3``): ``ranks`` mask channels, channel i for the
clip's label k_i of the i-th highest logit (ties by index), w_i = 1[the clip has >= i+1 decided labels]::

    sum_i mean_b w_i [lambda_in (-log s(f(M_i*X)_k_i) + 1/C sum_{c != k_i} -log(1 - s(f(M_i*X)_c)))
                      - lambda_out (-log s(f((1-M_i)*X)_k_i)) + lambda_l1 mean|M_i| (+ lambda_tv TV(M_i))]

(:func:`~audiobench.methods.lmac_ranked.ranked_masking_loss`; s = sigmoid; ``out_cap`` caps the masked-out term
at log 2). The recipe's terms per channel (keep k_i on M_i*X, push the others down there, push k_i down on
(1-M_i)*X), in bounded BCE form (the recipe's log s(others) is unbounded below), with the L1 term it comments
out, and w_i from the classifier's decisions where the recipe reads ground-truth label counts. A target ranked
r among its clip's logits gets channel r; ranked >= ``ranks`` it has none (a NaN map, recorded as a skip with
:meth:`LMAC.unexplained_reason`; ``validate`` refuses ``select: all`` / ``classes`` and ``top_k`` > ``ranks``).
Fine-tuning treats each trained (clip, channel) as a one-mask clip: its own gate cos(X, M1_i*X_in), guidance
and L1. ``label_masks: shared``: one mask per clip, lambda_in BCE(f(M*X), y) - lambda_out mean_{y_c=1}
-log s(f((1-M)*X)_c) + lambda_l1 mean|M| (:func:`~audiobench.methods.lmac_objective.sigmoid_terms`), every
label of the clip explained by it. See ``docs/departures.md``.

Fine-tuning ("L-MAC, FT, lambda_g"), paper sec. 2.1: from the trained decoder, with the regulariser
R(M) = lambda_g ||M*X - X|| + lambda_s ||M||_1, the guidance applied only to items the stage-1 mask M1
explains well, X the clean representation (before augmentation; X_in the input). ``guidance``::

    regulariser (default, the paper's):  lambda_g |M*X_in - X|^2 / |X|^2 on gated items, lambda_l1 mean|M| on all
    bce (the recipe's default):           lambda_g BCE(M, oracle) on gated items, lambda_l1 mean|M| on the others
    squared (the recipe's non-binary):    lambda_g mean (M*X_in - X)^2 on gated items, lambda_l1 mean|M| on the others

(oracle: X >= ``oracle_threshold`` x its max). The gate is the recipe's (``crosscortype: dotp``):
cos(X, M1*X_in) >= CCT. The paper's text compares M1 with the binarised X, which cannot pass here: M1
covers most of the grid, the oracle a few %, so cos(M1, oracle) ~ sqrt(oracle share) (quickstart: no
training clip above 0.6; ``tools/ft_gate.py``). ``gate_mask`` says which mask the gate reads: ``frozen``
(default) the stage-1 decoder's, the paper's "mask after the initial stage"; ``current`` the decoder being
fine-tuned, as the recipe's ``compute_objectives`` does (its ``xhat``, so the gated set moves during
fine-tuning). A fit records the gated share per epoch and the similarity quantiles at the start;
:meth:`LMAC.fit_notes` flags a row whose gate passed < 1 %.

Options that select the recipe's (``recipes/ESC50/interpret/train_lmac.py``, ``hparams/lmac_cnn14.yaml``) or
the paper's form where the default departs from it:

* ``l1_reduction``: ``mean`` (default) is lambda_l1 x the batch's mean |M|; ``batch_sum`` is the recipe's
  ``(xhat.abs().mean() * reg_w_l1 * ~gate).sum()``: the batch-wide mean times the number of items the L1 term
  applies to (the batch size in stage 1, the un-gated items in fine-tuning for ``bce`` / ``squared``, every
  item for ``regulariser``), i.e. B x stronger at batch size B.
* ``lr_schedule``: ``constant`` (default) or ``plateau``, the recipe's SpeechBrain ``ReduceLROnPlateau``
  (``plateau_factor`` 0.5, ``plateau_patience`` 3, ``plateau_start_epoch`` 100 = ``dont_halve_until_epoch``)
  on minus the validation input fidelity (``plateau_monitor: fid_in``, as ``interpreter_brain.py`` passes it)
  or on ``valid_total``; see :class:`audiobench.kernel.fitting.PlateauLR`. Each stage runs a fresh schedule
  (the recipe fine-tunes in a new run). Each epoch's record logs its ``lr``.
* ``head``: ``filterbank`` (default, the fixed spreading above) or ``linear`` (learned, see above).
* ``binarize``: a threshold in (0, 1); at explanation time the mask becomes (M >= threshold) in {0, 1}, the
  paper's "binary mask" (abstract, sec. 2, eq. 2). Training is unchanged (a continuous mask trains), so
  it does not enter the fit's cache key.
* ``reanalyse: waveform``: the mask scored is the re-analysis of the listenable interpretation ISTFT(M X),
  clamp(G(ISTFT(M X)) / G(X), 0, 1) on the domain's grid (:mod:`audiobench.methods.timedomain`), as LMAC-TD's
  waveform is scored, for a like-for-like comparison (``stft2mel`` only; not a training setting).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from audiobench.contracts.domains import Domain
from audiobench.contracts.registry import METHODS
from audiobench.contracts.targets import TargetParams
from audiobench.data.base import ClipSet
from audiobench.data.contaminations import with_augmentation
from audiobench.kernel.fitting import PlateauLR, TermMeans, fit_epochs
from audiobench.methods.base import (
    DomainModel,
    ExplainContext,
    Explainer,
    FitContext,
    decoder_blocks,
    draw_versions,
)
from audiobench.methods.blocks import blocks_entries_problem, layer_outputs, names_layers
from audiobench.methods.lmac_decoder import LmacDecoder, _Versions, grid_map  # noqa: F401  (lmac_zs, lmac_td import them from here too)
from audiobench.methods.lmac_objective import (
    FinetuneParams,
    LmacParams,
    binary_mask,
    cct_gate,
    decided_labels,
    finetune_loss,
    masking_loss,
    similarity_summary,
)
from audiobench.methods.lmac_ranked import (
    beyond_note,
    gate_similarities,
    pick_channel,
    ranked_finetune_loss,
    ranked_labels,
    ranked_masking_loss,
    ranked_targets_problems,
    sigmoid_key,
    target_rank,
    unexplained,
)
from audiobench.methods.timedomain import reanalysis_problem, resynthesis_mask

LMAC_CODE_VERSION = 1  # bump when training changes the weights (stage 1: enters every key)
# fine-tuning's own (its key only: shipped stage-1 weights stay valid). 2: gate cos(X, M1*X_in), guidance forms
LMAC_FT_CODE_VERSION = 2


# ----------------------------------------------------------------------------------------------
# the method


@METHODS.register("lmac")
class LMAC(Explainer):
    """L-MAC: a decoder on the classifier's latents trained to output faithful, listenable masks (Paissan et al., 2024)."""

    display_name = "L-MAC"
    Params = LmacParams
    trainable = True
    output_kinds = ("softmax", "sigmoid")  # its fit trains with softmax or binary cross-entropy (zero-shot: lmac_zs)
    needs_gradients = False
    signed_maps = False

    def __init__(self, params: Any = None):
        super().__init__(params)
        self.decoder: LmacDecoder | None = None
        self.block_idx: list[int] = []
        self.layers: list[int | str] = []  # blocks named by name or module path (read by hooks, deepest first)
        self.targets = TargetParams()  # the labels a sigmoid model's masks are trained for (FitContext.targets)

    def check_classifier(self, depth: int, model: str = "classifier",
                         names: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """(parameter, problem) pairs for a classifier of ``depth`` blocks: ``blocks`` must fit it
        (an int larger than the depth means every block)."""
        problem = blocks_entries_problem(self.params.blocks, depth, model, names)
        return [("blocks", problem)] if problem else []

    def row_label(self) -> str:
        ft, p = self.params.finetune, self.params
        binary = (", learned head" if p.head == "linear" else "") + (f", binary {p.binarize:g}" if p.binarize is not None else "")
        binary += ", re-analysed" if p.reanalyse == "waveform" else ""
        binary += ", one shared mask" if p.label_masks == "shared" else (f", {p.ranks} ranks" if p.ranks != 3 else "")
        if ft is None:
            return "L-MAC" + binary
        label = f"L-MAC, FT, λg={ft.lambda_g:g}"
        label += f", CCT {ft.cct:g}" if ft.cct != FinetuneParams.model_fields["cct"].default else ""
        label += {"regulariser": "", "bce": ", BCE", "squared": ", squared"}[ft.guidance]  # the recipe's forms
        return label + (", current gate" if ft.gate_mask == "current" else "") + binary

    def check_params(self) -> list[tuple[str, str]]:
        """(parameter, problem) pairs ``validate`` reports: a plateau schedule that cannot lower the lr
        within the stage-1 ``epochs`` (its first cut follows epoch start + patience + 1)."""
        p = self.params
        first_cut = p.plateau_start_epoch + p.plateau_patience + 1
        if p.lr_schedule == "plateau" and p.epochs <= first_cut:
            return [("lr_schedule", f"plateau cannot lower the lr within epochs {p.epochs}: the first cut follows "
                                    f"epoch {first_cut} (plateau_start_epoch {p.plateau_start_epoch} + "
                                    f"plateau_patience {p.plateau_patience} + 1); raise epochs or lower plateau_start_epoch")]
        return []

    def check_targets(self, output_kind: str, targets: TargetParams) -> list[tuple[str, str]]:
        """:func:`ranked_targets_problems`: targets ranked masks cannot explain, ``label_masks`` / ``ranks`` unused."""
        return ranked_targets_problems(self.params, output_kind, targets)

    def cell_identity(self, output_kind: str) -> dict[str, Any]:
        """Rank channels on a sigmoid model (the default, absent from the dump) are not the shared mask's cells."""
        ranked = output_kind == "sigmoid" and self.params.label_masks == "ranked"
        return {"label_masks": "ranked", "ranks": self.params.ranks} if ranked else {}

    def unexplained_reason(self) -> str | None:
        """With rank channels, a label ranked beyond them has no mask (its row's map is NaN)."""
        ranked = self.decoder is not None and self.decoder.head[-1].out_channels > 1
        return f"L-MAC has {self.params.ranks} rank channels (ranks): the label ranked beyond them has no mask" if ranked else None

    def fit_notes(self, info: dict[str, Any]) -> list[str]:
        """A fine-tuned row whose gate passed < 1 % of the training items is the base L-MAC trained
        a few epochs more, not a fine-tuned one: say so beside its numbers."""
        share = info.get("gated_share")
        if self.params.finetune is None or share is None or share >= 0.01:
            return []
        epochs = len(info.get("gated_per_epoch", {}).get("train", [])) or self.params.finetune.epochs
        return [f"fine-tuning gate passed {100 * share:.1f} % of training items (< 1 %): this row is the base "
                f"L-MAC plus {epochs} epoch{'s' if epochs != 1 else ''}, not fine-tuned"]

    # -- pieces -----------------------------------------------------------------------------
    def _ranked(self, model: DomainModel) -> bool:
        """Whether the decoder has rank channels: ``label_masks: ranked`` on a sigmoid model."""
        return self.params.label_masks == "ranked" and model.classifier.output_kind == "sigmoid"

    def _build(self, model: DomainModel) -> LmacDecoder:
        clf, p = model.classifier, self.params
        head = (grid_map(model) if p.head == "linear" else None, p.ranks if self._ranked(model) else 1)
        if names_layers(p.blocks):  # names and module paths: read by hooks, channels found at the first batch
            self.layers = list(p.blocks)
            return LmacDecoder([None] * len(p.blocks), p.hidden, *head)
        self.block_idx = decoder_blocks(p.blocks, clf.depth, self.name)  # the N deepest (at most all), deepest first
        return LmacDecoder([clf.block_channels()[i - 1] for i in self.block_idx], p.hidden, *head)

    def _mask(self, decoder: LmacDecoder, model: DomainModel, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = layer_outputs(model, x, self.layers) if self.layers else model.features(x)
        chosen = feats if self.layers else [feats[i - 1] for i in self.block_idx]
        self.note_flat_blocks(chosen, "masks")
        mel_size = (x.shape[-2], model.frontend.params.n_mels)
        return decoder(chosen, mel_size, lambda h: model.domain.from_mel_grid(model.frontend, h))

    def _base_params(self) -> dict[str, Any]:
        return self.params.model_dump(mode="json", exclude={"finetune", "nonneg", "normalize", "binarize", "reanalyse",
                                                            "label_masks", "ranks"})

    def _key_extra(self, model: DomainModel) -> dict[str, Any]:
        """What the stage-1 key adds to the parameters: the code version; on a sigmoid model the targets' threshold
        and top_k where not the defaults (the labels trained for) and the rank channels (``label_masks: ranked``).
        A softmax model's and a shared mask's keys at the default targets are the keys from before ranks existed."""
        sigmoid = model.classifier.output_kind == "sigmoid"
        return {"code": LMAC_CODE_VERSION, **(sigmoid_key(self.targets, self.params.ranks if self._ranked(model) else None)
                                              if sigmoid else {})}

    # -- training ---------------------------------------------------------------------------
    def fit(self, ctx: FitContext) -> dict[str, Any]:
        self.targets = ctx.targets or TargetParams()
        base_key = ctx.cache_key(self.name, self._base_params(), self._key_extra(ctx.model))
        info = self._fit_stage(ctx, base_key, None)
        if self.params.finetune is not None:
            ft_key = ctx.cache_key(self.name, {"base": base_key, "ft_code": LMAC_FT_CODE_VERSION,
                                               **self.params.finetune.model_dump()})
            info = {"base": info, **self._fit_stage(ctx, ft_key, self.decoder)}
        return info

    def _fit_stage(self, ctx: FitContext, key: str, stage1: LmacDecoder | None) -> dict[str, Any]:
        torch.manual_seed(ctx.seed)  # initial weights (lazy projections' too) from the seed alone, not the run's order
        decoder = self._build(ctx.model).to(ctx.device)
        if self.layers:  # lazy projections: one pass over two training clips gives them their channels
            rep = ctx.model.domain.represent(ctx.model.frontend, ctx.train.waveforms[:2].to(ctx.device))
            with ctx.model.reading(rep), torch.no_grad():
                self._mask(decoder, ctx.model, rep.x)

        def train(log_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
            if stage1 is not None:
                decoder.load_state_dict(stage1.state_dict())
            info = self._train(ctx, decoder, stage1, log_path)
            return {k: v.cpu() for k, v in decoder.state_dict().items()}, info

        log_name = "finetune.jsonl" if stage1 is not None else "train.jsonl"
        info = ctx.cached_fit(self.name, key, train, decoder.load_state_dict, log_name)
        self.decoder = decoder.eval()
        return info

    def _train(self, ctx: FitContext, decoder: LmacDecoder, stage1: LmacDecoder | None, log_path: Path) -> dict[str, Any]:
        p = self.params
        finetuning = stage1 is not None
        start = time.perf_counter()
        torch.manual_seed(ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        frozen = copy.deepcopy(stage1).eval().requires_grad_(False) if finetuning else None
        train = _Versions(with_augmentation(ctx.train, ctx.augment, ctx.seed))
        valid = with_augmentation(ctx.valid, ctx.augment, ctx.seed)
        opt = torch.optim.Adam(decoder.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        schedule = None
        if p.lr_schedule == "plateau":  # the recipe's ReduceLROnPlateau, fresh for each stage
            monitor, mode = ("valid_fid_in", "max") if p.plateau_monitor == "fid_in" else ("valid_total", "min")
            schedule = PlateauLR([opt], monitor, mode, factor=p.plateau_factor, patience=p.plateau_patience,
                                 start_epoch=p.plateau_start_epoch)
        n = len(ctx.train)
        start_info = self._gate_at_start(ctx, frozen, train) if finetuning else {}

        def train_epoch() -> dict[str, float]:
            means = TermMeans()
            order = torch.randperm(n, generator=gen)
            for i in range(0, n, p.batch_size):
                idx = order[i : i + p.batch_size]
                which = draw_versions(len(idx), train.n, p.augment_prob, gen)
                terms = self._batch_terms(ctx, decoder, frozen, train, idx, which)
                opt.zero_grad()
                terms["total"].backward()
                opt.step()
                means.add(terms, len(idx))
            return means.means("train_")

        info = fit_epochs(
            [decoder], p.finetune.epochs if finetuning else p.epochs, train_epoch,
            lambda: self._validate(ctx, decoder, frozen, valid), "valid_total", log_path,
            desc=f"{self.row_label()} [{ctx.model.domain.key()}]", progress=ctx.progress, schedule=schedule,
        )
        if finetuning:  # what the gate let through, per epoch: a row nothing was guided on must show it
            start_info |= {"gated_per_epoch": {s: [round(h[f"{s}_gated"], 4) for h in info["history"]]
                                               for s in ("train", "valid")}}
            start_info["gated_share"] = round(sum(h["train_gated"] for h in info["history"]) / len(info["history"]), 4)
        return {"stage": "finetune" if finetuning else "train", "blocks": self.block_idx or self.layers, **info, **start_info,
                "seconds": round(time.perf_counter() - start, 2)}

    @torch.no_grad()
    def _gate_at_start(self, ctx: FitContext, frozen: LmacDecoder, train: _Versions) -> dict[str, Any]:
        """The gate similarity of every training clip in each version fine-tuning draws from, summarised."""
        from audiobench.data.contaminations import NoContamination

        ft, model, r = self.params.finetune, ctx.model, ctx.max_rows
        rep = lambda w: model.domain.represent(model.frontend, w.to(ctx.device))  # noqa: E731
        out = {}
        for k, name in enumerate([NoContamination().key()] + [c.key() for c in ctx.augment]):
            sims = []
            for i in range(0, train.waves.shape[1], r):
                with model.reading(noisy := rep(train.waves[k, i : i + r])):
                    mask = self._mask(frozen, model, noisy.x)
                    trained = self._decided(model, noisy.x) if self._ranked(model) else None
                sims.append(gate_similarities(mask, noisy.x, rep(train.clean[k, i : i + r]).x, trained))
            out[name] = similarity_summary(torch.cat(sims), ft.cct)
        similarity = "cos(X, M1*X_in)" if ft.gate_mask == "frozen" else "cos(X, M*X_in), M the decoder being fine-tuned"
        return {"gate": {"similarity": similarity, "cct": ft.cct, "at_start": out}}

    def _decided(self, model: DomainModel, x: torch.Tensor) -> torch.Tensor:
        """What the masks are trained for, from f(X): the decision [B] (softmax), the decided labels [B, C]
        (a shared mask) or the rank channels' labels [B, R] (:func:`ranked_labels`)."""
        with torch.no_grad():
            scores = model(x)
        if self._ranked(model):
            return ranked_labels(scores, self.targets, self.params.ranks)
        return decided_labels(scores, model.classifier.output_kind, self.targets)

    def _batch_terms(self, ctx, decoder, frozen, sets: _Versions, idx, which) -> dict[str, torch.Tensor]:
        """Loss terms for the clips ``idx``, clip i taken from version ``which[i]`` (0 = clean). In
        fine-tuning the gate reads the frozen stage-1 mask, or (``gate_mask: current``) the mask of the
        decoder being trained, the one the loss is computed on (detached: the gate is a 0/1 weight)."""
        wave = sets.waves[which, idx].to(ctx.device)
        model, domain = ctx.model, ctx.model.domain
        rep = domain.represent(model.frontend, wave)
        x = rep.x
        ranked, threshold = self._ranked(model), self.targets.threshold
        with model.reading(rep):  # a waveform model reads each row with its clip's phase
            y_hat = self._decided(model, x)
            mask = self._mask(decoder, model, x)
            if frozen is None:
                loss = ranked_masking_loss if ranked else masking_loss
                return loss(model, x, mask, y_hat, self.params, threshold)
            ft = self.params.finetune
            with torch.no_grad():
                clean = domain.represent(model.frontend, sets.clean[which, idx].to(ctx.device)).x
                gating = mask.detach() if ft.gate_mask == "current" else self._mask(frozen, model, x)
                gate = cct_gate(gate_similarities(gating, x, clean), ft.cct)  # [B], or [B, R] per rank channel
            loss = ranked_finetune_loss if ranked else finetune_loss
            return loss(model, x, mask, y_hat, clean, gate, self.params, threshold)

    @torch.no_grad()
    def _validate(self, ctx, decoder, frozen, versions: list[ClipSet]) -> dict[str, float]:
        means = TermMeans()
        sets = _Versions(versions)
        # a batch-summed L1 depends on the batch size: validate in training-sized batches (the recipe's loaders)
        step = self.params.batch_size if self.params.l1_reduction == "batch_sum" else 64
        for k, clips in enumerate(versions):
            idx = torch.arange(len(clips))
            for i in range(0, len(clips), step):
                chunk = idx[i : i + step]
                means.add(self._batch_terms(ctx, decoder, frozen, sets, chunk, torch.full_like(chunk, k)), len(chunk))
        return means.means("valid_")

    # -- explaining -------------------------------------------------------------------------
    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """The row's mask: with rank channels (a sigmoid model, ``label_masks: ranked``) channel r for a
        ``target`` ranked r-th among its clip's logits (:func:`target_rank`), NaN for a target ranked beyond
        the channels (:meth:`unexplained_reason`); otherwise the clip's one mask, whatever ``target``
        (softmax: the decision's; ``shared``: every label of the clip gets it)."""
        if self.decoder is None:
            raise RuntimeError("L-MAC must be fitted before it explains (the runner calls fit)")
        self.decoder.to(x.device).eval()
        with torch.no_grad():
            mask = self._mask(self.decoder, ctx.model, x)
            rank = target_rank(ctx.model(x), target) if mask.shape[1] > 1 else None
        mask = pick_channel(mask, rank) if rank is not None else mask
        mask = binary_mask(mask, self.params.binarize) if self.params.binarize is not None else mask
        mask = resynthesis_mask(ctx.model, x, mask) if self.params.reanalyse == "waveform" else mask
        if rank is not None and (text := beyond_note(rank, self.params.ranks)):
            self.note(text)  # the caption says why this row averages over fewer rows
        return unexplained(mask, rank, self.params.ranks) if rank is not None else mask

    def domain_problem(self, domain: Domain) -> str | None:
        """``reanalyse: waveform`` needs a listenable domain (:func:`reanalysis_problem`)."""
        return reanalysis_problem(domain, needs_waveform=True) if self.params.reanalyse == "waveform" else None
