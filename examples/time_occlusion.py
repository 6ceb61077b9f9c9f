"""A complete method in one file: occlusion of time windows (Zeiler & Fergus, 2014), for audio.

Load it from a suite with ``plugins: [time_occlusion.py]`` and name it under ``methods:``;
``python -c "from audiobench.api import load_plugin_file, check_method; load_plugin_file('examples/time_occlusion.py');
print(check_method('time_occlusion'))"`` checks it.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from audiobench.api import METHODS, ExplainContext, Explainer, ExplainerParams, row_clips


@METHODS.register("time_occlusion")
class TimeOcclusion(Explainer):
    """Score drop of the target class when each window of frames is zeroed, spread over its frames."""

    display_name = "Time occlusion"
    needs_gradients = False

    class Params(ExplainerParams):
        nonneg: Literal["abs", "relu", "none"] = "relu"  # a window whose removal raises the score is not evidence
        window: int = Field(8, ge=1, description="frames zeroed at once")

    @torch.no_grad()
    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        b, _, t, _ = x.shape
        w = self.params.window
        starts = list(range(0, t, w))
        keep = torch.ones(len(starts), 1, t, 1, device=x.device, dtype=x.dtype)  # one occluded copy per window
        for i, s in enumerate(starts):
            keep[i, :, s : s + w] = 0
        copies = (x.unsqueeze(1) * keep.unsqueeze(0)).flatten(0, 1)  # [B * windows, 1, T, F]
        rows = torch.arange(b, device=x.device).repeat_interleave(len(starts))  # the clip of each copy
        scores = []
        for i in range(0, len(copies), ctx.max_rows):  # rows not tiled over the clips: say whose they are
            with row_clips(rows[i : i + ctx.max_rows]):  # (a waveform model reads each with its clip's phase)
                scores.append(ctx.model(copies[i : i + ctx.max_rows]))
        scores = torch.cat(scores)
        base = ctx.model(x).gather(1, target.view(-1, 1))
        drop = (base[rows, 0] - scores.gather(1, target[rows].view(-1, 1))[:, 0]).view(b, len(starts))
        per_frame = drop.repeat_interleave(w, dim=1)[:, :t]  # each frame gets its window's drop
        return per_frame.view(b, 1, t, 1).expand_as(x).contiguous()
