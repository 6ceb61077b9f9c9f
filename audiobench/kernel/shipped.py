"""Shipped artefacts: trained weights committed to the repository, pinned by content hash.

Training amplifies the last-bit differences of float arithmetic between CPUs (and between thread
counts on one CPU), so a classifier trained on another machine is another classifier. The
embedded default's trained artefacts (classifier, L-MAC and L2I interpreters) therefore ship in
``artifacts/<store>/`` with the cache's own layout (``classifiers/<key>.pt``,
``methods/<method>/<key>.pt`` and their ``.json``) and an ``index.json`` of file -> sha256.

On a cache miss, :func:`restore` looks the missing files up in the stores: when a store holds all
of them and their hashes match the index, they are copied into the cache (the ``.json`` gains a
``shipped`` entry that the run's manifest then records) and used as if trained here. A file whose
hash does not match is an error, never a silent retrain. A cache copy of an older shipped artefact
is refreshed; an entry trained on this machine is kept, with a warning that it shadows the shipped one.

``AUDIOBENCH_SHIPPED`` selects the stores: unset, the repository's ``artifacts/``; a path, that
folder (holding stores, or one store); ``off``, none: everything is trained from scratch, and
copies of shipped artefacts already in the cache are dropped so that they are retrained too.
``python -m audiobench.kernel.shipped update RUN_DIR`` writes a store from the cache after a retrain.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audiobench.kernel.cache import atomic_write_bytes, atomic_write_json, cache_dir, sha256
from audiobench.kernel.errors import AudiobenchError

INDEX = "index.json"
REPO_ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"  # a checkout's; absent in an installed wheel
OFF = {"off", "0", "no", "false", "none"}


def enabled() -> bool:
    """False when ``AUDIOBENCH_SHIPPED`` is ``off``: train from scratch."""
    return os.environ.get("AUDIOBENCH_SHIPPED", "").strip().lower() not in OFF


def stores() -> list[Path]:
    """The store folders (each with an ``index.json``) that look-ups consult, in name order."""
    if not enabled():
        return []
    setting = os.environ.get("AUDIOBENCH_SHIPPED", "").strip()
    root = Path(setting) if setting else REPO_ARTIFACTS
    if (root / INDEX).is_file():
        return [root]
    found = sorted(p.parent for p in root.glob(f"*/{INDEX}")) if root.is_dir() else []
    if setting and not found:  # a typo or an unmounted share would otherwise retrain everything, silently
        what = "no such folder" if not root.is_dir() else f"no {INDEX} in it or in its sub-folders"
        raise AudiobenchError(f"AUDIOBENCH_SHIPPED={setting}: {what}; unset it to use the repository's artifacts/, "
                              "or set it to off to train from scratch")
    return found


def read_index(store: Path) -> dict[str, str]:
    """The store's relative path -> sha256. Raises :class:`AudiobenchError` (one line naming the file)
    when the index is not valid JSON or lists no files."""
    path = store / INDEX
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = "has no 'files'" if isinstance(exc, (KeyError, TypeError)) else "is not valid JSON (a merge conflict?)"
        raise AudiobenchError(f"shipped store {path} {why}: restore it (git checkout) or set AUDIOBENCH_SHIPPED=off") from None
    if not isinstance(files, dict):
        raise AudiobenchError(f"shipped store {path} has no 'files' mapping: restore it (git checkout) or set "
                              "AUDIOBENCH_SHIPPED=off")
    return files


def _relative(path: Path) -> str:
    return path.resolve().relative_to(cache_dir().resolve()).as_posix()


def _shipped_record(meta: Path) -> dict[str, Any] | None:
    """The ``shipped`` entry of a cache entry's ``.json`` (None: trained here, or unreadable)."""
    try:
        record = json.loads(meta.read_text()).get("shipped")
    except (OSError, ValueError, AttributeError):
        return None
    return record if isinstance(record, dict) else None


def _is_shipped_copy(meta: Path) -> bool:
    return _shipped_record(meta) is not None


def restore(weights: Path, meta: Path) -> bool:
    """Make the cache entry (``weights``, ``meta``: paths in :func:`cache_dir`) available from a shipped
    store on a miss; True when it was copied from one.

    A present entry trained here is kept (a warning on stderr says that it shadows the shipped one,
    whose results the committed tables hold); a present copy of an older shipped artefact (its
    recorded sha256 is not the store's) is replaced. With ``AUDIOBENCH_SHIPPED=off`` a copy of a
    shipped artefact is removed so that the caller retrains it. A shipped file whose hash differs
    from its store's index raises :class:`AudiobenchError`.
    """
    if not enabled():
        if meta.exists() and _is_shipped_copy(meta):
            weights.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
        return False
    present = weights.exists() and meta.exists()
    rel_w, rel_m = _relative(weights), _relative(meta)
    for store in stores():
        index = read_index(store)
        if rel_w not in index or rel_m not in index:
            continue
        if present:
            record = _shipped_record(meta)
            if record is None:
                print(f"audiobench: {weights} was trained on this machine and is used instead of the shipped "
                      f"artefact in {store}; results may differ from the committed tables in the last digits "
                      "(delete the .pt and .json to use the shipped one)", file=sys.stderr)
                return False
            if record.get("sha256") == index[rel_w]:
                return False
        for rel in (rel_w, rel_m):
            src = store / rel
            if not src.is_file() or sha256(src) != index[rel]:
                raise AudiobenchError(
                    f"shipped artefact {src} does not match the sha256 pinned in {store / INDEX}: restore it "
                    "(git checkout; a Git LFS pointer is not the file) or set AUDIOBENCH_SHIPPED=off to retrain"
                )
        info = json.loads((store / rel_m).read_text())
        info["shipped"] = {"store": store.name, "sha256": index[rel_w]}
        atomic_write_bytes(weights, (store / rel_w).read_bytes())
        atomic_write_json(meta, info)
        return True
    return False


def _fit_keys(fit: dict[str, Any]) -> Iterator[str]:
    """The cache keys of a cell's fit record: its own and its base stage's (L-MAC fine-tuning)."""
    if fit.get("key"):
        yield fit["key"]
    if isinstance(fit.get("base"), dict):
        yield from _fit_keys(fit["base"])


def entries(manifest: dict[str, Any]) -> list[str]:
    """Relative cache paths of every artefact a run trained or loaded: classifier and method fits."""
    rels = []
    clf = manifest["classifier"]
    if "checkpoint" not in clf:
        rels += [f"classifiers/{clf['hash']}.pt", f"classifiers/{clf['hash']}.json"]
    for cell in manifest["cells"]:
        for key in _fit_keys(cell.get("fit") or {}):
            rels += [f"methods/{cell['method']}/{key}.pt", f"methods/{cell['method']}/{key}.json"]
    return list(dict.fromkeys(rels))


def update(run_dir: Path, store: Path) -> dict[str, str]:
    """Write ``store`` from the cache: every artefact of the run in ``run_dir``, and its index.

    Files of the store not in the run are removed. A cache entry copied from a store enters
    without its ``shipped`` record, so that the store holds what training wrote.
    """
    manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    index: dict[str, str] = {}
    wanted = entries(manifest)
    missing = [rel for rel in wanted if not (cache_dir() / rel).is_file()]
    if missing:
        raise AudiobenchError(f"not in the cache {cache_dir()}: {', '.join(missing)}; run the suite first")
    if store.exists():
        shutil.rmtree(store)
    for rel in wanted:
        src, dst = cache_dir() / rel, store / rel
        if rel.endswith(".json"):
            info = json.loads(src.read_text())
            info.pop("shipped", None)
            atomic_write_json(dst, info)
        else:
            atomic_write_bytes(dst, src.read_bytes())
        index[rel] = sha256(dst)
    atomic_write_json(store / INDEX, {
        "about": "trained artefacts of a run, in the cache's layout; see audiobench/kernel/shipped.py",
        "suite": manifest.get("suite_file"),
        "suite_hash": manifest.get("suite_hash"),
        "versions": manifest.get("versions"),
        "files": index,
    })
    return index


def verify(store: Path) -> list[str]:
    """Problems of a store: files missing or not matching the index (empty when it is sound)."""
    problems = []
    for rel, digest in read_index(store).items():
        path = store / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif sha256(path) != digest:
            problems.append(f"{path}: sha256 {sha256(path)} != {digest}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python -m audiobench.kernel.shipped update RUN_DIR [--store DIR]`` | ``verify [--store DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m audiobench.kernel.shipped", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("update", help="copy a run's trained artefacts from the cache into a store, with their hashes")
    up.add_argument("run_dir", type=Path)
    up.add_argument("--store", type=Path, default=None, help="default: artifacts/<suite name>")
    ver = sub.add_parser("verify", help="check every store's files against its index")
    ver.add_argument("--store", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "update":
        name = json.loads((args.run_dir / "manifest.json").read_text())["suite"]["name"]
        store = args.store or REPO_ARTIFACTS / name
        index = update(args.run_dir, store)
        print(f"{store}: {len(index)} files, {sum((store / r).stat().st_size for r in index) / 1e6:.2f} MB")
        return 0
    problems = [p for s in ([args.store] if args.store else stores()) for p in verify(s)]
    print("\n".join(problems) or "ok")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
