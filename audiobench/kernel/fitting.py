"""The epoch loop every trained piece shares (classifier, L-MAC decoder, L2I interpreter).

Each epoch trains, validates, appends its record to a JSON-lines log and keeps a copy of the weights
of the best epoch by one logged key; the best weights are loaded back at the end. The caller's
``train_epoch`` draws its own random numbers, so the loop adds none (results do not depend on it).
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
) -> dict[str, Any]:
    """Run ``epochs`` epochs and keep the weights of ``modules`` from the best one.

    ``train_epoch`` trains one epoch (modules in train mode) and returns its ``train_*`` terms;
    ``validate`` returns the ``valid_*`` terms (modules in eval mode). The epoch with the lowest
    (``mode="min"``) or highest ``select`` wins, the first one on ties. Returns ``selected_by``,
    ``best_epoch``, ``best`` (the winner's valid terms) and ``history`` (every epoch's record).
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
        record: dict[str, Any] = {"epoch": epoch + 1, **train_epoch()}
        for m in modules:
            m.eval()
        record.update(validate())
        if select not in record:
            raise KeyError(f"selection key '{select}' is not among the logged terms {sorted(record)}")
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
