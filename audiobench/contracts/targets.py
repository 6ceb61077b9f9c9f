"""Which class each clip is explained for: the (clip, target) rows of a batch.

A suite's ``targets:`` section (default: the decision)::

    targets: decision                       # softmax / similarity: argmax p(X); sigmoid: every label
                                            # with p > threshold (or the top_k labels)
    targets: all                            # every class (or prompt): "the clip explained for an
                                            # unrelated class" can be measured
    targets: {select: classes, classes: [dog, 3]}   # given classes, by name or 0-based index
    targets: {select: decision, threshold: 0.3}     # sigmoid models: the detection threshold
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from audiobench.contracts.component import Params
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.base import OutputKind, probabilities


class TargetParams(Params):
    """The suite's ``targets`` section."""

    select: Literal["decision", "all", "classes"] = Field(
        "decision", description="decision (the model's own), all classes, or the listed classes"
    )
    classes: list[str | int] | None = Field(None, description="with select: classes, class names or 0-based indices")
    threshold: float = Field(0.5, gt=0, lt=1, description="sigmoid models: a label is decided when p > threshold")
    top_k: int | None = Field(None, ge=1, description="sigmoid models, select: decision: the k most probable labels instead")

    @model_validator(mode="before")
    @classmethod
    def _no_booleans(cls, data: object) -> object:
        # YAML 1.1 reads yes/no/on/off as booleans; a boolean is not a class index (True would be 1)
        classes = data.get("classes") if isinstance(data, dict) else None
        if isinstance(classes, list):
            for c in classes:
                if isinstance(c, bool):
                    raise ValueError(f"a class entry was read as the boolean {str(c).lower()} (YAML reads yes/no/on/off "
                                     "so): quote class names, e.g. classes: ['yes']")
                if isinstance(c, float):  # pydantic would read 1.0 as the index 1: say which is meant
                    raise ValueError(f"a class entry was read as the number {c!r}: give a 0-based index as a whole "
                                     f"number ({int(c)}) or quote a class name ('{c}')")
        return data

    @model_validator(mode="after")
    def _classes_with_select(self) -> TargetParams:
        if self.classes is not None and not self.classes:
            raise ValueError("select: classes needs at least one class")
        if (self.select == "classes") != (self.classes is not None):
            raise ValueError("'classes' goes with select: classes, and select: classes needs 'classes'")
        return self


def class_indices(classes: list[str | int], class_names: list[str]) -> list[int]:
    """Names or indices -> 0-based indices. Raises :class:`AudiobenchError` naming an unknown class."""
    out = []
    for c in classes:
        if isinstance(c, int) and 0 <= c < len(class_names):
            out.append(c)
        elif isinstance(c, str) and c in class_names:
            out.append(class_names.index(c))
        else:
            raise AudiobenchError(
                f"targets: class {c!r} is not one of the model's {len(class_names)} classes ({', '.join(class_names[:8])}...)"
            )
    return out


def select_targets(
    scores: torch.Tensor, output_kind: OutputKind, params: TargetParams, class_names: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (row, target) pairs of a batch, clip-major and by increasing class within a clip.

    ``scores`` [B, C] are the model's scores on X. Returns ``rows`` [P] (long, the clip of each
    pair) and ``targets`` [P] (long). A ``sigmoid`` clip with no label above the threshold has no pair.
    """
    rows, targets = chosen_targets(scores, output_kind, params, class_names).nonzero(as_tuple=True)
    return rows, targets


def chosen_targets(
    scores: torch.Tensor, output_kind: OutputKind, params: TargetParams, class_names: list[str] | None = None
) -> torch.Tensor:
    """[B, C] (bool): the classes each clip is explained for (:func:`select_targets`' pairs as a mask), from the
    model's scores [B, C] on X; ``class_names`` are read by ``select: classes`` only."""
    probs = probabilities(scores, output_kind)
    b, c = probs.shape
    if params.select == "all":
        chosen = torch.ones(b, c, dtype=torch.bool, device=probs.device)
    elif params.select == "classes":
        chosen = torch.zeros(b, c, dtype=torch.bool, device=probs.device)
        chosen[:, class_indices(params.classes or [], class_names or [])] = True
    elif output_kind == "sigmoid" and params.top_k is None:
        chosen = probs > params.threshold
    else:  # the decision: argmax of the scores, or a sigmoid model's top_k labels
        k = min(params.top_k or 1, c) if output_kind == "sigmoid" else 1
        top = scores.argmax(dim=1, keepdim=True) if k == 1 else probs.topk(k, dim=1).indices
        chosen = torch.zeros(b, c, dtype=torch.bool, device=probs.device).scatter_(1, top, True)
    return chosen
