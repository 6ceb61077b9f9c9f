"""The paper's and the recipe's forms of SHAP and CAM, selected by parameters (docs/departures.md #4, #8).

SHAP ``baselines`` (zero / abs_normal / train) and ``n_baselines``: expected gradients over a
background, checked against the closed form of a linear model f(x) = w.x (SHAP values
w * (x - E[r])) and against Captum's ``GradientShap`` on the same background; ``noise: range``
scales with each clip's range. CAM ``mel_to_linear: stretch``: the recipe's straight interpolation,
checked against ``torch.nn.functional.interpolate`` and Captum's ``GuidedGradCam``. Every default
leaves the dumps (hence cell ids and fit keys) as they were.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from captum import attr as captum_attr
from pydantic import ValidationError

from audiobench.contracts.domains import Domain, Mel, Stft2Mel
from audiobench.contracts.frontend import Frontend, FrontendParams
from audiobench.contracts.registry import METHODS
from audiobench.data.base import ClipSet
from audiobench.harness.runner import run_suite
from audiobench.kernel.errors import AudiobenchError
from audiobench.methods.base import DomainModel, ExplainContext, Explainer, FitContext
from audiobench.methods.cam import CamParams
from audiobench.methods.gradients import GradientShap, ShapParams, expected_gradients
from audiobench.models.base import AudioClassifier
from audiobench.models.cnn14 import Cnn14
from audiobench.suite import load_suite
from audiobench.testing import check_method

N_MELS = 16
GRID = (8, N_MELS)


class Linear(AudioClassifier):
    """f_c(x) = <w_c, x> on whatever grid the domain hands it (the mel domain: the log-mel itself)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bitf,citf->bc", x, self.w)


class RegionReluSum(AudioClassifier):
    """logit_0 = sum over a region of relu(x), logit_1 its negative: scale-free (gradient R * 1[x > 0])."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        self.register_buffer("region", region)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (torch.relu(x) * self.region).flatten(1).sum(1)
        return torch.stack([s, -s], dim=1)


@pytest.fixture(scope="module")
def frontend() -> Frontend:
    return Frontend(FrontendParams(n_fft=128, win_length=128, hop_length=64, n_mels=N_MELS))


@pytest.fixture(scope="module")
def cnn() -> Cnn14:
    torch.manual_seed(0)
    return Cnn14(n_classes=3, n_mels=N_MELS, width=4, depth=2).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def waves() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    t = torch.arange(4000) / 16000
    tones = torch.stack([torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 2500 * t)])
    return 0.5 * tones + 0.1 * torch.randn(2, 4000, generator=gen)


def make_ctx(classifier: torch.nn.Module, domain: Domain, frontend: Frontend, **kw) -> ExplainContext:
    return ExplainContext(DomainModel(classifier, domain, frontend).eval(), **kw)


def method(name: str, **params) -> Explainer:
    return METHODS.get(name)(params)


def clips(n: int, seed: int, length: int = 448) -> ClipSet:
    """n clips of noise (seeded) of ``length`` samples: 8 frames at hop 64 (the GRID)."""
    wave = torch.randn(n, length, generator=torch.Generator().manual_seed(seed))
    return ClipSet(wave, torch.zeros(n, dtype=torch.long), [f"s{seed}_{i}" for i in range(n)], ["c"], 16000)


def fit_ctx(model: DomainModel, train: ClipSet, seed: int = 0, valid: ClipSet | None = None) -> FitContext:
    return FitContext(model=model, train=train, valid=valid if valid is not None else train, augment=[object()],
                      seed=seed, device=torch.device("cpu"), identity={}, log_dir=Path("/nonexistent"), progress=False)


# --------------------------------------------------------------------------- parameters and identity
def test_new_defaults_leave_every_dump_unchanged_and_other_values_enter_it() -> None:
    assert GradientShap().params.model_dump() == {"nonneg": "abs", "normalize": "max", "n_samples": 20, "stdev": 0.09}
    assert "mel_to_linear" not in CamParams().model_dump()
    assert "mel_to_linear" not in METHODS.get("guided_gradcam")().params.model_dump()
    set_ = ShapParams(baselines="train", n_baselines=7, noise="range").model_dump()
    assert (set_["baselines"], set_["n_baselines"], set_["noise"]) == ("train", 7, "range")
    assert CamParams(mel_to_linear="stretch").model_dump()["mel_to_linear"] == "stretch"


@pytest.mark.parametrize("bad, needle", [
    ({"n_baselines": 3}, "baselines zero has one reference"),  # zero has no background to size
    ({"baselines": "train", "n_baselines": 0}, "greater than or equal to 1"),
    ({"baselines": "uniform"}, "'zero', 'abs_normal' or 'train'"),
    ({"noise": "relative"}, "'absolute' or 'range'"),
    ({"baselines": "train", "n_baselines": True}, "not a boolean"),
])
def test_bad_shap_settings_are_one_line_errors(bad: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ShapParams(**bad)
    assert needle in str(exc.value)


def test_bad_cam_setting_is_refused() -> None:
    with pytest.raises(ValidationError, match="'filterbank' or 'stretch'"):
        CamParams(mel_to_linear="linear")


def test_validate_reports_the_combination_at_the_methods_line(write_suite) -> None:
    path = write_suite({"methods": ["saliency", {"name": "shap", "n_baselines": 4}]})
    with pytest.raises(AudiobenchError) as exc:
        load_suite(path)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "name: shap" in t)
    message = str(exc.value)
    assert message.startswith(f"{path}:{line}: methods.1: ") and "leave n_baselines out" in message
    assert len(message.strip().splitlines()) == 1


# --------------------------------------------------------------------------- expected gradients: oracles
def test_expected_gradients_matches_the_linear_closed_form_and_captum_on_one_background(frontend: Frontend) -> None:
    """f(x) = w.x: every draw gives (x - r) * w, so the estimate is w * (x - mean of the drawn r), which
    tends to w * (x - E[r]), the SHAP values; Captum's GradientShap on the same background tends there too."""
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(3, 1, *GRID, generator=gen)
    x = torch.randn(2, 1, *GRID, generator=gen)
    background = 2 * torch.rand(5, 1, *GRID, generator=gen)  # a background with a non-zero mean
    target = torch.tensor([2, 0])
    model = DomainModel(Linear(w), Mel(), frontend).eval()
    n = 4000
    expected = w[target] * (x - background.mean(0))
    # sd of one bin's estimate: |w| sd(r) / sqrt(n); 6 sd of margin
    tol = 6 * (w[target].abs() * background.std(0, unbiased=False)).amax() / math.sqrt(n)
    torch.manual_seed(0)
    ours = expected_gradients(model, x, target, background, n, torch.zeros(2), max_rows=1000)
    np.random.seed(0)
    torch.manual_seed(0)
    theirs = captum_attr.GradientShap(model).attribute(x, baselines=background, target=target, n_samples=n, stdevs=0.0)
    assert float((ours - expected).abs().max()) < tol and float((theirs - expected).abs().max()) < tol
    assert float((expected - w[target] * x).abs().max()) > 10 * tol  # the background's mean matters
    # one reference: exact, as Captum
    one = background[:1]
    exact = expected_gradients(model, x, target, one, 3, torch.zeros(2))
    torch.testing.assert_close(exact, w[target] * (x - one), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        exact, captum_attr.GradientShap(model).attribute(x, baselines=one, target=target, n_samples=3), atol=1e-5, rtol=1e-5)


def test_expected_gradients_matches_captum_on_a_nonlinear_model(frontend: Frontend) -> None:
    """Both estimate E_{r, alpha}[(x - r) * grad f(r + alpha (x - r))] on the same background."""
    gen = torch.Generator().manual_seed(5)
    v = torch.randn(2, 1, *GRID, generator=gen)

    class Smooth(AudioClassifier):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = torch.einsum("bitf,citf->bc", torch.tanh(x), v)
            return a + 0.3 * a.pow(2)

    model = DomainModel(Smooth(), Mel(), frontend).eval()
    x = torch.randn(2, 1, *GRID, generator=gen)
    background = torch.rand(4, 1, *GRID, generator=gen)
    target = torch.tensor([0, 1])
    torch.manual_seed(1)
    ours = expected_gradients(model, x, target, background, 6000, torch.zeros(2), max_rows=2000)
    np.random.seed(1)
    torch.manual_seed(1)
    theirs = captum_attr.GradientShap(model).attribute(x, baselines=background, target=target, n_samples=6000)
    rel = float((ours - theirs).norm() / theirs.norm())
    assert rel < 0.08, rel
    ig_like = expected_gradients(model, x, target, torch.zeros_like(background[:1]), 6000, torch.zeros(2), max_rows=2000)
    assert float((ig_like - theirs).norm() / theirs.norm()) > 3 * rel  # another background is another answer


def test_abs_normal_is_the_recipes_background_fresh_per_clip(frontend: Frontend) -> None:
    """baselines abs_normal: n_baselines draws of |N(0, 1)| per clip. On f = w.x the implied reference
    x - a / w is the mean of drawn |N(0,1)| values: >= 0 everywhere, sqrt(2/pi) on average, and
    different for two copies of one clip (each clip has its own draws)."""
    gen = torch.Generator().manual_seed(6)
    w = torch.randn(2, 1, *GRID, generator=gen).sign() * (0.5 + torch.rand(2, 1, *GRID, generator=gen))
    x0 = torch.randn(1, 1, *GRID, generator=gen)
    x, target = torch.cat([x0, x0]), torch.tensor([1, 1])
    ctx = make_ctx(Linear(w), Mel(), frontend, max_rows=4096)
    torch.manual_seed(0)
    a = method("shap", baselines="abs_normal", stdev=0.0, n_samples=2000).attribute(x, target, ctx)
    ref = x - a / w[target]
    assert float(ref.min()) > -1e-4
    assert abs(float(ref.mean()) - math.sqrt(2 / math.pi)) < 0.1  # 256 bins x 2 clips of means of 3 |N| draws
    assert float((ref[0] - ref[1]).abs().mean()) > 0.1  # per-clip pools, not one shared draw
    torch.manual_seed(0)
    many = method("shap", baselines="abs_normal", n_baselines=500, stdev=0.0, n_samples=2000).attribute(x, target, ctx)
    ref_many = x - many / w[target]
    # E|N(0,1)| = sqrt(2/pi): with 500 draws per clip the implied reference of every bin is close to it
    assert float((ref_many - math.sqrt(2 / math.pi)).abs().max()) < 0.15
    assert float((ref - math.sqrt(2 / math.pi)).abs().max()) > 0.3  # 3 draws (the recipe's) are a rough pool


def test_train_background_is_clean_training_clips_drawn_with_the_seed(frontend: Frontend) -> None:
    domain = Mel()
    train = clips(12, seed=7)
    valid = ClipSet(torch.full((3, 448), float("nan")), torch.zeros(3, dtype=torch.long), ["v0", "v1", "v2"], ["c"], 16000)
    gen = torch.Generator().manual_seed(8)
    w = torch.randn(2, 1, *GRID, generator=gen)
    model = DomainModel(Linear(w), domain, frontend).eval()
    shap = method("shap", baselines="train", n_baselines=5, stdev=0.0, n_samples=3000)
    assert shap.trainable and not type(shap).trainable and not shap.augments()  # a draw, not training, no augmentation
    with pytest.raises(AudiobenchError, match="fit"):
        shap.attribute(torch.zeros(1, 1, *GRID), torch.zeros(1, dtype=torch.long), ExplainContext(model))
    info = shap.fit(fit_ctx(model, train, seed=3, valid=valid))  # valid is NaN: reading it would show
    assert info["background"]["clips"] == 5 and shap.fit_notes(info) == []
    bg = shap.background
    every = domain.represent(frontend, train.waveforms).x
    assert bg.shape == (5, 1, *GRID) and bool(bg.isfinite().all())
    hits = [int(((every - row).flatten(1).abs().amax(1) < 1e-6).nonzero()[0, 0]) for row in bg]  # each row is a training clip
    assert len(set(hits)) == 5

    again = method("shap", baselines="train", n_baselines=5)
    again.fit(fit_ctx(model, train, seed=3))
    assert torch.equal(again.background, bg)
    other = method("shap", baselines="train", n_baselines=5)
    other.fit(fit_ctx(model, train, seed=4))
    assert not torch.equal(other.background, bg)

    # SHAP values of the linear model: w * (x - mean of the background)
    x = domain.represent(frontend, clips(2, seed=9).waveforms).x
    target = torch.tensor([0, 1])
    torch.manual_seed(0)
    a = shap.attribute(x, target, ExplainContext(model, max_rows=6000))
    expected = w[target] * (x - bg.mean(0))
    tol = 6 * (w[target].abs() * bg.std(0, unbiased=False)).amax() / math.sqrt(3000)
    assert float((a - expected).abs().max()) < tol
    assert float((expected - w[target] * x).abs().max()) > 10 * tol

    small = method("shap", baselines="train")  # n_baselines left out: 100, more than the split holds
    notes = small.fit_notes(small.fit(fit_ctx(model, train)))
    assert small.background.shape[0] == 12 and notes and "12 training clips" in notes[0]


def test_train_background_of_another_length_is_fitted_to_the_clips_frames(frontend: Frontend) -> None:
    model = DomainModel(Linear(torch.ones(2, 1, *GRID)), Mel(), frontend).eval()
    shap = method("shap", baselines="train", n_baselines=3, n_samples=2)
    shap.fit(fit_ctx(model, clips(4, seed=1, length=192)))  # 4 frames
    x = Mel().represent(frontend, clips(1, seed=2).waveforms).x
    assert shap.attribute(x, torch.zeros(1, dtype=torch.long), ExplainContext(model)).shape == x.shape


def test_a_training_background_may_be_evaluated_on_any_condition(write_suite) -> None:
    """The background never counts as training on augmentation: a condition the suite trains on and
    evaluates out-of-domain is refused for L-MAC, accepted for shap's background."""
    over = {"train": {"augment": [{"name": "white_noise", "snr_db": [0, 20]}]},
            "contaminations": ["none", {"name": "white_noise", "snr_db": 5}]}
    suite = load_suite(write_suite({**over, "methods": [{"name": "shap", "baselines": "train"}]}))
    assert not suite.methods[0].build().augments()
    with pytest.raises(AudiobenchError, match="trains on white noise"):
        load_suite(write_suite({**over, "methods": [{"name": "lmac", "epochs": 1, "blocks": 2, "hidden": 4}]}))


@pytest.mark.slow
def test_a_run_draws_the_background_in_the_cell_and_records_it(write_suite, tmp_path: Path) -> None:
    path = write_suite({"domains": ["mel"], "contaminations": ["none"], "limit": 3,
                        "methods": [{"name": "shap", "baselines": "train", "n_baselines": 4, "n_samples": 2}]})
    result = run_suite(path, tmp_path / "run", progress=False)
    cells = [json.loads(p.read_text()) for p in (tmp_path / "run" / "cells").glob("*.json")]
    assert len(cells) == 1 and "background" in json.dumps(cells[0])
    assert result.tables
    fits = [c["fit"] for c in result.manifest["cells"]]
    assert fits[0]["trained_on"] == {"clips": ["train"], "augment": []}  # the background reads the train split only


# --------------------------------------------------------------------------- noise: range
def test_range_noise_scales_with_each_clips_range(frontend: Frontend) -> None:
    """f = w.x, zero reference: a = w * mean_s(x + sigma_b z_s), so (a / w - x) has sd sigma_b / sqrt(n)
    per clip, sigma_b = stdev x (max - min of clip b): two clips of ranges 1 : 10 in one batch."""
    gen = torch.Generator().manual_seed(10)
    w = 0.5 + torch.rand(2, 1, *GRID, generator=gen)
    base = torch.rand(1, 1, *GRID, generator=gen)
    base = (base - base.min()) / (base.max() - base.min())  # range exactly 1
    x, target = torch.cat([base, 10 * base]), torch.tensor([0, 0])
    ctx = make_ctx(Linear(w), Mel(), frontend, max_rows=2000)
    n, stdev = 400, 0.2
    torch.manual_seed(0)
    a = method("shap", noise="range", stdev=stdev, n_samples=n).attribute(x, target, ctx)
    resid_sd = (a / w[0] - x).flatten(1).std(1)
    want = torch.tensor([stdev * 1.0, stdev * 10.0]) / math.sqrt(n)
    assert bool(((resid_sd / want - 1).abs() < 0.25).all()), resid_sd / want  # 128 bins: sd of the ratio ~0.06
    torch.manual_seed(0)
    flat = method("shap", stdev=stdev, n_samples=n, baselines="abs_normal").attribute(x, target, ctx)
    assert flat.shape == x.shape  # absolute noise on a background goes through the same sampler


def test_range_noise_makes_shap_scale_free_and_absolute_does_not(frontend: Frontend) -> None:
    """On a scale-free model with the zero reference, range noise on 100 x draws 100 times the noise:
    the same draws give exactly 100 times the map; absolute noise does not."""
    region = torch.zeros(1, 1, *GRID)
    region[..., 2:6, 3:11] = 1
    ctx = make_ctx(RegionReluSum(region), Mel(), frontend, max_rows=64)
    x = torch.rand(2, 1, *GRID, generator=torch.Generator().manual_seed(3)) - 0.3
    x[1] *= 4
    target = torch.zeros(2, dtype=torch.long)
    runs = {}
    for noise in ("range", "absolute"):
        for scale in (1.0, 100.0):
            torch.manual_seed(0)
            runs[noise, scale] = method("shap", noise=noise, stdev=0.3, n_samples=16).attribute(scale * x, target, ctx)
    torch.testing.assert_close(runs["range", 100.0], 100 * runs["range", 1.0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(runs["absolute", 100.0], 100 * runs["absolute", 1.0], rtol=1e-2, atol=1e-2)


# --------------------------------------------------------------------------- CAM: mel_to_linear
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_stretch_is_the_cam_interpolated_straight_to_the_linear_grid(
    cnn: Cnn14, frontend: Frontend, waves: torch.Tensor, mode: str
) -> None:
    domain = Stft2Mel()
    x = domain.represent(frontend, waves).x
    assert x.shape[-1] == frontend.n_freqs != N_MELS
    ctx = make_ctx(cnn, domain, frontend)
    target = torch.tensor([0, 1])
    ours = method("gradcam", mel_to_linear="stretch", interpolate=mode).attribute(x, target, ctx)
    cam = captum_attr.LayerGradCam(ctx.model, cnn.block("last")).attribute(x, target=target, relu_attributions=True)
    kw = {"align_corners": False} if mode == "bilinear" else {}
    oracle = torch.nn.functional.interpolate(cam.detach(), size=tuple(x.shape[2:]), mode=mode, **kw)
    assert float(oracle.max()) > 0
    torch.testing.assert_close(ours, oracle, atol=1e-6 * float(oracle.max()), rtol=1e-5)
    if mode == "nearest":  # by hand: output bin j reads input bin floor(j * F' / F)
        t_idx = (torch.arange(x.shape[2]) * cam.shape[2]) // x.shape[2]
        f_idx = (torch.arange(x.shape[3]) * cam.shape[3]) // x.shape[3]
        torch.testing.assert_close(ours, cam.detach()[:, :, t_idx][..., f_idx])
    spread = method("gradcam", interpolate=mode).attribute(x, target, ctx)
    assert not torch.allclose(spread, ours, atol=1e-3 * float(oracle.max()))  # the filterbank default differs


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_guided_gradcam_stretch_is_captums_guided_gradcam(
    cnn: Cnn14, frontend: Frontend, waves: torch.Tensor, mode: str
) -> None:
    domain = Stft2Mel()
    x = domain.represent(frontend, waves).x
    ctx = make_ctx(cnn, domain, frontend)
    target = torch.tensor([2, 0])
    ours = method("guided_gradcam", mel_to_linear="stretch", interpolate=mode).attribute(x, target, ctx).detach()
    oracle = captum_attr.GuidedGradCam(ctx.model, cnn.block("last")).attribute(x, target=target, interpolate_mode=mode)
    assert float(oracle.abs().max()) > 0
    torch.testing.assert_close(ours, oracle.detach(), atol=1e-6 * float(oracle.abs().max()), rtol=1e-5)


@pytest.mark.parametrize("name", ["gradcam", "gradcam_pp", "guided_gradcam"])
def test_stretch_changes_nothing_in_the_mel_domain(name: str, cnn: Cnn14, frontend: Frontend, waves: torch.Tensor) -> None:
    x = Mel().represent(frontend, waves).x
    ctx = make_ctx(cnn, Mel(), frontend)
    target = torch.tensor([1, 2])
    a = method(name).attribute(x, target, ctx)
    b = method(name, mel_to_linear="stretch").attribute(x, target, ctx)
    assert float(a.abs().max()) > 0 and torch.equal(a, b)


# --------------------------------------------------------------------------- the method contract
@pytest.mark.parametrize("name, params", [
    ("shap", {"baselines": "train", "n_baselines": 4, "n_samples": 4}),
    ("shap", {"baselines": "abs_normal", "noise": "range", "n_samples": 4}),
    ("guided_gradcam", {"mel_to_linear": "stretch"}),
], ids=["shap-train", "shap-abs_normal-range", "guided_gradcam-stretch"])
def test_the_new_forms_keep_the_method_contract(name: str, params: dict) -> None:
    """Masks in [0, 1] shaped like the input, reproducible per seed, in every domain (a fit first for train)."""
    assert check_method(name, params)[-1] == "explain[stft2mel, waveform model]"
