"""Containers for clips and the dataset interface every dataset implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from audiobench.contracts.component import Component
from audiobench.kernel.errors import AudiobenchError

SPLITS = ("train", "valid", "test")
SILENCE_DBFS = -80.0  # RMS level (dB re full scale 1.0) below which a clip or noise excerpt counts as silent


def rms_dbfs(x: torch.Tensor) -> torch.Tensor:
    """RMS level of each row of ``x`` [N, L] in dB re full scale (1.0), computed in float64; -inf for zeros."""
    x = x.double()
    return 10 * torch.log10(x.pow(2).mean(dim=-1))


@dataclass(frozen=True)
class Skip:
    """An input left out of a run, with its reason (recorded in the manifest)."""

    sample_id: str
    reason: str
    where: str = ""  # dataset / cell / metric the skip belongs to

    def as_dict(self) -> dict[str, str]:
        return {"where": self.where, "sample_id": self.sample_id, "reason": self.reason}


@dataclass
class ClipSet:
    """Equal-length mono clips of one split, held as tensors.

    ``waveforms`` is what the classifier hears. ``targets`` is the clean target event inside it
    and ``contaminants = waveforms - targets`` everything else (background, added noise or
    another clip), so the ideal time-frequency mask of the target is known.

    ``labels`` are class indices [N] int64 (single-label) or multi-hot [N, C] float (multi-label:
    1.0 where the class is present). ``label_mask`` [N, C] bool, multi-label only, is True where the
    label of (clip, class) is known (OpenMIC-2018 annotates only some classes of each clip); None:
    every label is known.

    ``events`` [N, K, L] and ``event_labels`` [N, K] int64 (multi-label datasets that know each event):
    event k of clip n alone, scaled like ``waveforms``, and its class (-1: no event in that slot), so
    the ground truth of explaining label c is the clip's events of class c against everything else
    (:meth:`audiobench.contracts.groundtruth.GroundTruth.for_labels`); ``targets`` is then their sum.
    """

    waveforms: torch.Tensor  # [N, L] float32
    labels: torch.Tensor  # [N] int64, or [N, C] float multi-hot
    sample_ids: list[str]
    class_names: list[str]
    sample_rate: int
    targets: torch.Tensor | None = None  # [N, L]; None where the dataset has no ground truth
    skips: list[Skip] = field(default_factory=list)
    clean: torch.Tensor | None = None  # [N, L] the clip before contamination, scaled like waveforms
    snr_db: torch.Tensor | None = None  # [N] float64: the effective SNR of each contaminated clip, in dB
    label_mask: torch.Tensor | None = None  # [N, C] bool, True where the label of (clip, class) is known; None: all known
    events: torch.Tensor | None = None  # [N, K, L] each labelled event alone (multi-label ground truth)
    event_labels: torch.Tensor | None = None  # [N, K] int64, the class of each event, -1 for an empty slot

    def __post_init__(self) -> None:
        n = self.waveforms.shape[0]
        if self.labels.shape[0] != n or len(self.sample_ids) != n:
            raise ValueError("waveforms, labels and sample_ids must have the same length")
        for name in ("targets", "clean"):
            extra = getattr(self, name)
            if extra is not None and extra.shape != self.waveforms.shape:
                raise ValueError(f"{name} must have the shape of waveforms")
        if self.snr_db is not None and self.snr_db.shape != (n,):
            raise ValueError("snr_db must have one value per clip")
        if self.label_mask is not None:
            if self.labels.dim() != 2:
                raise ValueError("label_mask needs multi-hot labels [N, C]")
            if self.label_mask.dtype != torch.bool or self.label_mask.shape != self.labels.shape:
                raise ValueError("label_mask must be bool with the shape of labels [N, C]")
        if (self.events is None) != (self.event_labels is None):
            raise ValueError("events and event_labels go together")
        if self.events is not None and self.event_labels is not None:
            k = self.event_labels.shape[1] if self.event_labels.dim() == 2 else -1
            if self.events.shape != (n, k, self.waveforms.shape[1]) or self.event_labels.shape[0] != n:
                raise ValueError("events must be [N, K, L] and event_labels [N, K] for the clips' N and L")

    def __len__(self) -> int:
        return self.waveforms.shape[0]

    @property
    def uncontaminated(self) -> torch.Tensor:
        """The clip as it was before any contamination (the clip itself when none was applied)."""
        return self.waveforms if self.clean is None else self.clean

    @property
    def contaminants(self) -> torch.Tensor | None:
        return None if self.targets is None else self.waveforms - self.targets

    def subset(self, index: torch.Tensor | list[int] | slice) -> ClipSet:
        """The clips at ``index`` (a slice, a list of positions or a boolean mask)."""
        if isinstance(index, slice):
            ids = self.sample_ids[index]
        else:
            index = torch.as_tensor(index)
            if index.dtype == torch.bool:
                index = index.nonzero().flatten()
            ids = [self.sample_ids[i] for i in index.tolist()]
        return replace(
            self,
            waveforms=self.waveforms[index],
            labels=self.labels[index],
            sample_ids=ids,
            targets=None if self.targets is None else self.targets[index],
            skips=list(self.skips),
            clean=None if self.clean is None else self.clean[index],
            snr_db=None if self.snr_db is None else self.snr_db[index],
            label_mask=None if self.label_mask is None else self.label_mask[index],
            events=None if self.events is None else self.events[index],
            event_labels=None if self.event_labels is None else self.event_labels[index],
        )

    def drop_silent(self, where: str = "") -> ClipSet:
        """Remove unusable clips, recording each as a skip with its reason: non-finite samples, all
        zero ("silent clip"), or an RMS below :data:`SILENCE_DBFS` ("near-silent clip", computed in float64)."""
        finite = torch.isfinite(self.waveforms).all(dim=1)
        peak = self.waveforms.nan_to_num(0.0).abs().amax(dim=1)
        level = rms_dbfs(self.waveforms.nan_to_num(0.0))
        keep = finite & (peak > 0) & (level >= SILENCE_DBFS)
        if bool(keep.all()):
            return self

        def reason(i: int) -> str:
            if not bool(finite[i]):
                return "non-finite samples"
            if not bool(peak[i] > 0):
                return "silent clip"
            return f"near-silent clip (RMS {level[i].item():.1f} dBFS, below {SILENCE_DBFS:g} dBFS)"

        skips = [Skip(sid, reason(i), where) for i, sid in enumerate(self.sample_ids) if not bool(keep[i])]
        out = self.subset(keep)
        out.skips = list(self.skips) + skips
        return out


class Dataset(Component):
    """A source of labelled clips with train / valid / test splits.

    A dataset implements :meth:`load`; every other hook is declared here with its default, overridden
    only to change it: what ``validate`` reads without decoding audio (:meth:`check`, :meth:`class_count`,
    :meth:`known_class_names`, :meth:`clip_seconds`), its folds (:meth:`has_folds`, :meth:`folds`,
    :meth:`load_folds`: a mixture's ``source: {folds: [...]}``), the cache identity (:meth:`fingerprint`)
    and what ``audiobench list`` prints (``details``).
    """

    def load(self, split: str, sample_rate: int) -> ClipSet:
        """Load ``split`` resampled to ``sample_rate`` Hz (mono, equal-length clips)."""
        raise NotImplementedError

    def fingerprint(self) -> dict:
        """What identifies the data for caching (parameters; real datasets add file stats)."""
        return {"name": self.name, **self.params.model_dump()}

    def check(self) -> list[str]:
        """Problems found without loading (missing paths, bad settings), one line each; ``validate`` prints them."""
        return []

    def class_count(self) -> int | None:
        """The number of classes where it is known without decoding audio (``validate`` compares a
        checkpoint's outputs with it), else None."""
        return None

    def known_class_names(self) -> list[str] | None:
        """The class names where they are known without decoding audio (``validate`` checks a
        suite's ``targets.classes`` against them), else None."""
        return None

    def clip_seconds(self) -> float | None:
        """The length in seconds every clip is fitted to, where the dataset fixes one: ``validate`` checks
        it against the STFT's padding and the classifier's poolings. The default reads the dataset's
        ``seconds`` parameter where it has a number there; None otherwise (not known)."""
        seconds = getattr(self.params, "seconds", None)
        return float(seconds) if isinstance(seconds, int | float) else None

    def has_folds(self) -> bool:
        """Whether the clips carry folds a mixture may draw from (``source: {folds: [...]}``): by default,
        whether the dataset implements :meth:`load_folds` (ESC-50, UrbanSound8K)."""
        return type(self).load_folds is not Dataset.load_folds

    def folds(self) -> set[int]:
        """The folds the clips carry. The default, for a dataset without folds, is the empty set; a
        dataset with folds may raise :class:`AudiobenchError` when its index cannot be built (its
        :meth:`check` reports why)."""
        return set()

    def load_folds(self, folds: Sequence[int], sample_rate: int) -> ClipSet:
        """The clips of ``folds`` whatever their split, resampled to ``sample_rate`` Hz, as :meth:`load`
        returns a split (a mixture's ``source: {folds: [...]}``). The default raises
        :class:`AudiobenchError`: the dataset has no folds (:meth:`has_folds` is False)."""
        raise AudiobenchError(f"dataset '{self.name}' has no folds")
