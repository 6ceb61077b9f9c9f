"""Sample ids as file names: whatever a file name or a CSV row says, nothing is written outside its folder.

Ids come from file names, CSV rows and plugin datasets, so they may hold ``/``, ``..``, an absolute
path or control characters. :func:`file_stem` turns an id into one safe file-name component (ids
that need no change keep their name); :func:`safe_child` joins it to a folder and refuses any
result that would leave the folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from audiobench.kernel.cache import stable_hash
from audiobench.kernel.errors import AudiobenchError

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')
_MAX_BYTES = 180  # a name plus a suffix stays below the usual 255-byte limit


def file_stem(sample_id: str) -> str:
    """``sample_id`` as a single file-name component without extension.

    Path separators become ``__``, control and reserved characters ``_``, leading dots are
    dropped (no ``..``, no hidden files) and long ids are cut; an id that had to change gets
    ``-<hash>`` of the original appended, so two different ids never share a file.
    """
    stem = sample_id.replace("/", "__").replace("\\", "__")
    stem = _UNSAFE.sub("_", stem).lstrip(".").strip() or "_"
    if len(stem.encode()) > _MAX_BYTES:
        stem = stem.encode()[:_MAX_BYTES].decode(errors="ignore")
    return stem if stem == sample_id else f"{stem}-{stable_hash(sample_id, 8)}"


def safe_child(folder: Path, sample_id: str, suffix: str) -> Path:
    """``folder / (file_stem(sample_id) + suffix)``; :class:`AudiobenchError` if it would resolve outside ``folder``."""
    path = folder / f"{file_stem(sample_id)}{suffix}"
    if path.resolve().parent != folder.resolve():
        raise AudiobenchError(f"sample id {sample_id!r} cannot be a file name in {folder}")
    return path
