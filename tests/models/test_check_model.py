"""The model contract test (audiobench.testing.check_model) on every built-in model and on broken ones,
and the front end a model declares (ModelSpec.required_frontend) in validate."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from audiobench.contracts.component import Params
from audiobench.contracts.frontend import FrontendParams
from audiobench.contracts.registry import MODELS
from audiobench.models.base import AudioClassifier, ModelSpec
from audiobench.models.cnn14 import Cnn14
from audiobench.testing import check_model

RULES = ["front end", "built", "scores[stft2mel]", "scores[stft2mel_log1p]", "scores[mel]"]


@pytest.mark.parametrize("name", ["cnn14", "clap_synth", "band_energy"])
def test_builtin_models_pass_the_contract(name: str) -> None:
    # band_energy scores every class but one as a constant by design (their exact attribution is zero)
    assert check_model(name, params={"width": 4, "depth": 2} if name == "cnn14" else None,
                       constant_ok=name == "band_energy") == RULES


def test_every_builtin_model_is_checked_here_or_beside_its_weights() -> None:
    # msclap needs CLAP's weights: tests/models/test_msclap.py checks it on a tiny checkpoint it writes;
    # hf_audio needs a transformers folder: tests/models/test_hf_audio.py checks it on tiny random ones;
    # wavecnn: tests/models/test_waveform_input.py (stft2mel only: it reads the phase); l2i_bd (a CNN14 and L2I's
    # interpreter by design): tests/models/test_l2i_bd.py
    assert set(MODELS.builtin_names()) == {"cnn14", "clap_synth", "band_energy", "msclap", "hf_audio", "wavecnn", "l2i_bd"}


class _Wrapped(AudioClassifier):
    """A tiny CNN14 seen through ``mode``: the defects check_model must catch."""

    def __init__(self, n: int, n_mels: int, mode: str):
        super().__init__()
        self.net, self.mode = Cnn14(n if mode != "zero_score" else 1, n_mels=n_mels, width=4, depth=2), mode

    def blocks(self) -> list[nn.Module]:
        return self.net.blocks()

    def block_channels(self) -> list[int]:
        return self.net.block_channels()

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        if self.mode == "no_gradient":
            inp = inp.detach()
        return self.net.features(inp)

    def head(self, last: torch.Tensor) -> torch.Tensor:
        out = self.net.head(last)
        if self.mode == "zero_score":  # the natural two-class wrapper of a one-logit detector
            return torch.cat([torch.zeros_like(out), out], dim=1)
        if self.mode == "batch_dependent":
            return out - out.mean(dim=0, keepdim=True)
        return out


def _spec(mode: str, frontend: dict[str, Any] | None = None) -> ModelSpec:
    class Spec(ModelSpec):
        trainable = False

        class Params(Params):
            pass

        def required_frontend(self) -> dict[str, Any]:
            return frontend or {}

        def build(self, class_names: list[str], n_mels: int, sample_rate: int) -> AudioClassifier:
            clf = _Wrapped(len(class_names), n_mels, mode)
            clf.class_names = list(class_names)
            return clf

    Spec.name = f"broken_{mode}"
    return Spec()


@pytest.mark.parametrize(("mode", "n_classes", "message"), [
    ("zero_score", 2, r"class\(es\) c0 score the same for every input"),
    ("no_gradient", 3, r"class\(es\) c0, c1, c2 have no gradient to the input"),
    ("batch_dependent", 3, r"a batch's scores differ from its rows scored one at a time"),
])
def test_check_model_catches_each_defect(mode: str, n_classes: int, message: str) -> None:
    with pytest.raises(AssertionError, match=rf"model 'broken_{mode}': \[stft2mel\] {message}"):
        check_model(_spec(mode), n_classes=n_classes)
    assert check_model(_spec("fine"), n_classes=n_classes) == RULES


def test_check_model_catches_a_wrong_front_end() -> None:
    spec = _spec("fine", {"sample_rate": 22050, "n_mels": 40})
    assert check_model(spec) == RULES  # built on the front end it declares
    with pytest.raises(AssertionError, match=r"front end: frontend.sample_rate is 16000, the model reads 22050"):
        check_model(spec, frontend=FrontendParams(n_mels=40))


def test_validate_refuses_roar_for_a_model_that_cannot_be_retrained(tmp_path) -> None:
    import yaml

    from audiobench.suite import SuiteErrors, load_suite
    from audiobench.testing import TINY_SUITE

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY_SUITE, "model": {"name": "band_energy"}, "methods": ["saliency", "random"],
                                    "sanity": {"roar": {"fractions": [0.5], "seeds": 1}}}, sort_keys=False))
    with pytest.raises(SuiteErrors, match=r"suite\.yaml:\d+: sanity.roar retrains the classifier, but model 'band_energy' "
                                          "is not trainable"):
        load_suite(path)
