"""What a method returns for a batch: a typed :class:`Explanation`, kept by the run and scored by the engine.

A method never scores itself: it returns the mask, and optionally named parts and typed side
outputs; the metric engine runs every forward pass a metric needs (p(X), p(M*X), p((1-M)*X) and,
for methods with components, the removal passes of L2I's FF).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass
class MaskParts:
    """Parts of a batch's explanations worth hearing on their own (e.g. L2I's relevant components).

    Part i belongs to row ``rows[i]`` of the batch, is named ``names[i]`` (a file-name suffix such as
    ``component07``) and is the mask ``masks[i]`` [1, T, F] on the domain's grid, values in [0, 1].
    """

    rows: torch.Tensor  # [N] long
    names: list[str]
    masks: torch.Tensor  # [N, 1, T, F]

    def subset(self, index: torch.Tensor) -> MaskParts:
        """The parts of the batch rows ``index`` [K] (no repeats), their rows renumbered 0..K-1."""
        where = {r: i for i, r in enumerate(index.tolist())}
        keep = [i for i, r in enumerate(self.rows.tolist()) if r in where]
        rows = torch.tensor([where[int(self.rows[i])] for i in keep], dtype=torch.long)
        return MaskParts(rows, [self.names[i] for i in keep], self.masks[torch.tensor(keep, dtype=torch.long)])


@dataclass
class Explanation:
    """One explanation per (clip, target) row of a batch.

    - ``mask`` [B, 1, T, F]: the mask M on the domain's grid, in [0, 1]; every masking metric uses it.
    - ``parts``: named parts of the masks (L2I's relevant components), written as audio.
    - ``removals``: name -> mask R [B, 1, T, F] of something the method says can be taken out of the
      input; the engine scores p_target((1 - R) * X) for each (L2I: ``relevant`` components, and the
      ``random`` baseline of as many non-relevant ones), and metrics that need them read the result.
    - ``interpreter_scores`` [B, C]: an interpreter's own class scores (L2I's Theta), for fidelity.
    - ``n_parts`` [B]: the number of parts in each explanation (L2I: relevant components).
    - ``relevance`` [B, K]: the relevance of each of an interpreter's K components for the row's class
      (L2I's r_{c,x}, journal sec. V-B "Coherence of interpretations"), kept for the t-SNE view.
    """

    mask: torch.Tensor
    parts: MaskParts | None = None
    removals: dict[str, torch.Tensor] = field(default_factory=dict)
    interpreter_scores: torch.Tensor | None = None
    n_parts: torch.Tensor | None = None
    relevance: torch.Tensor | None = None

    def __post_init__(self) -> None:
        b = self.mask.shape[0]
        for name, value in [*self.removals.items(), ("interpreter_scores", self.interpreter_scores),
                            ("n_parts", self.n_parts), ("relevance", self.relevance)]:
            if value is not None and value.shape[0] != b:
                raise ValueError(f"Explanation.{name} has {value.shape[0]} rows for a mask of {b}")

    def subset(self, index: torch.Tensor) -> Explanation:
        """The rows ``index`` [K] (long, increasing, no repeats) of every field."""
        return replace(
            self,
            mask=self.mask[index],
            parts=None if self.parts is None else self.parts.subset(index),
            removals={k: v[index] for k, v in self.removals.items()},
            interpreter_scores=None if self.interpreter_scores is None else self.interpreter_scores[index],
            n_parts=None if self.n_parts is None else self.n_parts[index],
            relevance=None if self.relevance is None else self.relevance[index],
        )
