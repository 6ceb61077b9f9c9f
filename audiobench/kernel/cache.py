"""Content-addressed caching: hashes of everything that shaped an artefact, and where it lives."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, get_args

from audiobench.kernel.faults import kill_point


def stable_hash(obj: Any, length: int = 16) -> str:
    """SHA-256 of the canonical JSON of ``obj`` (sorted keys), truncated."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def cache_dir() -> Path:
    """``$AUDIOBENCH_CACHE`` or ``~/.cache/audiobench``."""
    root = os.environ.get("AUDIOBENCH_CACHE") or Path.home() / ".cache" / "audiobench"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _umask() -> int:
    """The process's umask (read by setting it and putting it back: once, at import, before any thread)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run directory is shared as any file would be
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        kill_point("atomic_write")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def path_content(path: str | Path) -> dict[str, Any]:
    """What a path holds, independent of where it lies: a folder's every file as (relative path, size
    in bytes) hashed (hidden files left out, the order sorted), a file's SHA-256, or ``{"missing": name}``.
    A cell id hashes this instead of the path so that a checkout or a dataset moved to another machine
    (``/work/shared`` here, ``/check/work/shared`` there) gives the same ids."""
    p = Path(path).expanduser()
    if p.is_dir():
        rows = sorted(
            (str(f.relative_to(p)), f.stat().st_size) for f in p.rglob("*")
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
        return {"files": stable_hash(rows, 24)}
    if p.is_file():
        return {"sha256": sha256(p)}
    return {"missing": p.name}


def is_path_type(annotation: Any) -> bool:
    """Whether a parameter's type is a filesystem path (``Path``, ``Path | None``, ...)."""
    return annotation is Path or any(is_path_type(a) for a in get_args(annotation))


def content_dump(params: Any) -> dict[str, Any]:
    """``params.model_dump(mode="json")`` (a pydantic model) with every path-typed field that is set
    replaced by :func:`path_content`: the form hashed into cache keys and cell ids, so they follow what
    a folder or file holds, not where it lies."""
    out = params.model_dump(mode="json")
    for key, field in type(params).model_fields.items():
        value = getattr(params, key)
        if value is not None and key in out and is_path_type(field.annotation):
            out[key] = path_content(value)
    return out
