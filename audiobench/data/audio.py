"""Audio files on disk: decode, downmix, resample, fit to a fixed length, skip what cannot be used.

Every file-backed dataset (``esc50``, ``urbansound8k``, ``audio_folder``) and the ``noise_folder``
contamination read audio through this module:

* any format libsndfile reads (WAV, FLAC, OGG, ...; 8/16/24/32-bit integer or float), any rate
  and channel count; several channels are downmixed to mono by their mean;
* resampled to the front end's rate with ``torchaudio.functional.resample`` (windowed sinc);
* fitted to ``seconds``: a shorter clip is zero-padded at the end, a longer one centre-cropped;
* a file that is empty, truncated, unreadable or silent is not an error: it becomes a
  :class:`~audiobench.data.base.Skip` with its reason, recorded in the run's manifest.

Decoding runs on a few threads (libsndfile releases the GIL); clips of one sample rate are
resampled together in batches.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiobench.data.base import SILENCE_DBFS, ClipSet, Skip
from audiobench.kernel.cache import stable_hash
from audiobench.kernel.torchaudio_shim import AF

AUDIO_EXTENSIONS = ("wav", "flac", "ogg")
_DECLARED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
_STREAMING = {0, 0xFFFFFFFF}  # data sizes a streaming writer leaves in the header
_RESAMPLE_ROWS = 32  # rows per resampling call (bounds the memory of one call)
_CACHE_BYTES = 512 * 2**20  # decoded clips kept in memory, in all (least recently used dropped first)
_CACHE: OrderedDict[str, ClipSet] = OrderedDict()


class UnusableAudio(Exception):
    """A file that cannot be used; ``str(exc)`` is the reason recorded in the manifest."""


@dataclass(frozen=True)
class Item:
    """One clip of a file-backed dataset."""

    path: Path
    label: int
    sample_id: str
    split: str = ""
    fold: int | None = None
    group: str | None = None  # e.g. the speaker, for group-wise splits
    origin: str = ""  # where the item is listed, e.g. "line 32" of a metadata CSV (in error messages)


#: libsndfile's message for a file it cannot open, whatever the reason; the caller has checked that the
#: file exists and is regular, so it is replaced by what is true: the content cannot be decoded
_MISLEADING = re.compile(r"does not exist|not a regular file|pipe", re.IGNORECASE)

def _streaming_wav(path: Path) -> tuple[np.ndarray, int] | None:
    """A RIFF/WAVE file whose data chunk declares 0 or 0xFFFFFFFF bytes (a streaming writer that never
    went back to fill in the size): its samples are everything after the chunk header. Integer PCM
    (8-32 bit) and float (32/64 bit) only; None when the file is not such a WAV."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if cid == b"fmt " and size >= 16:
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", head[pos + 8 : pos + 24])
            if tag == 0xFFFE and size >= 40:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
                tag = struct.unpack("<H", head[pos + 32 : pos + 34])[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if size not in _STREAMING or fmt is None:
                return None
            tag, channels, rate, bits = fmt
            subtype = {(1, 8): "PCM_U8", (1, 16): "PCM_16", (1, 24): "PCM_24", (1, 32): "PCM_32",
                       (3, 32): "FLOAT", (3, 64): "DOUBLE"}.get((tag, bits))
            if subtype is None or channels < 1 or rate < 1:
                return None
            frame_bytes = channels * bits // 8
            n = (path.stat().st_size - pos - 8) // frame_bytes
            with open(path, "rb") as fh:
                fh.seek(pos + 8)
                raw = io.BytesIO(fh.read(n * frame_bytes))
            data, _ = sf.read(raw, dtype="float32", always_2d=True, format="RAW", subtype=subtype,
                              channels=channels, samplerate=rate, endian="LITTLE")
            return data, int(rate)
        pos += 8 + size + (size & 1)
    return None


def read_audio(path: str | Path, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32 [L] at its own rate (Hz); raises :class:`UnusableAudio` with the reason.

    With ``seconds``, a longer file is read only in its centred ``seconds`` (what :func:`fit_length`
    keeps), so a very long recording is never decoded whole, and the checks below apply to that part.
    Channels are averaged. Unusable: missing, empty, truncated (the header declares more data than
    the file holds; a streaming header with size 0 or 0xFFFFFFFF is read to the end of the file),
    unreadable, non-finite samples (NaN or Inf), all zero, constant (a DC offset only) or
    near-silent (RMS below :data:`~audiobench.data.base.SILENCE_DBFS`). Clipped audio is used as it is.
    """
    path = Path(path)
    if not path.is_file():
        raise UnusableAudio("file not found")
    if path.stat().st_size == 0:
        raise UnusableAudio("empty file (0 bytes)")
    try:
        with sf.SoundFile(path) as fh:
            declared = _DECLARED.search(fh.extra_info or "")
            if declared:
                said, actual = int(declared.group(1)), int(declared.group(2))
                if said not in _STREAMING and actual + fh.channels * 4 < said:
                    raise UnusableAudio(f"truncated file: the header declares {said} data bytes, the file holds {actual}")
            frames, sr = fh.frames, fh.samplerate
            want = frames
            if seconds is not None and frames > int(round(seconds * sr)) > 0:
                want = int(round(seconds * sr))
                fh.seek((frames - want) // 2)  # the centred part, as fit_length keeps it
            data = fh.read(want, dtype="float32", always_2d=True)
    except UnusableAudio:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        text = str(exc).replace(f"'{path}'", "").replace(str(path), "").replace("Error opening :", "").strip(" :")
        if _MISLEADING.search(text):  # libsndfile's generic text for any file it cannot decode: the file is here
            kind = path.suffix.lower().lstrip(".").upper() or "audio"
            text = f"not a decodable {kind} file: libsndfile found no audio it can read"
        raise UnusableAudio(f"unreadable file ({text or type(exc).__name__})") from None
    if data.shape[0] == 0:
        streamed = _streaming_wav(path)
        if streamed is not None and streamed[0].shape[0] > 0:
            data, sr = streamed
            frames = want = data.shape[0]
            if seconds is not None and frames > int(round(seconds * sr)) > 0:
                data = fit_length(data.T, int(round(seconds * sr))).T
                want = data.shape[0]
    if data.shape[0] == 0:
        raise UnusableAudio("empty file (0 samples)")
    if frames > 0 and data.shape[0] < want:
        raise UnusableAudio(f"truncated file: {data.shape[0]} of {want} frames decoded")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        bad = int(np.count_nonzero(~np.isfinite(mono)))
        raise UnusableAudio(f"non-finite samples ({bad} NaN or Inf)")
    if not np.any(mono):
        raise UnusableAudio("silent file (every sample is 0)")
    wide = mono.astype(np.float64)
    ac = float(np.sqrt(np.mean(np.square(wide - wide.mean())))) if wide.size > 1 else abs(float(wide[0]))  # one sample: a click
    floor = 10 ** (SILENCE_DBFS / 20)
    if ac < floor:
        dc = float(wide.mean())
        if abs(dc) >= floor:
            raise UnusableAudio(f"constant signal (a DC offset of {dc:.4g} only, no sound)")
        raise UnusableAudio(f"near-silent file (RMS {20 * np.log10(max(ac, 1e-300)):.1f} dBFS, below {SILENCE_DBFS:g} dBFS)")
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad at the end to ``n`` samples, or keep the centred ``n`` samples of a longer clip."""
    if x.shape[-1] == n:
        return x
    if x.shape[-1] < n:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])]
        return np.pad(x, pad)
    start = (x.shape[-1] - n) // 2
    return x[..., start : start + n]


def resample(x: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """``[..., L]`` at ``orig_sr`` -> ``[..., ceil(L * new_sr / orig_sr)]`` at ``new_sr`` (windowed sinc)."""
    if orig_sr == new_sr:
        return x
    return AF.resample(x, int(orig_sr), int(new_sr))


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def decode_many(paths: Sequence[Path], seconds: float | None = None) -> list[tuple[np.ndarray, int] | UnusableAudio]:
    """Decode files on a few threads (the centred ``seconds`` of each, if given); each entry is
    ``(mono, rate)`` or the :class:`UnusableAudio`."""

    def one(path: Path) -> tuple[np.ndarray, int] | UnusableAudio:
        try:
            return read_audio(path, seconds)
        except UnusableAudio as exc:
            return exc

    if len(paths) < 4:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(_workers()) as pool:
        return list(pool.map(one, paths))


def load_items(
    items: Sequence[Item],
    sample_rate: int,
    seconds: float,
    class_names: list[str],
    where: str,
    root: Path | None = None,
) -> ClipSet:
    """Decode, downmix, resample and fit ``items`` to ``seconds`` at ``sample_rate``; unusable files are skips."""
    n_out = int(round(seconds * sample_rate))
    decoded = decode_many([it.path for it in items], seconds)
    skips: list[Skip] = []
    kept: list[int] = []
    by_rate: dict[int, list[int]] = {}
    fitted: dict[int, np.ndarray] = {}
    for i, (item, got) in enumerate(zip(items, decoded, strict=True)):
        if isinstance(got, UnusableAudio):
            shown = item.path.relative_to(root) if root and item.path.is_relative_to(root) else item.path
            skips.append(Skip(item.sample_id, f"{got} [{shown}]", where))
            continue
        wave, sr = got
        fitted[i] = fit_length(wave, int(round(seconds * sr)))  # crop first: less to resample
        by_rate.setdefault(sr, []).append(i)
        kept.append(i)
    out = torch.zeros(len(kept), n_out, dtype=torch.float32)
    row = {i: r for r, i in enumerate(kept)}
    for sr, members in by_rate.items():
        lengths: dict[int, list[int]] = {}
        for i in members:
            lengths.setdefault(fitted[i].shape[0], []).append(i)
        for group in lengths.values():
            for start in range(0, len(group), _RESAMPLE_ROWS):
                chunk = group[start : start + _RESAMPLE_ROWS]
                batch = torch.from_numpy(np.stack([fitted[i] for i in chunk]))
                res = resample(batch, sr, sample_rate).numpy()
                res = fit_length(res, n_out)
                out[[row[i] for i in chunk]] = torch.from_numpy(np.ascontiguousarray(res))
    return ClipSet(
        waveforms=out,
        labels=torch.tensor([items[i].label for i in kept], dtype=torch.int64),
        sample_ids=[items[i].sample_id for i in kept],
        class_names=list(class_names),
        sample_rate=int(sample_rate),
        skips=skips,
    )


def file_stats(paths: Sequence[Path]) -> str:
    """A digest of (path, size, mtime) of ``paths``: changes when a file is added, removed or edited."""
    rows = []
    for p in paths:
        try:
            st = p.stat()
            rows.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            rows.append((str(p), -1, -1))
    return stable_hash(rows, 24)


def _nbytes(clips: ClipSet) -> int:
    return clips.waveforms.numel() * clips.waveforms.element_size()


def cached(key: object, make) -> ClipSet:  # noqa: ANN001 - a zero-argument callable
    """``make()`` memoised in memory by ``key``, within a budget of ``_CACHE_BYTES`` for all entries.

    Callers get a shallow copy: the tensors are shared and must not be modified in place.
    """
    k = stable_hash(key, 32)
    if k in _CACHE:
        _CACHE.move_to_end(k)
        return _CACHE[k].subset(slice(None))
    clips = make()
    if _nbytes(clips) <= _CACHE_BYTES:
        _CACHE[k] = clips
        while sum(_nbytes(c) for c in _CACHE.values()) > _CACHE_BYTES:
            _CACHE.popitem(last=False)
        return clips.subset(slice(None))
    return clips


def list_audio(root: Path, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Every audio file under ``root`` (recursive, hidden files left out), sorted."""
    exts = {"." + e.lower().lstrip(".") for e in extensions}
    out = [
        p for p in root.rglob("*")
        if p.suffix.lower() in exts and not any(part.startswith(".") for part in p.relative_to(root).parts) and p.is_file()
    ]
    return sorted(out)
