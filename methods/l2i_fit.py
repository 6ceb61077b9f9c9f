"""L2I's fitting (:mod:`audiobench.methods.l2i`): the sparse-NMF dictionary W on the training split's
representation, and the interpreter (Psi, Theta) trained against the frozen classifier, with the
training split's classifier features kept in memory (:class:`_Encoded`).

:class:`L2IFitting` is a mixin of :class:`audiobench.methods.l2i.L2I`: its methods read the method's
parameters and set its ``psi``, ``theta`` and ``W``. What they compute is described in the L2I module's
docstring; the fit's cache keys are the method's (:meth:`L2I.fit_key`, :meth:`_dictionary`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from audiobench.kernel.artefacts import cached_artefact
from audiobench.kernel.cache import stable_hash
from audiobench.kernel.fitting import TermMeans, fit_epochs
from audiobench.kernel.nmf import (
    as_columns,
    cap_per_class,
    cap_per_label,
    learn_class_dictionaries,
    learn_dictionary,
    pool_frames,
)
from audiobench.methods.base import DomainModel, FitContext, classifier_blocks
from audiobench.methods.l2i_parts import l2i_loss

NMF_CODE_VERSION = 1  # bump when dictionary learning changes W
_FEATURE_CACHE_BYTES = 1 << 30  # keep the training set's classifier features in memory below this


class L2IFitting:
    """The fitting side of :class:`audiobench.methods.l2i.L2I` (a mixin: ``self`` is the L2I method)."""

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        """The dictionary and the interpreter, trained (or loaded from the cache, keyed by :meth:`fit_key`)."""
        def train(log_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
            start = time.perf_counter()
            self.block_idx = classifier_blocks(self.params.blocks, self._classifier(ctx.model).depth, self.name)
            W, nmf_info = self._dictionary(ctx)
            info = {"dictionary": nmf_info, **self._train(ctx, W, log_path), "seconds": round(time.perf_counter() - start, 2)}
            state = {"W": W.cpu(), "psi": _cpu(self.psi.state_dict()), "theta": _cpu(self.theta.state_dict()),
                     "n_classes": self.theta.fc.out_features}
            return state, info

        info = ctx.cached_fit(self.name, self.fit_key(ctx), train, lambda state: self._load(ctx.model, state))
        if self.params.random_count == "mean":  # the random baseline's count: an interpretation setting, not cached
            self.mean_relevant = self.mean_relevant_count(ctx.model, ctx.valid.waveforms, ctx.max_rows)
            info = {**info, "random_baseline": {"mean_relevant": round(self.mean_relevant, 4),
                                                "removed": self.random_removed(), "rt": self._random_rt(),
                                                "clips": len(ctx.valid.waveforms), "split": "valid"}}
        return info

    def _load(self, model: DomainModel, state: dict[str, Any]) -> None:
        W = state["W"]
        self.psi, self.theta = self._build(model, W.shape[1], state["n_classes"])
        self.psi.load_state_dict(state["psi"])
        self.theta.load_state_dict(state["theta"])
        self.psi.eval(), self.theta.eval()
        self.W = W

    def _nmf_params(self) -> dict[str, Any]:
        p = self.params
        keys = ["dictionary", "sparsity", "nmf_iter", "frame_chunk"]
        keys += ["k_per_class", "k_noise"] if p.dictionary == "per_class" else ["k"]
        keys += ["max_per_class"] if p.max_per_class is not None else []  # absent at its default: earlier keys kept
        return {k: getattr(p, k) for k in keys}

    def _dictionary(self, ctx: FitContext) -> tuple[torch.Tensor, dict[str, Any]]:
        """W [F, K] on the domain's grid (on ``ctx.device``), cached by the data, domain, front end and NMF
        settings in one ``<key>.nmf.pt`` (W and its info; :func:`audiobench.kernel.artefacts.cached_artefact`)."""
        nmf = self._nmf_params()
        ident = {k: v for k, v in ctx.identity.items() if k != "classifier"}  # W does not depend on the classifier
        key = stable_hash({"nmf": nmf, **ident, "seed": ctx.seed, "code": NMF_CODE_VERSION})
        state, info, cached = cached_artefact(ctx.cache_path(self.name, key, ".nmf.pt"),
                                              lambda: self._learn_dictionary(ctx, key), map_location=ctx.device)
        return state["W"].to(ctx.device), {**info, "cached": cached}

    def _learn_dictionary(self, ctx: FitContext, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """({"W": W [F, K] on the CPU}, its info): the NMF dictionary :meth:`_dictionary` caches under ``key``."""
        p = self.params
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(ctx.seed)
        x = self._pooled(ctx, ctx.train.waveforms)  # [N, T // frame_chunk, F]
        with _cpu_threads(ctx.device, 1):  # many mid-sized ops per iteration: see _train
            labels = ctx.train.labels.to(x.device)
            # X_train's clips: every clip, or at most max_per_class per class (seeded, a draw of its own)
            capped, lab = x, labels
            if labels.dim() == 2:  # multi-hot: per class its positive clips (drawn), joint: their union
                drawn = cap_per_label(labels, p.max_per_class, torch.Generator().manual_seed(ctx.seed),
                                      ctx.train.label_mask)
                capped = x if p.max_per_class is None else x[drawn.any(dim=1)]
                groups = [(x, drawn[:, c]) for c in range(labels.shape[1]) if bool(drawn[:, c].any())]
            elif p.max_per_class is not None:
                keep = cap_per_class(labels, p.max_per_class, torch.Generator().manual_seed(ctx.seed))
                capped, lab = x[keep], labels[keep]
            if p.dictionary == "joint":
                W, info = learn_dictionary(as_columns(capped), p.k, n_iter=p.nmf_iter, sparsity=p.sparsity, generator=gen)
            else:
                if labels.dim() == 1:
                    groups = [(capped, lab == c) for c in labels.unique().tolist()]
                per_class = [as_columns(clips[chosen]) for clips, chosen in groups]
                noise, source = self._noise_columns(ctx, x)
                W, info = learn_class_dictionaries(per_class, noise, p.k_per_class, p.k_noise, n_iter=p.nmf_iter,
                                                   sparsity=p.sparsity, generator=gen)
                info["noise_source"] = source
        info = {**info, "key": key, "shape": list(W.shape), "seconds": round(time.perf_counter() - start, 2)}
        return {"W": W.cpu()}, info

    def _noise_columns(self, ctx: FitContext, x: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Training columns of background: the clips minus their clean targets where the dataset knows
        them, else (multi-hot labels) the clips with no positive label, every label known (the journal's
        App. A.1), otherwise the quietest fifth of the (pooled) training frames."""
        contaminants, labels, known = ctx.train.contaminants, ctx.train.labels, ctx.train.label_mask
        if contaminants is not None:
            return as_columns(self._pooled(ctx, contaminants)), "contaminants"
        empty = ((labels == 0) & (True if known is None else known)).all(dim=1) if labels.dim() == 2 else None
        if empty is not None and bool(empty.any()):
            return as_columns(x[empty.to(x.device)]), "clips with no positive label"
        frames = x.reshape(-1, x.shape[-1])
        energy = frames.sum(dim=1)
        return frames[energy <= energy.quantile(0.2)].T.contiguous(), "quietest 20% of frames"

    @torch.no_grad()
    def _pooled(self, ctx: FitContext, waves: torch.Tensor) -> torch.Tensor:
        """The domain's representation of ``waves``, frames averaged in chunks, batch by batch: [N, T', F]."""
        model, chunk = ctx.model, self.params.frame_chunk
        parts = [
            pool_frames(model.domain.log_magnitude(
                model.domain.represent(model.frontend, waves[i : i + ctx.max_rows].to(ctx.device)).x).squeeze(1), chunk)
            for i in range(0, len(waves), ctx.max_rows)
        ]
        return torch.cat(parts)

    def _train(self, ctx: FitContext, W: torch.Tensor, log_path: Path) -> dict[str, Any]:
        p = self.params
        torch.manual_seed(ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        model = ctx.model
        W = W.to(ctx.device)
        train = _Encoded(self, ctx, self._versions(ctx, ctx.train))
        valid = _Encoded(self, ctx, self._versions(ctx, ctx.valid))
        self.psi, self.theta = (m.to(ctx.device) for m in self._build(model, W.shape[1], train.n_classes))
        opt = torch.optim.Adam(list(self.psi.parameters()) + list(self.theta.parameters()), lr=p.lr)

        def train_epoch() -> dict[str, float]:
            means = TermMeans()
            order = torch.randperm(train.n, generator=gen)
            # each clip of the epoch: clean, or with probability augment_prob one contaminated version
            augmented = torch.rand(train.n, generator=gen) < p.augment_prob
            version = augmented * torch.randint(1, max(2, train.versions), (train.n,), generator=gen)
            version = version.clamp_max(train.versions - 1)
            for i in range(0, train.n, p.batch_size):
                idx = order[i : i + p.batch_size]
                terms = self._loss(W, *train.batch(idx + train.n * version[idx]))
                opt.zero_grad()
                terms["loss"].backward()
                opt.step()
                means.add(terms, len(idx))
            return means.means("train_")

        # The interpreter's ops are small: on a CPU, one intra-op thread avoids an OpenMP barrier per op,
        # which made training 40x slower on a loaded 2-core machine (5 ms vs 230 ms a step; the NMF's
        # 100 iterations on the quickstart: 1.7 s vs 18 s). On an idle machine the cost is small.
        with _cpu_threads(ctx.device, 1):
            info = fit_epochs([self.psi, self.theta], p.epochs, train_epoch, lambda: self._validate(W, valid),
                              "valid_loss", log_path, desc=f"L2I [{model.domain.key()}]", progress=ctx.progress)
        self.W = W
        return {"blocks": self.block_idx, "k": W.shape[1], **info}

    def _loss(self, W: torch.Tensor, feats: list[torch.Tensor], x: torch.Tensor, probs: torch.Tensor) -> dict[str, torch.Tensor]:
        p = self.params
        H = self.psi(feats, x.shape[1])
        logits = self.theta(H)
        terms = l2i_loss(W, H, x, logits, probs, p.alpha, p.beta, p.loss_reduction, self.model_kind)
        if self.model_kind == "sigmoid":  # share of (clip, label) decisions at p > 0.5 the interpreter shares
            return {**terms, "fidelity_labels": ((logits > 0) == (probs > 0.5)).float().mean()}
        return {**terms, "fidelity_top1": (logits.argmax(dim=1) == probs.argmax(dim=1)).float().mean()}

    def _versions(self, ctx: FitContext, clips) -> list[torch.Tensor]:
        """The clips, then (when ``augment_prob`` > 0) each of the suite's contaminations applied to them."""
        if self.params.augment_prob <= 0:
            return [clips.waveforms]
        return [clips.waveforms] + [c.apply(clips, clips, ctx.seed).waveforms for c in ctx.augment]

    @torch.no_grad()
    def _validate(self, W: torch.Tensor, data: _Encoded) -> dict[str, float]:
        """The loss terms over every version of the valid clips (clean, and contaminated when training is)."""
        means = TermMeans()
        total = data.n * data.versions
        for i in range(0, total, 64):
            idx = torch.arange(i, min(i + 64, total))
            means.add(self._loss(W, *data.batch(idx)), len(idx))
        return means.means("valid_")


@contextlib.contextmanager
def _cpu_threads(device: torch.device, n: int) -> Iterator[None]:
    """At most ``n`` intra-op threads on a CPU device for the block (restored after)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(min(n, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


class _Encoded:
    """A split seen by the interpreter: representations X, the chosen block outputs, the classifier's
    probabilities. Computed once and kept in memory when small enough, else recomputed per batch.
    Several versions of the clips (clean, contaminated) are stacked: row v * n + i is clip i in version v."""

    def __init__(self, method: L2IFitting, ctx: FitContext, versions: list[torch.Tensor]):
        self.method, self.ctx, self.waves = method, ctx, torch.cat(versions)
        self.n, self.versions = len(versions[0]), len(versions)
        self.cache: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor] | None = None
        rows = len(self.waves)
        probe = self._compute(torch.arange(min(2, rows)))
        self.n_classes = probe[2].shape[1]
        per_clip = sum(t[0].numel() for t in probe[0]) + probe[1][0].numel() + probe[2][0].numel()
        if per_clip * 4 * rows <= _FEATURE_CACHE_BYTES:
            parts = [self._compute(torch.arange(i, min(i + ctx.max_rows, rows))) for i in range(0, rows, ctx.max_rows)]
            self.cache = (
                [torch.cat([p[0][j] for p in parts]) for j in range(len(probe[0]))],
                torch.cat([p[1] for p in parts]),
                torch.cat([p[2] for p in parts]),
            )

    @torch.no_grad()
    def _compute(self, idx: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        model = self.ctx.model
        rep = model.domain.represent(model.frontend, self.waves[idx].to(self.ctx.device))
        x = rep.x
        with model.reading(rep):
            feats, logits = self.method._encode(model, x)
        probs = self.method._classifier(model).probabilities(logits)  # softmax or sigmoid: the output kind's
        return feats, model.domain.log_magnitude(x).squeeze(1), probs  # X of the NMF: its log view

    def batch(self, idx: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        if self.cache is None:
            return self._compute(idx)
        feats, x, probs = self.cache
        dev = idx.to(x.device)
        return [f[dev] for f in feats], x[dev], probs[dev]
