"""Layers by module path: any submodule of a classifier (``conv_block3.conv2``, ``conv_block3.bn2``) as a CAM
``layer`` or an L-MAC ``blocks`` entry, besides the blocks the model lists (:meth:`AudioClassifier.blocks`).

A module path is a dotted name of :meth:`torch.nn.Module.named_modules` (it holds a ``.``; a top-level
child is named by a block name, so ``fc1`` stays an error). Its output must be a feature map, channels first:
[B, C, T', F'], or [B, C, T'] (taken as [B, C, T', 1]) from a module that declares those C channels (a
``Conv1d``'s ``out_channels``, a ``BatchNorm1d``'s ``num_features``, the last such inside it). Anything else is
refused at the run in one line: a token sequence [B, N, D] (a transformer layer, a ``LayerNorm``, a
``Linear``) would be read as a wrong map, and a tuple (an attention module) is no map; a transformer's tokens
reach CAM and L-MAC on its patch grid through the model's blocks. ``validate`` cannot see a network's modules
without building it: a path is checked when the run builds the classifier. A model's own blocks are trusted
as the model declares them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

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


def declared_channels(module: nn.Module) -> int | None:
    """The channels a module's output declares: ``out_channels`` or ``num_features`` of the module or of the last
    submodule that has one (a conv block ending in a BatchNorm or a ReLU); None when none declares them."""
    for m in reversed(list(module.modules())):
        for name in ("out_channels", "num_features"):
            value = getattr(m, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def as_grid(out: object, path: str, module: nn.Module | None = None) -> torch.Tensor:
    """A module's output as a feature map [B, C, T', F'] ([B, C, T'] -> [B, C, T', 1]). With ``module`` (a layer
    named by its path, not one of the model's blocks), a 3-D output is a map only when the module declares its
    C channels (:func:`declared_channels`), and a declared count must match. Raises :class:`AudiobenchError`
    (one line) for anything else."""
    if isinstance(out, torch.Tensor) and out.dim() in (3, 4):
        channels = None if module is None else declared_channels(module)
        if module is None or channels == out.shape[1] or (channels is None and out.dim() == 4):
            return out if out.dim() == 4 else out.unsqueeze(-1)
        raise AudiobenchError(
            f"module {path!r} returns {tuple(out.shape)}, not a channels-first feature map (it declares "
            f"{'no' if channels is None else channels} channels): a token sequence [B, N, D] is not one; name a "
            "convolution or normalisation module, or a block of the model (a transformer's blocks lie on its patch grid)")
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    raise AudiobenchError(f"module {path!r} returns {shape}, not a feature map [B, C, T', F'] or [B, C, T']: "
                          "name a module that outputs one (or a block of the model)")


@contextmanager
def checked_output(module: nn.Module, layer: object) -> Iterator[None]:
    """Inside, a forward pass refuses (one line, :func:`as_grid`) the output of ``module`` when ``layer`` (the name
    it was resolved from) is a module path and the output is no feature map, before a library (Captum) computes
    on it; a module named otherwise (a block the model declares) passes as it is."""
    if not is_module_path(layer):
        yield
        return

    def check(m: nn.Module, _i: object, out: object) -> None:
        as_grid(out, str(layer), m)

    handle = module.register_forward_hook(check)
    try:
        yield
    finally:
        handle.remove()


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
                seen[i] = as_grid(out, names[i], _m if is_module_path(names[i]) else None)
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
