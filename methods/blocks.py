"""Which classifier blocks a method's parameters name: checked against the classifier's depth.

GradCAM's ``layer`` and the ``blocks`` of L-MAC and L2I name conv blocks of the classifier. Their
range depends on the classifier (its depth), so the checks here take the depth and are run twice:
by ``audiobench validate`` (the depth read from the model spec or its checkpoint) and at run time.
"""

from __future__ import annotations

import re

from audiobench.kernel.errors import AudiobenchError

_CONV_BLOCK = re.compile(r"^conv_block(\d+)$")


def layer_choices(depth: int) -> str:
    """The valid ``layer`` values for a classifier of ``depth`` blocks, as a phrase."""
    return f"last, conv_block1..conv_block{depth} or 1..{depth} (negative: from the deepest, -1 = last)"


def layer_index(layer: str | int, depth: int, model: str = "classifier") -> int:
    """1-based index of the conv block named by ``layer``: ``last``, ``conv_block<k>``, ``k`` or ``-k``.

    ``k`` must lie in 1..``depth``; a negative index counts from the deepest block (-1: the last).
    Raises :class:`AudiobenchError` (one line listing the valid choices) for anything else,
    including 0 and names of other layers (``fc1``).
    """
    index: int | None = None
    if layer == "last":
        index = depth
    elif isinstance(layer, bool):
        index = None
    elif isinstance(layer, int):
        index = layer if layer > 0 else depth + 1 + layer if layer < 0 else None
    elif isinstance(layer, str):
        m = _CONV_BLOCK.match(layer.strip())
        if m:
            index = int(m.group(1))
        elif layer.strip().lstrip("-").isdigit():
            return layer_index(int(layer), depth, model)
    if index is None or not 1 <= index <= depth:
        raise AudiobenchError(
            f"{layer!r} is not a conv block of this {model} (depth {depth}); use {layer_choices(depth)}"
        )
    return index


def blocks_problem(blocks: int | list[int], depth: int, model: str = "classifier") -> str | None:
    """Why ``blocks`` (the N deepest blocks, or a list of 1-based / negative indices) does not fit
    a classifier of ``depth`` blocks, or None when it does."""
    if isinstance(blocks, int):
        if 1 <= blocks <= depth:
            return None
        return f"{blocks} blocks, but this {model} has {depth}; use 1..{depth} or a list of indices in 1..{depth}"
    idx = [b if b > 0 else depth + 1 + b for b in blocks]
    bad = [b for b, i in zip(blocks, idx, strict=True) if not 1 <= i <= depth]
    if not blocks or bad:
        what = "an empty list" if not blocks else f"{', '.join(map(str, bad))} out of range"
        return f"{list(blocks)}: {what}; this {model} has blocks 1..{depth} (negative: -{depth}..-1)"
    return None

