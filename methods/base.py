"""The explainer contract: a batch on a domain's grid in, a mask in [0, 1] on the same grid out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from audiobench.contracts.component import Component, Params
from audiobench.contracts.domains import ClipPhase, Domain, Representation
from audiobench.contracts.explanation import Explanation
from audiobench.contracts.frontend import Frontend
from audiobench.contracts.targets import TargetParams
from audiobench.data.base import ClipSet
from audiobench.kernel.artefacts import cached_artefact
from audiobench.kernel.cache import cache_dir, stable_hash
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.blocks import blocks_problem  # the one range rule, also what validate checks
from audiobench.models.base import AudioClassifier


class DomainModel(nn.Module):
    """The classifier seen from a masking domain: representation x [B, 1, T, F] -> scores [B, C].

    The classifier decides what it reads from the representation (``network_input``); scores are
    logits or scaled similarities, :meth:`probabilities` turns them into p by the output kind.
    """

    def __init__(self, classifier: AudioClassifier, domain: Domain, frontend: Frontend):
        super().__init__()
        self.classifier, self.frontend = classifier, frontend
        self.domain = domain
        self.phase: ClipPhase | None = None  # the clips being read, for waveform models (:meth:`reading`)
        self.clips: Representation | ClipPhase | None = None  # the clips being read (:meth:`reading`), any model

    @contextmanager
    def reading(self, clips: Representation | ClipPhase) -> Iterator[DomainModel]:
        """Within the block, rows given to the model derive from ``clips`` (row j from clip j mod N): a model
        of input kind ``waveform`` reads each row with its clip's phase; ``self.clips`` holds them for a method
        that reads the clips themselves (LMAC-TD's time-domain explanation). Nests."""
        before = self.phase, self.clips
        self.clips = clips
        if self.classifier.input_kind == "waveform":  # the phase is computed for waveform models only
            self.phase = clips.phase() if isinstance(clips, Representation) else clips
        try:
            yield self
        finally:
            self.phase, self.clips = before

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """Representation [B, 1, T, F] -> the network's input (a waveform model's with the phase of
        :meth:`reading`'s clips)."""
        if self.classifier.input_kind == "waveform":
            return self.classifier.network_input(self.domain, self.frontend, x, phase=self.phase)
        return self.classifier.network_input(self.domain, self.frontend, x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output for representations x, shallowest first."""
        return self.classifier.features(self.network_input(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.network_input(x))

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores [B, C] -> probabilities [B, C] by the classifier's output kind."""
        return self.classifier.probabilities(scores)


@dataclass
class ExplainContext:
    """What an explainer may use for one batch: the model seen from the domain, a seed for its
    random draws, and the largest number of rows it should push through the model at once."""

    model: DomainModel
    seed: int = 0
    max_rows: int = 64

    @property
    def classifier(self) -> AudioClassifier:
        return self.model.classifier

    @property
    def domain(self) -> Domain:
        return self.model.domain

    @property
    def frontend(self) -> Frontend:
        return self.model.frontend

    def generator(self, device: torch.device | str) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed)


@dataclass
class FitContext:
    """What a trainable method may use to train; ``fit`` is called once per (method, domain) of a run.

    ``train`` / ``valid`` are the dataset's clean splits; ``augment`` holds the suite's
    ``train.augment`` conditions (contaminations; empty when :meth:`Explainer.augments` is False):
    what the method may train on besides clean clips, never an evaluated condition unless the suite
    marks it ``in_domain`` (:mod:`audiobench.suite.separation`). Results are cached under :meth:`cache_path` by :meth:`cache_key`, which covers the
    classifier, the data, the domain, the front end and the seed; the method adds its parameters.
    ``targets``: the targets the cell explains (the method's own ``targets:``, else the suite's), for a method
    whose training follows them (L-MAC on a sigmoid model trains on the labels they decide); None: the defaults.
    """

    model: DomainModel
    train: ClipSet
    valid: ClipSet
    augment: list[Any]
    seed: int
    device: torch.device
    identity: dict[str, Any]  # classifier hash, data fingerprint, domain, front end
    log_dir: Path
    progress: bool = True
    max_rows: int = 64
    targets: TargetParams | None = None

    def cache_key(self, method: str, params: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
        return stable_hash({"method": method, "params": params, "seed": self.seed, **self.identity, **(extra or {})})

    def cache_path(self, method: str, key: str, suffix: str = ".pt") -> Path:
        folder = cache_dir() / "methods" / method
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{key}{suffix}"

    def cached_fit(
        self,
        method: str,
        key: str,
        train: Callable[[Path], tuple[dict[str, Any], dict[str, Any]]],
        load: Callable[[dict[str, Any]], None],
        log_name: str = "train.jsonl",
    ) -> dict[str, Any]:
        """Load the fit ``key`` from the cache, or train and cache it; returns what the manifest records.

        ``train(log_path)`` returns (a state of tensors to save, an info dict whose ``history`` lists
        the logged epochs); ``load(state)`` restores a cached state. Weights and info are written
        atomically (:func:`audiobench.kernel.artefacts.cached_artefact`, which also restores a shipped copy on
        a miss); a cached fit rewrites its training log at ``log_dir / log_name``.
        """
        weights, meta = self.cache_path(method, key), self.cache_path(method, key, ".json")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / log_name

        def fit() -> tuple[dict[str, Any], dict[str, Any]]:
            state, info = train(log_path)
            return state, {"key": key, **info}

        state, info, cached = cached_artefact(weights, fit, meta, map_location=self.device)
        if cached:
            load(state)
            log_path.write_text("".join(json.dumps(h) + "\n" for h in info.get("history", [])))
        return {k: v for k, v in info.items() if k != "history"} | {"cached": cached}


def draw_versions(count: int, n_versions: int, augment_prob: float, gen: torch.Generator) -> torch.Tensor:
    """The version each of ``count`` training clips is read in [count] (long): 0, the clean clip, or with
    probability ``augment_prob`` one of the ``n_versions - 1`` augmented ones, uniformly (always 0 when
    there is none). Two draws from ``gen``, in this order (the trained interpreters' fits depend on it)."""
    use_aug = torch.rand(count, generator=gen) < augment_prob
    which = (1 + torch.randint(max(1, n_versions - 1), (count,), generator=gen)) * use_aug
    return which.clamp_max(n_versions - 1)


def classifier_blocks(blocks: int | list[int], depth: int, method: str) -> list[int]:
    """1-based indices of the classifier blocks a trained method reads: the ``blocks`` deepest ones
    (shallowest first), or the listed indices in their order, without repeats (negative ones count
    from the deepest, -1 being the last block). Out of range: a one-line error naming ``method``."""
    if blocks_problem(blocks, depth) is not None:
        what = f"blocks={blocks} but the classifier has {depth} blocks" if isinstance(blocks, int) else (
            f"blocks {blocks} out of range for a classifier with {depth} blocks")
        raise AudiobenchError(f"{method}: {what}")
    if isinstance(blocks, int):
        return list(range(depth - blocks + 1, depth + 1))
    return list(dict.fromkeys(b if b > 0 else depth + 1 + b for b in blocks))


def decoder_blocks(blocks: int | list[int], depth: int, method: str) -> list[int]:
    """The blocks a decoder reads, deepest first (L-MAC, LMAC-ZS, LMAC-TD): :func:`classifier_blocks`, where an
    int larger than ``depth`` means every block the classifier has."""
    return sorted(classifier_blocks(min(blocks, depth) if isinstance(blocks, int) else blocks, depth, method), reverse=True)


class ExplainerParams(Params):
    """Parameters every method has: how its raw map becomes a mask."""

    nonneg: Literal["abs", "relu", "none"] = Field(
        "abs", description="make the map non-negative: absolute value, ReLU, or leave as is"
    )
    normalize: Literal["max", "none"] = Field("max", description="divide by the per-sample maximum")


def to_mask(raw: torch.Tensor, nonneg: str = "abs", normalize: str = "max") -> torch.Tensor:
    """Raw attribution [B, ...] -> mask: non-negative, divided by its per-sample max (all-zero stays 0).

    Non-finite values are left in place for the metric engine to record as skips.
    """
    if nonneg == "abs":
        raw = raw.abs()
    elif nonneg == "relu":
        raw = raw.clamp_min(0)
    if normalize == "max":
        peak = raw.flatten(1).amax(dim=1).view(-1, *([1] * (raw.dim() - 1)))
        raw = raw / torch.where(peak > 0, peak, torch.ones_like(peak))
    return raw


class Explainer(Component):
    """A registered explanation method.

    Subclasses implement :meth:`attribute` (a raw map shaped like ``x``); :meth:`explain` turns it
    into the mask the metrics use. Trainable methods also implement :meth:`fit`, whose result they
    cache by a hash of everything that shaped it. Every other hook is declared here with its default,
    overridden only to change it: ``validate``'s checks (:meth:`check_params`, :meth:`check_classifier`),
    the row's label (:meth:`row_label`) and what a fit trains on and reports (:meth:`augments`,
    :meth:`fit_notes`).
    """

    Params: ClassVar[type[Params]] = ExplainerParams
    needs_gradients: ClassVar[bool] = True
    signed_maps: ClassVar[bool] = True  # raw maps can be negative: nonneg none is refused
    trainable: ClassVar[bool] = False
    # its explanation draws from ExplainContext.seed (noise samples, random maps or removals): another
    # seed gives other values; a deterministic method's masks and scores do not depend on the seed
    stochastic: ClassVar[bool] = False
    # reads the model's closed-form attribution (the ``exact`` row): validate requires a model spec with
    # ``knows_exact_attribution``
    needs_exact_attribution: ClassVar[bool] = False
    # reads the model's attention maps (attention rollout, relevancy): validate requires ``has_attention``
    needs_attention: ClassVar[bool] = False
    # a method whose code changes its masks (a trained method's training) sets a version: it enters
    # the hash of its cells, so a stored cell of an older version is recomputed, not resumed
    code_version: ClassVar[int | None] = None
    domains: ClassVar[tuple[str, ...] | None] = None  # None: every domain
    output_kinds: ClassVar[tuple[str, ...] | None] = None  # model output kinds it explains; None: every kind

    def __init__(self, params: Params | dict[str, Any] | None = None):
        super().__init__(params)
        self.run_notes: list[str] = []  # facts a reader of this row's tables must know (see note)
        if getattr(self.params, "nonneg", None) == "none" and self.signed_maps:
            raise AudiobenchError(
                f"{self.name}: nonneg none would pass signed maps (values below 0) to the metrics as masks; "
                "use abs or relu"
            )

    def note(self, text: str) -> None:
        """Record, once, a fact about this row's maps that a reader must know (a 1-D block's maps have no
        frequency structure); the cell keeps it and the table's caption prints it."""
        if text not in self.run_notes:
            self.run_notes.append(text)

    def note_flat_blocks(self, feats: list[torch.Tensor], what: str) -> None:
        """:meth:`note` when every block in ``feats`` [B, C, T', F'] has F' = 1 (a model of 1-D blocks):
        ``what`` (maps, masks) read from them are constant over frequency."""
        if feats and all(f.shape[-1] == 1 for f in feats):
            self.note(f"its {what} come from 1-D blocks (no frequency axis, [B, C, T, 1]): they vary over time only")

    def row_label(self) -> str:
        """The table row's default label for these parameters (a suite's ``label:`` overrides it); the
        default is the method's :meth:`label`. ``validate`` calls it once per row, before anything runs."""
        return self.label()

    def check_params(self) -> list[tuple[str, str]]:
        """(parameter, problem) pairs found without loading audio or a model (a missing folder, settings
        that cannot work together); ``validate`` prints each as ``methods.<i>.<parameter>: <problem>`` at
        the parameter's line. ``[]`` (the default): none."""
        return []

    def check_classifier(self, depth: int, model: str = "classifier",
                         names: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """(parameter, problem) pairs of parameters naming classifier blocks that a classifier of ``depth``
        blocks does not have (GradCAM's ``layer``, the ``blocks`` of L-MAC and L2I). ``names`` are the blocks'
        names (the model's ``block_names``, shallowest first) where the model spec knows them, else None;
        ``model`` is the model's name, for the messages. ``validate`` calls it when the model spec says its
        depth (``ModelSpec.architecture``), printing each problem as :meth:`check_params` does; the run
        checks again through the model's ``block``. ``[]`` (the default): no parameter names a block."""
        return []

    def domain_problem(self, domain: Domain) -> str | None:
        """Why this instance cannot explain on the domain instance ``domain`` (its parameters included), in one
        line; ``validate`` reports it at the method's line. None (the default): it can, within ``domains``."""
        return None

    def grid_problem(self, frames: int, bins: int) -> tuple[str, str] | None:
        """(parameter, problem) when this instance cannot explain on a grid of ``frames`` x ``bins`` (a window
        covering the whole grid); ``validate`` calls it per domain whose grid it knows, before anything runs,
        and the run checks again on the real grid. None (the default): any grid."""
        return None

    def check_targets(self, output_kind: str, targets: TargetParams) -> list[tuple[str, str]]:
        """(parameter, problem) pairs for explaining the ``targets`` of a model of ``output_kind`` (known before
        a run: some labels the targets select could never be explained); ``validate`` prints them as
        :meth:`check_params` does. ``[]`` (the default): every target can be explained."""
        return []

    def cell_identity(self, output_kind: str) -> dict[str, Any]:
        """What besides its parameters decides this method's maps on a model of ``output_kind``: it enters the
        hash of the method's cells where not empty, so a stored cell computed otherwise is recomputed, not
        resumed (L-MAC's rank channels on a sigmoid model, the default since they exist, left its parameters'
        dump unchanged). ``{}`` (the default): the parameters say it all."""
        return {}

    def unexplained_reason(self) -> str | None:
        """Why a row's map may be entirely NaN by design (a target the fitted method has no map for): the run
        records a row whose map is all NaN as skipped for this reason instead of "non-finite map". None (the
        default): the method never does so on purpose."""
        return None

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        """Train (or load from the cache) what the method needs; returns what the manifest records.

        Post-hoc methods need nothing. Trainable ones (``trainable = True``) cache their result by
        ``ctx.cache_key(self.name, params)`` and report e.g. the key, epochs and the selection metric.
        """
        return {}

    def augments(self) -> bool:
        """Whether :meth:`fit` may train on ``FitContext.augment`` (the suite's ``train.augment``
        conditions): ``validate`` then checks none of them is evaluated out-of-domain. The default
        is conservative: every trainable method, unless its ``augment_prob`` parameter is 0."""
        return bool(self.trainable and getattr(self.params, "augment_prob", 1.0) > 0)

    def fit_notes(self, info: dict[str, Any]) -> list[str]:
        """Notes on what :meth:`fit` returned (``info``) that a reader of the row must see, e.g. a
        training stage that did not do what the row's label says; the run appends them to the cell's
        ``notes``. Default: none."""
        return []

    def attribute(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> torch.Tensor:
        """The raw map [B, 1, T, F] (shaped like ``x``, any sign) of each row's class ``target`` [B] (long):
        what the default :meth:`explain` turns into the mask. Every method implements it, or overrides
        :meth:`explain` instead."""
        raise NotImplementedError

    def explain(self, x: torch.Tensor, target: torch.Tensor, ctx: ExplainContext) -> Explanation:
        """The explanation of each row of ``x`` [B, 1, T, F] for its class ``target`` [B] (long).

        The default turns :meth:`attribute`'s raw map into the mask (non-negative, normalised per
        row); methods with parts or side outputs (L2I) override it. Raises ``ValueError`` when the
        raw map is not shaped like ``x``.
        """
        raw = self.attribute(x, target, ctx).detach()
        if raw.shape != x.shape:
            raise ValueError(f"method '{self.name}' returned a map of shape {tuple(raw.shape)} for input {tuple(x.shape)}")
        return Explanation(to_mask(raw, self.params.nonneg, self.params.normalize))
