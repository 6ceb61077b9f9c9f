"""Cascading model randomisation: SSIM/Spearman against skimage/scipy, the cascade against Quantus's MPRT."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from audiobench.contracts.domains import Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import METHODS, MODELS, load_plugin_file
from audiobench.kernel.stats import spearman
from audiobench.methods.base import DomainModel, ExplainContext
from audiobench.methods.gradients import Saliency
from audiobench.models.base import AudioClassifier
from audiobench.models.cnn14 import Cnn14Spec
from audiobench.sanity.randomisation import cascading_randomisation, layer_groups
from audiobench.sanity.similarity import ssim
from tests.paths import TESTS

PLUGINS = TESTS / "plugins"


def test_ssim_equals_skimage_with_quantus_data_range():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(4, 1, 20, 13, generator=gen)
    b = (a + 0.3 * torch.rand(4, 1, 20, 13, generator=gen)).clamp(0, 1)
    b[3] = torch.rand(20, 13, generator=gen)  # unrelated
    ours = ssim(a, b).numpy()
    for i in range(4):
        x, y = a[i, 0].double().numpy(), b[i, 0].double().numpy()
        rng = float(np.concatenate([x, y]).max() - np.concatenate([x, y]).min())
        assert ours[i] == pytest.approx(structural_similarity(x, y, data_range=rng), abs=1e-10)
    assert ssim(a, a).tolist() == pytest.approx([1.0] * 4)
    assert ours[3] < 0.3 < ours[0]
    with pytest.raises(ValueError, match="window"):
        ssim(a[..., :5], a[..., :5])


def test_spearman_equals_scipy():
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 5, (3, 1, 8, 6), generator=gen).float()
    b = a + torch.randint(0, 3, (3, 1, 8, 6), generator=gen).float()
    ours = spearman(a, b).numpy()
    ref = [spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic for i in range(3)]
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert torch.isnan(spearman(torch.ones(1, 4), torch.rand(1, 4))).all()


class Tiny(AudioClassifier):
    """Two conv blocks and a linear head: Quantus's module list is exactly head, block2, block1."""

    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, n_classes)
        self.class_names = [str(i) for i in range(n_classes)]

    def blocks(self) -> list[nn.Module]:
        return [self.block1, self.block2]

    def block_channels(self) -> list[int]:
        return [4, 4]

    def features(self, inp: torch.Tensor) -> list[torch.Tensor]:
        one = self.block1(inp)
        return [one, self.block2(one)]

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return self.fc(last.amax(dim=(2, 3)))


def _model(classifier: AudioClassifier) -> tuple[DomainModel, torch.Tensor]:
    frontend = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=16))
    gen = torch.Generator().manual_seed(2)
    wave = torch.randn(6, 4000, generator=gen) * torch.linspace(0, 1, 4000)
    model = DomainModel(classifier.eval().requires_grad_(False), Mel(), frontend).eval()
    return model, Mel().represent(frontend, wave).x


def test_cascade_matches_quantus_mprt():
    torch.manual_seed(0)
    model, x = _model(Tiny())
    with torch.no_grad():
        target = model(x).argmax(1)
    ours = cascading_randomisation(Saliency(), model, x, target, seed=7, batch_size=6)
    assert ours.steps == ["none", "head", "block2", "block1"]
    shape = x.shape[-2:]

    def explain(model, inputs, targets, **kwargs):  # noqa: ANN001, ANN003, ANN202
        xt, tt = torch.as_tensor(inputs), torch.as_tensor(targets)
        with torch.enable_grad():
            return Saliency().explain(xt, tt, ExplainContext(model=model, seed=0)).mask.numpy()

    def ssim_2d(a, b, batched=True, **kw):  # noqa: ANN001, ANN003, ANN202
        return np.array(ssim(torch.as_tensor(a).view(-1, *shape), torch.as_tensor(b).view(-1, *shape)).tolist())

    def spearman_flat(a, b, batched=True, **kw):  # noqa: ANN001, ANN003, ANN202
        return np.array(spearman(torch.as_tensor(a), torch.as_tensor(b)).tolist())

    for func, mine in ((ssim_2d, ours.ssim), (spearman_flat, ours.spearman)):
        metric = quantus.MPRT(similarity_func=func, layer_order="top_down", seed=7, disable_warnings=True)
        scores = metric(model=model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=None, explain_func=explain,
                        channel_first=True, device="cpu")
        layers = [k for k in scores if k != "original"]
        assert layers == ["classifier.fc", "classifier.block2.0", "classifier.block1.0"]
        np.testing.assert_allclose(np.array([scores[k] for k in layers]), mine[1:], atol=1e-6)
    assert ours.ssim[0].tolist() == pytest.approx([1.0] * 6)
    assert ours.ssim[-1].mean() < 0.9  # saliency of a randomised network is another map


def test_cnn14_groups_and_an_input_only_method_stays_at_one():
    load_plugin_file(PLUGINS / "input_only.py")
    clf = Cnn14Spec({"width": 4, "depth": 3}).build(["a", "b", "c"], 16, 16000)
    model, x = _model(clf)
    groups = layer_groups(clf, model.network_input(x[:1]))
    assert [g.name for g in groups] == ["head", "conv_block3", "conv_block2", "conv_block1", "stem"]
    assert groups[0].modules == [clf.fc_audioset, clf.fc1] and groups[-1].modules == [clf.bn0]
    with torch.no_grad():
        target = model(x).argmax(1)
    res = cascading_randomisation(METHODS.get("input_only")(), model, x, target, seed=0, batch_size=4)
    np.testing.assert_allclose(res.ssim, 1.0, atol=1e-12)
    np.testing.assert_allclose(res.spearman, 1.0, atol=1e-12)
    # the trained weights are untouched: the cascade works on a copy
    assert torch.equal(clf.bn0.running_var, model.classifier.bn0.running_var)


@pytest.mark.parametrize("name", ["band_sigmoid", "band_prompts"])
def test_cascade_runs_on_plugin_model_kinds(name):
    load_plugin_file(PLUGINS / "toy_models.py")
    clf = MODELS.get(name)({}).build(["low hum", "beep", "whistle", "hiss tone"], 16, 16000)
    model, x = _model(clf)
    with torch.no_grad():
        target = model(x).argmax(1)
    res = cascading_randomisation(Saliency(), model, x, target, seed=0, batch_size=6)
    assert res.steps == ["none", "block1"]
    assert res.ssim.shape == (2, 6) and np.isfinite(res.ssim).all()
