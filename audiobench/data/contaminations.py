"""Contaminations: what is added to each test clip (nothing, another clip, noise) at an explicit SNR.

Every contamination is deterministic per sample: its random draws come from a generator seeded by
the suite seed, the contamination and the sample id, so a clip is contaminated the same way
whatever the batch, order or ``--limit``. The SNR is that of the clip (its target event and
background) to the added signal, by power over the whole clip. The result is peak-normalised,
as the reference recipe normalises every input, and the clean target is scaled with it; for a model
that declares ``peak_normalise = False`` (a level-dependent detector: :func:`input_level`) the clip
keeps its recorded level instead and only what is added is scaled.

``mix: fixed_gain`` reproduces the reference code's mixes instead of an SNR: ``mixture`` and
``noise_folder`` divide both signals by their L2 norm and add them with ``gains`` (0.8, 0.2),
``white_noise`` adds ``gains[1]`` times unit-variance noise to the peak-normalised clip (1.0, 0.5).
"""

from __future__ import annotations

import math
import zlib
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from audiobench.contracts.component import Component, Params
from audiobench.contracts.registry import CONTAMINATIONS
from audiobench.data.base import ClipSet, Skip, rms_dbfs
from audiobench.data.levels import (  # noqa: F401  (peak_normalise, input_level, mix_at_snr: imported from here too)
    at_input_level,
    effective_snr_db,
    input_level,
    mix_at_snr,
    peak_normalise,
    peak_normalising,
)
from audiobench.kernel.errors import AudiobenchError


def sample_rng(seed: int, salt: str, sample_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, salt, sample id)."""
    return np.random.default_rng([seed, zlib.crc32(salt.encode()), zlib.crc32(sample_id.encode())])


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, torch.ones_like(x))


def condition_record(clips: ClipSet, contamination: Contamination) -> dict[str, Any]:
    """What the manifest records of a contaminated condition: the requested SNR (None for fixed
    gains and ``none``), the effective SNR of every clip (dB) with its mean, min and max, and the
    clips left out of the condition with their reasons."""
    requested = getattr(contamination.params, "snr_db", None)  # a parameter of the level-setting kinds
    record: dict[str, Any] = {"requested_snr_db": requested, "n": len(clips)}
    if clips.snr_db is not None and len(clips):
        values = clips.snr_db.tolist()
        record["effective_snr_db"] = {
            "mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values)),
            "per_clip": dict(zip(clips.sample_ids, values, strict=True)),
        }
    record["skips"] = [s.as_dict() for s in clips.skips if s.where == contamination.key()]
    return record


class Contamination(Component):
    """Turns clean test clips into the evaluated condition."""

    def key(self) -> str:
        """A short, file-name-safe identifier, e.g. ``mixture_3db``."""
        return self.name

    def identity(self) -> tuple[str, ...]:
        """What makes two conditions the same for train/evaluate separation: the kind and the source
        of what is added, never the level (a classifier trained on white noise at 0-20 dB has seen
        white noise at -5 dB). A trained component whose augmentation has the identity of an
        evaluated condition has seen that condition (``audiobench validate`` checks it)."""
        return (self.name,)

    def overlaps(self, other: Contamination) -> bool:
        """Whether training on this condition means having seen ``other`` (same :meth:`identity`;
        ``noise_folder``: one folder inside the other, since folders are searched recursively)."""
        return self.identity() == other.identity()

    def title(self) -> str:
        """The condition's display name in tables, e.g. ``mixture 3 dB``."""
        return self.display_name or self.name

    def apply(self, clips: ClipSet, pool: ClipSet, seed: int) -> ClipSet:
        """Contaminate ``clips``; ``pool`` supplies other clips (mixtures). The result is at the level the
        model reads (:func:`input_level`): :meth:`mixed` and :func:`at_input_level` follow it."""
        raise NotImplementedError

    def pool(self, dataset: Any, splits: dict[str, ClipSet], split: str, sample_rate: int) -> ClipSet:
        """The clips ``apply`` may draw from: by default the evaluated split."""
        return splits[split]

    def check(self, dataset: Any = None) -> list[str]:
        """Problems with paths or with the suite's dataset (``audiobench validate``), one line each."""
        return []


def _db(snr: float | tuple[float, float]) -> str:
    if isinstance(snr, tuple):
        return "to".join(_db(v)[:-2] for v in snr) + "db"
    return f"{snr:g}".replace("-", "m").replace(".", "p") + "db"


class MixParams(Params):
    """An SNR (``mix: snr``) or the reference code's fixed gains (``mix: fixed_gain``)."""

    snr_db: float | tuple[float, float] | None = Field(
        ..., description="signal-to-contaminant ratio in dB, or [low, high]: one value per clip, uniform in the range")
    mix: Literal["snr", "fixed_gain"] = Field("snr", description="snr, or fixed_gain: the reference code's mix")
    gains: tuple[float, float] | None = Field(None, description="fixed_gain: (clip, contaminant) gains")

    @model_validator(mode="before")
    @classmethod
    def _no_snr_for_gains(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mix") == "fixed_gain" and "snr_db" not in data:
            data = {**data, "snr_db": None}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> MixParams:
        if self.mix == "snr" and self.snr_db is None:
            raise ValueError("snr_db is required with mix: snr")
        if self.mix == "fixed_gain" and self.snr_db is not None:
            raise ValueError("snr_db has no effect with mix: fixed_gain (gains set the level); remove one")
        if self.mix == "snr" and self.gains is not None:
            raise ValueError("gains apply only with mix: fixed_gain")
        values = self.snr_db if isinstance(self.snr_db, tuple) else (self.snr_db,) if self.snr_db is not None else ()
        if any(not -30 <= v <= 60 for v in values):
            raise ValueError("snr_db must lie in [-30, 60] dB")
        if isinstance(self.snr_db, tuple) and self.snr_db[0] > self.snr_db[1]:
            raise ValueError("snr_db range [low, high] needs low <= high")
        return self


class _Mixing:
    """Key, title and the arithmetic shared by contaminations with :class:`MixParams`."""

    default_gains: ClassVar[tuple[float, float]] = (0.8, 0.2)
    unit_norm: ClassVar[bool] = True  # fixed_gain: divide both signals by their L2 norm first
    params: Any

    def gains(self) -> tuple[float, float]:
        return tuple(self.params.gains or self.default_gains)  # type: ignore[return-value]

    def level_key(self) -> str:
        if self.params.mix == "snr":
            return _db(self.params.snr_db)
        return "gain" + "-".join(f"{g:g}".replace(".", "p") for g in self.gains())

    def level_title(self) -> str:
        if self.params.mix == "snr":
            snr = self.params.snr_db
            return f"{snr[0]:g} to {snr[1]:g} dB" if isinstance(snr, tuple) else f"{snr:g} dB"
        g1, g2 = self.gains()
        return f"gains {g1:g}/{g2:g}"

    def snr_per_clip(self, sample_ids: list[str], seed: int) -> float | torch.Tensor:
        """The SNR of each clip (dB): the fixed ``snr_db``, or for a range [low, high] one uniform draw
        per clip [N, 1] from a generator seeded by (seed, contamination, clip id) alone."""
        snr = self.params.snr_db
        if not isinstance(snr, tuple):
            return snr
        draws = [sample_rng(seed, f"{self.name}:snr", sid).uniform(snr[0], snr[1]) for sid in sample_ids]
        return torch.tensor(draws, dtype=torch.float64).reshape(-1, 1)

    def combine(
        self, signal: torch.Tensor, other: torch.Tensor, snr_db: float | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mixed, scale)``: the mixture and the per-row factor the clip itself was multiplied by;
        ``snr_db`` (one value or [N, 1]) defaults to the fixed ``params.snr_db``.

        Computed in float64 (norms and powers of very quiet or loud rows stay exact), returned as float32.
        """
        if self.params.mix == "snr":
            snr = self.params.snr_db if snr_db is None else snr_db
            return mix_at_snr(signal, other, snr), torch.ones(signal.shape[0], 1, dtype=signal.dtype)
        g1, g2 = self.gains()
        s, o = signal.double(), other.double()
        if self.unit_norm:
            scale = g1 / _nonzero(s.norm(dim=1, keepdim=True))
            o = o / _nonzero(o.norm(dim=1, keepdim=True))
        else:  # the clip peak-normalised, the contaminant as it is
            scale = g1 / _nonzero(s.abs().amax(dim=1, keepdim=True))
        return (scale * s + g2 * o).to(signal.dtype), scale.to(signal.dtype)

    def mixed(self, clips: ClipSet, other: torch.Tensor, why: str | None = None, seed: int = 0) -> ClipSet:
        """``clips`` with ``other`` [N, L] added (targets and clean source scaled alike), peak-normalised;
        ``seed`` draws the per-clip SNRs of an ``snr_db`` range (:meth:`snr_per_clip`). Inside
        ``input_level(False)`` the clip keeps its recorded level instead: the mixture is divided by the factor
        the clip was scaled by (1 for an SNR; ``fixed_gain`` scales the clip), and nothing is peak-normalised.

        A row of ``other`` without energy (all zero, or non-finite) would leave its
        clip clean inside the condition: that clip is left out, a recorded skip (reason ``why`` if
        given). ``snr_db`` of the result holds each clip's effective SNR.
        """
        level = rms_dbfs(other)  # float64: a very quiet row is not zero
        bad = ~(torch.isfinite(level) & (level > -math.inf))
        skips = [Skip(clips.sample_ids[i], why or "contaminant without energy (all zero or non-finite): it cannot be "
                      "scaled to the condition's level", self.key())
                 for i in bad.nonzero().flatten().tolist()]
        if skips:
            keep = ~bad
            clips, other = clips.subset(keep), other[keep]
        out = clips.subset(slice(None))
        out.skips = list(clips.skips) + skips
        out.clean = clips.uncontaminated
        snr = self.snr_per_clip(out.sample_ids, seed) if self.params.mix == "snr" else None
        out.waveforms, scale = self.combine(clips.waveforms, other.to(clips.waveforms), snr)
        if not peak_normalising():  # the clip at its recorded level: only what is added is scaled
            out.waveforms = (out.waveforms.double() / scale.double()).to(out.waveforms.dtype)
            scale = torch.ones_like(scale)
        if out.targets is not None:
            out.targets = out.targets * scale
        if out.events is not None:
            out.events = out.events * scale[:, :, None]
        out.clean = out.clean * scale
        if peak_normalising():
            out = peak_normalise(out)
        out.snr_db = effective_snr_db(out.waveforms, out.clean)
        return out


class Source(Params):
    """Where mixture partners come from: another split, or folds of the dataset (e.g. ESC-50 folds 4, 5)."""

    split: Literal["train", "valid", "test"] | None = None
    folds: tuple[int, ...] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Source:
        if (self.split is None) == (self.folds is None):
            raise ValueError("source takes exactly one of split: NAME or folds: [N, ...]")
        return self

    def key(self) -> str:
        return f"from_{self.split}" if self.split else "folds" + "-".join(map(str, self.folds or ()))

    def title(self) -> str:
        return f"from {self.split}" if self.split else "from folds " + ", ".join(map(str, self.folds or ()))


def with_augmentation(clips: ClipSet, augment: list[Any], seed: int) -> list[ClipSet]:
    """The clean clips (at the input level: :func:`at_input_level`) followed by each augmenting contamination applied to them,
    in order; mixture partners come from ``clips`` themselves (what trained components train on)."""
    return [NoContamination().apply(clips, clips, seed)] + [c.apply(clips, clips, seed) for c in augment]


@CONTAMINATIONS.register("none")
class NoContamination(Contamination):
    """The clean test clips as they are (the block "clean (in-domain)")."""

    display_name = "clean"

    def apply(self, clips: ClipSet, pool: ClipSet, seed: int) -> ClipSet:
        return at_input_level(clips)


@CONTAMINATIONS.register("mixture")
class Mixture(_Mixing, Contamination):
    """Another clip of a different class (same split, or `source`), added at the given SNR or fixed gains."""


    class Params(MixParams):
        source: Source | None = Field(None, description="{split: NAME} or {folds: [N, ...]}; default: the evaluated split")

    def key(self) -> str:
        src = f"_{self.params.source.key()}" if self.params.source else ""
        return f"mixture_{self.level_key()}{src}"

    def title(self) -> str:
        src = f" {self.params.source.title()}" if self.params.source else ""
        return f"mixture {self.level_title()}{src}"

    def pool(self, dataset: Any, splits: dict[str, ClipSet], split: str, sample_rate: int) -> ClipSet:
        src = self.params.source
        if src is None:
            return splits[split]
        if src.split is not None:
            return splits[src.split]
        if not dataset.has_folds():
            raise AudiobenchError(f"mixture source folds: dataset '{dataset.name}' has no folds")
        return dataset.load_folds(src.folds, sample_rate).drop_silent()

    def check(self, dataset: Any = None) -> list[str]:
        src = self.params.source
        if src is None or src.folds is None or dataset is None:
            return []
        if not dataset.has_folds():
            return [f"mixture: source folds need a dataset with folds (esc50, urbansound8k), not '{dataset.name}'"]
        try:
            present = dataset.folds()
        except AudiobenchError:
            return []  # the dataset's own check reports it
        missing = sorted(set(src.folds) - present)
        if missing:
            return [f"mixture: source fold(s) {', '.join(map(str, missing))} not in the dataset (folds: {', '.join(map(str, sorted(present)))})"]
        return []

    def partners(self, clips: ClipSet, pool: ClipSet, seed: int) -> torch.Tensor:
        """For each clip, the index in ``pool`` of a clip of another class (multi-hot labels: a clip sharing
        none of its labels), deterministic per sample."""
        pool_labels = pool.labels.numpy()
        multi = pool_labels.ndim == 2
        out = []
        for sid, label in zip(clips.sample_ids, clips.labels.tolist(), strict=True):
            other = (pool_labels * np.asarray(label) > 0).sum(axis=1) == 0 if multi else pool_labels != label
            candidates = np.flatnonzero(other)
            if candidates.size == 0:
                raise AudiobenchError("mixture contamination needs clips of at least two classes")
            # salted by the name, not the SNR: a sweep over SNRs mixes the same clip pairs
            out.append(int(candidates[sample_rng(seed, self.name, sid).integers(candidates.size)]))
        return torch.tensor(out, dtype=torch.long)

    def apply(self, clips: ClipSet, pool: ClipSet, seed: int) -> ClipSet:
        return self.mixed(clips, pool.waveforms[self.partners(clips, pool, seed)], seed=seed)

    def identity(self) -> tuple[str, ...]:
        # another clip of the suite's dataset, whichever split or folds it is drawn from: the split
        # changes which clips are added, not what the condition is
        return ("mixture", "dataset")


@CONTAMINATIONS.register("white_noise")
class WhiteNoise(_Mixing, Contamination):
    """Gaussian white noise added at the given SNR (or the reference code's s + 0.5 n)."""

    default_gains, unit_norm = (1.0, 0.5), False

    class Params(MixParams):
        pass

    def key(self) -> str:
        return f"white_noise_{self.level_key()}"

    def title(self) -> str:
        return f"white noise {self.level_title()}"

    def apply(self, clips: ClipSet, pool: ClipSet, seed: int) -> ClipSet:
        if len(clips) == 0:
            return clips
        length = clips.waveforms.shape[1]
        noise = np.stack([sample_rng(seed, self.name, sid).standard_normal(length) for sid in clips.sample_ids])
        return self.mixed(clips, torch.from_numpy(noise), seed=seed)
