"""The shared epoch loop (audiobench/kernel/fitting.py) and the cached fit of trainable methods."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from audiobench.kernel.fitting import TermMeans, fit_epochs


def scripted(values: list[float], key: str = "valid_loss"):
    """A one-weight module whose weight is set to the epoch number each epoch, and a validation
    that reports ``values`` in turn: the best epoch is known in advance."""
    module = nn.Linear(1, 1, bias=False)
    epoch = {"n": 0}

    def train_epoch() -> dict[str, float]:
        assert module.training
        epoch["n"] += 1
        with torch.no_grad():
            module.weight.fill_(epoch["n"])
        return {"train_loss": 10.0 * epoch["n"]}

    def validate() -> dict[str, float]:
        assert not module.training
        return {key: values[epoch["n"] - 1]}

    return module, train_epoch, validate


@pytest.mark.parametrize(
    ("values", "mode", "best"),
    [
        ([3.0, 1.0, 2.0, 1.0], "min", 2),  # lowest, first one on ties
        ([0.2, 0.9, 0.9, 0.5], "max", 2),
        ([math.nan, 4.0, 5.0], "min", 2),  # NaN never wins
        ([math.nan, math.nan], "max", 1),  # nothing comparable: the first epoch
    ],
)
def test_keeps_the_weights_of_the_best_epoch(values: list[float], mode: str, best: int, tmp_path: Path) -> None:
    module, train_epoch, validate = scripted(values)
    log = tmp_path / "logs" / "train.jsonl"
    info = fit_epochs([module], len(values), train_epoch, validate, "valid_loss", log, mode=mode, progress=False)
    assert info["best_epoch"] == best and info["selected_by"] == "valid_loss"
    assert module.weight.item() == best and not module.training
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [h["epoch"] for h in lines] == list(range(1, len(values) + 1))
    assert [h["train_loss"] for h in lines] == [10.0 * e for e in range(1, len(values) + 1)]
    assert lines == json.loads(json.dumps(info["history"]))


def test_selection_key_must_be_logged() -> None:
    module, train_epoch, validate = scripted([1.0], key="valid_other")
    with pytest.raises(KeyError, match="valid_loss"):
        fit_epochs([module], 1, train_epoch, validate, "valid_loss", progress=False)


def test_term_means_weight_batches_by_their_size() -> None:
    means = TermMeans()
    means.add({"a": torch.tensor(1.0), "b": 2.0}, 3)
    means.add({"a": torch.tensor(5.0), "b": 2.0}, 1)
    assert means.means("x_") == {"x_a": 2.0, "x_b": 2.0}
