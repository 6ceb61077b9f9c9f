"""Which classifier blocks a method's parameters name: checked against the classifier's depth and names.

GradCAM's ``layer`` and the ``blocks`` of L-MAC and L2I name blocks of the classifier. Their range
depends on the classifier (its depth) and a block's name on the model (its ``block_names``: CNN14's
are ``conv_block1`` ...), so the checks here take both from the model and are run twice: by
``audiobench validate`` (from the model spec, ``ModelSpec.architecture`` and ``ModelSpec.block_names``,
through ``Explainer.check_classifier``) and at run time (the built classifier's ``block``).
"""

from __future__ import annotations

from collections.abc import Sequence

from audiobench.kernel.errors import AudiobenchError


def layer_choices(depth: int, names: Sequence[str] | None = None) -> str:
    """The valid ``layer`` values for a classifier of ``depth`` blocks named ``names`` (None: not known),
    as a phrase."""
    indices = f"1..{depth} (negative: from the deepest, -1 = last)"
    if not names:
        return f"last or {indices}"
    named = f"{names[0]}..{names[-1]}" if len(names) > 1 else names[0]
    return f"last, {named} or {indices}"


def layer_index(layer: str | int, depth: int, model: str = "classifier", names: Sequence[str] | None = None) -> int | None:
    """1-based index of the block named by ``layer``: ``last``, one of the model's block ``names``, ``k``
    or ``-k``; None for a name that cannot be checked (``names`` None: the model spec does not say them).

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
        if layer.strip().lstrip("-").isdigit():
            return layer_index(int(layer), depth, model, names)
        if names is None:
            return None
        if layer.strip() in names:
            index = list(names).index(layer.strip()) + 1
    if index is None or not 1 <= index <= depth:
        raise AudiobenchError(
            f"{layer!r} is not a block of this {model} (depth {depth}); use {layer_choices(depth, names)}"
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
