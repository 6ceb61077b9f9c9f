"""Masks and spectrograms as small PNG images, batched, on fixed colour scales.

Every mask of a report is drawn on one colour scale (``MASK_CMAP``, 0 → dark, 1 → bright: masks are
in [0, 1]); spectrograms on their own scale (``SPEC_CMAP``), each divided by its own maximum. Images
are indexed-colour PNGs (one byte per pixel, the colour map as palette), time left to right, low
frequencies at the bottom.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

MASK_CMAP = "viridis"
SPEC_CMAP = "magma"
IMAGE_SIZE = (160, 72)  # (width: time, height: frequency) in pixels


def palette(cmap: str) -> list[int]:
    """The 256-entry RGB palette of a matplotlib colour map, flattened (768 ints in 0..255)."""
    lut = colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.rint(lut * 255).astype(np.uint8).reshape(-1).tolist()


def to_grid(maps: torch.Tensor, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """Maps [N, 1, T, F] (or [N, T, F]) -> [N, H, W] float32 on the image grid (area average), frequency
    flipped so that row 0 is the highest band. Raises ``ValueError`` for another number of dimensions."""
    if maps.dim() == 4:
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise ValueError(f"maps must be [N, 1, T, F] or [N, T, F], got shape {tuple(maps.shape)}")
    w, h = size
    img = maps.float().transpose(1, 2).unsqueeze(1)  # [N, 1, F, T]
    img = torch.nn.functional.interpolate(img, size=(h, w), mode="area")[:, 0]
    return img.flip(1).numpy()


def write_pngs(grids: np.ndarray, paths: list[Path], cmap: str) -> None:
    """Write each [H, W] grid of ``grids`` (values in [0, 1], clipped) as an indexed PNG with ``cmap``'s palette."""
    codes = np.rint(np.clip(np.nan_to_num(grids, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    pal = palette(cmap)
    for code, path in zip(codes, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(code, mode="L").convert("P")
        im.putpalette(pal)
        im.save(path, format="PNG", compress_level=6)


def colorbar_png(path: Path, cmap: str, width: int = 160, height: int = 10) -> None:
    """A horizontal colour bar from 0 (left) to 1 (right)."""
    write_pngs(np.tile(np.linspace(0.0, 1.0, width), (1, height, 1)), [path], cmap)
