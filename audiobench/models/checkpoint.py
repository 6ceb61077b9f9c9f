"""CNN14 checkpoints in the PANNs key layout: read, inspect, load with clear errors, write.

A checkpoint is ``{"model": state_dict}`` (PANNs, and what ``audiobench train`` writes) or a bare
state dict, read with ``torch.load(weights_only=True)``. Key names are PANNs': ``bn0.*``,
``conv_block{i}.conv1.weight``, ``conv_block{i}.bn1.*``, ``conv_block{i}.conv2.weight``,
``conv_block{i}.bn2.*``, ``fc1.*``, ``fc_audioset.*``. PANNs files also hold their front end
(``spectrogram_extractor.*``, ``logmel_extractor.*``); the harness computes its own features, so
those keys are ignored, as is a ``module.`` prefix left by ``DataParallel``.

Width (channels of ``conv_block1``), depth (number of blocks), mel bands (``bn0``) and classes
(``fc_audioset``) are read off the tensors' shapes. A PANNs AudioSet checkpoint has 527 outputs:
it is fine-tuned on the suite's dataset with ``audiobench train`` before it can be evaluated.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from audiobench.kernel.cache import atomic_write_bytes, atomic_write_json, sha256
from audiobench.kernel.errors import AudiobenchError

IGNORED_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.")
PANNS_URL = "https://zenodo.org/record/3987831"
_READ_CACHE: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}
_DIGESTS: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class CheckpointShape:
    width: int
    depth: int
    n_mels: int
    n_classes: int


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of ``path`` (unwrapped, PANNs front-end keys dropped), on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise AudiobenchError(
            f"model.checkpoint: {path} not found; write one with `audiobench train SUITE`, "
            f"or fine-tune PANNs' CNN14 ({PANNS_URL}) that way"
        )
    key = _stat_key(path)
    if key in _READ_CACHE:
        return _READ_CACHE[key]
    raw = _load_file(path)
    state = raw
    if isinstance(raw, dict):
        for wrapper in ("model", "state_dict", "model_state_dict"):
            if isinstance(raw.get(wrapper), dict):
                state = raw[wrapper]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AudiobenchError(f"model.checkpoint: {path} holds no state dict (expected {{'model': state_dict}})")
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        if not k.startswith(IGNORED_PREFIXES):
            out[k] = v
    if len(_READ_CACHE) > 4:
        _READ_CACHE.clear()
    _READ_CACHE[key] = out
    return out


_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")
_REMEDY = "download or write it again"


def _clean(text: str) -> str:
    """First line of an exception text, without terminal escapes or control characters."""
    lines = [ln.strip() for ln in _ESCAPES.sub("", text).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _load_file(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a file that cannot be read is a one-line error.

    The error says what is wrong with the file (empty, incomplete or corrupt, objects that are not
    loaded for safety, not a checkpoint) and what to do, never the raw message of the loader.
    """
    size = path.stat().st_size
    if size == 0:
        raise AudiobenchError(f"model.checkpoint: {path} is empty (0 bytes); {_REMEDY}")
    with open(path, "rb") as fh:
        head = fh.read(4)
    is_zip = head == b"PK\x03\x04"
    if is_zip and not zipfile.is_zipfile(path):  # cut short: the archive's directory at the end is missing
        raise AudiobenchError(
            f"model.checkpoint: {path} is incomplete or corrupt (not a readable PyTorch archive, {size} bytes); {_REMEDY}"
        )
    if not is_zip and head[:1] != b"\x80":  # neither torch.save's zip nor its legacy pickle format
        raise AudiobenchError(
            f"model.checkpoint: {path} is not a PyTorch checkpoint (neither a torch.save archive nor a legacy "
            f"torch.save file); {_REMEDY}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        detail = next((ln.split("error:", 1)[1].strip() for ln in _ESCAPES.sub("", str(exc)).splitlines()
                       if "WeightsUnpickler error:" in ln), "")
        detail = detail.split(" was not an allowed global")[0]
        if detail.startswith("Unsupported global") and not detail.split()[-1].startswith("torch."):
            raise AudiobenchError(
                f"model.checkpoint: {path} holds Python objects besides tensors ({detail}), which are not loaded, "
                "for safety (weights_only=True); save the state dict alone: torch.save({'model': model.state_dict()}, PATH)"
            ) from None
        raise AudiobenchError(f"model.checkpoint: {path} is incomplete or corrupt ({detail or 'unreadable pickle'}); {_REMEDY}") from None
    except (EOFError, OSError, RuntimeError, ValueError) as exc:
        raise AudiobenchError(
            f"model.checkpoint: {path} is incomplete or corrupt ({_clean(str(exc)) or type(exc).__name__}); {_REMEDY}"
        ) from None
    except Exception as exc:  # anything else the loader raises: still one clean line
        raise AudiobenchError(f"model.checkpoint: cannot read {path}: {_clean(str(exc)) or type(exc).__name__}") from None


def checkpoint_shape(state: dict[str, torch.Tensor], path: str | Path = "checkpoint") -> CheckpointShape:
    """Width, depth, mel bands and classes of a CNN14 state dict."""
    for needed in ("bn0.weight", "conv_block1.conv1.weight", "fc_audioset.weight"):
        if needed not in state:
            raise AudiobenchError(f"model.checkpoint: {path} is not a CNN14 checkpoint in the PANNs layout (no key {needed})")
    depth = 0
    while f"conv_block{depth + 1}.conv1.weight" in state:
        depth += 1
    return CheckpointShape(
        width=int(state["conv_block1.conv1.weight"].shape[0]),
        depth=depth,
        n_mels=int(state["bn0.weight"].shape[0]),
        n_classes=int(state["fc_audioset.weight"].shape[0]),
    )


def _hint(key: str) -> str:
    if key.startswith("bn0."):
        return " (the checkpoint's mel bands: set frontend.n_mels to match)"
    if key.startswith("fc_audioset."):
        return " (its number of classes differs from the dataset's)"
    if key.startswith(("conv_block", "fc1.")):
        return " (width/depth differ)"
    return ""


def state_problem(
    own: dict[str, torch.Size | tuple[int, ...]], state: dict[str, torch.Tensor], path: str | Path, skip_head: bool = False
) -> str | None:
    """Why ``state`` does not fit a model whose parameters have the shapes ``own`` (key -> shape), or None.

    One line naming the key and both shapes, the unexpected keys or the missing ones.
    """
    for k, v in state.items():
        if skip_head and k.startswith("fc_audioset."):
            continue
        if k not in own:
            extra = sorted(set(state) - set(own))
            return (
                f"model.checkpoint: {path}: unexpected key(s) {', '.join(extra[:4])}{' ...' if len(extra) > 4 else ''} "
                "(not a CNN14 in the PANNs layout, or a deeper one)"
            )
        if tuple(v.shape) != tuple(own[k]):
            return (
                f"model.checkpoint: {path}: {k} has shape {list(v.shape)} in the checkpoint but "
                f"{list(own[k])} in the model{_hint(k)}"
            )
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
               and not (skip_head and k.startswith("fc_audioset."))]
    if missing:
        return f"model.checkpoint: {path}: missing key(s) {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"
    return None


def head_problem(path: str | Path, outputs: int, n_classes: int) -> str | None:
    """The error for a checkpoint whose ``fc_audioset`` has ``outputs`` rows for a dataset of ``n_classes``."""
    if outputs == n_classes:
        return None
    return (
        f"model.checkpoint: {path} has {outputs} outputs (fc_audioset) but the dataset has "
        f"{n_classes} classes: it is not fine-tuned on this dataset; fine-tune it with "
        "`audiobench train SUITE` (every layer but fc_audioset is loaded) and set model.checkpoint to the result"
    )


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path, skip_head: bool = False) -> None:
    """Copy ``state`` into ``model``; one-line errors name the key and both shapes, or the keys missing."""
    own = {k: v.shape for k, v in model.state_dict().items()}
    problem = state_problem(own, state, path, skip_head)
    if problem:
        raise AudiobenchError(problem)
    use = {k: v for k, v in state.items() if not (skip_head and k.startswith("fc_audioset."))}
    model.load_state_dict(use, strict=False)


def file_digest(path: str | Path) -> str:
    """SHA-256 of the file (memoised by path, size and mtime)."""
    path = Path(path)
    key = _stat_key(path)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256(path)
    return _DIGESTS[key]


def sidecar(path: str | Path) -> Path:
    """The JSON written next to a checkpoint: ``cnn14.pt`` -> ``cnn14.json``."""
    return Path(path).with_suffix(".json")


def save_checkpoint(model: torch.nn.Module, path: str | Path, info: dict[str, Any]) -> Path:
    """Write ``{"model": state_dict}`` (PANNs key layout) and its JSON sidecar (accuracy, training) atomically."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, buf)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(sidecar(path), {**info, "checkpoint": str(path), "sha256": file_digest(path)})
    return path


def read_sidecar(path: str | Path) -> dict[str, Any]:
    side = sidecar(path)
    try:
        return json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, ValueError):
        return {}
