"""The speed work changes no result: SPS through NumPy's sort equals the float64 torch.sort formula
bit for bit, masks encoded per batch are written byte for byte as before, and the benchmark's
measurements compute what they claim (engine vs its floor, SPS/COMP equal to Quantus)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audiobench.contracts.explanation import Explanation, MaskParts
from audiobench.metrics.complexity import _GINI_EPS, sparseness
from audiobench.store.masks import concat, encoded_explanation, read_masks, write_masks
from tests.paths import ROOT


def _sparseness_torch_sort(a: torch.Tensor) -> torch.Tensor:
    """The formula as it was written before (float64 values sorted by torch.sort), the oracle."""
    flat = a.flatten(1).to(torch.float64).abs()
    peak = flat.amax(dim=1, keepdim=True)
    defined = (peak > 0).squeeze(1) & torch.isfinite(flat).all(dim=1)
    flat = torch.sort(flat / torch.where(peak > 0, peak, torch.ones_like(peak)) + _GINI_EPS, dim=1).values
    n = flat.shape[1]
    k = torch.arange(1, n + 1, dtype=flat.dtype)
    score = ((2 * k - n - 1) * flat).sum(dim=1) / (n * flat.sum(dim=1))
    return torch.where(defined, score, torch.full_like(score, float("nan")))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_sparseness_through_numpy_sort_is_bit_identical(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(9, 1, 31, 47, generator=g) ** 4
    a[1] = 0  # undefined
    a[2, 0, 3, 4] = float("nan")  # undefined
    a[3] = -a[3]  # |a|
    a[4] = (a[4] * 8).round() / 8  # many ties
    a[5, 0, :, :] = 0.25  # constant
    ours, oracle = sparseness(a.to(dtype)), _sparseness_torch_sort(a.to(dtype))
    assert torch.equal(ours.isnan(), oracle.isnan()) and ours.isnan().sum() == 2
    assert torch.equal(ours[~ours.isnan()], oracle[~oracle.isnan()])  # bit for bit
    assert abs(float(ours[5]) - 0.0) < 1e-6  # a constant map has Gini 0


def _batches(seed: int) -> list[tuple[list[str], np.ndarray, Explanation]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for b, size in enumerate((3, 2, 4)):
        mask = torch.rand(size, 1, 13, 21, generator=g) ** 3
        mask[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 1e-7, 0.5])
        parts = MaskParts(torch.tensor([0, 0, size - 1]), ["component0", "component1", "component0"],
                          torch.rand(3, 1, 13, 21, generator=g))
        out.append(([f"b{b}c{i}" for i in range(size)], np.arange(size, dtype=np.int64) % 2, Explanation(
            mask=mask, parts=parts, removals={"relevant": torch.rand(size, 1, 13, 21, generator=g)},
            interpreter_scores=torch.rand(size, 5, generator=g), n_parts=torch.full((size,), 2.0))))
    return out


@pytest.mark.parametrize("precision", ["log8", "float16", "float32"])
def test_masks_encoded_per_batch_are_written_byte_for_byte_as_before(precision: str, tmp_path: Path) -> None:
    keep = {"b0c0", "b2c3"}
    whole = concat(_batches(1), keep)
    per_batch = concat([(ids, t, encoded_explanation(e, precision)) for ids, t, e in _batches(1)], keep)
    assert whole is not None and per_batch is not None
    per_batch.encoded = precision
    if precision == "log8":
        assert per_batch.explanation.mask.dtype == torch.uint8  # a quarter of float32's memory
    write_masks(tmp_path / "whole.npz", whole, precision)
    write_masks(tmp_path / "batch.npz", per_batch, precision)
    digest = [hashlib.sha256((tmp_path / f"{n}.npz").read_bytes()).hexdigest() for n in ("whole", "batch")]
    assert digest[0] == digest[1]
    back = read_masks(tmp_path / "batch.npz")
    tol = {"log8": 0.03, "float16": 5e-4, "float32": 0.0}[precision]
    np.testing.assert_allclose(back.explanation.mask.numpy(), whole.explanation.mask.numpy(), rtol=tol, atol=1e-6)
    with pytest.raises(ValueError, match="cannot be written at"):
        write_masks(tmp_path / "other.npz", per_batch, "float32" if precision != "float32" else "log8")


def test_benchmark_measurements_on_a_small_setup() -> None:
    pytest.importorskip("quantus")
    sys.path.insert(0, str(ROOT))
    from benchmarks.__main__ import Bench, engine_vs_floor, sps_comp_vs_quantus, table

    b = Bench("cpu", 6)
    assert b.x.shape == (6, 1, 173, 513)  # the quickstart's 2 s clips on the stft2mel grid
    engine = engine_vs_floor(b)
    assert engine["clips"] == 6 and engine["engine_s"] > 0 and engine["floor_s"] > 0  # timings: no bound (load varies)
    rows = sps_comp_vs_quantus(b, [4])
    assert rows[0]["equal_1e-6"] and rows[0]["sps_abs_diff"] <= 1e-6
    assert "| masks |" in table(rows, ["masks", "speedup"])
