"""Cascading model randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps"; L-MAC Fig. 3-4).

The classifier's layers are re-initialised from the output down, one more group at a time:
``head`` (the parameterised modules that run after the deepest block), then the blocks of the
model's layer API (:meth:`AudioClassifier.blocks`) deepest first, then ``stem`` (parameterised
modules before the first block, e.g. CNN14's input batch norm). After each step every method
explains the same (clip, target) rows again with the same seeds, and its masks are compared with
those of the trained classifier: SSIM and Spearman rank correlation per clip
(:mod:`audiobench.sanity.similarity`). A method whose maps depend on the model falls towards 0;
one that reads only the input stays at 1. Trainable interpreters are not retrained (as in the
papers): L-MAC's decoder reads the randomised latents.

Re-initialisation is each module's own ``reset_parameters()`` with the global seed set to
``seed + 1`` before each module, exactly as Quantus 0.6's ``get_random_layer_generator`` (its MPRT
is the oracle in the tests); the order inside a group is the reverse of registration order.
Works for any :class:`AudioClassifier` (the groups come from a forward pass with hooks, not names).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from audiobench.kernel.batching import CPU_ROWS
from audiobench.kernel.stats import spearman
from audiobench.methods.base import DomainModel, ExplainContext, Explainer
from audiobench.models.base import AudioClassifier
from audiobench.sanity.common import reading_waves
from audiobench.sanity.similarity import ssim


@dataclass
class LayerGroup:
    """A step of the cascade: its name and the modules it re-initialises (in reset order)."""

    name: str
    modules: list[nn.Module]


def _has_state(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))


def layer_groups(classifier: AudioClassifier, inp: torch.Tensor) -> list[LayerGroup]:
    """The cascade's steps from the output down: ``head``, the blocks deepest first, ``stem``.

    ``inp``: a network input [B, ...] (one forward pass with hooks tells which parameterised
    modules outside the blocks run before and after them). Groups without a resettable module are
    left out.
    """
    blocks, names = classifier.blocks(), classifier.block_names()
    owner = {id(m): i for i, b in enumerate(blocks) for m in b.modules()}
    order: list[nn.Module] = []
    seen: set[int] = set()

    def record(mod: nn.Module, *_: object) -> None:
        if id(mod) not in seen:
            seen.add(id(mod))
            order.append(mod)

    hooks = [m.register_forward_hook(record) for m in classifier.modules() if _has_state(m) or id(m) in owner]
    try:
        with torch.no_grad():
            classifier(inp[:1])
    finally:
        for h in hooks:
            h.remove()
    in_blocks = [k for k, m in enumerate(order) if id(m) in owner]
    first, last = (in_blocks[0], in_blocks[-1]) if in_blocks else (len(order), -1)
    resettable = [m for m in classifier.modules() if hasattr(m, "reset_parameters")]
    rank = {id(m): k for k, m in enumerate(resettable)}

    def reset_order(mods: list[nn.Module]) -> list[nn.Module]:
        return sorted((m for m in mods if id(m) in rank), key=lambda m: rank[id(m)], reverse=True)

    groups = [LayerGroup("head", reset_order([m for m in order[last + 1:] if id(m) not in owner]))]
    groups += [LayerGroup(names[i], reset_order(list(blocks[i].modules()))) for i in reversed(range(len(blocks)))]
    groups.append(LayerGroup("stem", reset_order([m for m in order[:first] if id(m) not in owner])))
    return [g for g in groups if g.modules]


def randomise(group: LayerGroup, seed: int) -> None:
    """Re-initialise every module of ``group`` in place (``reset_parameters()``, global seed ``seed + 1``
    before each, as Quantus); the caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        for m in group.modules:
            torch.manual_seed(seed + 1)
            m.reset_parameters()  # type: ignore[operator]


def explain_all(
    explainer: Explainer, model: DomainModel, x: torch.Tensor, target: torch.Tensor, seeds: list[int],
    batch_size: int, max_rows: int, waves: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masks [N, 1, T, F] (in [0, 1], NaN -> 0) of rows ``x`` for classes ``target``, batch b seeded ``seeds[b]``;
    ``waves`` [N, L]: the rows' clips, read with each batch (:func:`reading_waves`)."""
    out = []
    for b, start in enumerate(range(0, len(x), batch_size)):
        xb, tb = x[start:start + batch_size], target[start:start + batch_size]
        ctx = ExplainContext(model=model, seed=seeds[b], max_rows=max_rows)
        torch.manual_seed(seeds[b])
        clips = None if waves is None else waves[start:start + batch_size]
        with torch.set_grad_enabled(explainer.needs_gradients), reading_waves(model, clips):
            mask = explainer.explain(xb, tb, ctx).mask.detach()
        out.append(mask.nan_to_num(0.0).clamp(0, 1).to("cpu", torch.float32))
    return torch.cat(out)


@dataclass
class CascadeResult:
    """Per step (0: the trained model, then one more group randomised each) and clip: SSIM and Spearman
    ([S + 1, N] float64) between the step's masks and the trained model's; ``masks``: step -> [N, 1, T, F]."""

    steps: list[str]
    ssim: np.ndarray
    spearman: np.ndarray
    masks: list[torch.Tensor]


def cascading_randomisation(
    explainer: Explainer, model: DomainModel, x: torch.Tensor, target: torch.Tensor, seed: int = 0,
    batch_size: int = 16, max_rows: int = CPU_ROWS, keep_masks: bool = False, waves: torch.Tensor | None = None,
) -> CascadeResult:
    """Explain rows ``x`` [N, 1, T, F] for ``target`` [N] with the trained model, then after each step of
    the cascade (:func:`layer_groups`, re-initialised with ``seed``); compare each step's masks with step 0's.
    ``waves`` [N, L]: the rows' clips (:func:`explain_all`)."""
    seeds = [seed * 1000 + b for b in range((len(x) + batch_size - 1) // batch_size)]
    original = explain_all(explainer, model, x, target, seeds, batch_size, max_rows, waves)
    clf = copy.deepcopy(model.classifier).eval()
    randomised = DomainModel(clf, model.domain, model.frontend).eval()
    with torch.no_grad(), reading_waves(randomised, None if waves is None else waves[:1]):
        groups = layer_groups(clf, randomised.network_input(x[:1]))
    steps, ssims, ranks, masks = ["none"], [ssim(original, original)], [spearman(original, original)], [original]
    for g in groups:
        randomise(g, seed)
        m = explain_all(explainer, randomised, x, target, seeds, batch_size, max_rows, waves)
        steps.append(g.name)
        ssims.append(ssim(original, m))
        ranks.append(spearman(original, m))
        if keep_masks:
            masks.append(m)
    return CascadeResult(steps, torch.stack(ssims).numpy(), torch.stack(ranks).numpy(), masks)
