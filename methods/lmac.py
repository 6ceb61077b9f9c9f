"""L-MAC: Listenable Maps for Audio Classifiers (Paissan, Ravanelli & Subakan, ICML 2024).

A decoder reads the classifier's deepest block outputs (U-Net style: transposed convolutions
upsample, each shallower block is added in) and outputs a sigmoid mask on the masking domain's
grid. Its logit map is computed at the classifier's (time, mel) resolution; for ``stft2mel`` it is
spread onto the linear STFT bins through the mel filterbank before the sigmoid, so the mask lives
on the STFT grid (listenable) and every linear bin is masked like the mel bands that cover it.
(A learned layer on the 513-bin grid costs more than the rest of the decoder and sees no
information the classifier's latents do not carry.)

Training (classifier frozen, y_hat = argmax f(X), the classifier's own decision)::

    lambda_in * CE(f(M*X), y_hat) - lambda_out * CE(f((1-M)*X), y_hat) + lambda_l1 * mean|M| (+ lambda_tv * TV(M))

Fine-tuning ("L-MAC, FT, lambda_g"), paper sec. 2.1: from the trained decoder, with the regulariser
R(M) = lambda_g ||M*X - X|| + lambda_s ||M||_1, the guidance applied only to items the stage-1 mask M1
explains well, X the clean representation (before augmentation; X_in the input). ``guidance``::

    regulariser (default, the paper's):  lambda_g |M*X_in - X|^2 / |X|^2 on gated items, lambda_l1 mean|M| on all
    bce (the recipe's default):           lambda_g BCE(M, oracle) on gated items, lambda_l1 mean|M| on the others

(oracle: X >= ``oracle_threshold`` x its max). The gate is the recipe's (``crosscortype: dotp``):
cos(X, M1*X_in) >= CCT. The paper's text compares M1 with the binarised X, which cannot pass here: M1
covers most of the grid, the oracle a few %, so cos(M1, oracle) ~ sqrt(oracle share) (quickstart: no
training clip above 0.6; ``tools/ft_gate.py``). A fit records the gated share per epoch and the
similarity quantiles at the start; :meth:`LMAC.fit_notes` flags a row whose gate passed < 1 %.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from audiobench.contracts.component import Params
from audiobench.contracts.registry import METHODS
from audiobench.data.base import ClipSet
from audiobench.data.contaminations import with_augmentation
from audiobench.kernel.fitting import TermMeans, fit_epochs
from audiobench.methods.base import (
    DomainModel,
    ExplainContext,
    Explainer,
    ExplainerParams,
    FitContext,
    classifier_blocks,
)
from audiobench.methods.blocks import blocks_problem

LMAC_CODE_VERSION = 1  # bump when training changes the weights (stage 1: enters every key)
# fine-tuning's own (its key only: shipped stage-1 weights stay valid). 2: gate cos(X, M1*X_in), guidance forms
LMAC_FT_CODE_VERSION = 2
GATE_QUANTILES = (0, 10, 50, 90, 100)  # % : the similarity quantiles a fine-tuning fit records


class FinetuneParams(Params):
    """The fine-tuning stage for audio quality (paper sec. 2.1; see the module docstring)."""

    lambda_g: float = Field(..., gt=0, description="weight of the guidance term on gated items")
    guidance: Literal["regulariser", "bce"] = Field(
        "regulariser", description="regulariser: the paper's |M*X_in - X|^2 / |X|^2, L1 on every item; "
        "bce: the recipe's BCE(M, oracle), L1 on the ungated items only",
    )
    cct: float = Field(0.6, ge=-1, le=1, description="gate: cos(clean X, stage-1 mask * input) >= cct")
    epochs: int = Field(4, ge=1)
    oracle_threshold: float = Field(0.35, gt=0, lt=1, description="oracle (bce) = clean X >= this x its max")


class LmacParams(ExplainerParams):
    nonneg: Literal["abs", "relu", "none"] = "none"  # the decoder's sigmoid is already a mask in [0, 1]
    normalize: Literal["max", "none"] = "none"  # the continuous mask is used as is, as in the recipe
    blocks: int | list[int] = Field(4, description="the N deepest classifier blocks, or a list of 1-based indices")
    hidden: int = Field(32, ge=2, description="decoder channels")
    lambda_in: float = Field(4.0, ge=0)
    lambda_out: float = Field(0.2, ge=0)
    lambda_l1: float = Field(0.4, ge=0)
    lambda_tv: float = Field(0.0, ge=0)
    out_cap: Literal["log_classes"] | None = Field(
        None, description="cap CE_out at log(classes): reward an uninformative masked-out input, not a wrong one"
    )
    epochs: int = Field(10, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(2e-6, ge=0)
    batch_size: int = Field(16, ge=1)
    augment_prob: float = Field(0.5, ge=0, le=1, description="share of training clips taken from the suite's train.augment conditions")
    finetune: FinetuneParams | None = None


# ----------------------------------------------------------------------------------------------
# the decoder


class LmacDecoder(nn.Module):
    """Deepest block first; each shallower block added after upsampling; sigmoid mask at the end."""

    def __init__(self, channels: list[int], hidden: int):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, hidden, 1) for c in channels)
        self.up = nn.ModuleList(nn.ConvTranspose2d(hidden, hidden, 2, stride=2) for _ in channels[1:])
        self.refine = nn.ModuleList(
            nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU())
            for _ in channels[1:]
        )
        # wide layers stay at the shallowest block's resolution; one logit map reaches the full grid
        self.head = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))

    @staticmethod
    def _upsample(up: nn.Module, h: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if size[0] > h.shape[-2] or size[1] > h.shape[-1]:
            h = up(h)
        if tuple(h.shape[-2:]) != tuple(size):
            h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        return h

    def forward(self, feats: list[torch.Tensor], mel_size: tuple[int, int], to_domain) -> torch.Tensor:
        """``feats`` deepest first; ``to_domain`` maps the mel grid [..., n_mels] to the domain's grid."""
        h = self.proj[0](feats[0])
        for i, skip in enumerate(feats[1:], start=1):
            h = self._upsample(self.up[i - 1], h, tuple(skip.shape[-2:]))
            h = self.refine[i - 1](h + self.proj[i](skip))
        logits = F.interpolate(self.head(h), size=mel_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(to_domain(logits))


# ----------------------------------------------------------------------------------------------
# losses


def masking_loss(
    model: DomainModel, x: torch.Tensor, mask: torch.Tensor, y_hat: torch.Tensor, p: LmacParams
) -> dict[str, torch.Tensor]:
    """The L-MAC objective's terms per batch (``total`` is what is minimised)."""
    logits = model(torch.cat([mask * x, (1 - mask) * x]))
    b = x.shape[0]
    l_in = F.cross_entropy(logits[:b], y_hat)
    l_out = F.cross_entropy(logits[b:], y_hat, reduction="none")
    if p.out_cap == "log_classes":  # beyond log C the classifier is confidently wrong, not uninformed
        l_out = l_out.clamp_max(math.log(logits.shape[-1]))
    l_out = l_out.mean()
    l1 = mask.abs().mean()
    tv = (mask.diff(dim=-1).abs().mean() + mask.diff(dim=-2).abs().mean()) if p.lambda_tv else mask.new_zeros(())
    total = p.lambda_in * l_in - p.lambda_out * l_out + p.lambda_l1 * l1 + p.lambda_tv * tv
    return {"total": total, "in": l_in, "out": l_out, "l1": l1, "tv": tv}


def oracle_mask(clean_x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Binarised clean spectrogram: 1 where the clean representation is >= threshold x its per-sample max."""
    peak = clean_x.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return (clean_x >= threshold * peak).to(clean_x.dtype)


def gate_similarity(stage1_mask: torch.Tensor, x: torch.Tensor, clean_x: torch.Tensor) -> torch.Tensor:
    """[B] cos(X, M1 * X_in) per sample, the recipe's ``crosscor`` (``dotp``): 1 for a constant mask on a
    clean input, lower where the mask keeps what the clean clip lacks (noise) or drops what it has."""
    return F.cosine_similarity((stage1_mask * x).flatten(1), clean_x.flatten(1), dim=1)


def cct_gate(similarity: torch.Tensor, cct: float) -> torch.Tensor:
    """[B] bool: the items whose :func:`gate_similarity` reaches the threshold (the recipe's ``>=``)."""
    return similarity >= cct


def guidance_term(mask: torch.Tensor, x: torch.Tensor, clean_x: torch.Tensor, ft: FinetuneParams) -> torch.Tensor:
    """[B] each sample's guidance, a mean over its N = T x F elements (lambda_g means the same on any grid).

    ``regulariser``: mean_ij (M X_in - X)^2 / mean_ij X^2 = ||M * X_in - X||_2^2 / ||X||_2^2, the paper's
    ||M(h) * X - X|| (sec. 2.1, R after eq. 2), which names no norm; the recipe computes the mean square
    (``guidelosstype`` not ``binary``). Over the clip's mean X^2 (a constant per clip) it is also scale-free:
    one lambda_g for |STFT|, log1p|STFT| or log-mel at any level (0 for M * X_in = X, 1 for M = 0 on a
    clean input). ``bce``: mean_ij BCE(M, oracle), the recipe's default (``guidelosstype: binary``).
    """
    if ft.guidance == "regulariser":
        energy = clean_x.pow(2).flatten(1).mean(dim=1).clamp_min(torch.finfo(clean_x.dtype).tiny)
        return (mask * x - clean_x).pow(2).flatten(1).mean(dim=1) / energy
    oracle = oracle_mask(clean_x, ft.oracle_threshold)
    return F.binary_cross_entropy(mask, oracle, reduction="none").flatten(1).mean(dim=1)


def finetune_loss(
    model: DomainModel, x: torch.Tensor, mask: torch.Tensor, y_hat: torch.Tensor, clean_x: torch.Tensor,
    gate: torch.Tensor, p: LmacParams,
) -> dict[str, torch.Tensor]:
    """Masking terms, plus lambda_g x the guidance on gated samples and the L1 term (every sample
    for ``regulariser``, the ungated ones for ``bce``); ``clean_x`` is the clean representation."""
    ft = p.finetune
    assert ft is not None
    terms = masking_loss(model, x, mask, y_hat, p.model_copy(update={"lambda_l1": 0.0}))
    g = gate.to(mask.dtype)
    n = max(1, mask.shape[0])
    guidance = (g * guidance_term(mask, x, clean_x, ft)).sum() / n
    l1 = mask.abs().flatten(1).mean(dim=1)
    sparsity = (l1 if ft.guidance == "regulariser" else (1 - g) * l1).sum() / n
    total = terms["total"] + ft.lambda_g * guidance + p.lambda_l1 * sparsity
    return {**terms, "total": total, "guidance": guidance, "l1": sparsity, "gated": g.mean()}


def similarity_summary(similarity: torch.Tensor, cct: float) -> dict[str, float]:
    """Quantiles ``q0`` ... ``q100`` (:data:`GATE_QUANTILES`) of gate similarities and the share passed."""
    v = similarity.detach().double().cpu()
    return {f"q{q}": round(float(v.quantile(q / 100)), 4) for q in GATE_QUANTILES} | {
        "passed": round(float(cct_gate(v, cct).double().mean()), 4)}


# ----------------------------------------------------------------------------------------------
# the method


@METHODS.register("lmac")
class LMAC(Explainer):
    """L-MAC: a decoder on the classifier's latents trained to output faithful, listenable masks (Paissan et al., 2024)."""

    display_name = "L-MAC"
    Params = LmacParams
    trainable = True
    needs_gradients = False
    signed_maps = False

    def __init__(self, params: Any = None):
        super().__init__(params)
        self.decoder: LmacDecoder | None = None
        self.block_idx: list[int] = []

    def check_classifier(self, depth: int, model: str = "classifier") -> list[tuple[str, str]]:
        """(parameter, problem) pairs for a classifier of ``depth`` blocks: ``blocks`` must fit it
        (an int larger than the depth means every block)."""
        blocks = self.params.blocks
        problem = blocks_problem(min(blocks, depth) if isinstance(blocks, int) else blocks, depth, model)
        return [("blocks", problem)] if problem else []

    def row_label(self) -> str:
        ft = self.params.finetune
        if ft is None:
            return "L-MAC"
        label = f"L-MAC, FT, λg={ft.lambda_g:g}"
        label += f", CCT {ft.cct:g}" if ft.cct != FinetuneParams.model_fields["cct"].default else ""
        return label + (", BCE" if ft.guidance == "bce" else "")  # the recipe's form; the paper's is the default

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
    def _build(self, model: DomainModel) -> LmacDecoder:
        clf = model.classifier
        blocks = self.params.blocks
        if isinstance(blocks, int):  # the N deepest, at most every block the classifier has
            blocks = min(blocks, clf.depth)
        self.block_idx = sorted(classifier_blocks(blocks, clf.depth, self.name), reverse=True)  # deepest first
        channels = [clf.block_channels()[i - 1] for i in self.block_idx]
        return LmacDecoder(channels, self.params.hidden)

    def _mask(self, decoder: LmacDecoder, model: DomainModel, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = model.features(x)
        chosen = [feats[i - 1] for i in self.block_idx]
        mel_size = (x.shape[-2], model.frontend.params.n_mels)
        return decoder(chosen, mel_size, lambda h: model.domain.from_mel_grid(model.frontend, h))

    def _base_params(self) -> dict[str, Any]:
        return self.params.model_dump(mode="json", exclude={"finetune", "nonneg", "normalize"})

    # -- training ---------------------------------------------------------------------------
    def fit(self, ctx: FitContext) -> dict[str, Any]:
        base_key = ctx.cache_key(self.name, self._base_params(), {"code": LMAC_CODE_VERSION})
        info = self._fit_stage(ctx, base_key, None)
        if self.params.finetune is not None:
            ft_key = ctx.cache_key(self.name, {"base": base_key, "ft_code": LMAC_FT_CODE_VERSION,
                                               **self.params.finetune.model_dump()})
            info = {"base": info, **self._fit_stage(ctx, ft_key, self.decoder)}
        return info

    def _fit_stage(self, ctx: FitContext, key: str, stage1: LmacDecoder | None) -> dict[str, Any]:
        decoder = self._build(ctx.model).to(ctx.device)

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
        n = len(ctx.train)
        start_info = self._gate_at_start(ctx, frozen, train) if finetuning else {}

        def train_epoch() -> dict[str, float]:
            means = TermMeans()
            order = torch.randperm(n, generator=gen)
            for i in range(0, n, p.batch_size):
                idx = order[i : i + p.batch_size]
                use_aug = torch.rand(len(idx), generator=gen) < p.augment_prob
                which = (1 + torch.randint(max(1, train.n - 1), (len(idx),), generator=gen)) * use_aug
                which = which.clamp_max(train.n - 1)  # no augmentation listed: always the clean version
                terms = self._batch_terms(ctx, decoder, frozen, train, idx, which)
                opt.zero_grad()
                terms["total"].backward()
                opt.step()
                means.add(terms, len(idx))
            return means.means("train_")

        info = fit_epochs(
            [decoder], p.finetune.epochs if finetuning else p.epochs, train_epoch,
            lambda: self._validate(ctx, decoder, frozen, valid), "valid_total", log_path,
            desc=f"{self.row_label()} [{ctx.model.domain.key()}]", progress=ctx.progress,
        )
        if finetuning:  # what the gate let through, per epoch: a row nothing was guided on must show it
            start_info |= {"gated_per_epoch": {s: [round(h[f"{s}_gated"], 4) for h in info["history"]]
                                               for s in ("train", "valid")}}
            start_info["gated_share"] = round(sum(h["train_gated"] for h in info["history"]) / len(info["history"]), 4)
        return {"stage": "finetune" if finetuning else "train", "blocks": self.block_idx, **info, **start_info,
                "seconds": round(time.perf_counter() - start, 2)}

    @torch.no_grad()
    def _gate_at_start(self, ctx: FitContext, frozen: LmacDecoder, train: _Versions) -> dict[str, Any]:
        """The gate similarity of every training clip in each version fine-tuning draws from, summarised."""
        from audiobench.data.contaminations import NoContamination

        ft, model, r = self.params.finetune, ctx.model, ctx.max_rows
        rep = lambda w: model.domain.represent(model.frontend, w.to(ctx.device)).x  # noqa: E731
        out = {}
        for k, name in enumerate([NoContamination().key()] + [c.key() for c in ctx.augment]):
            sims = [gate_similarity(self._mask(frozen, model, x := rep(train.waves[k, i : i + r])), x,
                                    rep(train.clean[k, i : i + r])) for i in range(0, train.waves.shape[1], r)]
            out[name] = similarity_summary(torch.cat(sims), ft.cct)
        return {"gate": {"similarity": "cos(X, M1*X_in)", "cct": ft.cct, "at_start": out}}

    def _batch_terms(self, ctx, decoder, frozen, sets: _Versions, idx, which) -> dict[str, torch.Tensor]:
        """Loss terms for the clips ``idx``, clip i taken from version ``which[i]`` (0 = clean)."""
        wave = sets.waves[which, idx].to(ctx.device)
        model, domain = ctx.model, ctx.model.domain
        x = domain.represent(model.frontend, wave).x
        with torch.no_grad():
            y_hat = model(x).argmax(dim=-1)
        mask = self._mask(decoder, model, x)
        if frozen is None:
            return masking_loss(model, x, mask, y_hat, self.params)
        with torch.no_grad():
            clean = domain.represent(model.frontend, sets.clean[which, idx].to(ctx.device)).x
            gate = cct_gate(gate_similarity(self._mask(frozen, model, x), x, clean), self.params.finetune.cct)
        return finetune_loss(model, x, mask, y_hat, clean, gate, self.params)

    @torch.no_grad()
    def _validate(self, ctx, decoder, frozen, versions: list[ClipSet]) -> dict[str, float]:
        means = TermMeans()
        sets = _Versions(versions)
        for k, clips in enumerate(versions):
            idx = torch.arange(len(clips))
            for i in range(0, len(clips), 64):
                chunk = idx[i : i + 64]
                means.add(self._batch_terms(ctx, decoder, frozen, sets, chunk, torch.full_like(chunk, k)), len(chunk))
        return means.means("valid_")

    # -- explaining -------------------------------------------------------------------------
    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        if self.decoder is None:
            raise RuntimeError("L-MAC must be fitted before it explains (the runner calls fit)")
        self.decoder.to(x.device).eval()
        with torch.no_grad():
            return self._mask(self.decoder, ctx.model, x)


class _Versions:
    """Versions of one clip set (clean first, then each contamination) stacked for batched gathers."""

    def __init__(self, versions: list[ClipSet]):
        self.n = len(versions)
        self.waves = torch.stack([v.waveforms for v in versions])  # [S, N, L]
        self.clean = torch.stack([v.uncontaminated for v in versions])

