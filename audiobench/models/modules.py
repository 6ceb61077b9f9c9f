"""Layers by module path: any submodule of a classifier (``conv_block3.conv2``, ``encoder.layer.2.output``)
as a CAM ``layer`` or an L-MAC ``blocks`` entry, besides the blocks the model lists (:meth:`AudioClassifier.blocks`).

A module path is a dotted name of :meth:`torch.nn.Module.named_modules` (it holds a ``.``; a top-level
child is named by a block name, so ``fc1`` stays an error). Its output must be a feature map on a
(time, frequency) grid [B, C, T', F'] or a 1-D one [B, C, T'] (taken as [B, C, T', 1]); anything else
(a token sequence [B, N, D] read as [B, C=N, T'=D] would be a wrong map) is refused at the run in one
line. ``validate`` cannot see a network's modules without building it: a path is checked when the run
builds the classifier.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import nn

from audiobench.kernel.errors import AudiobenchError


def is_module_path(layer: object) -> bool:
    """Whether ``layer`` names a submodule by its dotted path (a string holding a ``.``)."""
    return isinstance(layer, str) and "." in layer.strip()


def submodule(net: nn.Module, path: str) -> nn.Module:
    """The submodule of ``net`` at dotted ``path``. Raises :class:`AudiobenchError` (one line, with the
    closest paths) when there is none."""
    names = {k: m for k, m in net.named_modules() if k}
    module = names.get(path.strip())
    if module is None:
        close = difflib.get_close_matches(path.strip(), list(names), n=3, cutoff=0.6)
        hint = (f" (did you mean {', '.join(map(repr, close))}?)" if close else
                f" (its top-level modules: {', '.join(n for n, _ in net.named_children())})")
        raise AudiobenchError(f"{path!r} is no module of {type(net).__name__}{hint}")
    return module


def as_grid(out: object, path: str) -> torch.Tensor:
    """A module's output as a feature map [B, C, T', F'] ([B, C, T'] -> [B, C, T', 1]). Raises
    :class:`AudiobenchError` (one line) for anything else."""
    if isinstance(out, torch.Tensor) and out.dim() == 4:
        return out
    if isinstance(out, torch.Tensor) and out.dim() == 3:
        return out.unsqueeze(-1)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    raise AudiobenchError(f"module {path!r} returns {shape}, not a feature map [B, C, T', F'] or [B, C, T']: "
                          "name a module that outputs one (or a block of the model)")


def module_outputs(net: nn.Module, inp: torch.Tensor, modules: Sequence[nn.Module],
                   names: Sequence[str]) -> tuple[list[torch.Tensor], list[int]]:
    """Run ``net`` on ``inp`` and return each of ``modules``' outputs as a feature map (:func:`as_grid`;
    ``names`` name them in errors), in their order, and the order in which each was produced
    (0 = first in the forward pass; a module called twice: its first output)."""
    seen: dict[int, torch.Tensor] = {}
    order: list[int] = []

    def hook(i: int):  # noqa: ANN202
        def store(_m: nn.Module, _i: object, out: object) -> None:
            if i not in seen:
                seen[i] = as_grid(out, names[i])
                order.append(i)
        return store

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        net(inp)
    finally:
        for h in handles:
            h.remove()
    missing = [names[i] for i in range(len(modules)) if i not in seen]
    if missing:
        raise AudiobenchError(f"module(s) {', '.join(map(repr, missing))} never ran in the forward pass")
    return [seen[i] for i in range(len(modules))], [order.index(i) for i in range(len(modules))]
