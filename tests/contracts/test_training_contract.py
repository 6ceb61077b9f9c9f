"""Harness training goes through the model contract: the network reads ``network_input`` of the Mel grid
(not the log-mel handed over as it is), and the loss is its output kind's (binary cross-entropy for a
sigmoid model, cross-entropy otherwise). Known answers: at a learning rate of 1e-30 (nothing moves) the
first epoch's training loss is the initial model's loss on the training clips, computed here by hand."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from audiobench.contracts.component import Params
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import DATASETS
from audiobench.data.contaminations import peak_normalise
from audiobench.kernel.errors import AudiobenchError
from audiobench.models.base import AudioClassifier, ModelSpec, training_loss
from audiobench.models.training import train_classifier
from audiobench.suite.schema import TrainParams


class PoolLinear(AudioClassifier):
    """Mean over frames, then one linear layer: no dropout, no batch norm, so train and eval agree."""

    def __init__(self, n_classes: int, n_mels: int, kind: str, squared: bool) -> None:
        super().__init__()
        self.lin = nn.Linear(n_mels, n_classes)
        self.output_kind = kind  # type: ignore[misc]
        self.squared = squared

    def network_input(self, domain: Any, frontend: Frontend, x: torch.Tensor) -> torch.Tensor:
        grid = domain.to_logmel(frontend, x)
        return grid**2 if self.squared else grid

    def blocks(self) -> list[nn.Module]:
        return [self.lin]

    def block_channels(self) -> list[int]:
        return [self.lin.out_features]

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        return [inp.mean(dim=2)]

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return self.lin(last[:, 0])


class PoolSpec(ModelSpec):
    name: ClassVar[str] = "pool_linear_test"

    class Params(Params):
        kind: str = "softmax"
        squared: bool = False

    def build(self, class_names: list[str], n_mels: int, sample_rate: int) -> AudioClassifier:
        model = PoolLinear(len(class_names), n_mels, self.params.kind, self.params.squared)
        model.class_names = list(class_names)
        return model


def test_the_loss_of_each_output_kind_by_hand() -> None:
    scores, labels = torch.tensor([[0.0, 0.0], [2.0, -1.0]]), torch.tensor([1, 0])
    assert float(training_loss(scores, labels, "softmax")) == pytest.approx(float(F.cross_entropy(scores, labels)))
    # sigmoid: one-hot targets, BCE per (clip, label): row 1 log 2 twice; row 2 log(1+e^-2) + log(1+e^-1)
    by_hand = (2 * torch.log(torch.tensor(2.0)) + F.softplus(torch.tensor(-2.0)) + F.softplus(torch.tensor(-1.0))) / 4
    assert float(training_loss(scores, labels, "sigmoid")) == pytest.approx(float(by_hand), abs=1e-6)
    multi = torch.tensor([[1, 1], [0, 1]])
    assert float(training_loss(scores, multi, "sigmoid")) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(scores, multi.float())), abs=1e-6)
    with pytest.raises(AudiobenchError, match="multi-hot labels need a sigmoid model"):
        training_loss(scores, multi, "softmax")


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
@pytest.mark.parametrize("squared", [False, True])
def test_harness_training_reads_network_input_and_the_output_kind_loss(kind: str, squared: bool) -> None:
    frontend = Frontend(FrontendParams(sample_rate=8000, n_fft=256, win_length=256, hop_length=128, n_mels=16))
    data = DATASETS.get("synth")({"classes": 3, "clips_per_class": 6, "seconds": 0.5})
    splits = {s: data.load(s, 8000) for s in ("train", "valid", "test")}
    spec = PoolSpec({"kind": kind, "squared": squared})
    train = TrainParams(epochs=1, lr=1e-30, batch_size=5)
    trained = train_classifier(spec, train, splits, frontend, {"test": kind + str(squared)}, 0, torch.device("cpu"),
                               progress=False)
    torch.manual_seed(0)  # the initial weights, as training draws them
    model = spec.build(splits["train"].class_names, 16, 8000)
    grid = frontend.logmel(peak_normalise(splits["train"].subset(slice(None))).waveforms)
    with torch.no_grad():
        scores = model(grid**2 if squared else grid)
        wanted = training_loss(scores, splits["train"].labels, kind)
        other = (F.binary_cross_entropy_with_logits(scores, F.one_hot(splits["train"].labels, 3).float())
                 if kind == "softmax" else F.cross_entropy(scores, splits["train"].labels))
        unread = training_loss(model(grid if squared else grid**2), splits["train"].labels, kind)
    got = trained.info["history"][0]["train_loss"]
    assert got == pytest.approx(float(wanted), rel=1e-5)
    assert abs(got - float(other)) > 1e-3 and abs(got - float(unread)) > 1e-3  # neither the other loss nor the other input
