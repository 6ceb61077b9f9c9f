"""PIQ: Posthoc Interpretation via Quantization (Paissan, Subakan & Ravanelli, arXiv 2303.12659).

The classifier's deepest block output h (the recipe's ``hcat``, the ``embedding_model`` output before pooling) passes
through an adapter (a residual block) and a stride-2 convolution to z_e; z_e is vector-quantised with a codebook whose
keys are partitioned over the classes, each clip's vectors taking the nearest key of its class only (the class-specific
bottleneck, :mod:`audiobench.methods.piq_vq`); a transposed convolution and a stack of x2 transposed convolutions decode
z_q to a logit map, and its sigmoid is the mask M on the domain's grid. Classifier frozen, y_hat = argmax f(X)::

    rec_weight * BCE(M, 1[log1p|X| > mask_th * max]) + MSE(z_q, sg[z_e]) + beta * MSE(z_e, sg[z_q]) (+ lambda_fid * CE(f(M*X), y_hat))

The SpeechBrain recipe (``recipes/ESC50/interpret/train_piq.py``, ``hparams/piq.yaml``, ``lobes/models/PIQ.py``
``VectorQuantizedPSI_Audio``) and what is followed here:

* what the quantiser reads: the classifier's last conv block before pooling (``block: -1``); the recipe's classifier is
  a 256-channel ``Conv2dEncoder_v2`` and ``dim`` is its width, so the adapter needs no projection; here a block of
  another width is projected to ``dim`` by a 1x1 convolution (our addition);
* the VQ: K = 1024 keys of D = 256, class partitioning on, no shared keys, codebook initialised uniform in
  +-1/K, nearest key by squared distance, straight-through gradient, codebook and commitment terms both of weight 1
  (the recipe's ``loss_vq + loss_commit``; VQ-VAE's commitment weight is 0.25: ``beta``), no EMA;
* the decoder: the recipe's adapter (``ResBlockAudio``), ``down`` (4x4, stride 2) and ``up`` (4x4 transposed, stride
  2) around the quantiser, then x2 transposed convolutions each with ReLU and BatchNorm, Xavier-uniform
  initialisation, bias 0. The recipe's stack is fixed for its grid (a kernel-3 stage, three kernel-4 stages and a
  12x12 transposed convolution that lands on 431 x 513 log-power bins); here ``stages`` x2 stages (by default as
  many as undo the block's time stride) and a 3x3 output layer give a logit map that is interpolated to the
  classifier's (time, mel) grid and spread onto the domain's bins by the filterbank before the sigmoid (as
  :mod:`audiobench.methods.lmac` does), so a mask on ``stft2mel`` is listenable;
* the losses: ``use_mask_output: True``: the reconstruction term is the Bernoulli log-likelihood of the mask against
  the binarised log-spectrogram, log1p|X| > ``mask_th`` (0.35) x its per-clip max, weight ``rec_loss_coef`` 1, read
  here on :meth:`Domain.log_magnitude` (log1p|STFT| on ``stft2mel``, log1p-mel on ``mel``); the recipe's fidelity
  term is defined and set to 0 (``loss_fid = 0``): ``lambda_fid`` (default 0) adds CE(f(M*X), y_hat);
* training: Adam lr 2e-4, weight decay 2e-6, batch 16, 200 epochs, clean clips. Departures: the recipe's
  ``ReduceLROnPlateau`` (no cut before epoch 100) is not applied (constant lr); its best checkpoint is selected on a
  key it never logs (``valid_top-3_fid``: the last is kept); here the epoch with the lowest ``valid_total`` is kept
  and the validation input fidelity (``valid_fid_in``, the share whose f(M*X) keeps y_hat) is logged beside it;
* the interpretation: the recipe multiplies the sigmoid mask into log1p|X| for the decision ``class_pred``; here the
  mask is the explanation of the class ``target`` the harness asks for (its codebook range), the decision by default.

Multi-label (``sigmoid``) models are refused (``output_kinds``): the class partition needs one class per clip.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from audiobench.contracts.registry import METHODS
from audiobench.kernel.fitting import TermMeans, fit_epochs
from audiobench.methods.base import (
    DomainModel,
    ExplainContext,
    Explainer,
    FitContext,
    classifier_blocks,
)
from audiobench.methods.blocks import blocks_problem
from audiobench.methods.lmac_decoder import stacked_versions, versioned_epoch
from audiobench.methods.piq_vq import ClassQuantiser, PiqParams, oracle_mask, piq_loss

PIQ_CODE_VERSION = 1  # bump when training changes the weights (enters every fit's key)


def _xavier(m: nn.Module) -> None:
    """The recipe's ``weights_init``: Xavier-uniform weights and zero bias for every convolution."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class ResBlock(nn.Module):
    """The recipe's ``ResBlockAudio``: x + BN(Conv1x1(ReLU(BN(Conv3x3(x)))))."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1), nn.BatchNorm2d(dim), nn.ReLU(),
                                   nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class PiqDecoder(nn.Module):
    """Block output -> (mask [B, 1, T, F] in (0, 1), z_e, z_q with the codebook's gradient, key indices)."""

    def __init__(self, channels: int, dim: int, codebook_size: int, n_classes: int, stages: int):
        super().__init__()
        self.proj = nn.Identity() if channels == dim else nn.Conv2d(channels, dim, 1)
        self.adapter = ResBlock(dim)
        self.down = nn.Conv2d(dim, dim, 4, 2, 1)
        self.up = nn.ConvTranspose2d(dim, dim, 4, 2, 1)
        layers: list[nn.Module] = []
        for _ in range(stages):
            layers += [nn.ConvTranspose2d(dim, dim, 4, 2, 1), nn.ReLU(), nn.BatchNorm2d(dim)]
        self.decoder = nn.Sequential(*layers, nn.Conv2d(dim, 1, 3, 1, 1))
        self.apply(_xavier)
        self.quantiser = ClassQuantiser(codebook_size, dim, n_classes)

    def forward(self, h: torch.Tensor, labels: torch.Tensor, mel_size: tuple[int, int], to_domain) -> tuple[
            torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.adapter(self.proj(h))
        if min(z.shape[-2:]) < 2:  # a 1-D block ([B, C, T, 1]): the stride-2 convolution needs two bins
            z = F.interpolate(z, size=(max(2, z.shape[-2]), max(2, z.shape[-1])), mode="nearest")
        z_e = self.down(z)
        z_st, z_q, idx = self.quantiser(z_e, labels)
        logits = F.interpolate(self.decoder(self.up(z_st)), size=mel_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(to_domain(logits)), z_e, z_q, idx


@METHODS.register("piq")
class PIQ(Explainer):
    """PIQ (Paissan, Subakan & Ravanelli, 2023): a vector-quantised decoder on the classifier's last block, trained.

    Its codebook is partitioned by class; it is trained to reproduce the input's energy mask (the recipe's)."""

    display_name = "PIQ"
    Params = PiqParams
    trainable = True
    output_kinds = ("softmax",)  # one class per clip selects the codebook range (its fit trains on argmax f(X))
    needs_gradients = False
    signed_maps = False

    def __init__(self, params: Any = None):
        super().__init__(params)
        self.decoder: PiqDecoder | None = None
        self.block_idx = 0

    def check_classifier(self, depth: int, model: str = "classifier",
                         names: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """(parameter, problem) pairs for a classifier of ``depth`` blocks: ``block`` must be one of them."""
        problem = blocks_problem([self.params.block], depth, model)
        return [("block", problem)] if problem else []

    # -- pieces -----------------------------------------------------------------------------
    def _block(self, model: DomainModel) -> int:
        return classifier_blocks([self.params.block], model.classifier.depth, self.name)[0]

    def _stages(self, model: DomainModel, x: torch.Tensor) -> int:
        """``stages``, or as many x2 stages as bring the block's time resolution back to the grid's."""
        if self.params.stages is not None:
            return self.params.stages
        with torch.no_grad():
            t = model.features(x[:1])[self._block(model) - 1].shape[-2]
        return max(0, min(6, round(math.log2(max(1.0, x.shape[-2] / t)))))

    def _build(self, model: DomainModel, stages: int) -> PiqDecoder:
        clf, p = model.classifier, self.params
        self.block_idx = self._block(model)
        return PiqDecoder(clf.block_channels()[self.block_idx - 1], p.dim, p.codebook_size, len(clf.class_names), stages)

    def _decode(self, decoder: PiqDecoder, model: DomainModel, x: torch.Tensor, labels: torch.Tensor):
        with torch.no_grad():
            h = model.features(x)[self.block_idx - 1]
        self.note_flat_blocks([h], "masks")
        mel_size = (x.shape[-2], model.frontend.params.n_mels)
        return decoder(h, labels, mel_size, lambda g: model.domain.from_mel_grid(model.frontend, g))

    def fit_params(self) -> dict[str, Any]:
        """What shapes the fit (its cache key): every parameter but how the mask is post-processed."""
        return self.params.model_dump(mode="json", exclude={"nonneg", "normalize"})

    # -- training ---------------------------------------------------------------------------
    def fit(self, ctx: FitContext) -> dict[str, Any]:
        if len(ctx.model.classifier.class_names) > self.params.codebook_size:
            raise ValueError(f"piq: codebook_size {self.params.codebook_size} < "
                             f"{len(ctx.model.classifier.class_names)} classes")
        key = ctx.cache_key(self.name, self.fit_params(), {"code": PIQ_CODE_VERSION})
        probe = ctx.model.domain.represent(ctx.model.frontend, ctx.train.waveforms[:1].to(ctx.device))
        with ctx.model.reading(probe):
            stages = self._stages(ctx.model, probe.x)
        torch.manual_seed(ctx.seed)  # the decoder's initial weights depend on the seed alone, not on the run's order
        decoder = self._build(ctx.model, stages).to(ctx.device)

        def train(log_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
            info = self._train(ctx, decoder, log_path)
            return {k: v.cpu() for k, v in decoder.state_dict().items()}, {"stages": stages, **info}

        info = ctx.cached_fit(self.name, key, train, decoder.load_state_dict)
        self.decoder = decoder.eval()
        return info

    def _versions(self, ctx: FitContext, clips) -> torch.Tensor:
        """[S, N, L]: the clean clips, then each train.augment version (when augment_prob > 0)."""
        return stacked_versions(clips, ctx.augment, self.params.augment_prob, ctx.seed)

    def _train(self, ctx: FitContext, decoder: PiqDecoder, log_path: Path) -> dict[str, Any]:
        p = self.params
        start = time.perf_counter()
        torch.manual_seed(ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        train, valid = self._versions(ctx, ctx.train), self._versions(ctx, ctx.valid)
        opt = torch.optim.Adam(decoder.parameters(), lr=p.lr, weight_decay=p.weight_decay)

        def train_epoch() -> dict[str, float]:
            return versioned_epoch(train, p.batch_size, p.augment_prob, gen, opt,
                                   lambda waves: self._batch_terms(ctx, decoder, waves))

        info = fit_epochs([decoder], p.epochs, train_epoch, lambda: self._validate(ctx, decoder, valid), "valid_total",
                          log_path, desc=f"{self.row_label()} [{ctx.model.domain.key()}]", progress=ctx.progress)
        return {"block": self.block_idx, **info, "seconds": round(time.perf_counter() - start, 2)}

    def _batch_terms(self, ctx: FitContext, decoder: PiqDecoder, wave: torch.Tensor,
                     validating: bool = False) -> dict[str, torch.Tensor]:
        model, domain = ctx.model, ctx.model.domain
        rep = domain.represent(model.frontend, wave.to(ctx.device))
        x = rep.x
        with model.reading(rep):  # a waveform model reads each row with its clip's phase
            with torch.no_grad():
                y_hat = model(x).argmax(dim=-1)
            mask, z_e, z_q, keys = self._decode(decoder, model, x, y_hat)
            fid = None
            if self.params.lambda_fid > 0 or validating:
                with torch.set_grad_enabled(self.params.lambda_fid > 0 and not validating):
                    scores = model(mask * x)
                fid = F.cross_entropy(scores, y_hat)
            terms = piq_loss(mask, oracle_mask(domain.log_magnitude(x), self.params.mask_th), z_e, z_q, self.params, fid)
        if validating:
            terms["fid_in"] = (scores.argmax(dim=-1) == y_hat).to(x.dtype).mean()
        terms["mask_mean"] = mask.detach().mean()
        return {**terms, "keys": keys}

    @torch.no_grad()
    def _validate(self, ctx: FitContext, decoder: PiqDecoder, versions: torch.Tensor) -> dict[str, float]:
        means, used = TermMeans(), set()
        for k in range(versions.shape[0]):
            for i in range(0, versions.shape[1], 64):
                terms = self._batch_terms(ctx, decoder, versions[k, i : i + 64], validating=True)
                used.update(terms.pop("keys").unique().tolist())
                means.add(terms, min(64, versions.shape[1] - i))
        return means.means("valid_") | {"valid_keys_used": float(len(used))}

    # -- explaining -------------------------------------------------------------------------
    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """The mask decoded through ``target``'s codebook range (the class explained)."""
        if self.decoder is None:
            raise RuntimeError("PIQ must be fitted before it explains (the runner calls fit)")
        self.decoder.to(x.device).eval()
        with torch.no_grad():
            return self._decode(self.decoder, ctx.model, x, target.to(x.device).long())[0]
