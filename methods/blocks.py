"""Which classifier blocks a method's parameters name: checked against the classifier's depth and names.

GradCAM's ``layer`` and the ``blocks`` of L-MAC and L2I name blocks of the classifier. Their range
depends on the classifier (its depth) and a block's name on the model (its ``block_names``: CNN14's
are ``conv_block1`` ...), so the checks here take both from the model and are run twice: by
``audiobench validate`` (from the model spec, ``ModelSpec.architecture`` and ``ModelSpec.block_names``,
through ``Explainer.check_classifier``) and at run time (the built classifier's ``block``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from audiobench.kernel.errors import AudiobenchError
from audiobench.models.modules import is_module_path, module_outputs


def layer_choices(depth: int, names: Sequence[str] | None = None) -> str:
    """The valid ``layer`` values for a classifier of ``depth`` blocks named ``names`` (None: not known),
    as a phrase."""
    indices = f"1..{depth} (negative: from the deepest, -1 = last)"
    if not names:
        return f"last, {indices} or a dotted module path to a submodule"
    named = f"{names[0]}..{names[-1]}" if len(names) > 1 else names[0]
    return f"last, {named}, {indices} or a dotted module path to a submodule ({names[-1]}.<child>)"


def layer_index(layer: str | int, depth: int, model: str = "classifier", names: Sequence[str] | None = None) -> int | None:
    """1-based index of the block named by ``layer``: ``last``, one of the model's block ``names``, ``k``
    or ``-k``; None for a name that cannot be checked (``names`` None: the model spec does not say them).

    ``k`` must lie in 1..``depth``; a negative index counts from the deepest block (-1: the last). A dotted
    module path (``conv_block3.conv2``) gives None: ``validate`` cannot see the modules, the run checks it.
    Raises :class:`AudiobenchError` (one line listing the valid choices) for anything else,
    including 0 and names of other layers (``fc1``).
    """
    index: int | None = None
    if is_module_path(layer):  # a submodule by its dotted path: checked when the run builds the classifier
        return None
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


def names_layers(blocks: int | Sequence[int | str]) -> bool:
    """Whether a ``blocks`` parameter names some layer by block name or module path (a string entry):
    the method then reads those layers' outputs by forward hooks (:func:`layer_outputs`)."""
    return not isinstance(blocks, int) and any(isinstance(b, str) for b in blocks)


def blocks_entries_problem(blocks: int | Sequence[int | str], depth: int, model: str = "classifier",
                           names: Sequence[str] | None = None) -> str | None:
    """:func:`blocks_problem` for a ``blocks`` parameter that may also hold block names and dotted module
    paths: indices are checked against ``depth``, names against ``names`` (where known), paths at the run."""
    if isinstance(blocks, int):
        return blocks_problem(min(blocks, depth), depth, model)
    for entry in blocks:
        if isinstance(entry, str):
            try:
                layer_index(entry, depth, model, names)
            except AudiobenchError as exc:
                return str(exc)
    indices = [b for b in blocks if not isinstance(b, str)]
    return blocks_problem(indices, depth, model) if indices or not blocks else None


def layer_outputs(model: Any, x: torch.Tensor, layers: Sequence[int | str]) -> list[torch.Tensor]:
    """The outputs [B, C, T', F'] of the classifier's layers named in ``layers`` (indices, block names, module
    paths: :meth:`AudioClassifier.block`) for representations ``x`` of a
    :class:`~audiobench.methods.base.DomainModel`, deepest first (the reverse of the order the forward pass
    produced them). Raises :class:`AudiobenchError` for a layer that is no module or gives no feature map."""
    clf = model.classifier
    modules = [clf.block(layer) for layer in layers]
    feats, order = module_outputs(clf, model.network_input(x), modules, [str(layer) for layer in layers])
    return [feats[i] for i in sorted(range(len(feats)), key=lambda i: -order[i])]
