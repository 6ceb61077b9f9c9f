"""The hand-built known-answer model (band_energy): its exact attribution in closed form, checked
against Integrated Gradients and Grad-CAM, the decision it makes, the budget metrics' verdict, and
the `exact` row validate allows only with such a model."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from audiobench.contracts.domains import Mel, Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import METHODS, METRICS
from audiobench.methods.base import DomainModel, ExplainContext
from audiobench.metrics.base import compute_inputs
from audiobench.metrics.budget import Budget
from audiobench.models.cnn14 import Cnn14
from audiobench.models.handbuilt import BandEnergySpec
from audiobench.testing import TINY_SUITE

SR = 16000
DOMAINS = [Stft2Mel(), Stft2Mel({"operator": "log1p"}), Mel()]


def _clips(n: int = 6, cue: bool = True) -> torch.Tensor:
    """n clips of 0.5 s: a 500 Hz tone, plus (``cue``) a 3 kHz burst in the middle."""
    t = torch.arange(SR // 2) / SR
    g = torch.Generator().manual_seed(0)
    amp = 0.3 + 0.4 * torch.rand(n, 1, generator=g)
    waves = amp * torch.sin(2 * math.pi * 500 * t)
    if cue:
        burst = torch.zeros_like(t)
        mid = slice(len(t) // 2 - 800, len(t) // 2 + 800)
        burst[mid] = torch.sin(2 * math.pi * 3000 * t[mid]) * torch.hann_window(1600)
        waves = waves + 0.2 * burst
    return waves


def _model(domain, threshold: float = 0.05) -> DomainModel:
    frontend = Frontend(FrontendParams(n_fft=256, win_length=256, hop_length=128, n_mels=32, sample_rate=SR))
    clf = BandEnergySpec({"band_hz": [2800, 3200], "gain": 1.0, "threshold": threshold}).build(["cue", "twin", "other"],
                                                                                                32, SR)
    return DomainModel(clf, domain, frontend).eval()


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.key())
def test_exact_attribution_is_complete_and_integrated_gradients_finds_it(domain) -> None:
    model = _model(domain)
    x = domain.represent(model.frontend, _clips()).x
    target = torch.zeros(len(x), dtype=torch.long)
    exact = model.classifier.exact_attribution(domain, model.frontend, x, target)
    with torch.no_grad():
        score, base = model(x)[:, 0], model(torch.zeros_like(x))[:, 0]
    # completeness: the attribution sums to the score minus the score of the zero input
    torch.testing.assert_close(exact.flatten(1).sum(1), score - base, rtol=1e-5, atol=1e-6)
    assert bool((exact.flatten(1).sum(1) > 0).all())
    # Integrated Gradients from the zero baseline: exact for the linear grid, a 50-point quadrature of
    # the integral of x e^(a x) otherwise
    ig = METHODS.get("integrated_gradients")({"n_steps": 50})
    with torch.enable_grad():
        raw = ig.attribute(x, target, ExplainContext(model, seed=0))
    torch.testing.assert_close(raw, exact, rtol=1e-3, atol=1e-6 * float(exact.max()))
    # the constant classes have no attribution
    assert float(model.classifier.exact_attribution(domain, model.frontend, x, torch.ones_like(target)).abs().max()) == 0


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.key())
def test_grad_cam_is_the_exact_attribution_up_to_scale(domain) -> None:
    model = _model(domain)
    x = domain.represent(model.frontend, _clips()).x
    target = torch.zeros(len(x), dtype=torch.long)
    exact = METHODS.get("exact")().explain(x, target, ExplainContext(model, seed=0)).mask
    with torch.enable_grad():
        cam = METHODS.get("gradcam")({"layer": "band"}).explain(x, target, ExplainContext(model, seed=0)).mask
    torch.testing.assert_close(cam, exact, rtol=1e-4, atol=1e-5)


def test_the_band_decides_the_class() -> None:
    model = _model(Stft2Mel())
    with torch.no_grad():
        with_cue = model(model.domain.represent(model.frontend, _clips(cue=True)).x).argmax(1)
        without = model(model.domain.represent(model.frontend, _clips(cue=False)).x).argmax(1)
    assert with_cue.tolist() == [0] * 6 and without.tolist() == [1] * 6


def _maps(domain, names: tuple[str, ...]) -> tuple[DomainModel, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The hand-built model on ``domain``, the clips' representations, their target (the band class) and
    each named method's masks of them (default parameters, seed 0)."""
    model = _model(domain)
    x = domain.represent(model.frontend, _clips()).x
    target = torch.zeros(len(x), dtype=torch.long)
    ctx = ExplainContext(model, seed=0)
    with torch.enable_grad():
        masks = {name: METHODS.get(name)().explain(x, target, ctx).mask.detach() for name in names}
    return model, x, target, masks


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.key())
def test_the_exact_row_has_the_best_insertion_and_deletion_areas(domain) -> None:
    model, x, target, masks = _maps(domain, ("exact", "energy", "random", "ones", "saliency"))
    budget = Budget(tuple(k / 20 for k in range(1, 20)))
    areas = {}
    for name, mask in masks.items():
        inputs = compute_inputs(model, x, mask, target=target, budget=budget)
        areas[name] = {m: float(METRICS.get(m)(inputs).mean()) for m in ("ins_auc", "del_auc", "ins_del")}
    for other in ("energy", "random", "ones", "saliency"):
        assert areas["exact"]["ins_auc"] >= areas[other]["ins_auc"] - 1e-9, (other, areas)
        assert areas["exact"]["del_auc"] <= areas[other]["del_auc"] + 1e-9, (other, areas)
        assert areas["exact"]["ins_del"] >= areas[other]["ins_del"] - 1e-9, (other, areas)


def test_validate_allows_exact_only_with_a_model_that_knows_its_attribution(tmp_path) -> None:
    from audiobench.suite import SuiteErrors, load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY_SUITE, "methods": ["saliency", "exact"]}, sort_keys=False))
    with pytest.raises(SuiteErrors, match=r"suite\.yaml:\d+: method 'exact' needs a model that knows its exact attribution"):
        load_suite(path)
    path.write_text(yaml.safe_dump({**TINY_SUITE, "model": {"name": "band_energy", "threshold": 1.0},
                                    "methods": ["saliency", "exact"]}, sort_keys=False))
    assert [m.name for m in load_suite(path).methods] == ["saliency", "exact"]


def test_distribution_overlap_known_answers() -> None:
    from audiobench.metrics.localisation import distribution_overlap

    a = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[2.0, 2.0, 0.0, 0.0], [0.0, 0.0, 5.0, 1.0], [1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    out = distribution_overlap(a, b)
    assert out[:3].tolist() == pytest.approx([1.0, 0.0, 0.5])  # same up to scale, disjoint, half
    assert torch.isnan(out[3])  # an all-zero map has no distribution


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.key())
def test_exact_overlap_scores_the_known_answer(domain) -> None:
    from audiobench.contracts.explanation import Explanation
    from audiobench.contracts.targets import TargetParams
    from audiobench.harness.engine import score_rows

    model, x, target, masks = _maps(domain, ("integrated_gradients", "saliency", "energy"))
    with torch.no_grad():
        scores = model(x)
    got = {}
    for name, mask in masks.items():
        values, skipped, _ = score_rows(model, x, Explanation(mask), scores, target, [METRICS.get("exact_overlap")],
                                        None, TargetParams(), 64)
        assert not skipped
        got[name] = float(values["exact_overlap"].mean())
    assert got["integrated_gradients"] == pytest.approx(1.0, abs=1e-3)
    assert got["saliency"] < got["integrated_gradients"] and got["energy"] < 0.5
    # a learned model has no exact attribution: recorded as not applicable, with the reason
    cnn = DomainModel(Cnn14(3, n_mels=32, width=4, depth=2).eval(), domain, model.frontend)
    _, skipped, _ = score_rows(cnn, x, Explanation(mask), cnn(x).detach(), target, [METRICS.get("exact_overlap")], None,
                               TargetParams(), 64)
    assert "no exact attribution" in skipped["exact_overlap"]


def test_validate_refuses_the_exact_metric_for_a_learned_model(tmp_path) -> None:
    from audiobench.suite import SuiteErrors, load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY_SUITE, "metrics": ["ai", "exact_overlap"]}, sort_keys=False))
    with pytest.raises(SuiteErrors, match=r"suite\.yaml:\d+: metric 'exact_overlap' needs a model that knows"):
        load_suite(path)


@pytest.mark.parametrize(("model", "message"), [
    ({"band_class": 3}, r"model.band_class: 3 is not a class of a 3-class dataset"),
    ({"twin_class": 0}, "band_class and twin_class must differ"),
])
def test_validate_refuses_band_energy_settings_that_cannot_work(tmp_path, model, message) -> None:
    from audiobench.suite import SuiteErrors, load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY_SUITE, "model": {"name": "band_energy", **model},
                                    "methods": ["saliency", "exact"]}, sort_keys=False))
    with pytest.raises(SuiteErrors, match=message):
        load_suite(path)


def test_a_band_without_bins_is_one_line() -> None:
    from audiobench.kernel.errors import AudiobenchError

    domain = Stft2Mel()
    model = _model(domain)
    model.classifier.band_hz = (9000.0, 10000.0)  # above the 8 kHz Nyquist frequency
    with pytest.raises(AudiobenchError, match=r"band_hz \[9000.0, 10000.0\] holds no bin of the stft2mel grid"):
        model(domain.represent(model.frontend, _clips()).x)

