"""Kept explanations: each cell's masks (and parts, removals, side outputs) in the run directory.

``RUN_DIR/masks/<cell>.npz`` (numpy, zlib-compressed), written atomically before the cell is
marked complete. The engine scores the method's float32 masks; they are kept at the suite's
``masks.precision``:

- ``log8`` (default): one byte per value, 0 and 1 exact, values in [1e-6, 1) on a logarithmic grid
  of 254 steps (relative error at most 2.8 %, values below 1e-6 kept as 0). Small enough for a
  quickstart run (about 390 million mask values: 136 MB) to stay under 300 MB. ``audiobench score``
  reproduces the run to that precision: on the quickstart, mean |difference| per clip FF 3e-4, SPS
  2e-4, COMP 3e-4, AD 0.08 points, and 0.13 % of AI / 0.15 % of Fid-In indicators flip; a table's
  printed means move in their last digit.
- ``float16``: two bytes per value, relative error at most 4.9e-4.
- ``float32``: exact; ``audiobench score`` reproduces the run to float rounding (1e-6).

Arrays (``precision`` names the encoding of every mask array):

- ``sample_id`` [N] str, ``target`` [N] int64: the (clip, target) row of each mask;
- ``mask`` [N, 1, T, F];
- ``removal__<name>`` [N, 1, T, F] (L2I: ``relevant``, ``random``);
- ``interpreter_scores`` [N, C] float32, ``n_parts`` [N] float32, ``relevance`` [N, K] float32, where the method has them;
- ``part_row`` [P] int64 (index into the N rows), ``part_name`` [P] str, ``part_mask`` [P, 1, T, F]:
  the parts of the first ``audio.n`` clips of the cell (the ones written as audio), to keep
  the run directory small (a part is a full mask; L2I has ~3 per clip).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiobench.contracts.explanation import Explanation, MaskParts
from audiobench.kernel.cache import atomic_write_bytes
from audiobench.kernel.errors import AudiobenchError

PRECISIONS = ("log8", "float16", "float32")
LOG8_FLOOR = 1e-6  # the smallest non-zero value log8 keeps
_LOG8_STEP = float(np.log(LOG8_FLOOR) / (1 - 255))  # code c in 1..255 stands for exp((c - 255) * step)


def encode(mask: torch.Tensor, precision: str) -> np.ndarray:
    """A mask tensor (values in [0, 1]) -> the stored array. Raises ``ValueError`` for an unknown precision."""
    m = mask.detach().to("cpu", torch.float32).numpy()
    if precision == "float32":
        return m
    if precision == "float16":
        return m.astype(np.float16)
    if precision != "log8":
        raise ValueError(f"unknown mask precision {precision!r}; one of {', '.join(PRECISIONS)}")
    with np.errstate(divide="ignore"):
        code = np.rint(255 + np.log(np.clip(m, LOG8_FLOOR, 1.0)) / _LOG8_STEP)
    return np.where(m < LOG8_FLOOR, 0, np.clip(code, 1, 255)).astype(np.uint8)


def decode(array: np.ndarray, precision: str) -> torch.Tensor:
    """A stored array -> the mask as float32."""
    if precision != "log8":
        return torch.from_numpy(array.astype(np.float32))
    values = np.exp((array.astype(np.float32) - 255) * _LOG8_STEP)
    return torch.from_numpy(np.where(array == 0, 0.0, values).astype(np.float32))


@dataclass
class StoredExplanations:
    """A cell's kept explanations: rows (``sample_ids[i]``, ``targets[i]``) and their :class:`Explanation`."""

    sample_ids: list[str]
    targets: np.ndarray
    explanation: Explanation
    precision: str = "float32"  # what the masks were read back from
    encoded: str | None = None  # the masks' tensors hold encode(..., encoded) already (see encoded_explanation)


def encoded_explanation(e: Explanation, precision: str) -> Explanation:
    """``e`` with its masks (mask, removals, parts) replaced by their stored encoding at ``precision``
    (log8: uint8 codes), so a cell keeps each batch at the size it is written at instead of float32.
    Encoding is element-wise: encoding batches and joining them gives the same arrays as encoding the
    joined masks."""
    def enc(t: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(encode(t, precision))

    parts = None if e.parts is None else MaskParts(e.parts.rows, e.parts.names, enc(e.parts.masks))
    return Explanation(mask=enc(e.mask), parts=parts, removals={k: enc(v) for k, v in e.removals.items()},
                       interpreter_scores=e.interpreter_scores, n_parts=e.n_parts, relevance=e.relevance)


def concat(parts: list[tuple[list[str], np.ndarray, Explanation]], keep_parts_of: set[str]) -> StoredExplanations | None:
    """Join the batches of a cell; parts are kept only for rows whose clip is in ``keep_parts_of``."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return None
    ids = [i for p in parts for i in p[0]]
    targets = np.concatenate([p[1] for p in parts])
    exps = [p[2] for p in parts]

    def cat(get):  # noqa: ANN001, ANN202
        values = [get(e) for e in exps]
        return None if any(v is None for v in values) else torch.cat(values)

    offset, rows, names, masks = 0, [], [], []
    for (bids, _, e) in parts:
        if e.parts is not None:
            for r, name, m in zip(e.parts.rows.tolist(), e.parts.names, e.parts.masks, strict=True):
                if bids[r] in keep_parts_of:
                    rows.append(offset + r)
                    names.append(name)
                    masks.append(m)
        offset += len(bids)
    kept_parts = None
    if any(e.parts is not None for e in exps):
        shape = exps[0].mask.shape[1:]
        kept_parts = MaskParts(torch.tensor(rows, dtype=torch.long), names,
                               torch.stack(masks) if masks else torch.zeros((0, *shape), dtype=exps[0].mask.dtype))
    removal_names = list(exps[0].removals)
    explanation = Explanation(
        mask=torch.cat([e.mask for e in exps]), parts=kept_parts,
        removals={k: torch.cat([e.removals[k] for e in exps]) for k in removal_names},
        interpreter_scores=cat(lambda e: e.interpreter_scores), n_parts=cat(lambda e: e.n_parts),
        relevance=cat(lambda e: e.relevance),
    )
    return StoredExplanations(ids, targets, explanation)


_encode = encode


def write_masks(path: Path, stored: StoredExplanations, precision: str = "log8") -> None:
    """Write a cell's explanations to ``path`` (.npz) atomically, masks at ``precision``. Raises
    ``ValueError`` when ``stored`` is already encoded at another precision."""
    e = stored.explanation
    if stored.encoded is not None and stored.encoded != precision:
        raise ValueError(f"explanations encoded at {stored.encoded} cannot be written at {precision}")

    def encode(t: torch.Tensor, precision: str) -> np.ndarray:
        return t.numpy() if stored.encoded else _encode(t, precision)

    arrays: dict[str, np.ndarray] = {
        "precision": np.array(precision),
        "sample_id": np.array(stored.sample_ids, dtype=str),
        "target": stored.targets.astype(np.int64),
        "mask": encode(e.mask, precision),
    }
    arrays.update({f"removal__{k}": encode(v, precision) for k, v in e.removals.items()})
    if e.interpreter_scores is not None:
        arrays["interpreter_scores"] = e.interpreter_scores.numpy().astype(np.float32)
    if e.n_parts is not None:
        arrays["n_parts"] = e.n_parts.numpy().astype(np.float32)
    if e.relevance is not None:
        arrays["relevance"] = e.relevance.numpy().astype(np.float32)
    if e.parts is not None:
        arrays["part_row"] = e.parts.rows.numpy().astype(np.int64)
        arrays["part_name"] = np.array(e.parts.names, dtype=str)
        arrays["part_mask"] = encode(e.parts.masks, precision)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


#: the dtype each precision is stored as
STORED_DTYPES = {"log8": np.uint8, "float16": np.float16, "float32": np.float32}


def recompute_cell_command(run_dir: Path, cell_id: str) -> str:
    """The command that computes one stored cell of ``run_dir`` again, with the run's own ``--limit``
    (read from its manifest where there is one: without it the run directory refuses the command)."""
    limit = None
    try:
        limit = json.loads((Path(run_dir) / "manifest.json").read_text()).get("limit")
    except (OSError, ValueError, AttributeError):
        pass
    return f"audiobench run SUITE -o {run_dir}{f' --limit {limit}' if limit else ''} --cell {cell_id} --overwrite"


def _damaged(path: Path, why: str) -> AudiobenchError:
    return AudiobenchError(f"stored masks {path} are damaged ({why}): compute the cell again with "
                           f"{recompute_cell_command(path.parent.parent, path.stem)}")


def check_kept_rows(path: Path, stored: StoredExplanations, rows: set[tuple[str, int]] | None,
                    shape: tuple[int, ...] | None) -> None:
    """Check stored explanations against what the run says the cell holds: every (sample id, target)
    row among ``rows`` (the cell's scored rows; None: not checked) and masks shaped ``shape`` [1, T, F]
    (None: not checked). Raises :class:`AudiobenchError` (one line naming the file and the remedy)."""
    foreign = [s for s, t in zip(stored.sample_ids, stored.targets.tolist(), strict=True) if (s, int(t)) not in rows] \
        if rows is not None else []
    if foreign:
        raise AudiobenchError(f"stored masks {path} name {len(foreign)} row(s) this run did not score (e.g. "
                              f"{foreign[0]}): compute the cell again with {recompute_cell_command(path.parent.parent, path.stem)}")
    got = tuple(stored.explanation.mask.shape[1:])
    if shape is not None and got != tuple(shape):
        raise AudiobenchError(f"stored masks {path} are shaped {got}, the cell's representation {tuple(shape)}: compute "
                              f"the cell again with {recompute_cell_command(path.parent.parent, path.stem)}")


def read_masks(path: Path) -> StoredExplanations:
    """A cell's stored explanations, checked: the arrays it needs are there, stored as their precision
    says, with one row per (sample, target) and values finite and in [0, 1]. Raises
    :class:`AudiobenchError` (one line naming the file and the remedy) when the file is missing,
    unreadable (truncated, empty, not an archive) or inconsistent; a damaged file is never scored."""
    if not path.exists():
        raise AudiobenchError(f"no stored masks at {path}: the run predates kept explanations, or the cell did not run")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _damaged(path, f"unreadable: {type(exc).__name__}") from None
    missing = [k for k in ("precision", "mask", "sample_id", "target") if k not in data]
    if missing:
        raise _damaged(path, f"no {', '.join(missing)}")
    precision = str(data["precision"])
    if precision not in STORED_DTYPES:
        raise _damaged(path, f"unknown precision {precision!r}")
    arrays = {k: v for k, v in data.items() if k == "mask" or k == "part_mask" or k.startswith("removal__")}
    for k, v in arrays.items():
        if v.dtype != STORED_DTYPES[precision]:
            raise _damaged(path, f"{k} is stored as {v.dtype}, not as its precision {precision} says")
    n = len(data["sample_id"])
    if len(data["target"]) != n or data["mask"].shape[0] != n or data["mask"].ndim != 4:
        raise _damaged(path, f"{n} sample ids, {len(data['target'])} targets and masks shaped {data['mask'].shape}")
    parts = None
    if "part_row" in data:
        parts = MaskParts(torch.from_numpy(data["part_row"]), [str(n) for n in data["part_name"]],
                          decode(data["part_mask"], precision))
    explanation = Explanation(
        mask=decode(data["mask"], precision),
        parts=parts,
        removals={k.removeprefix("removal__"): decode(v, precision) for k, v in data.items() if k.startswith("removal__")},
        interpreter_scores=torch.from_numpy(data["interpreter_scores"]) if "interpreter_scores" in data else None,
        n_parts=torch.from_numpy(data["n_parts"]) if "n_parts" in data else None,
        relevance=torch.from_numpy(data["relevance"]) if "relevance" in data else None,
    )
    for name, m in [("mask", explanation.mask), *explanation.removals.items()]:
        if not bool(torch.isfinite(m).all()) or bool((m < 0).any()) or bool((m > 1).any()):
            raise _damaged(path, f"{name} has values outside [0, 1]")
    return StoredExplanations([str(s) for s in data["sample_id"]], data["target"], explanation, precision)


def kept_with(run_dir: str | Path, cells: Iterable[Any], array: str) -> Iterator[tuple[Any, StoredExplanations]]:
    """Each of ``cells`` (records with an ``id``) whose kept masks file in ``run_dir`` holds ``array``
    (e.g. ``interpreter_scores``, ``relevance``) and at least one row, with its stored explanations
    (:func:`read_masks`, checked). A file without the array is passed over by its index, without
    decoding its masks; a cell without a file is passed over."""
    for cell in cells:
        path = Path(run_dir) / "masks" / f"{cell.id}.npz"
        if not path.exists():
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                if array not in z.files:
                    continue
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # read_masks names the damage
        stored = read_masks(path)
        if len(stored.sample_ids):
            yield cell, stored
