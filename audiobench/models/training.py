"""Train the suite's classifier in the harness, cached by a hash of everything that shaped it."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from audiobench.cache import atomic_write_bytes, atomic_write_json, cache_dir, stable_hash
from audiobench.data.base import ClipSet
from audiobench.data.contaminations import peak_normalise
from audiobench.frontend import Frontend
from audiobench.models.cnn14 import Cnn14, Cnn14Spec

TRAINING_CODE_VERSION = 2  # bump when training changes in a way that changes the weights


@dataclass
class TrainedClassifier:
    model: Cnn14
    info: dict[str, Any]  # hash, accuracies, history, seconds, cached


def _features(frontend: Frontend, clips: ClipSet, device: torch.device, batch: int = 64) -> torch.Tensor:
    clips = peak_normalise(clips.subset(slice(None)))
    with torch.no_grad():
        parts = [frontend.logmel(clips.waveforms[i : i + batch].to(device)) for i in range(0, len(clips), batch)]
    return torch.cat(parts)


def mix_batch(
    wave: torch.Tensor, labels: torch.Tensor, prob: float, snr_db: tuple[float, float], gen: torch.Generator
) -> torch.Tensor:
    """Mix a random share ``prob`` of the clips with another clip of the batch of a different class.

    The SNR of each mixture is uniform in ``snr_db``; labels stay those of the first clip. Rows are
    peak-normalised afterwards, like every input the classifier sees.
    """
    n = wave.shape[0]
    partner = torch.randperm(n, generator=gen)
    chosen = (torch.rand(n, generator=gen) < prob) & (labels.cpu()[partner] != labels.cpu())
    snr = snr_db[0] + (snr_db[1] - snr_db[0]) * torch.rand(n, generator=gen)
    p_s = wave.pow(2).mean(dim=1)
    p_n = wave[partner.to(wave.device)].pow(2).mean(dim=1).clamp_min(1e-20)
    gain = torch.sqrt(p_s / (p_n * 10 ** (snr.to(wave.device) / 10))) * chosen.to(wave.device)
    mixed = wave + gain[:, None] * wave[partner.to(wave.device)]
    return mixed / mixed.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def accuracy(model: torch.nn.Module, feats: torch.Tensor, labels: torch.Tensor, batch: int = 128) -> float:
    model.eval()
    preds = torch.cat([model(feats[i : i + batch]).argmax(-1) for i in range(0, len(feats), batch)])
    return float((preds.cpu() == labels.cpu()).float().mean()) if len(labels) else float("nan")


def classifier_key(spec: Cnn14Spec, train: Any, n_classes: int, frontend: Frontend, data: dict, seed: int) -> str:
    return stable_hash(
        {
            "model": {"name": spec.name, **spec.params.model_dump()},
            "train": train.model_dump(),
            "n_classes": n_classes,
            "frontend": frontend.params.model_dump(),
            "data": data,
            "seed": seed,
            "code": TRAINING_CODE_VERSION,
        }
    )


def train_classifier(
    spec: Cnn14Spec,
    train_params: Any,
    splits: dict[str, ClipSet],
    frontend: Frontend,
    data_fingerprint: dict,
    seed: int,
    device: torch.device,
    progress: bool = True,
) -> TrainedClassifier:
    """Train (or load from the cache) a classifier on ``splits['train']``, keeping the best on ``valid``."""
    n_classes = len(splits["train"].class_names)
    key = classifier_key(spec, train_params, n_classes, frontend, data_fingerprint, seed)
    folder = cache_dir() / "classifiers"
    weights, meta = folder / f"{key}.pt", folder / f"{key}.json"
    torch.manual_seed(seed)  # the initial weights depend on the seed alone
    model = spec.build(n_classes, frontend.params.n_mels).to(device)
    if weights.exists() and meta.exists():
        model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
        info = json.loads(meta.read_text())
        info["cached"] = True
        return TrainedClassifier(model.eval(), info)

    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    feats = {name: _features(frontend, clips, device) for name, clips in splits.items()}
    labels = {name: clips.labels.to(device) for name, clips in splits.items()}
    train_wave = splits["train"].waveforms.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=train_params.lr, weight_decay=train_params.weight_decay)
    n = len(feats["train"])
    best_acc, best_state, history = -1.0, None, []
    bar = tqdm(range(train_params.epochs), desc="train classifier", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, train_params.batch_size):
            idx = order[i : i + train_params.batch_size].to(device)
            if train_params.mixture_prob > 0:
                with torch.no_grad():
                    wave = mix_batch(train_wave[idx], labels["train"][idx], train_params.mixture_prob,
                                     train_params.mixture_snr_db, gen)
                    batch = frontend.logmel(wave)
            else:
                batch = feats["train"][idx]
            loss = torch.nn.functional.cross_entropy(model(batch), labels["train"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        val_acc = accuracy(model, feats["valid"], labels["valid"])
        history.append({"epoch": epoch + 1, "train_loss": total / n, "valid_accuracy": val_acc})
        bar.set_postfix(loss=f"{total / n:.3f}", valid_acc=f"{val_acc:.3f}")
        if val_acc > best_acc:  # the selection key is the logged valid_accuracy
            best_acc, best_state = val_acc, {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    info = {
        "hash": key,
        "model": {"name": spec.name, **spec.params.model_dump()},
        "train": train_params.model_dump(),
        "selected_by": "valid_accuracy",
        "best_epoch": max(history, key=lambda h: h["valid_accuracy"])["epoch"],
        "accuracy": {name: accuracy(model, feats[name], labels[name]) for name in splits},
        "history": history,
        "seconds": round(time.perf_counter() - start, 2),
        "cached": False,
    }
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    atomic_write_bytes(weights, buf.getvalue())
    atomic_write_json(meta, info)
    return TrainedClassifier(model.eval(), info)


def weights_path(key: str) -> Path:
    return cache_dir() / "classifiers" / f"{key}.pt"
