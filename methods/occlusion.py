"""Occlusion (Zeiler & Fergus, ECCV 2014), batched: time windows, frequency bands (band removal) and
time-frequency patches of the masking domain's grid.

Each window of the grid is replaced by a fill value and the classifier run on the occluded copy; the
window's attribution is the drop of the target's score, s_c(x) - s_c(x with the window filled), where
s is the class probability (Zeiler & Fergus, Fig. 7: "the probability of the correct class"; the
model's output kind decides softmax, sigmoid or similarity) or, with ``score: logit``, the raw score
(what Captum's ``Occlusion`` reads from a classifier that returns logits).
A bin's value is the mean drop over the windows that cover it, as Captum's ``Occlusion`` computes it
(``FeatureAblation`` with per-feature weights: the sum of the drops of the covering windows divided by
their number). Windows start every ``stride`` bins; where the last start leaves bins uncovered one more
window is placed flush with the end of the axis (Captum leaves such bins uncovered, i.e. 0/0), so every
bin has a value.

Unlike Captum's default (one perturbation per forward pass, ``perturbations_per_eval=1``), the
occluded copies of every clip and window go through the model in full passes of
``ExplainContext.max_rows`` rows: ceil(clips x windows / max_rows) forward passes, plus
ceil(clips / max_rows) for the unoccluded scores.

``shape``:

- ``time``: windows of ``window`` frames over every bin of the frame (the temporal occlusion of audio
  papers, e.g. the 40-line ``examples/time_occlusion.py``);
- ``frequency``: bands of ``band`` bins over every frame, i.e. band removal (e.g. arXiv 2601.19017);
- ``patch``: ``window`` x ``band`` rectangles (Zeiler & Fergus's grey squares, on the spectrogram).

The grid is the domain's: in ``stft2mel`` a band is ``band`` linear STFT bins, in ``mel`` ``band`` mel bands.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field, field_validator

from audiobench.contracts.registry import METHODS
from audiobench.kernel.batching import chunked, row_clips
from audiobench.methods.base import DomainModel, ExplainContext, Explainer, ExplainerParams


def check_size(v: int | float | None) -> int | float | None:
    """A window size: a whole number of bins (>= 1) or a share of the axis (0 < v < 1). Raises
    ``ValueError`` for a fraction of 1 or more (``1.5`` bins)."""
    if isinstance(v, float) and v >= 1:
        if v != int(v):
            raise ValueError(f"a size is a whole number of bins or a share below 1, not {v}")
        return int(v)
    return v


def on_axis(size: int | float, length: int) -> int:
    """Bins of a size on an axis of ``length``: the size itself, or ceil(share x length), so a share of
    1/n gives n windows (the last flush with the end)."""
    return max(1, math.ceil(size * length - 1e-9)) if isinstance(size, float) else int(size)


def size_label(size: int | float, unit: str) -> str:
    """``16 fr.`` for bins, ``10 %`` for a share."""
    return f"{size * 100:g} %" if isinstance(size, float) else f"{size} {unit}"


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start indices of windows of ``window`` along an axis of ``length``, every ``stride``, plus one
    window flush with the end when the strided ones leave the last bins uncovered. A window longer than
    the axis is clipped to it (one window). Raises ``ValueError`` for a non-positive size."""
    if length < 1 or window < 1 or stride < 1:
        raise ValueError(f"window_starts needs positive sizes, got length={length}, window={window}, stride={stride}")
    window = min(window, length)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def occlusion_windows(t: int, f: int, shape: str, window: int, band: int, stride_t: int, stride_f: int,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """The occluded regions as a boolean tensor [W, T, F] (True = occluded) for a (T, F) grid.

    ``shape`` ``time``: every window spans all F bins; ``frequency``: every band spans all T frames;
    ``patch``: the product of the two sets of windows (time-major order)."""
    rows = [(s, min(window, t)) for s in window_starts(t, window, stride_t)] if shape != "frequency" else [(0, t)]
    cols = [(s, min(band, f)) for s in window_starts(f, band, stride_f)] if shape != "time" else [(0, f)]
    ti = torch.arange(t, device=device)
    fi = torch.arange(f, device=device)
    in_rows = torch.stack([(ti >= s) & (ti < s + n) for s, n in rows])  # [R, T]
    in_cols = torch.stack([(fi >= s) & (fi < s + n) for s, n in cols])  # [C, F]
    return (in_rows[:, None, :, None] & in_cols[None, :, None, :]).flatten(0, 1)  # [R * C, T, F]


def occlusion_attribution(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor, windows: torch.Tensor,
                          fill: torch.Tensor, max_rows: int) -> torch.Tensor:
    """Mean score drop of the target over the windows covering each bin.

    ``x`` [B, 1, T, F]; ``target`` [B] (long); ``windows`` [W, T, F] bool; ``fill`` broadcastable to
    ``x`` (the value an occluded bin takes, per clip); ``model`` maps [N, 1, T, F] -> scores [N, C].
    Returns [B, 1, T, F]: sum over covering windows of (f_t(x) - f_t(x occluded)) / their number
    (Captum ``Occlusion``'s definition). At most ``max_rows`` rows go through the model per pass."""
    b, n_win = x.shape[0], windows.shape[0]
    keep = (~windows).to(x.dtype)[:, None]  # [W, 1, T, F]
    fill = fill.expand(b, *fill.shape[1:])
    base = chunked(model, x, max_rows).gather(1, target.view(-1, 1))[:, 0]
    rows = torch.arange(b * n_win, device=x.device)  # (clip, window) pairs, clip-major
    drop = torch.empty(b * n_win, device=x.device, dtype=x.dtype)
    for start in range(0, len(rows), max_rows):  # every pass full: max_rows (clip, window) copies
        r = rows[start:start + max_rows]
        ci, k = r // n_win, keep[r % n_win]
        copies = x[ci] * k + fill[ci] * (1 - k)  # [r, 1, T, F]
        with row_clips(ci):  # clip-major copies: row r is clip ci[r] (a waveform model reads its phase)
            drop[start:start + len(r)] = base[ci] - model(copies).gather(1, target[ci].view(-1, 1))[:, 0]
    drop = drop.view(b, n_win)
    w = windows.to(x.dtype).flatten(1)  # [W, T*F]
    total = drop @ w  # [B, T*F]
    count = w.sum(0).clamp_min(1)
    return (total / count).view(b, 1, *windows.shape[1:])


@METHODS.register("occlusion")
class Occlusion(Explainer):
    """Score drop when a time window, a frequency band or a patch is filled (Zeiler & Fergus 2014), batched."""

    display_name = "Occlusion"
    needs_gradients = False

    class Params(ExplainerParams):
        nonneg: Literal["abs", "relu", "none"] = Field(
            "relu", description="relu: a window whose removal raises the score is not evidence for the class")
        shape: Literal["time", "frequency", "patch"] = Field(
            "time", description="time windows, frequency bands (band removal) or time-frequency patches")
        window: int | float = Field(8, gt=0, description="frames per window (time, patch); a number below 1 is a "
                                    "share of the frames (0.1: a tenth of the clip)")
        band: int | float = Field(8, gt=0, description="bins per band on the domain's grid (frequency, patch); a number "
                                  "below 1 is a share of the bins (the same number of bands on every grid)")
        stride: int | float | None = Field(None, gt=0, description="frames between window starts (or a share); none: "
                                           "the window (no overlap)")
        band_stride: int | float | None = Field(None, gt=0, description="bins between band starts (or a share); none: "
                                                "the band (no overlap)")

        @field_validator("window", "band", "stride", "band_stride")
        @classmethod
        def _bins_or_share(cls, v: int | float | None) -> int | float | None:
            return check_size(v)
        fill: Literal["zero", "mean"] = Field(
            "zero", description="what an occluded bin becomes: 0 (silence on both grids) or the clip's mean value")
        score: Literal["probability", "logit"] = Field(
            "probability", description="the target's probability (Zeiler & Fergus) or its raw score (Captum on logits)")

    def row_label(self) -> str:
        p = self.params
        size = {"time": size_label(p.window, "fr."), "frequency": size_label(p.band, "bins"),
                "patch": f"{size_label(p.window, 'fr.')} x {size_label(p.band, 'bins')}"}[p.shape]
        return f"Occlusion ({p.shape}, {size})"

    def windows(self, t: int, f: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The occluded regions [W, T, F] for a (T, F) grid (:func:`occlusion_windows`)."""
        p = self.params
        w, b = on_axis(p.window, t), on_axis(p.band, f)
        st = on_axis(p.stride, t) if p.stride is not None else w
        sf = on_axis(p.band_stride, f) if p.band_stride is not None else b
        return occlusion_windows(t, f, p.shape, w, b, st, sf, device)

    @torch.no_grad()
    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        windows = self.windows(x.shape[-2], x.shape[-1], x.device)
        fill = x.mean(dim=(1, 2, 3), keepdim=True) if self.params.fill == "mean" else torch.zeros_like(x[:, :1, :1, :1])
        return occlusion_attribution(scorer(ctx.model, self.params.score), x, target, windows, fill, ctx.max_rows)


def scorer(model: DomainModel, score: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` as a function of representations [N, 1, T, F] -> scores [N, C]: its class
    probabilities (by its output kind) for ``probability``, its raw output for ``logit``."""
    if score == "logit":
        return model
    return lambda x: model.probabilities(model(x))
