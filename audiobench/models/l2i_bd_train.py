"""Training of ``l2i_bd`` (:mod:`audiobench.models.l2i_bd`) in the harness, cached like the suite's classifier.

The same data regime as the harness's classifier training (:func:`audiobench.models.training.train_classifier`):
the training split at the model's input level (peak-normalised: :func:`~audiobench.data.levels.at_input_level`); with ``model.train.augment_prob`` > 0 that share of each epoch's clips
(drawn per clip and epoch) taken from one of the suite's ``train.augment`` conditions; ``mask_augment``
zeroes frames and mel bands of the network input (the reconstruction target X stays the clip's own);
Adam at ``lr`` and ``weight_decay``; the epoch with the best valid accuracy of g kept (``posthoc``: of f
in its first phase, of g in its second). W is learnt first by sparse NMF on the clean training clips'
log1p|STFT| (frames averaged in chunks of ``frame_chunk``) and held fixed, as in the journal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from audiobench.contracts.frontend import Frontend
from audiobench.data.base import ClipSet
from audiobench.data.levels import at_input_level
from audiobench.kernel.artefacts import cached_artefact
from audiobench.kernel.cache import cache_dir
from audiobench.kernel.fitting import TermMeans, fit_epochs
from audiobench.kernel.nmf import chunk_frames, learn_dictionary
from audiobench.methods.base import draw_versions
from audiobench.models.augment import mask_batch
from audiobench.models.base import training_loss
from audiobench.models.l2i_bd_net import L2IByDesign, by_design_loss, reconstruction_grid
from audiobench.models.quality import ranking_quality
from audiobench.models.training import TrainedClassifier, accuracy, augmented_versions

ROWS = 64  # clips per batch when computing grids


@torch.no_grad()
def grids(frontend: Frontend, waves: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(log1p-mel network inputs [N, 1, T, M], log1p|STFT| [N, T, F]) of waveforms [N, L], in batches."""
    mel, lin = [], []
    for i in range(0, len(waves), ROWS):
        w = waves[i : i + ROWS].to(device)
        mel.append(frontend.logmel(w))
        lin.append(reconstruction_grid(frontend, w))
    return torch.cat(mel), torch.cat(lin)


def scores(model: torch.nn.Module, inputs: torch.Tensor, clips: ClipSet, device: torch.device) -> dict[str, float | None]:
    """Table VIII's measure of ``model`` (g, or f alone) on network inputs of ``clips``: ``accuracy`` (share of
    right decisions; for multi-hot labels, of known (clip, label) pairs at p = 0.5) and, for multi-hot labels,
    ``macro_auprc`` (:func:`audiobench.models.quality.ranking_quality`)."""
    labels = clips.labels.to(device)
    mask = None if clips.label_mask is None else clips.label_mask.to(device)
    out: dict[str, float | None] = {"accuracy": accuracy(model, inputs, labels, label_mask=mask)}
    if labels.dim() == 2:
        out["macro_auprc"] = ranking_quality(model, inputs, labels, mask)
    return out


def train_by_design(
    spec: Any, key: str, tp: Any, splits: dict[str, ClipSet], frontend: Frontend, seed: int,
    device: torch.device, progress: bool = True, evaluated: str = "test", augment: Sequence[Any] = (),
) -> TrainedClassifier:
    """g trained on ``splits['train']`` (selected on ``valid``) with ``tp`` (the suite's ``model.train``), or
    loaded from ``<cache>/classifiers/<key>.pt``; its info holds, per split, g's and f's scores (:func:`scores`)."""
    p = spec.params
    classes = splits["train"].class_names
    torch.manual_seed(seed)  # the initial weights depend on the seed alone
    g = spec.build(classes, frontend.params.n_mels, frontend.params.sample_rate, frontend.params.n_fft // 2 + 1).to(device)
    folder = cache_dir() / "classifiers"

    def fit() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        info = _fit(spec, g, tp, splits, frontend, seed, device, progress, augment)
        return {k: v.cpu() for k, v in g.state_dict().items()}, {"hash": key, **info, "cached": False}

    state, info, cached = cached_artefact(folder / f"{key}.pt", fit, folder / f"{key}.json", map_location=device)
    if cached:
        g.load_state_dict(state)
    g.eval()
    measured = {}
    for name in dict.fromkeys(["train", "valid", evaluated]):
        inputs = grids(frontend, at_input_level(splits[name]).waveforms, device)[0]
        measured[name] = {"g": scores(g, inputs, splits[name], device), "f": scores(g.f, inputs, splits[name], device)}
    info = {**info, "cached": cached, "output_kind": g.output_kind, "prediction": p.prediction,
            "accuracy": {s: m["g"]["accuracy"] for s, m in measured.items()}, "by_design": measured}
    if g.output_kind == "sigmoid":
        info["macro_auprc"] = {s: m["g"]["macro_auprc"] for s, m in measured.items()}
    return TrainedClassifier(g, info)


def _fit(spec: Any, g: L2IByDesign, tp: Any, splits: dict[str, ClipSet], frontend: Frontend, seed: int,
         device: torch.device, progress: bool, augment: Sequence[Any]) -> dict[str, Any]:
    """Learn W, then train g (both phases for ``posthoc``); returns the info the cache's JSON holds."""
    p = spec.params
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    train, valid = splits["train"], splits["valid"]
    aug_p = getattr(tp, "augment_prob", 0.0) if augment else 0.0
    if aug_p > 0:
        waves, _ = augmented_versions(train, augment, seed)  # [V, N, L], version 0 the clean clips
    else:
        waves = at_input_level(train).waveforms.unsqueeze(0)
    parts = [grids(frontend, v, device) for v in waves]
    mel, lin = torch.stack([m for m, _ in parts]), torch.stack([x for _, x in parts])  # [V, N, ...]
    W, nmf_info = learn_dictionary(chunk_frames(lin[0], p.frame_chunk), p.k, n_iter=p.nmf_iter, sparsity=p.sparsity,
                                   generator=torch.Generator().manual_seed(seed))
    g.W.copy_(W.to(device))
    nmf_seconds = round(time.perf_counter() - start, 2)
    labels = train.labels.to(device)
    known = None if train.label_mask is None else train.label_mask.to(device)
    valid_in = grids(frontend, at_input_level(valid).waveforms, device)[0]
    vlab = valid.labels.to(device)
    vmask = None if valid.label_mask is None else valid.label_mask.to(device)
    n = labels.shape[0]

    def batches() -> Any:
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, tp.batch_size):
            idx = order[i : i + tp.batch_size]
            # per clip: with probability augment_prob, one of the conditions' versions (no draw without them)
            version = draw_versions(len(idx), len(waves), aug_p, gen) if aug_p > 0 else torch.zeros(len(idx), dtype=torch.long)
            inp = mel[version.to(device), idx.to(device)]
            if tp.mask_augment > 0:
                inp = mask_batch(inp, tp.mask_augment, gen, frontend.params.hop_length)
            m = None if known is None else known[idx.to(device)]
            yield idx, inp, lin[version.to(device), idx.to(device)], labels[idx.to(device)], m

    def epoch(step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], dict[str, torch.Tensor]],
              opt: torch.optim.Optimizer) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            means = TermMeans()
            for idx, inp, x, lab, m in batches():
                terms = step(inp, x, lab, m)
                opt.zero_grad()
                terms["loss"].backward()
                opt.step()
                means.add(terms, len(idx))
            return means.means("train_")
        return run

    def joint(inp: torch.Tensor, x: torch.Tensor, lab: torch.Tensor, m: Any) -> dict[str, torch.Tensor]:
        f_logits, H, g_logits = g.outputs(inp)
        return by_design_loss(g.W, H, x, g_logits, f_logits, lab, p.prediction, g.output_kind, p.alpha, p.beta,
                              p.gamma, p.loss_reduction, m)

    def f_only(inp: torch.Tensor, x: torch.Tensor, lab: torch.Tensor, m: Any) -> dict[str, torch.Tensor]:
        return {"loss": training_loss(g.f(inp), lab, g.output_kind, m)}  # type: ignore[arg-type]

    def interpreter(inp: torch.Tensor, x: torch.Tensor, lab: torch.Tensor, m: Any) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # f frozen (eval mode: fit_epochs trains Psi and Theta only)
            feats = g.f.features(inp)
            f_logits = g.f.head(feats[-1])
        H = g.activations(feats, inp.shape[2])
        return by_design_loss(g.W, H, x, g.theta(H), f_logits, lab, "posthoc", g.output_kind, p.alpha, p.beta,
                              p.gamma, p.loss_reduction, m)

    def validate(model: torch.nn.Module) -> Callable[[], dict[str, float]]:
        return lambda: {"valid_accuracy": accuracy(model, valid_in, vlab, label_mask=vmask)}

    def adam(params: Any) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=tp.lr, weight_decay=tp.weight_decay)

    desc = f"train l2i_bd ({p.prediction})"
    if p.prediction == "posthoc":
        first = fit_epochs([g.f], tp.epochs, epoch(f_only, adam(g.f.parameters())), validate(g.f), "valid_accuracy",
                           mode="max", desc=desc + " f", progress=progress)
        g.f.eval()
        interp = [g.psi, g.theta]
        fitted = fit_epochs(interp, tp.epochs, epoch(interpreter, adam([q for mod in interp for q in mod.parameters()])),
                            validate(g), "valid_accuracy", mode="max", desc=desc + " interpreter", progress=progress)
        fitted["f_phase"] = {k: first[k] for k in ("selected_by", "best_epoch", "history")}
    else:
        fitted = fit_epochs([g], tp.epochs, epoch(joint, adam(g.parameters())), validate(g), "valid_accuracy",
                            mode="max", desc=desc, progress=progress)
    return {"model": {"name": spec.name, **p.model_dump(mode="json")}, "train": tp.model_dump(),
            "dictionary": {**nmf_info, "shape": list(W.shape), "seconds": nmf_seconds},
            **fitted, "seconds": round(time.perf_counter() - start, 2)}
