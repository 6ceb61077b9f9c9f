"""LMAC-TD: listenable explanations produced in the time domain (Mancini, Paissan, Ravanelli & Subakan, ICASSP 2025,
arXiv 2409.08655).

A learned 1-D convolutional encoder maps the clip x to latents z; a SepFormer mask network reads z mixed with a
decoding of the classifier's block outputs h, (1 - alpha) z + alpha convt(h), and outputs a mask m on z; a
transposed-convolution decoder gives the explanation e = dec(z * m), a waveform, and the masked-out signal
x_out = dec(z * (1 - m)) (:mod:`audiobench.methods.lmac_td_net`). L-MAC's objective (ICML 2024, eq. 2) on the
classifier run on those waveforms, classifier frozen, y_hat = argmax f(x) (the recipe's ``compute_objectives``)::

    lambda_in CE(f(e), y_hat) - lambda_out CE(f(x_out), y_hat) + lambda_l1 mean log1p|STFT(e)| + lambda_sum (-SI-SNR(e + x_out, x))

f(w) is the classifier on log1p(mel(|STFT(w)|)) (the recipe's ``preprocess`` + ``classifier_forward``); the
sparsity term is on the explanation's log-magnitude (``X_stft_logpower_interp``), not on the mask; the SI-SNR term
(``rec_loss``, ``reg_w_sum``) is 0 by default. Defaults are the recipe's (``sepformerlmac_cnn14_classierreps.yaml``:
``l_in_w`` 4, ``l_out_w`` 0.2, ``reg_w_l1`` 0.4, ``reg_w_sum`` 0, Adam lr 2e-4, weight decay 2e-6, batch 2, 200
epochs, best epoch by the lowest validation loss) except ``alpha``: the yaml's ``alpha_mix`` is 1 (the encoder's
latents then never reach the mask network); the README's reported row is alpha = 0.75, the default here.
Departures (``docs/lmac_td.md``): constant lr (the recipe's ReduceLROnPlateau, no cut before epoch 100, is not
applied); half of the training clips from ``train.augment`` (``augment_prob`` 0.5, as L-MAC here; the paper
trains with WHAM!); ``out_cap`` (off by default) as L-MAC's.

The fit does not depend on the masking domain: it trains through the classifier on log1p-mel of the waveforms
(a fixed ``stft2mel`` view), and its cache key leaves the domain out, so one fit serves every domain of a run.

Scoring (:mod:`audiobench.methods.timedomain`): the explanation is a waveform, the harness scores masks; the mask
is M = clamp(G(e) / G(x), 0, 1) on the domain's grid (G = |STFT| on ``stft2mel``, log1p-mel on ``mel``, where it
is the recipe's own saliency map ``X_mel_interp / X_mel``). ``lmac{reanalyse: waveform}`` scores L-MAC's
listenable ISTFT(M X) the same way. The recipe scores f(e) and f(x_out) directly; the fit logs both
(``valid_fid_in_wave`` on f(e), ``valid_fid_in`` on f(M * X)).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch.nn import functional as F

from audiobench.contracts.domains import Domain, Stft2Mel
from audiobench.contracts.frontend import Frontend
from audiobench.contracts.registry import METHODS
from audiobench.kernel.cache import stable_hash
from audiobench.kernel.fitting import TermMeans, fit_epochs
from audiobench.methods.base import (
    DomainModel,
    ExplainContext,
    Explainer,
    ExplainerParams,
    FitContext,
    decoder_blocks,
)
from audiobench.methods.blocks import blocks_entries_problem
from audiobench.methods.lmac_decoder import stacked_versions, versioned_epoch
from audiobench.methods.lmac_td_net import LmacTdNet
from audiobench.methods.timedomain import clip_waveform, reanalysis_mask, reanalysis_problem

LMAC_TD_CODE_VERSION = 1  # bump when training changes the weights (enters every fit's key)


class LmacTdParams(ExplainerParams):
    nonneg: Literal["abs", "relu", "none"] = "none"  # the re-analysis mask is already in [0, 1]
    normalize: Literal["max", "none"] = "none"
    kernel_size: int = Field(16, ge=2, description="encoder/decoder filter length in samples (stride half of it)")
    n_filters: int = Field(256, ge=2, description="encoder latent channels N (the recipe's N_encoder_out)")
    channels: int = Field(256, ge=2, description="mask network width (out_channels, the transformers' d_model)")
    chunk: int = Field(250, ge=2, description="mask network chunk length K in frames (50 % overlap)")
    layers: int = Field(2, ge=1, description="dual-path blocks (num_layers)")
    intra_layers: int = Field(8, ge=1, description="transformer layers within a chunk")
    inter_layers: int = Field(2, ge=1, description="transformer layers across chunks")
    heads: int = Field(8, ge=1)
    ffn: int = Field(256, ge=1, description="transformer feed-forward width (d_ffn)")
    alpha: float = Field(0.75, ge=0, le=1, description="mix (1 - alpha) encoder latents + alpha classifier latents "
                         "(the recipe's alpha_mix; its yaml 1, its README's reported row 0.75)")
    blocks: int | list[int] = Field(4, description="the N deepest classifier blocks, or a list of 1-based indices")
    hidden: int = Field(32, ge=2, description="channels of the classifier-latent decoder (ours: L-MAC's decoder)")
    lambda_in: float = Field(4.0, ge=0)
    lambda_out: float = Field(0.2, ge=0)
    lambda_l1: float = Field(0.4, ge=0, description="weight of mean log1p|STFT(e)|, the explanation's log-magnitude")
    lambda_sum: float = Field(0.0, ge=0, description="weight of -SI-SNR(e + x_out, x) (the recipe's reg_w_sum, 0)")
    out_cap: Literal["log_classes"] | None = Field(None, description="cap CE_out at log(classes), as L-MAC's")
    epochs: int = Field(200, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(2e-6, ge=0)
    batch_size: int = Field(2, ge=1)
    augment_prob: float = Field(0.5, ge=0, le=1, description="share of training clips taken from train.augment")

    POST: ClassVar[frozenset[str]] = frozenset({"nonneg", "normalize"})


def si_snr(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SNR in dB per row [B] of [B, L] signals (Le Roux et al. 2019; SpeechBrain's ``cal_si_snr``):
    both made zero-mean, s = <e, t> t / |t|^2, 10 log10(|s|^2 / |e - s|^2)."""
    estimate = estimate - estimate.mean(-1, keepdim=True)
    target = target - target.mean(-1, keepdim=True)
    s = (estimate * target).sum(-1, keepdim=True) * target / (target.pow(2).sum(-1, keepdim=True) + eps)
    return 10 * torch.log10(s.pow(2).sum(-1) / ((estimate - s).pow(2).sum(-1) + eps) + eps)


def td_loss(logits_in: torch.Tensor, logits_out: torch.Tensor, y_hat: torch.Tensor, explanation: torch.Tensor,
            masked_out: torch.Tensor, wave: torch.Tensor, frontend: Frontend, p: LmacTdParams) -> dict[str, torch.Tensor]:
    """The LMAC-TD objective's terms for a batch (module docstring); ``total`` is minimised. logits [B, C] of the
    classifier on the explanation e and the masked-out signal, ``y_hat`` [B], waveforms [B, L]; ``l1`` is
    mean log1p|STFT(e)| over the batch, ``sum`` the batch mean of -SI-SNR(e + x_out, x) (computed when weighted)."""
    l_in = F.cross_entropy(logits_in, y_hat)
    l_out = F.cross_entropy(logits_out, y_hat, reduction="none")
    if p.out_cap == "log_classes":
        l_out = l_out.clamp_max(math.log(logits_out.shape[-1]))
    l_out = l_out.mean()
    l1 = torch.log1p(frontend.stft(explanation).abs()).mean()
    rec = -si_snr(explanation + masked_out, wave).mean() if p.lambda_sum else l1.new_zeros(())
    total = p.lambda_in * l_in - p.lambda_out * l_out + p.lambda_l1 * l1 + p.lambda_sum * rec
    return {"total": total, "in": l_in, "out": l_out, "l1": l1, "sum": rec}


@METHODS.register("lmac_td")
class LMACTD(Explainer):
    """LMAC-TD (Mancini et al., 2025): a trained time-domain decoder whose explanation is a listenable waveform.

    A SepFormer mask network on a learned waveform encoder, mixed with the classifier's latents; the waveform is
    scored by its re-analysis mask on the domain's grid."""

    display_name = "LMAC-TD"
    Params = LmacTdParams
    trainable = True
    output_kinds = ("softmax",)  # trained on argmax f(x), as the recipe
    code_version = LMAC_TD_CODE_VERSION
    needs_gradients = False
    signed_maps = False

    def __init__(self, params: Any = None):
        super().__init__(params)
        self.net: LmacTdNet | None = None
        self.block_idx: list[int] = []

    def check_classifier(self, depth: int, model: str = "classifier",
                         names: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """(parameter, problem) pairs for a classifier of ``depth`` blocks: ``blocks`` must fit it."""
        problem = blocks_entries_problem(self.params.blocks, depth, model)
        return [("blocks", problem)] if problem else []

    def row_label(self) -> str:
        """``LMAC-TD, α=0.75``: the mix weight names the row, as the code's README does (``L-MAC TD, α = 0.75``)."""
        return f"LMAC-TD, α={self.params.alpha:g}"

    def check_params(self) -> list[tuple[str, str]]:
        """Even filter and chunk lengths, and heads that divide the mask network's width."""
        p, out = self.params, []
        for name in ("kernel_size", "chunk"):
            if getattr(p, name) % 2:
                out.append((name, f"{name} must be even (stride / hop = half of it), not {getattr(p, name)}"))
        if p.channels % p.heads:
            out.append(("heads", f"heads {p.heads} must divide channels {p.channels}"))
        return out

    def domain_problem(self, domain: Domain) -> str | None:
        """The re-analysis cannot score on a dB grid (:func:`reanalysis_problem`)."""
        return reanalysis_problem(domain)

    # -- pieces -----------------------------------------------------------------------------
    def _build(self, model: DomainModel) -> LmacTdNet:
        clf, p = model.classifier, self.params
        self.block_idx = decoder_blocks(p.blocks, clf.depth, self.name)  # deepest first
        return LmacTdNet([clf.block_channels()[i - 1] for i in self.block_idx], p.n_filters, p.kernel_size,
                         p.channels, p.chunk, p.layers, p.intra_layers, p.inter_layers, p.heads, p.ffn, p.hidden,
                         p.alpha)

    def _run(self, net: LmacTdNet, model: DomainModel, x: torch.Tensor, wave: torch.Tensor):
        """(explanation, masked-out signal, latent mask) of ``wave`` [B, L], whose grid rows ``x`` the classifier reads."""
        with torch.no_grad():
            feats = model.features(x)
        chosen = [feats[i - 1] for i in self.block_idx]
        self.note_flat_blocks(chosen, "explanations")
        return net(wave, chosen)

    def fit_params(self) -> dict[str, Any]:
        """What shapes the fit (its cache key): every parameter but how the mask is post-processed."""
        return self.params.model_dump(mode="json", exclude=set(LmacTdParams.POST))

    # -- training ---------------------------------------------------------------------------
    def fit(self, ctx: FitContext) -> dict[str, Any]:
        identity = {k: v for k, v in ctx.identity.items() if k != "domain"}  # the fit never reads the domain
        key = stable_hash({"method": self.name, "params": self.fit_params(), "seed": ctx.seed, **identity,
                           "code": LMAC_TD_CODE_VERSION})
        model = DomainModel(ctx.model.classifier, Stft2Mel(), ctx.model.frontend).eval()
        torch.manual_seed(ctx.seed)  # the network's initial weights depend on the seed alone, not on the run's order
        net = self._build(model).to(ctx.device)

        def train(log_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
            info = self._train(ctx, model, net, log_path)
            return {k: v.cpu() for k, v in net.state_dict().items()}, info

        info = ctx.cached_fit(self.name, key, train, net.load_state_dict)
        self.net = net.eval()
        return info

    def _versions(self, ctx: FitContext, clips) -> torch.Tensor:
        """[S, N, L]: the clean clips, then each train.augment version (when augment_prob > 0)."""
        return stacked_versions(clips, ctx.augment, self.params.augment_prob, ctx.seed)

    def _train(self, ctx: FitContext, model: DomainModel, net: LmacTdNet, log_path: Path) -> dict[str, Any]:
        p = self.params
        start = time.perf_counter()
        torch.manual_seed(ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        train, valid = self._versions(ctx, ctx.train), self._versions(ctx, ctx.valid)
        opt = torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)

        def train_epoch() -> dict[str, float]:
            return versioned_epoch(train, p.batch_size, p.augment_prob, gen, opt,
                                   lambda waves: self._batch_terms(ctx, model, net, waves))

        info = fit_epochs([net], p.epochs, train_epoch, lambda: self._validate(ctx, model, net, valid), "valid_total",
                          log_path, desc=f"{self.row_label()} [time domain]", progress=ctx.progress)
        return {"blocks": self.block_idx, **info, "seconds": round(time.perf_counter() - start, 2)}

    def _batch_terms(self, ctx: FitContext, model: DomainModel, net: LmacTdNet, wave: torch.Tensor,
                     validating: bool = False) -> dict[str, torch.Tensor]:
        wave = wave.to(ctx.device)
        rep = model.domain.represent(model.frontend, wave)
        with model.reading(rep):
            with torch.no_grad():
                y_hat = model(rep.x).argmax(dim=-1)
            e, out, _ = self._run(net, model, rep.x, wave)
        both = model.domain.represent(model.frontend, torch.cat([e, out]))
        with model.reading(both):  # rows 0..2B-1 are clips of their own
            logits = model(both.x)
        b = wave.shape[0]
        terms = td_loss(logits[:b], logits[b:], y_hat, e, out, wave, model.frontend, self.params)
        if validating:
            terms["fid_in_wave"] = (logits[:b].argmax(-1) == y_hat).to(e.dtype).mean()
            mask = reanalysis_mask(model.domain, model.frontend, e, rep.x)
            with model.reading(rep):
                terms["fid_in"] = (model(mask * rep.x).argmax(-1) == y_hat).to(e.dtype).mean()
            terms["mask_mean"] = mask.mean()
        return terms

    @torch.no_grad()
    def _validate(self, ctx: FitContext, model: DomainModel, net: LmacTdNet, versions: torch.Tensor) -> dict[str, float]:
        means, step = TermMeans(), max(1, min(ctx.max_rows, 16))
        for k in range(versions.shape[0]):
            for i in range(0, versions.shape[1], step):
                chunk = versions[k, i : i + step]
                means.add(self._batch_terms(ctx, model, net, chunk, validating=True), len(chunk))
        return means.means("valid_")

    # -- explaining -------------------------------------------------------------------------
    def explanation_waveform(self, x: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """The explanation e [B, L] of the rows ``x`` (their clips read from ``ctx.model.clips``): a waveform."""
        if self.net is None:
            raise RuntimeError("LMAC-TD must be fitted before it explains (the runner calls fit)")
        self.net.to(x.device).eval()
        with torch.no_grad():
            return self._run(self.net, ctx.model, x, clip_waveform(ctx.model, x))[0]

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """The re-analysis mask of the explanation waveform (whatever ``target``: the network is not class-conditioned)."""
        e = self.explanation_waveform(x, ctx)
        return reanalysis_mask(ctx.domain, ctx.frontend, e, x)
