"""Train the suite's classifier in the harness, cached by a hash of everything that shaped it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from audiobench.contracts.domains import Domain, Mel, Stft2Mel
from audiobench.contracts.frontend import Frontend
from audiobench.data.base import ClipSet
from audiobench.data.contaminations import at_input_level, with_augmentation
from audiobench.data.levels import level_record
from audiobench.kernel.artefacts import cached_artefact
from audiobench.kernel.batching import CPU_ROWS
from audiobench.kernel.cache import cache_dir, content_dump, stable_hash
from audiobench.kernel.errors import AudiobenchError
from audiobench.kernel.fitting import TermMeans, fit_epochs
from audiobench.models.augment import mask_batch, mix_batch
from audiobench.models.base import AudioClassifier, ModelSpec, training_loss
from audiobench.models.checkpoint import (
    checkpoint_shape,
    file_digest,
    head_problem,
    load_state,
    read_checkpoint,
    read_sidecar,
)
from audiobench.models.cnn14 import Cnn14Spec
from audiobench.models.quality import ranking_quality

TRAINING_CODE_VERSION = 2  # bump when training changes in a way that changes the weights


@dataclass
class TrainedClassifier:
    model: AudioClassifier
    info: dict[str, Any]  # hash, accuracies, history, seconds, cached


def _features(frontend: Frontend, clips: ClipSet, device: torch.device, model: AudioClassifier,
              batch: int = CPU_ROWS) -> torch.Tensor:
    """The clips at the input level (peak-normalised unless the model declares otherwise:
    :func:`~audiobench.data.levels.input_level`) on the grid harness training reads for ``model`` (:func:`training_grid`)."""
    clips = at_input_level(clips)
    with torch.no_grad():
        parts = [training_grid(model, frontend, clips.waveforms[i : i + batch].to(device)) for i in range(0, len(clips), batch)]
    return torch.cat(parts)


MEL = Mel()  # the grid harness training reads: the log1p-mel, which any model reads through network_input
LINEAR = Stft2Mel()  # ... or, for a model of input kind ``linear``, the STFT magnitudes


def training_domain(model: AudioClassifier) -> Domain:
    """The domain whose unmasked grid harness training feeds ``model`` (through its ``network_input``):
    the mel domain (log1p-mel) by default, STFT→Mel with the linear operator (|X|) for input kind ``linear``."""
    return LINEAR if model.input_kind == "linear" else MEL


def training_grid(model: AudioClassifier, frontend: Frontend, wave: torch.Tensor) -> torch.Tensor:
    """Waveforms [B, L] -> the unmasked grid of :func:`training_domain` [B, 1, T, F]; for a model of input
    kind ``waveform``, the waveforms themselves [B, L] (unmasked, ISTFT(|X| e^{j∠X}) is the waveform)."""
    if model.input_kind == "waveform":
        return wave
    return LINEAR.represent(frontend, wave).x if model.input_kind == "linear" else frontend.logmel(wave)


def read_grid(model: AudioClassifier, frontend: Frontend, grid: torch.Tensor) -> torch.Tensor:
    """What ``model`` reads of a training grid (:func:`training_grid`): its ``network_input`` on
    :func:`training_domain`, or the waveform itself for input kind ``waveform``."""
    if model.input_kind == "waveform":
        return grid
    return model.network_input(training_domain(model), frontend, grid)


def network_inputs(model: AudioClassifier, frontend: Frontend, grid: torch.Tensor, batch: int = CPU_ROWS) -> torch.Tensor:
    """What ``model`` reads (:func:`read_grid`) of unmasked grids of :func:`training_domain` [N, 1, T, F]
    (waveforms [N, L] for input kind ``waveform``), in batches, without gradients: [N, ...] as the model declares."""
    with torch.no_grad():
        return torch.cat([read_grid(model, frontend, grid[i : i + batch]) for i in range(0, len(grid), batch)])


def model_inputs(model: AudioClassifier, frontend: Frontend, clips: ClipSet, device: torch.device) -> torch.Tensor:
    """The ``clips`` at the input level (:func:`_features`) as ``model`` reads them (:func:`network_inputs` of their training grid):
    what its accuracy is measured on."""
    return network_inputs(model, frontend, _features(frontend, clips, device, model))


@torch.no_grad()
def accuracy(model: torch.nn.Module, feats: torch.Tensor, labels: torch.Tensor, batch: int = 128,
             label_mask: torch.Tensor | None = None) -> float:
    """Share of correct decisions on network inputs ``feats``: argmax == label for labels [N];
    for multi-hot labels [N, C] (sigmoid models), the share of known (clip, label) pairs (``label_mask``
    [N, C] bool, None: all) decided right at p = 0.5."""
    model.eval()
    scores = torch.cat([model(feats[i : i + batch]) for i in range(0, len(feats), batch)]).cpu()
    if not len(labels):
        return float("nan")
    if labels.dim() == 2:
        right = ((model.probabilities(scores) > 0.5) == labels.cpu().bool()).float()
        known = torch.ones_like(right, dtype=torch.bool) if label_mask is None else label_mask.cpu()
        return float(right[known].mean())
    return float((scores.argmax(-1) == labels.cpu()).float().mean())


def classifier_key(
    spec: Cnn14Spec, train: Any, n_classes: int, frontend: Frontend, data: dict, seed: int, init: str | None = None,
    augment: Sequence[Any] = (),
) -> str:
    identity = {
        # the checkpoint enters as its content digest (``init``), not as its path
        "model": {"name": spec.name, **spec.params.model_dump(exclude={"checkpoint"})},
        "train": train.model_dump(),
        "n_classes": n_classes,
        "frontend": frontend.params.model_dump(),
        "data": data,
        "seed": seed,
        "code": TRAINING_CODE_VERSION,
    }
    if init is not None:
        identity["init"] = init
    identity.update(level_record(spec.peak_normalise))  # clips at the model's level
    if augment and getattr(train, "augment_prob", 0) > 0:  # absent otherwise: earlier keys kept
        identity["augment"] = [{"name": c.name, **content_dump(c.params)} for c in augment]  # a noise folder by content
    return stable_hash(identity)


def augmented_versions(clips: ClipSet, augment: Sequence[Any], seed: int) -> tuple[torch.Tensor, list[str]]:
    """The clips peak-normalised, then each augmentation condition applied to them: waveforms
    [1 + len(augment), N, L] and the condition keys. Mixture partners come from ``clips`` themselves
    (the training split); a clip a condition leaves out (a recorded skip: no usable noise) keeps its
    clean version there, so every version has the same rows."""
    clean, *augmented = with_augmentation(clips, list(augment), seed)
    versions = [clean.waveforms]
    where = {sid: i for i, sid in enumerate(clips.sample_ids)}
    for out in augmented:
        rows = clean.waveforms.clone()
        rows[[where[sid] for sid in out.sample_ids]] = out.waveforms
        versions.append(rows)
    return torch.stack(versions), [c.key() for c in augment]


def train_classifier(
    spec: Cnn14Spec,
    train_params: Any,
    splits: dict[str, ClipSet],
    frontend: Frontend,
    data_fingerprint: dict,
    seed: int,
    device: torch.device,
    progress: bool = True,
    init: bool = False,
    augment: Sequence[Any] = (),
) -> TrainedClassifier:
    """Train (or load from the cache) a classifier on ``splits['train']``, keeping the best on ``valid``.

    With ``train_params.augment_prob`` > 0, that share of each epoch's training clips (drawn per clip
    and epoch) is taken from one of the ``augment`` conditions (contaminations, the suite's
    ``train.augment``) applied to the training clips once (:func:`augmented_versions`); selection
    on ``valid`` reads its clean clips.

    With ``init``, training starts from ``spec``'s checkpoint (fine-tuning): every layer is loaded,
    except ``fc_audioset`` when its number of classes is not the dataset's (a PANNs AudioSet head).
    """
    n_classes = len(splits["train"].class_names)
    start_from, checkpoint = None, spec.checkpoint() if init else None
    if checkpoint is not None:
        init_state = read_checkpoint(checkpoint)
        start_from = file_digest(checkpoint)
    key = classifier_key(spec, train_params, n_classes, frontend, data_fingerprint, seed, start_from, augment)
    folder = cache_dir() / "classifiers"
    weights, meta = folder / f"{key}.pt", folder / f"{key}.json"
    torch.manual_seed(seed)  # the initial weights depend on the seed alone
    model = spec.build(splits["train"].class_names, frontend.params.n_mels, frontend.params.sample_rate).to(device)
    if checkpoint is not None:
        head = checkpoint_shape(init_state, checkpoint).n_classes != n_classes
        load_state(model, init_state, checkpoint, skip_head=head)

    def fit() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Train ``model`` here: (its weights on the CPU, the info the cache's JSON holds)."""
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(seed)
        grid = {name: _features(frontend, clips, device, model) for name, clips in splits.items()}  # training_domain's grid
        feats = {name: network_inputs(model, frontend, g) for name, g in grid.items()}  # what the model reads of it
        labels = {name: clips.labels.to(device) for name, clips in splits.items()}
        masks = {name: None if clips.label_mask is None else clips.label_mask.to(device) for name, clips in splits.items()}
        train_wave = splits["train"].waveforms.to(device)
        aug_p = getattr(train_params, "augment_prob", 0.0) if augment else 0.0
        if aug_p > 0:  # log-mel of every (version, clip), computed once
            waves, _ = augmented_versions(splits["train"], augment, seed)
            with torch.no_grad():
                versions = torch.stack([torch.cat([training_grid(model, frontend, v[i : i + 64].to(device)) for i in range(0, len(v), 64)])
                                        for v in waves[1:]])
        opt = torch.optim.Adam(model.parameters(), lr=train_params.lr, weight_decay=train_params.weight_decay)
        n = len(feats["train"])

        def train_epoch() -> dict[str, float]:
            order = torch.randperm(n, generator=gen)
            means = TermMeans()
            for i in range(0, n, train_params.batch_size):
                idx = order[i : i + train_params.batch_size].to(device)
                if train_params.mixture_prob > 0:
                    with torch.no_grad():
                        wave = mix_batch(train_wave[idx], labels["train"][idx], train_params.mixture_prob,
                                         train_params.mixture_snr_db, gen)
                        batch = training_grid(model, frontend, wave)
                else:
                    batch = grid["train"][idx]
                if aug_p > 0:  # per clip: with probability augment_prob, one of the conditions' versions
                    use = torch.rand(len(idx), generator=gen) < aug_p
                    which = torch.randint(len(versions), (len(idx),), generator=gen)
                    chosen = versions[which.to(device), idx]
                    batch = torch.where(use.to(device).view(-1, *[1] * (batch.dim() - 1)), chosen, batch)
                if train_params.mask_augment > 0:
                    batch = mask_batch(batch, train_params.mask_augment, gen, frontend.params.hop_length)
                # through the contract: the model's own reading of the (augmented) grid, its output kind's loss
                known = None if masks["train"] is None else masks["train"][idx]  # unannotated pairs: in no loss
                loss = training_loss(model(read_grid(model, frontend, batch)), labels["train"][idx], model.output_kind, known)
                opt.zero_grad()
                loss.backward()
                opt.step()
                means.add({"loss": loss}, len(idx))
            return means.means("train_")

        fitted = fit_epochs(
            [model], train_params.epochs, train_epoch,
            lambda: {"valid_accuracy": accuracy(model, feats["valid"], labels["valid"], label_mask=masks["valid"])},
            "valid_accuracy", mode="max", desc="train classifier", progress=progress,
        )
        info = {
            "hash": key,
            "model": {"name": spec.name, **spec.params.model_dump(mode="json")},
            "train": train_params.model_dump(),
            "initialised_from": None if start_from is None else {"checkpoint": str(checkpoint), "sha256": start_from},
            "selected_by": fitted["selected_by"],
            "best_epoch": fitted["best_epoch"],
            "accuracy": {name: accuracy(model, feats[name], labels[name], label_mask=masks[name]) for name in splits},
            **({"macro_auprc": {name: ranking_quality(model, feats[name], labels[name], masks[name]) for name in splits}}
               if labels["train"].dim() == 2 else {}),
            "history": fitted["history"],
            "seconds": round(time.perf_counter() - start, 2),
            "cached": False,
        }
        return {k: v.cpu() for k, v in model.state_dict().items()}, info

    state, info, cached = cached_artefact(weights, fit, meta, map_location=device)
    if cached:
        model.load_state_dict(state)
    return TrainedClassifier(model.eval(), info | {"cached": cached})


def built_network(spec: ModelSpec, class_names: list[str], n_mels: int, sample_rate: int) -> AudioClassifier:
    """``spec.build(...)``, with what a plugin's build raises (a checkpoint whose head does not fit the dataset's
    classes, a missing key) as one line naming the model: :class:`AudiobenchError`."""
    try:
        return spec.build(class_names, n_mels, sample_rate)
    except (RuntimeError, ValueError, KeyError, OSError, TypeError) as exc:
        if isinstance(exc, AudiobenchError):
            raise
        raise AudiobenchError(f"model '{spec.name}' could not be built for {len(class_names)} classes: "
                              + " ".join(str(exc).split())) from exc


def load_classifier(spec: Cnn14Spec, splits: dict[str, ClipSet], frontend: Frontend, device: torch.device,
                    evaluated: str = "test") -> TrainedClassifier:
    """The classifier of ``spec``'s checkpoint, checked against the dataset; no training.

    Its accuracy on the ``evaluated`` split is measured here; what ``audiobench train`` recorded
    next to the checkpoint (accuracies, history) is kept under ``trained``.
    """
    path = spec.checkpoint()
    assert path is not None
    state = read_checkpoint(path)
    shape = checkpoint_shape(state, path)
    classes = splits[evaluated].class_names
    problem = head_problem(path, shape.n_classes, len(classes))
    if problem:
        raise AudiobenchError(problem)
    model = spec.build(classes, frontend.params.n_mels, frontend.params.sample_rate).to(device)
    load_state(model, state, path)
    model.eval()
    feats = model_inputs(model, frontend, splits[evaluated], device)
    digest = file_digest(path)
    side = read_sidecar(path)
    info = {
        "hash": _checkpoint_hash(digest),
        "checkpoint": str(path),
        "sha256": digest,
        "model": {"name": spec.name, **spec.params.model_dump(mode="json"), "width": shape.width, "depth": shape.depth},
        "accuracy": {evaluated: accuracy(model, feats, splits[evaluated].labels.to(device))},
        "trained": {k: side[k] for k in ("accuracy", "train", "best_epoch", "class_names", "dataset") if k in side},
        "history": side.get("history", []),
        "cached": True,
    }
    if side.get("class_names") and side["class_names"] != classes:
        raise AudiobenchError(
            f"model.checkpoint: {path} was trained on classes {side['class_names'][:5]}... "
            f"but the dataset's are {classes[:5]}...; it belongs to another dataset"
        )
    return TrainedClassifier(model, info)


def built_classifier(
    spec: ModelSpec, splits: dict[str, ClipSet], frontend: Frontend, seed: int, device: torch.device, evaluated: str = "test"
) -> TrainedClassifier:
    """A model used as built (weights constructed or loaded by its spec); its accuracy measured on ``evaluated``."""
    classes = splits[evaluated].class_names
    torch.manual_seed(seed)
    model = built_network(spec, classes, frontend.params.n_mels, frontend.params.sample_rate).to(device).eval()
    inputs = model_inputs(model, frontend, splits[evaluated], device)
    info = {
        "hash": _built_hash(spec, classes, seed),
        "model": {"name": spec.name, **spec.params.model_dump(mode="json")},
        "output_kind": model.output_kind,
        "accuracy": {evaluated: accuracy(model, inputs, splits[evaluated].labels.to(device))},
        "history": [],
        "cached": True,
    }
    return TrainedClassifier(model, info)


def _checkpoint_hash(digest: str) -> str:
    return "ckpt-" + digest[:16]


def _built_hash(spec: ModelSpec, classes: list[str], seed: int) -> str:
    return stable_hash({"model": {"name": spec.name, **spec.params.model_dump(mode="json")}, "classes": classes, "seed": seed})


def classifier_hash(
    spec: ModelSpec, train_params: Any, splits: dict[str, ClipSet], frontend: Frontend, data_fingerprint: dict,
    seed: int, evaluated: str = "test", augment: Sequence[Any] = (),
) -> str:
    """The ``info['hash']`` that :func:`get_classifier` gives the suite's classifier, computed without
    training, loading or building it (a checkpoint is read once for its digest): what cell ids need,
    e.g. for ``audiobench run SUITE --list-cells`` on a machine that has not trained yet."""
    own = spec.model_key(train_params, splits, frontend, data_fingerprint, seed, augment=augment)
    if own is not None:
        return own
    if not spec.trainable:
        return _built_hash(spec, splits[evaluated].class_names, seed)
    if spec.checkpoint() is not None:
        return _checkpoint_hash(file_digest(spec.checkpoint()))
    return classifier_key(spec, train_params, len(splits["train"].class_names), frontend, data_fingerprint, seed,
                          augment=augment)


def get_classifier(
    spec: ModelSpec, train_params: Any, splits: dict[str, ClipSet], frontend: Frontend, data_fingerprint: dict,
    seed: int, device: torch.device, progress: bool = True, evaluated: str = "test", augment: Sequence[Any] = (),
) -> TrainedClassifier:
    """The suite's classifier: its checkpoint when ``model.checkpoint`` is set, else trained here (cached)
    with the ``augment`` conditions (``train.augment``) when ``train_params.augment_prob`` > 0;
    a model that is not ``trainable`` is used as its spec builds it; a spec that trains its own way
    (``ModelSpec.train_model``, e.g. the zero-shot ``clap_synth``) does so."""
    own = spec.train_model(train_params, splits, frontend, data_fingerprint, seed, device, progress, evaluated,
                           augment=augment)
    if own is not None:
        return own
    if not spec.trainable:
        return built_classifier(spec, splits, frontend, seed, device, evaluated)
    if spec.checkpoint() is not None:
        return load_classifier(spec, splits, frontend, device, evaluated)
    return train_classifier(spec, train_params, splits, frontend, data_fingerprint, seed, device, progress,
                            augment=augment)
