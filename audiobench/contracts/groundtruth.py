"""Ground truth for localisation: the ideal binary mask of the target event and its signals.

A dataset that knows what is inside each clip fills :attr:`ClipSet.targets` (the clean target
event, [N, L]); everything else in the clip, ``waveforms - targets``, is the contaminant
(background, added noise, another clip; contaminations scale both alike). That is the whole
dataset interface: the synthetic dataset does it now, a real one with event boundaries or
separated stems can do it later, and no code here knows a dataset's name.

The ideal binary mask (IBM, Wang 2005, "On ideal binary mask as the computational goal of
auditory scene analysis"; local criterion 0 dB) marks the time-frequency bins where the target
dominates: ``rep(target) > rep(contaminant)`` on the masking domain's own grid (|STFT| for
``stft2mel``, log1p|STFT| for its ``operator: log1p``, log1p-mel for ``mel``: each the magnitude or a
monotone function of it, so the comparison is that of magnitudes in the domain's bins and the mask
is the same under both operators).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from audiobench.contracts.domains import Domain, Representation
from audiobench.contracts.frontend import Frontend


@dataclass
class GroundTruth:
    """What localisation metrics compare a batch's masks with, one row per (clip, target) row.

    ``ideal`` [B, 1, T, F] float (0/1): target-dominated bins on the domain's grid; ``target`` and
    ``contaminant`` [B, L]: the clean event and the rest of the clip (``target + contaminant`` is
    the clip); ``rep``: the rows' representation, kept to listen to a mask (:meth:`listen`) when
    the domain is listenable, else None.
    """

    ideal: torch.Tensor
    target: torch.Tensor
    contaminant: torch.Tensor
    rep: Representation | None = None
    domain: Domain | None = None
    frontend: Frontend | None = None
    events: torch.Tensor | None = None  # [B, K, L] each labelled event alone (multi-label data), else None
    event_labels: torch.Tensor | None = None  # [B, K] int64 class of each event, -1: empty slot

    @property
    def listenable(self) -> bool:
        return self.rep is not None and self.domain is not None and self.domain.listenable

    def listen(self, mask: torch.Tensor) -> torch.Tensor:
        """The listenable interpretation ISTFT(M ⊙ |X| e^{j∠X}) [B, L] of masks [B, 1, T, F].

        Raises ``ValueError`` when the domain is not listenable.
        """
        if not self.listenable:
            raise ValueError("the masks' domain is not listenable")
        return self.domain.to_audio(self.frontend, mask, self.rep)  # type: ignore[union-attr]

    def subset(self, index: torch.Tensor) -> GroundTruth:
        """The rows ``index`` (repeats allowed)."""
        return GroundTruth(self.ideal[index], self.target[index], self.contaminant[index],
                           None if self.rep is None else self.rep.subset(index), self.domain, self.frontend,
                           None if self.events is None else self.events[index],
                           None if self.event_labels is None else self.event_labels[index])

    def for_labels(self, labels: torch.Tensor) -> GroundTruth:
        """The ground truth of explaining class ``labels[i]`` [B] int64 in row i: where the rows know their
        events (multi-label data), the target is the row's events of that class and the contaminant
        everything else in the clip (the other events, background, added noise), with their IBM on the
        domain's grid; a class with no event in the clip has an all-zero target (nothing to localise).
        Without events, the rows as they are (one target per clip). Raises ``ValueError`` when
        ``labels`` has not one entry per row."""
        if labels.shape != (len(self.target),):
            raise ValueError(f"for_labels needs one class per row ({len(self.target)}), got shape {tuple(labels.shape)}")
        if self.events is None or self.event_labels is None or self.domain is None or self.frontend is None:
            return self
        mine = (self.event_labels == labels.to(self.event_labels.device)[:, None]).to(self.events.dtype)  # [B, K]
        target = (self.events * mine[:, :, None]).sum(dim=1)
        contaminant = self.target + self.contaminant - target
        return GroundTruth(ideal_mask(self.domain, self.frontend, target, contaminant), target, contaminant,
                           self.rep, self.domain, self.frontend)


def ideal_mask(domain: Domain, frontend: Frontend, target: torch.Tensor, contaminant: torch.Tensor) -> torch.Tensor:
    """The IBM [B, 1, T, F] (float 0/1) of ``target`` against ``contaminant`` [B, L] on ``domain``'s grid."""
    return (domain.represent(frontend, target).x > domain.represent(frontend, contaminant).x).to(torch.float32)


def batch_truth(
    domain: Domain, frontend: Frontend, rep: Representation, target: torch.Tensor, contaminant: torch.Tensor,
    events: torch.Tensor | None = None, event_labels: torch.Tensor | None = None,
) -> GroundTruth:
    """The :class:`GroundTruth` of a batch of clips (``rep`` and ``target``, ``contaminant`` [B, L] per clip;
    ``events`` [B, K, L] and ``event_labels`` [B, K] where the data knows each labelled event);
    :meth:`GroundTruth.subset` picks a batch's (clip, target) rows, :meth:`GroundTruth.for_labels` their classes' events."""
    return GroundTruth(ideal_mask(domain, frontend, target, contaminant), target, contaminant,
                       rep if domain.listenable else None, domain, frontend, events, event_labels)
