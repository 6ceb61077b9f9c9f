"""The epoch loop every trained piece shares (classifier, L-MAC decoder, L2I interpreter).

Each epoch trains, validates, appends its record to a JSON-lines log and keeps a copy of the weights
of the best epoch by one logged key; the best weights are loaded back at the end. The caller's
``train_epoch`` draws its own random numbers, so the loop adds none (results do not depend on it).

An optional learning-rate schedule is a hook the loop calls after each epoch's validation
(:class:`PlateauLR`, SpeechBrain's ``ReduceLROnPlateau``); with one, every epoch's record also logs
the ``lr`` it trained with.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from audiobench.kernel.faults import kill_point


class TermMeans:
    """Running per-sample means of named loss terms over batches of different sizes."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, terms: dict[str, torch.Tensor | float], n: int) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v) * n
        self.count += n

    def means(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": v / max(1, self.count) for k, v in self.sums.items()}


class PlateauLR:
    """Lower the learning rate when a logged value stops improving: SpeechBrain's ``ReduceLROnPlateau``
    (``speechbrain/nnet/schedulers.py``), the L-MAC recipe's ``lr_annealing`` (``hparams/lmac_cnn14.yaml``:
    ``factor 0.5, patience 3, dont_halve_until_epoch 100``; ``interpreter_brain.py`` calls it once per
    epoch after validation and writes the returned lr into every parameter group).

    The rule, for the 1-based ``epoch`` and the value ``v`` (``monitor`` of the epoch's record, negated
    when ``mode="max"``, as the recipe passes minus the input fidelity)::

        epoch <= start_epoch:           keep the lr; anchor = v
        v <= anchor:                    keep the lr; anchor = v; counter = 0
        v > anchor, counter < patience: keep the lr; counter += 1
        otherwise (NaN included):       lr = max(lr x factor, lr_min); counter = 0 (the anchor stays)

    so at the defaults the first halving can follow epoch ``start_epoch + patience + 1`` and applies
    from the next epoch. The lr is read from the first optimizer's first parameter group.

    Raises ``ValueError`` for a factor outside (0, 1), a negative patience or start epoch, or no optimizer.
    """

    def __init__(
        self,
        optimizers: Sequence[torch.optim.Optimizer],
        monitor: str,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.5,
        patience: int = 3,
        start_epoch: int = 100,
        lr_min: float = 1e-8,
    ) -> None:
        if not optimizers:
            raise ValueError("PlateauLR needs at least one optimizer")
        if not 0 < factor < 1:
            raise ValueError(f"PlateauLR factor must lie in (0, 1), not {factor}")
        if patience < 0 or start_epoch < 0:
            raise ValueError(f"PlateauLR patience and start_epoch must be >= 0, not {patience} and {start_epoch}")
        self.optimizers = list(optimizers)
        self.monitor, self.sign = monitor, (1.0 if mode == "min" else -1.0)
        self.factor, self.patience, self.start_epoch, self.lr_min = factor, patience, start_epoch, lr_min
        self.anchor, self.counter = math.inf, 0

    @property
    def lr(self) -> float:
        """The current learning rate (first optimizer, first parameter group)."""
        return float(self.optimizers[0].param_groups[0]["lr"])

    def step(self, epoch: int, record: dict[str, Any]) -> float:
        """Apply the rule after ``epoch`` (1-based) with that epoch's ``record``; returns the next lr.

        Raises ``KeyError`` when ``monitor`` is not among the record's keys.
        """
        if self.monitor not in record:
            raise KeyError(f"lr schedule key '{self.monitor}' is not among the logged terms {sorted(record)}")
        value, lr = self.sign * float(record[self.monitor]), self.lr
        if epoch <= self.start_epoch:
            self.anchor = value
        elif value <= self.anchor:
            self.anchor, self.counter = value, 0
        elif value > self.anchor and self.counter < self.patience:
            self.counter += 1
        else:
            lr, self.counter = lr * self.factor, 0
        lr = max(lr, self.lr_min)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        return lr


def fit_epochs(
    modules: Sequence[nn.Module],
    epochs: int,
    train_epoch: Callable[[], dict[str, float]],
    validate: Callable[[], dict[str, float]],
    select: str,
    log_path: Path | None = None,
    mode: Literal["min", "max"] = "min",
    desc: str = "train",
    progress: bool = True,
    schedule: PlateauLR | None = None,
) -> dict[str, Any]:
    """Run ``epochs`` epochs and keep the weights of ``modules`` from the best one.

    ``train_epoch`` trains one epoch (modules in train mode) and returns its ``train_*`` terms;
    ``validate`` returns the ``valid_*`` terms (modules in eval mode). The epoch with the lowest
    (``mode="min"``) or highest ``select`` wins, the first one on ties. Returns ``selected_by``,
    ``best_epoch``, ``best`` (the winner's valid terms) and ``history`` (every epoch's record).
    With a ``schedule``, each record also holds ``lr`` (the rate the epoch trained with) and the
    schedule steps on the record after validation (:meth:`PlateauLR.step`); without one the records
    are as before. Raises ``KeyError`` when ``select`` (or the schedule's key) is not logged.
    """
    sign = 1.0 if mode == "min" else -1.0
    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_state = math.inf, 0, None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    shown = select.removeprefix("valid_")
    for epoch in bar:
        for m in modules:
            m.train()
        lr = schedule.lr if schedule is not None else None
        record: dict[str, Any] = {"epoch": epoch + 1, **train_epoch()}
        for m in modules:
            m.eval()
        record.update(validate())
        if select not in record:
            raise KeyError(f"selection key '{select}' is not among the logged terms {sorted(record)}")
        if schedule is not None:
            record["lr"] = lr
            schedule.step(epoch + 1, record)
        history.append(record)
        kill_point("epoch")
        if log_path is not None:
            with log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        postfix = {k: f"{record[k]:.3f}" for k in (f"train_{shown}", "train_loss", select) if k in record}
        bar.set_postfix(postfix)
        score = sign * float(record[select])  # the selection key is a logged one; NaN never wins
        if best_state is None or score < best_score:
            best_score, best_epoch = (score if score == score else math.inf), epoch
            best_state = [copy.deepcopy(m.state_dict()) for m in modules]
    if best_state is None:
        raise ValueError("fit_epochs needs at least one epoch")
    for m, state in zip(modules, best_state, strict=True):
        m.load_state_dict(state)
        m.eval()
    chosen = history[best_epoch]
    return {
        "selected_by": select,
        "best_epoch": chosen["epoch"],
        "best": {k: v for k, v in chosen.items() if k.startswith("valid_")},
        "history": history,
    }
